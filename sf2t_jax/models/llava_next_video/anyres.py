"""Host-side (numpy) layout of LLaVA-NeXT-Video's vision inputs: pixels -> CLIP patch rows,
anyres image tiling, and where each image feature lands in the token sequence.

An image of (h, w) pixels is shown to the tower as a base tile (the image squashed to
image_size x image_size) plus the tiles of the `image_grid_pinpoints` resolution that fits it
best (`select_best_resolution`). transformers' `pack_image_features` then lays the features
out as: the base tile's S patches, then the tiles' patch grid stitched into one
(rows*grid, cols*grid) map, cropped back to the image's aspect ratio (`unpad_image`), read row
by row with `image_newline` after each row. Here that layout is a gather index over the
tiles' projected features (plus one slot for the newline), computed from (h, w) alone, so the
jitted model sees static shapes and the feature order is exactly transformers'.
"""
from __future__ import annotations

import math

import numpy as np

from sf2t_jax.models.llava_next_video.config import LlavaNextVideoConfig
from sf2t_jax.video.patchify import normalize

NEWLINE = -1  # the image_newline slot in `image_feature_layout`


def select_best_resolution(image_hw: tuple[int, int], pinpoints) -> tuple[int, int]:
    """transformers' `select_best_resolution`: the (height, width) of `pinpoints` that keeps
    the most of the image's resolution, then wastes the least."""
    h, w = image_hw
    best, best_effective, best_wasted = None, 0, float("inf")
    for ph, pw in pinpoints:
        scale = min(pw / w, ph / h)
        down_w, down_h = int(w * scale), int(h * scale)
        effective = min(down_w * down_h, w * h)
        wasted = ph * pw - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (ph, pw), effective, wasted
    return best


