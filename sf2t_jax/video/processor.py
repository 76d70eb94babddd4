"""Qwen2-VL visual preprocessing end to end: target size, bicubic resize, normalize, patchify.

Equal to transformers 4.49's slow `Qwen2VLImageProcessor` (which also handles videos before
4.52): `preprocess_image(img, min_pixels=m, max_pixels=M)` gives its `pixel_values` and
`image_grid_thw` row for `Qwen2VLImageProcessor(min_pixels=m, max_pixels=M)`, and
`preprocess_video` its `pixel_values_videos` / `video_grid_thw` row. The size comes from the
first frame (smart_resize, "hf" variant) unless a fixed `size` (a resolution bucket) is given.
"""
from __future__ import annotations

import numpy as np

from sf2t_jax.video.patchify import patchify_image, patchify_video
from sf2t_jax.video.resize import HF_MAX_PIXELS, HF_MIN_PIXELS, IMAGE_FACTOR, check_bucket, resize_frames, smart_resize


def target_size(height: int, width: int, *, min_pixels: int = HF_MIN_PIXELS, max_pixels: int = HF_MAX_PIXELS,
                size: tuple[int, int] | None = None) -> tuple[int, int]:
    """`size` if given (validated as a bucket), else `smart_resize(height, width, 28, min, max)`."""
    if size is not None:
        return check_bucket(size, IMAGE_FACTOR)
    return smart_resize(height, width, IMAGE_FACTOR, min_pixels, max_pixels)


def preprocess_image(
    image: np.ndarray,
    *,
    min_pixels: int = HF_MIN_PIXELS,
    max_pixels: int = HF_MAX_PIXELS,
    size: tuple[int, int] | None = None,
    normalized: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 RGB -> (rows (gh*gw, 1176) float32, grid_thw (3,) int64 = (1, gh, gw))."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"preprocess_image expects uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
    h, w = target_size(*image.shape[:2], min_pixels=min_pixels, max_pixels=max_pixels, size=size)
    return patchify_image(resize_frames(image, (h, w)), normalized=normalized)


def preprocess_video(
    frames: np.ndarray,
    *,
    min_pixels: int = HF_MIN_PIXELS,
    max_pixels: int = HF_MAX_PIXELS,
    size: tuple[int, int] | None = None,
    normalized: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) uint8 RGB -> (rows (gt*gh*gw, 1176) float32, grid_thw (3,) int64).

    Odd T: the last frame repeats (gt = ceil(T/2)).
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"preprocess_video expects uint8 (T, H, W, 3) RGB with T >= 1, got {frames.dtype} {frames.shape}")
    h, w = target_size(*frames.shape[1:3], min_pixels=min_pixels, max_pixels=max_pixels, size=size)
    return patchify_video(resize_frames(frames, (h, w)), normalized=normalized)
