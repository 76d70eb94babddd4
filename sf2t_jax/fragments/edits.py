"""Local edits confined to one cell of a 3x3 grid, guaranteed visible.

Cells are numbered row-major 0..8 and named by `CELL_NAMES`: rows top / middle / bottom,
columns left / center / right, except the middle cell, which is plain "center". Cell bounds
split the frame at round(k * side / 3), k = 0..3.

Visibility: after an edit the cell's mean absolute difference (uint8 grey levels over the
cell's pixels and channels) must be at least `min_change`. An edit that falls short (a blur
of a flat cell, a colour shift of a cell saturated both ways, a patch copied from a similar
region) is replaced by a solid patch of area patch_frac[1], which always passes: over a
region, the best of the 8 RGB cube corners differs from any content by >= 127.5 on average
(each channel averages 127.5 between 0 and 255), so the cell changes by
>= 127.5 * patch area / cell area.
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from PIL import Image, ImageFilter

from sf2t_jax.fragments import base

CELL_NAMES = (
    "top left", "top center", "top right",
    "middle left", "center", "middle right",
    "bottom left", "bottom center", "bottom right",
)
EDIT_KINDS = ("color_shift", "blur", "patch")
SOLID_PATCH = "solid_patch"  # the guaranteed fallback; reported as the applied edit
_CORNERS = np.array(list(itertools.product((0, 255), repeat=3)), dtype=np.float32)  # (8, 3)


@dataclasses.dataclass(frozen=True)
class EditConfig:
    """How local edits are made."""

    kinds: tuple[str, ...] = EDIT_KINDS  # drawn uniformly per edit
    # Minimum mean |change| inside the edited cell, in uint8 grey levels: a difference a
    # person sees at a glance. At most half of what a solid patch guarantees (module doc).
    min_change: float = 16.0
    shift_range: tuple[int, int] = (48, 112)  # colour shift per channel, grey levels
    blur_frac: float = 0.2  # Gaussian blur radius as a fraction of the cell's shorter side
    patch_frac: tuple[float, float] = (0.3, 0.6)  # patch area as a fraction of the cell area

    def __post_init__(self):
        base.check_subset("EditConfig", "kinds", self.kinds, EDIT_KINDS)
        base.check_float_range("EditConfig", "patch_frac", self.patch_frac, 0.05, 1.0)
        if not (isinstance(self.min_change, (int, float))
                and 0 < self.min_change <= 0.5 * 127.5 * self.patch_frac[1]):
            raise ValueError(f"EditConfig.min_change: expected 0 < min_change <= "
                             f"{0.5 * 127.5 * self.patch_frac[1]:.1f} (half of what a solid "
                             f"patch of patch_frac[1] guarantees), got {self.min_change!r}")
        base.check_range("EditConfig", "shift_range", self.shift_range, 1)
        if self.shift_range[1] > 255:
            raise ValueError(f"EditConfig.shift_range: expected hi <= 255, got {self.shift_range}")
        if not (isinstance(self.blur_frac, (int, float)) and self.blur_frac > 0):
            raise ValueError(f"EditConfig.blur_frac: expected a number > 0, got {self.blur_frac!r}")


def cell_bounds(height: int, width: int, cell: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a cell, half-open."""
    ys = np.round(np.linspace(0, height, 4)).astype(int)
    xs = np.round(np.linspace(0, width, 4)).astype(int)
    r, c = divmod(cell, 3)
    return int(ys[r]), int(ys[r + 1]), int(xs[c]), int(xs[c + 1])


def cell_changes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean |a - b| per grid cell. uint8 (H, W, 3) x2 -> float64 (3, 3)."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    out = np.empty((3, 3))
    for cell in range(9):
        y0, y1, x0, x1 = cell_bounds(a.shape[0], a.shape[1], cell)
        out.flat[cell] = diff[y0:y1, x0:x1].mean()
    return out


def edit_cell(image: np.ndarray, cell: int, rng: np.random.Generator,
              config: EditConfig = EditConfig()) -> tuple[np.ndarray, str]:
    """A copy of uint8 (H, W, 3) `image` with one visible edit inside `cell`.

    Returns (edited image, applied edit kind: one of config.kinds or 'solid_patch').
    """
    y0, y1, x0, x1 = cell_bounds(image.shape[0], image.shape[1], cell)
    region = image[y0:y1, x0:x1]
    _, kind = base.pick(rng, config.kinds)
    if kind == "color_shift":
        new = _color_shift(region, rng, config.shift_range)
    elif kind == "blur":
        new = _blur(region, config.blur_frac)
    else:
        new = _copy_patch(image, (y0, y1, x0, x1), rng, config.patch_frac)
    if _change(region, new) < config.min_change:
        kind, new = SOLID_PATCH, _solid_patch(region, rng, config.patch_frac)
        if _change(region, new) < config.min_change:  # only for cells of a few pixels
            raise ValueError(f"edit_cell: a {region.shape[0]}x{region.shape[1]} cell cannot "
                             f"change by EditConfig.min_change={config.min_change}; use "
                             "larger frames")
    out = image.copy()
    out[y0:y1, x0:x1] = new
    return out, kind


def _change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _color_shift(region, rng, shift_range):
    # Each channel moves toward the side with room, so clipping rarely eats the shift.
    magnitude = rng.integers(shift_range[0], shift_range[1] + 1, size=3)
    sign = np.where(region.reshape(-1, 3).mean(axis=0) < 127.5, 1, -1)
    return np.clip(region.astype(np.int16) + sign * magnitude, 0, 255).astype(np.uint8)


def _blur(region, blur_frac):
    radius = max(1.0, blur_frac * min(region.shape[:2]))
    return np.asarray(Image.fromarray(region).filter(ImageFilter.GaussianBlur(radius)))


def _patch_box(shape, rng, patch_frac):
    """(py, px, ph, pw) of a random rectangle inside a region of `shape`."""
    h, w = shape[:2]
    side = np.sqrt(rng.uniform(*patch_frac))
    ph, pw = max(1, round(h * side)), max(1, round(w * side))
    return int(rng.integers(h - ph + 1)), int(rng.integers(w - pw + 1)), ph, pw


def _copy_patch(image, bounds, rng, patch_frac):
    # A rectangle of the frame's own content, copied from elsewhere: edits look natural.
    y0, y1, x0, x1 = bounds
    region = image[y0:y1, x0:x1].copy()
    py, px, ph, pw = _patch_box(region.shape, rng, patch_frac)
    sy = int(rng.integers(image.shape[0] - ph + 1))
    sx = int(rng.integers(image.shape[1] - pw + 1))
    region[py:py + ph, px:px + pw] = image[sy:sy + ph, sx:sx + pw]
    return region


def _solid_patch(region, rng, patch_frac):
    region = region.copy()
    py, px, ph, pw = _patch_box(region.shape, rng, (patch_frac[1], patch_frac[1]))
    target = region[py:py + ph, px:px + pw].reshape(-1, 1, 3).astype(np.float32)
    corner = _CORNERS[np.abs(target - _CORNERS).mean(axis=(0, 2)).argmax()]
    region[py:py + ph, px:px + pw] = corner.astype(np.uint8)
    return region