def tile_grid(config: LlavaNextVideoConfig, image_hw: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of image_size tiles of the image's best pinpoint resolution."""
    ph, pw = select_best_resolution(image_hw, config.image_grid_pinpoints)
    return ph // config.vision.image_size, pw // config.vision.image_size


def num_tiles(config: LlavaNextVideoConfig, image_hw: tuple[int, int]) -> int:
    """Tiles the tower sees for one image: the base tile plus rows * cols."""
    rows, cols = tile_grid(config, image_hw)
    return 1 + rows * cols


def _unpadded(height: int, width: int, image_hw: tuple[int, int]) -> tuple[slice, slice]:
    """transformers' `unpad_image` on a (height, width) feature map: the rows and columns that
    the image covers (the resize kept its aspect ratio and padded the rest)."""
    oh, ow = image_hw
    if ow / oh > width / height:
        new_h = int(round(oh * (width / ow), 7))
        pad = (height - new_h) // 2
        return slice(pad, height - pad), slice(0, width)
    new_w = int(round(ow * (height / oh), 7))
    pad = (width - new_w) // 2
    return slice(0, height), slice(pad, width - pad)


def image_feature_layout(config: LlavaNextVideoConfig, image_hw: tuple[int, int]) -> np.ndarray:
    """Where each of an image's LLM tokens comes from, in sequence order.

    Returns (tokens,) int64: index t*S + p for patch p of tile t (tile 0 the base tile, S =
    grid**2 patches per tile), or NEWLINE for `image_newline`. Equal to
    `pack_image_features`' order (tests/test_models_llava_next_video.py checks it).
    """
    g = config.vision.grid
    s = g * g
    t = num_tiles(config, image_hw)
    if t == 1:  # transformers' single-tile branch: the tile, then one newline
        return np.concatenate([np.arange(s), [NEWLINE]])
    rows, cols = tile_grid(config, image_hw)
    r, c = np.meshgrid(np.arange(rows * g), np.arange(cols * g), indexing="ij")
    stitched = (1 + (r // g) * cols + c // g) * s + (r % g) * g + (c % g)  # (rows*g, cols*g)
    keep_r, keep_c = _unpadded(rows * g, cols * g, image_hw)
    kept = stitched[keep_r, keep_c]
    with_newline = np.concatenate([kept, np.full((kept.shape[0], 1), NEWLINE)], axis=1)
    return np.concatenate([np.arange(s), with_newline.reshape(-1)])


def image_token_count(config: LlavaNextVideoConfig, image_hw: tuple[int, int]) -> int:
    return len(image_feature_layout(config, image_hw))


# ----------------------------------------------------------------------------------------
# Pixels
# ----------------------------------------------------------------------------------------
def pixels_to_patches(pixels: np.ndarray, patch_size: int) -> np.ndarray:
    """(N, C, H, W) normalized pixels (the processor's layout) -> (N, (H/p)*(W/p), C*p*p) patch
    rows in raster order, each row flattened (C, py, px) like the Conv2d kernel."""
    pixels = np.asarray(pixels)
    n, c, h, w = pixels.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"pixels of {h}x{w} are not a whole number of {patch_size}-pixel patches")
    x = pixels.reshape(n, c, h // patch_size, patch_size, w // patch_size, patch_size)
    return x.transpose(0, 2, 4, 1, 3, 5).reshape(n, (h // patch_size) * (w // patch_size), c * patch_size**2)


def frame_patches(frames: np.ndarray, config: LlavaNextVideoConfig) -> np.ndarray:
    """uint8 (F, s, s, 3) frames at the tower's resolution -> float32 (F, S, C*p*p) patch rows,
    CLIP-normalized as transformers' processors do (one frame per tower input)."""
    frames = np.asarray(frames)
    size = config.vision.image_size
    if frames.ndim != 4 or frames.shape[1:] != (size, size, 3):
        raise ValueError(f"frames of shape {frames.shape}: LLaVA-NeXT-Video takes (F, {size}, {size}, 3) frames")
    return pixels_to_patches(normalize(frames).transpose(0, 3, 1, 2), config.vision.patch_size)


def anyres_tiles(image: np.ndarray, config: LlavaNextVideoConfig) -> np.ndarray:
    """uint8 (h, w, 3) image -> float32 (tiles, C, s, s) normalized tiles as transformers 4.49's
    LlavaNextImageProcessor makes them: the image squashed to s x s (the base tile), then the
    image resized into its best pinpoint resolution keeping its aspect ratio (bicubic), padded
    with black by the same amount on both sides (so an odd margin loses a pixel row or column),
    cut into s x s tiles in raster order, and each tile resized (shortest edge s) and
    centre-cropped to s x s."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"anyres_tiles expects a uint8 (h, w, 3) image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    s = config.vision.image_size
    th, tw = select_best_resolution((h, w), config.image_grid_pinpoints)
    if tw / w < th / h:
        new_w, new_h = tw, min(math.ceil(h * (tw / w)), th)
    else:
        new_h, new_w = th, min(math.ceil(w * (th / h)), tw)
    resize = lambda a, hw: np.asarray(Image.fromarray(a).resize((hw[1], hw[0]), resample=Image.BICUBIC,
                                                                reducing_gap=None))
    y, x = (th - new_h) // 2, (tw - new_w) // 2
    padded = np.pad(resize(image, (new_h, new_w)), ((y, y), (x, x), (0, 0)))
    ph, pw = padded.shape[:2]
    tiles = [resize(image, (s, s))]
    tiles += [_shortest_edge_and_crop(padded[i:i + s, j:j + s], s, resize)
              for i in range(0, ph, s) for j in range(0, pw, s)]
    return normalize(np.stack(tiles)).transpose(0, 3, 1, 2)


def _shortest_edge_and_crop(tile: np.ndarray, s: int, resize) -> np.ndarray:
    """The processor's per-tile resize (shortest edge to s, aspect kept) and centre crop."""
    h, w = tile.shape[:2]
    if (h, w) != (s, s):
        short, long = min(h, w), max(h, w)
        new_long = int(s * long / short)
        tile = resize(tile, (new_long, s) if w <= h else (s, new_long))
        h, w = tile.shape[:2]
    top, left = (h - s) // 2, (w - s) // 2
    return tile[top:top + s, left:left + s]
