"""Normalize and patchify frames in Qwen2-VL's exact row order (specs/qwen2_vl.md §1.3).

A clip of F frames (F padded to even by repeating the last frame; an image is 1 frame repeated
to 2) of size (gh*14, gw*14) becomes `gt*gh*gw` rows of 1176 = C * 2 * 14 * 14 values:

    x: (F, H, W, C) -> reshape (gt, 2, gh/2, 2, 14, gw/2, 2, 14, C)
                    -> transpose to (gt, bh, bw, mh, mw, C, tt, py, px)
                    -> reshape (gt*gh*gw, 1176)
    row(t, bh, bw, mh, mw) = (((t*(gh/2) + bh)*(gw/2) + bw)*2 + mh)*2 + mw
    col(c, tt, py, px)     = ((c*2 + tt)*14 + py)*14 + px ;   frame = 2*t + tt

so the 4 rows of each 2x2 merge window are consecutive (the merger groups them) and every run
of gh*gw rows is one temporal slice (ViT attention stays inside a slice). This is transformers'
reshape written for channel-last input; the result is identical.

Normalization is `(x / 255 - mean) / std` with OpenAI-CLIP statistics, evaluated exactly as
transformers does (uint8 -> float64 * (1/255) -> float32, then float32 subtract and divide),
through a 256-entry table per channel: bit-identical and one gather instead of three passes.
"""
from __future__ import annotations

import numpy as np

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PATCH_SIZE = 14
TEMPORAL_PATCH_SIZE = 2
MERGE_SIZE = 2


def _build_lut(mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD) -> np.ndarray:
    """(C, 256) float32: the normalized value of every uint8 level, per channel."""
    levels = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)  # transformers' rescale
    mean32 = np.asarray(mean, np.float32)[:, None]
    std32 = np.asarray(std, np.float32)[:, None]
    return (levels[None, :] - mean32) / std32  # transformers' normalize, in float32


_LUT = _build_lut()


def normalize(pixels: np.ndarray) -> np.ndarray:
    """Channel-last uint8 (..., 3) -> float32 (..., 3), `(x/255 - mean) / std`."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.shape[-1] != 3:
        raise ValueError(f"normalize expects uint8 channel-last RGB (..., 3), got {pixels.dtype} {pixels.shape}")
    return _LUT[np.arange(3), pixels]


def normalize_patches(rows: np.ndarray) -> np.ndarray:
    """uint8 patch rows (N, 3*k) -> float32 `(x/255 - mean) / std`.

    Columns are channel-major (channel `col // k`), the layout of every family's patch rows:
    Qwen-VL's (c, t, y, x) and CLIP's (c, y, x).
    """
    rows = np.asarray(rows)
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] % 3:
        raise ValueError(f"normalize_patches expects uint8 (N, 3*k) channel-major rows, got {rows.dtype} {rows.shape}")
    channel = np.repeat(np.arange(3), rows.shape[1] // 3)
    return _LUT[channel[None, :], rows]


def patchify(
    frames: np.ndarray,
    patch_size: int = PATCH_SIZE,
    temporal_patch_size: int = TEMPORAL_PATCH_SIZE,
    merge_size: int = MERGE_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Flattens frames into patch rows in Qwen2-VL order (no normalization; any dtype).

    Args:
      frames: (F, H, W, C); H and W multiples of patch_size*merge_size. F is padded up to a
        multiple of temporal_patch_size by repeating the last frame.
    Returns:
      rows: (gt*gh*gw, C*temporal_patch_size*patch_size**2), the dtype of `frames`.
      grid_thw: (3,) int64 (gt, gh, gw) in patch units.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"patchify expects (F, H, W, C) frames with F >= 1, got shape {frames.shape}")
    num, height, width, channels = frames.shape
    unit = patch_size * merge_size
    if height % unit or width % unit:
        raise ValueError(
            f"frames of {height}x{width} are not multiples of {unit} (patch {patch_size} x merge {merge_size}); "
            "resize first (resize.smart_resize or a resolution bucket)")
    if num % temporal_patch_size:
        pad = temporal_patch_size - num % temporal_patch_size
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
    gt, gh, gw = frames.shape[0] // temporal_patch_size, height // patch_size, width // patch_size
    x = frames.reshape(gt, temporal_patch_size, gh // merge_size, merge_size, patch_size,
                       gw // merge_size, merge_size, patch_size, channels)
    x = x.transpose(0, 2, 5, 3, 6, 8, 1, 4, 7)  # (gt, bh, bw, mh, mw, C, tt, py, px)
    rows = x.reshape(gt * gh * gw, channels * temporal_patch_size * patch_size * patch_size)
    return rows, np.array([gt, gh, gw], np.int64)


def patchify_video(frames: np.ndarray, *, normalized: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A clip, already at its target size, as Qwen2-VL video input.

    Args:
      frames: (T, H, W, 3) uint8 RGB, H and W multiples of 28. Odd T: the last frame repeats.
      normalized: False returns the uint8 rows (normalize later with `normalize_patches`,
        e.g. on the device, moving a quarter of the bytes).
    Returns:
      rows: (gt*gh*gw, 1176) float32 (or uint8), `pixel_values_videos` of this clip.
      grid_thw: (3,) int64, its `video_grid_thw` row.
    """
    frames = _check_rgb(frames, 4)
    rows, grid = patchify(frames)
    return (normalize_patches(rows) if normalized else rows), grid


def patchify_image(image: np.ndarray, *, normalized: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One image, already at its target size, as Qwen2-VL image input (the frame doubled: gt=1).

    Args:
      image: (H, W, 3) uint8 RGB, H and W multiples of 28.
    Returns:
      rows: (gh*gw, 1176) float32 (or uint8), `pixel_values` of this image.
      grid_thw: (3,) int64 (1, gh, gw), its `image_grid_thw` row.
    """
    image = _check_rgb(image, 3)
    rows, grid = patchify(image[None])
    return (normalize_patches(rows) if normalized else rows), grid


def to_slices(rows: np.ndarray, grid_thw) -> np.ndarray:
    """Rows of one image/video -> the static layout (gt, gh*gw, D): temporal slices x patches.

    A pure reshape: slice t holds rows [t*gh*gw, (t+1)*gh*gw), i.e. frames (2t, 2t+1), in the
    same patch order, so the ViT can attend within slices by reshape (no cu_seqlens).
    """
    gt, gh, gw = (int(v) for v in np.asarray(grid_thw).reshape(3))
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[0] != gt * gh * gw:
        raise ValueError(f"{rows.shape} rows do not match grid_thw ({gt}, {gh}, {gw}): expected {gt * gh * gw} rows")
    return rows.reshape(gt, gh * gw, rows.shape[1])


def from_slices(slices: np.ndarray) -> np.ndarray:
    """Inverse of `to_slices`: (gt, gh*gw, D) -> (gt*gh*gw, D)."""
    slices = np.asarray(slices)
    return slices.reshape(-1, slices.shape[-1])


def _check_rgb(x: np.ndarray, ndim: int) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != ndim or x.shape[-1] != 3:
        want = "(T, H, W, 3)" if ndim == 4 else "(H, W, 3)"
        raise ValueError(f"expected uint8 RGB {want}, got {x.dtype} {x.shape}")
    return x


def num_merged_tokens(grid_thw, merge_size: int = MERGE_SIZE) -> int:
    """LLM tokens one image/video takes: gt*gh*gw // merge_size**2 pad tokens."""
    gt, gh, gw = (int(v) for v in np.asarray(grid_thw).reshape(3))
    return gt * gh * gw // merge_size**2
