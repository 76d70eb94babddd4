"""Target sizes (smart_resize, fixed buckets) and bicubic frame resizing, as Qwen2-VL does it.

Qwen2-VL sees images and frames whose sides are multiples of 28 (patch 14 x merge 2). The size
comes either from `smart_resize` (keep the aspect ratio, bound the pixel count) or from a fixed
bucket in the config (a static shape for the jitted model). `resize_frames` then resizes with
PIL bicubic, exactly what transformers 4.49's slow `Qwen2VLImageProcessor` does (it converts
uint8 arrays to PIL images and calls `Image.resize((w, h), BICUBIC)`), so pixel values match
transformers bit for bit. PIL's bicubic is antialiased: its kernel widens by the scale factor
when downsampling.

Note: qwen-vl-utils resizes videos with torchvision's bicubic+antialias on uint8 tensors, which
differs from PIL by a few intensity levels; this module follows transformers, the reference
our parity tests use (specs/qwen2_vl.md §1.3).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

IMAGE_FACTOR = 28  # patch_size * spatial_merge_size
MAX_RATIO = 200  # largest aspect ratio either variant accepts

# transformers 4.49 `Qwen2VLImageProcessor` defaults (`smart_resize` function defaults are the same).
HF_MIN_PIXELS = 56 * 56
HF_MAX_PIXELS = 28 * 28 * 1280
# The released Qwen2-VL checkpoints' preprocessor_config.json.
HUB_MIN_PIXELS = 3136
HUB_MAX_PIXELS = 12845056
# qwen-vl-utils 0.0.8 constants.
QWEN_MIN_PIXELS = 4 * 28 * 28
QWEN_MAX_PIXELS = 16384 * 28 * 28
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28

VARIANTS = ("hf", "qwen_vl_utils")


def smart_resize(
    height: int,
    width: int,
    factor: int = IMAGE_FACTOR,
    min_pixels: int = HF_MIN_PIXELS,
    max_pixels: int = HF_MAX_PIXELS,
    *,
    variant: str = "hf",
) -> tuple[int, int]:
    """The (height, width) Qwen2-VL resizes an image of (height, width) to.

    Both sides become multiples of `factor`, the area lands in [min_pixels, max_pixels]
    (approximately: the rescale steps floor/ceil each side), and the aspect ratio is kept:
        h', w' = round(h / factor) * factor, round(w / factor) * factor
        if h' * w' > max_pixels: beta = sqrt(h*w / max_pixels);  h', w' = floor(h/beta/f)*f, floor(w/beta/f)*f
        elif h' * w' < min_pixels: beta = sqrt(min_pixels / (h*w)); h', w' = ceil(h*beta/f)*f, ceil(w*beta/f)*f
    `round` is Python's (half to even).

    Variants (specs/qwen2_vl.md §1.3):
      * "hf" (default): transformers 4.49 `image_processing_qwen2_vl.smart_resize`, the one
        our image parity is checked against. Raises if a side is below `factor`, or the
        aspect ratio exceeds 200.
      * "qwen_vl_utils": qwen-vl-utils 0.0.8 `smart_resize`. Checks the aspect ratio first and
        clamps the rounded sides to at least `factor` before the pixel-bound checks, so a side
        shorter than `factor` is accepted.
    The two agree whenever both sides are >= factor.

    Returns:
      (height, width), multiples of `factor`.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown smart_resize variant {variant!r}; known: {', '.join(VARIANTS)}")
    if height <= 0 or width <= 0:
        raise ValueError(f"smart_resize: height and width must be positive, got ({height}, {width})")
    ratio = max(height, width) / min(height, width)
    if variant == "hf":
        if height < factor or width < factor:
            raise ValueError(f"height:{height} or width:{width} must be larger than factor:{factor}")
        if ratio > MAX_RATIO:
            raise ValueError(f"absolute aspect ratio must be smaller than {MAX_RATIO}, got {ratio}")
        h_bar = round(height / factor) * factor
        w_bar = round(width / factor) * factor
    else:
        if ratio > MAX_RATIO:
            raise ValueError(f"absolute aspect ratio must be smaller than {MAX_RATIO}, got {ratio}")
        h_bar = max(factor, round(height / factor) * factor)
        w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic (antialiased) resize with PIL, as transformers' slow Qwen2-VL processor does.

    Args:
      frames: (T, H, W, 3) or (H, W, 3) uint8 RGB.
      size: target (height, width).
    Returns:
      uint8 of the same rank, (T, h, w, 3) or (h, w, 3). The input itself when the size
      already matches (PIL's resize to the same size is an exact copy).
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] != 3:
        raise ValueError(f"resize_frames expects uint8 (T, H, W, 3) or (H, W, 3) RGB, got {frames.dtype} {frames.shape}")
    height, width = (int(v) for v in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"resize_frames: target size must be positive, got {size}")
    if frames.shape[-3:-1] == (height, width):
        return frames
    if frames.ndim == 3:
        return _resize_one(frames, height, width)
    out = np.empty((frames.shape[0], height, width, 3), np.uint8)
    for t, frame in enumerate(frames):
        out[t] = _resize_one(frame, height, width)
    return out


def _resize_one(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(frame))
    return np.asarray(image.resize((width, height), resample=Image.Resampling.BICUBIC))


def check_bucket(size: Sequence[int], factor: int = IMAGE_FACTOR) -> tuple[int, int]:
    """Validates a fixed resolution bucket from a config: (height, width), multiples of `factor`."""
    if len(size) != 2:
        raise ValueError(f"a resolution bucket is (height, width), got {tuple(size)}")
    height, width = (int(v) for v in size)
    if height <= 0 or width <= 0 or height % factor or width % factor:
        raise ValueError(f"resolution bucket ({height}, {width}) must be positive multiples of {factor}")
    return height, width


def nearest_bucket(height: int, width: int, buckets: Sequence[Sequence[int]], factor: int = IMAGE_FACTOR) -> tuple[int, int]:
    """The bucket closest in aspect ratio (|log(h/w) ratio|), ties to the closest area.

    Frames are then stretched to it by `resize_frames`: static shapes over exact aspect ratio.
    """
    if not buckets:
        raise ValueError("nearest_bucket: no resolution buckets given")
    checked = [check_bucket(b, factor) for b in buckets]
    aspect = math.log(height / width)
    area = math.log(height * width)
    return min(checked, key=lambda b: (abs(math.log(b[0] / b[1]) - aspect), abs(math.log(b[0] * b[1]) - area)))
