"""How a model family's vision tower takes frames, for the host-side batch makers (no JAX).

Every family's training and scoring batches carry vision as "slices": rows of a
`VisionPatches` group, each `grid_h * grid_w` patch rows of `patch_dim` values, producing
`tokens_per_slice` LLM tokens. The families differ in what a slice is and how positions run:

    family             frames/slice  patch row        tokens per slice          resolution   positions
    Qwen2-VL, 2.5-VL   2             C*2*14*14=1176   patches / merge**2 (2x2)  any multiple of 28  M-RoPE, items wrapped
    LLaVA-NeXT-Video   1             C*14*14=588      (grid / pool stride)**2   image_size square   1D, items bare

Each family's config exposes its `slice_layout`; `train/synthetic_batches.py`, the batch geometry and
the experiment defaults read it instead of assuming one family.
"""
from __future__ import annotations

import dataclasses

from sf2t_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class SliceLayout:
    patch_size: int  # pixels per patch side
    patch_dim: int  # values per patch row
    frames_per_slice: int  # Qwen: temporal_patch_size; LLaVA: 1 (every frame is an image)
    token_pool: int  # tokens per slice = (gh // pool) * (gw // pool): Qwen's merge, LLaVA's pool stride
    fixed_resolution: tuple[int, int] | None  # the only (height, width) the tower takes; None: multiples of unit
    mrope: bool  # M-RoPE positions with vision_start/vision_end around each item (Qwen); else 1D, bare
    images_as_slices: bool = True  # an image is one slice of the frames' grid (Qwen); LLaVA tiles images (anyres)

    @property
    def unit(self) -> int:
        """Pixels a resolution must be a multiple of."""
        return self.patch_size * self.token_pool

    def tokens_per_slice(self, grid_hw: tuple[int, int]) -> int:
        return (grid_hw[0] // self.token_pool) * (grid_hw[1] // self.token_pool)

    def slices(self, frames: int) -> int:
        """Slices that show `frames` frames of one video."""
        return -(-frames // self.frames_per_slice)

    def check_resolution(self, resolution, field: str = "input.resolution") -> tuple[int, int]:
        """(h, w), or ValueError naming `field` when this tower cannot take it."""
        h, w = (int(v) for v in resolution)
        if self.fixed_resolution is not None and (h, w) != tuple(self.fixed_resolution):
            raise InputError(f"{field}={tuple(resolution)}: this model takes frames of exactly "
                             f"{tuple(self.fixed_resolution)}")
        if h % self.unit or w % self.unit or h <= 0 or w <= 0:
            raise InputError(f"{field}={tuple(resolution)}: expected positive multiples of {self.unit}")
        return h, w
