"""smart_resize (both variants), PIL bicubic resizing and resolution buckets."""
import numpy as np
import pytest

from sf2t_jax.video import resize


def test_smart_resize_hf_equals_transformers():
    hf = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    rng = np.random.default_rng(0)
    sizes = [(28, 28), (56, 56), (224, 224), (360, 640), (1080, 1920), (33, 300), (29, 5000), (4000, 30)]
    sizes += [tuple(int(v) for v in rng.integers(28, 3000, 2)) for _ in range(300)]
    bounds = [(56 * 56, 28 * 28 * 1280), (3136, 12845056), (100352, 602112), (56 * 56, 28 * 28 * 64)]
    for h, w in sizes:
        for lo, hi in bounds:
            assert resize.smart_resize(h, w, 28, lo, hi) == hf.smart_resize(h, w, 28, lo, hi), (h, w, lo, hi)


def test_smart_resize_spec_examples_and_variants():
    # specs/qwen2_vl.md §1.3, verified with transformers.
    assert resize.smart_resize(360, 640, 28, 100352, 602112) == (364, 644)
    assert resize.smart_resize(1080, 1920, 28, 100352, 602112) == (560, 1008)
    assert resize.smart_resize(224, 224, 28, 100352, 602112) == (336, 336)
    for variant in resize.VARIANTS:  # both agree when both sides are >= 28
        assert resize.smart_resize(360, 640, 28, 100352, 602112, variant=variant) == (364, 644)
    # A side below the factor: transformers raises, qwen-vl-utils clamps the rounding to 28.
    with pytest.raises(ValueError, match="must be larger than factor"):
        resize.smart_resize(20, 300, 28, 56 * 56, 28 * 28 * 1280)
    assert resize.smart_resize(20, 300, 28, 56 * 56, 28 * 28 * 1280, variant="qwen_vl_utils") == (28, 308)
    assert resize.smart_resize(10, 10, 28, 4 * 28 * 28, 16384 * 28 * 28, variant="qwen_vl_utils") == (56, 56)
    for variant in resize.VARIANTS:
        with pytest.raises(ValueError, match="aspect ratio"):
            resize.smart_resize(28, 28 * 201, variant=variant)
    with pytest.raises(ValueError, match="unknown smart_resize variant"):
        resize.smart_resize(56, 56, variant="torch")


def test_resize_frames_is_pil_bicubic():
    from PIL import Image

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 50, 70, 3), dtype=np.uint8)
    out = resize.resize_frames(frames, (28, 56))
    assert out.shape == (3, 28, 56, 3) and out.dtype == np.uint8
    for t in range(3):
        ref = np.asarray(Image.fromarray(frames[t]).resize((56, 28), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(out[t], ref)
    assert resize.resize_frames(frames[0], (28, 56)).shape == (28, 56, 3)
    assert resize.resize_frames(frames, (50, 70)) is frames  # same size: untouched
    # Antialiased: downscaling a 1-pixel checkerboard gives flat grey, not aliasing.
    checker = (np.indices((112, 112)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, -1)
    small = resize.resize_frames(checker, (28, 28)).astype(int)
    assert np.abs(small - 127.5).max() < 3
    with pytest.raises(ValueError, match="uint8"):
        resize.resize_frames(frames.astype(np.float32), (28, 28))


def test_buckets():
    assert resize.check_bucket((224, 448)) == (224, 448)
    with pytest.raises(ValueError, match="multiples of 28"):
        resize.check_bucket((224, 450))
    buckets = [(336, 336), (252, 448), (448, 252)]
    assert resize.nearest_bucket(360, 640, buckets) == (252, 448)
    assert resize.nearest_bucket(640, 360, buckets) == (448, 252)
    assert resize.nearest_bucket(100, 110, buckets) == (336, 336)
    assert resize.nearest_bucket(100, 100, [(224, 224), (448, 448)]) == (224, 224)  # tie: closest area
