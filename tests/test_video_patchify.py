"""Patchify parity: transformers 4.49's Qwen2VLImageProcessor for images and videos, and the
spec's reference reshape/transpose for videos (specs/qwen2_vl.md §1.3)."""
import numpy as np
import pytest

from sf2t_jax.video import patchify as P
from sf2t_jax.video import preprocess_image, preprocess_video

MIN_PIXELS, MAX_PIXELS = 56 * 56, 28 * 28 * 64  # keeps every test image small


@pytest.fixture(scope="module")
def hf_processor():
    transformers = pytest.importorskip("transformers")
    assert transformers.__version__ == "4.49.0", "parity is pinned to transformers 4.49 (the slow processor)"
    from transformers import Qwen2VLImageProcessor

    return Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)


def _reference_patchify(frames_uint8, mean=P.OPENAI_CLIP_MEAN, std=P.OPENAI_CLIP_STD):
    """The spec's algorithm, written out: channel-first, pad T, reshape, transpose, flatten."""
    x = frames_uint8.astype(np.float64) / 255.0
    x = (x - np.asarray(mean)) / np.asarray(std)
    x = x.transpose(0, 3, 1, 2)  # (F, C, H, W)
    if x.shape[0] % 2:
        x = np.concatenate([x, x[-1:]], axis=0)
    f, c, h, w = x.shape
    gt, gh, gw = f // 2, h // 14, w // 14
    x = x.reshape(gt, 2, c, gh // 2, 2, 14, gw // 2, 2, 14)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * 2 * 14 * 14), np.array([gt, gh, gw])


@pytest.mark.parametrize("size", [(56, 56), (84, 140), (60, 90), (100, 37), (33, 300), (224, 224), (300, 200)])
def test_image_parity_with_transformers(hf_processor, size):
    image = np.random.default_rng(sum(size)).integers(0, 256, size + (3,), dtype=np.uint8)
    ref = hf_processor(images=[image], return_tensors="np")
    rows, grid = preprocess_image(image, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(grid, ref["image_grid_thw"][0])
    assert rows.dtype == np.float32 and rows.shape == ref["pixel_values"].shape
    # Same float32 operations in the same order: bit-identical, not merely close.
    np.testing.assert_array_equal(rows, ref["pixel_values"])


@pytest.mark.parametrize("num_frames,size", [(4, (56, 84)), (5, (56, 84)), (3, (70, 50)), (1, (112, 56))])
def test_video_parity_with_transformers(hf_processor, num_frames, size):
    frames = np.random.default_rng(num_frames).integers(0, 256, (num_frames,) + size + (3,), dtype=np.uint8)
    ref = hf_processor(images=None, videos=[frames], return_tensors="np")
    rows, grid = preprocess_video(frames, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(grid, ref["video_grid_thw"][0])
    np.testing.assert_array_equal(rows, ref["pixel_values_videos"])


@pytest.mark.parametrize("num_frames", [2, 3, 4, 7])
def test_video_patchify_equals_spec_reference(num_frames):
    frames = np.random.default_rng(num_frames).integers(0, 256, (num_frames, 56, 112, 3), dtype=np.uint8)
    rows, grid = P.patchify_video(frames)
    ref_rows, ref_grid = _reference_patchify(frames)
    np.testing.assert_array_equal(grid, ref_grid)
    assert grid[0] == (num_frames + 1) // 2 and rows.shape == (grid.prod(), 1176)
    np.testing.assert_allclose(rows, ref_rows, rtol=0, atol=2e-6)  # float64 reference vs float32


def test_row_and_column_order_by_construction():
    """Pixel values encode (frame, y, x, channel); check the spec's row/col formulas."""
    t_, h, w = 3, 56, 84
    f, y, x, c = np.meshgrid(np.arange(t_), np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    code = np.stack([f, y, x, c], -1)  # (T, H, W, 3, 4)
    rows, (gt, gh, gw) = P.patchify(code.reshape(t_, h, w, 12))  # 12 "channels" keep the code
    rows = rows.reshape(gt * gh * gw, 12, 2, 14, 14)  # (row, channel*code, tt, py, px)
    for row in [0, 1, 2, 3, 5, 17, gt * gh * gw - 1]:
        t, rest = divmod(row, gh * gw)
        bh, rest = divmod(rest, (gw // 2) * 4)
        bw, rest = divmod(rest, 4)
        mh, mw = divmod(rest, 2)
        for tt in (0, 1):
            frame = min(2 * t + tt, t_ - 1)  # odd count: the last frame repeats
            for py, px in [(0, 0), (13, 5)]:
                got = rows[row, :, tt, py, px].reshape(3, 4)[0]
                assert tuple(got) == (frame, (2 * bh + mh) * 14 + py, (2 * bw + mw) * 14 + px, 0), (row, tt)


def test_slices_layout():
    frames = np.random.default_rng(0).integers(0, 256, (5, 56, 84, 3), dtype=np.uint8)
    rows, grid = P.patchify_video(frames)
    slices = P.to_slices(rows, grid)
    assert slices.shape == (3, 4 * 6, 1176)
    np.testing.assert_array_equal(P.from_slices(slices), rows)
    # Slice t is exactly the patchified frames (2t, 2t+1).
    for t in range(3):
        pair = frames[[2 * t, min(2 * t + 1, 4)]]
        np.testing.assert_array_equal(slices[t], P.patchify_video(pair)[0])
    assert P.num_merged_tokens(grid) == 3 * 4 * 6 // 4
    with pytest.raises(ValueError, match="do not match grid_thw"):
        P.to_slices(rows[:-1], grid)


def test_normalize_and_uint8_rows():
    pixels = np.arange(256, dtype=np.uint8).repeat(3).reshape(256, 1, 3)
    expected = (pixels / 255.0 - np.asarray(P.OPENAI_CLIP_MEAN)) / np.asarray(P.OPENAI_CLIP_STD)
    np.testing.assert_allclose(P.normalize(pixels), expected, rtol=0, atol=1e-6)
    frames = np.random.default_rng(0).integers(0, 256, (3, 28, 56, 3), dtype=np.uint8)
    raw, grid = P.patchify_video(frames, normalized=False)
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(P.normalize_patches(raw), P.patchify_video(frames)[0])
    np.testing.assert_array_equal(P.patchify(P.normalize(frames))[0], P.patchify_video(frames)[0])
    image_rows, image_grid = P.patchify_image(frames[0])
    np.testing.assert_array_equal(image_grid, [1, 2, 4])
    np.testing.assert_array_equal(image_rows, P.patchify_video(frames[:1])[0])  # 1 frame doubled


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="not multiples of 28"):
        P.patchify_video(np.zeros((2, 56, 60, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        P.patchify_video(np.zeros((2, 56, 56, 3), np.float32))
    with pytest.raises(ValueError, match="multiples of 28"):
        preprocess_video(np.zeros((2, 56, 56, 3), np.uint8), size=(56, 50))
    rows, grid = preprocess_video(np.zeros((2, 50, 90, 3), np.uint8), size=(56, 112))  # a fixed bucket
    np.testing.assert_array_equal(grid, [1, 4, 8])
