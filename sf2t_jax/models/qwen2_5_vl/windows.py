"""Qwen2.5-VL's ViT window attention as a static, host-computed mask per spatial grid (numpy).

transformers (`get_window_index`) tiles each temporal slice's grid of merged tokens into
`window x window` windows (partial ones at the bottom and right edges), permutes the patches so
that each window is contiguous, runs the windowed blocks with `cu_window_seqlens`, and undoes
the permutation after the merger. Attention restricted to a window is the same computation in
any patch order, so here the patches stay in the processor's order and windowed blocks get a
boolean mask "same window": no permutation, no data-dependent shapes, one constant per grid.
Windows never cross temporal slices, and a slice is one row of the `VisionPatches` batch.
"""
from __future__ import annotations

import numpy as np


def window_ids(grid_h: int, grid_w: int, *, merge: int, window: int) -> np.ndarray:
    """Window number of each merged token of one temporal slice.

    Args:
      grid_h, grid_w: the slice's grid in patch units (multiples of `merge`).
      merge: spatial_merge_size; window: window side in merged tokens.
    Returns:
      (grid_h/merge * grid_w/merge,) int32, merged tokens in raster order; windows are numbered
      in raster order over the ceil(h/window) x ceil(w/window) window grid, as transformers
      orders them.
    """
    if grid_h % merge or grid_w % merge:
        raise ValueError(f"vision grid ({grid_h}, {grid_w}) is not divisible by spatial_merge_size={merge}")
    h, w = grid_h // merge, grid_w // merge
    windows_w = -(-w // window)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return ((rows // window) * windows_w + cols // window).reshape(-1).astype(np.int32)


def window_mask(grid_h: int, grid_w: int, *, merge: int, window: int) -> np.ndarray | None:
    """(S, S) bool, S = grid_h*grid_w patches in processor order (each merged token's merge**2
    patches contiguous): True where query and key patch lie in the same window. None when one
    window covers the whole slice (the windowed blocks then attend like the full ones)."""
    ids = np.repeat(window_ids(grid_h, grid_w, merge=merge, window=window), merge**2)
    if ids.max(initial=0) == 0:
        return None
    return ids[:, None] == ids[None, :]
