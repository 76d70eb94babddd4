"""Host-side (numpy) conversion of Hugging Face vision inputs into the static-shape layout.

The Hugging Face processor concatenates every image's (or video's) patch rows into one
`(rows, 1176)` array with a `grid_thw` table, and the model scatters the merged features into
the `<|image_pad|>` / `<|video_pad|>` positions in order. Here the rows are regrouped into
`VisionPatches` (temporal slices that share a spatial grid) and each merged feature gets its
destination index in the flattened `(B*L)` token sequence, so the jitted model sees only
static shapes and a gather-free scatter.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from sf2t_jax.models.vision import VisionPatches


@dataclasses.dataclass(frozen=True)
class VisualItem:
    """One image or video: its patch rows and where its merged tokens go.

    patches: (grid_t * grid_h * grid_w, patch_dim) rows in processor order.
    grid_thw: (grid_t, grid_h, grid_w) in patch units.
    token_positions: (grid_t * grid_h * grid_w / merge**2,) flat indices into (B*L).
    """

    patches: np.ndarray
    grid_thw: tuple[int, int, int]
    token_positions: np.ndarray


def split_hf_visuals(
    input_ids: np.ndarray,
    pixel_values: np.ndarray | None,
    grid_thw: np.ndarray | None,
    pad_token_id: int,
    *,
    merge: int = 2,
    kind: str = "image",
) -> list[VisualItem]:
    """Splits the processor's concatenated rows into items and assigns their token positions.

    Raises ValueError when the number of pad tokens differs from the number of merged features
    (transformers' "features and tokens do not match"), e.g. after truncation of a video.
    """
    flat_ids = np.asarray(input_ids).reshape(-1)
    positions = np.nonzero(flat_ids == pad_token_id)[0]
    if pixel_values is None or grid_thw is None:
        if positions.size:
            raise ValueError(f"input_ids hold {positions.size} {kind} pad tokens but no {kind} pixel values were given")
        return []
    grid_thw = np.asarray(grid_thw).reshape(-1, 3)
    rows_per_item = grid_thw.prod(axis=1)
    tokens_per_item = rows_per_item // merge**2
    if int(rows_per_item.sum()) != len(pixel_values):
        raise ValueError(f"{kind} pixel values have {len(pixel_values)} rows but {kind}_grid_thw describes "
                         f"{int(rows_per_item.sum())}")
    if int(tokens_per_item.sum()) != positions.size:
        raise ValueError(f"{kind} features and {kind} tokens do not match: tokens {positions.size}, "
                         f"features {int(tokens_per_item.sum())}")
    row_starts = np.concatenate([[0], np.cumsum(rows_per_item)])
    token_starts = np.concatenate([[0], np.cumsum(tokens_per_item)])
    return [
        VisualItem(
            patches=np.asarray(pixel_values[row_starts[i]:row_starts[i + 1]]),
            grid_thw=tuple(int(v) for v in grid_thw[i]),
            token_positions=positions[token_starts[i]:token_starts[i + 1]],
        )
        for i in range(len(grid_thw))
    ]


def group_by_grid(
    items: Sequence[VisualItem], num_tokens: int, *, merge: int = 2, slice_buckets: dict[tuple[int, int], int] | None = None
) -> tuple[tuple[VisionPatches, ...], np.ndarray]:
    """Groups temporal slices of equal spatial grid into `VisionPatches`.

    Args:
      items: images and videos, in any order.
      num_tokens: B*L; padding rows get this index, which the scatter drops.
      slice_buckets: optional fixed slice count per grid (a static shape for jit); slices are
        zero-padded up to it. Default: exactly the slices present.
    Returns:
      groups: one `VisionPatches` per distinct (grid_h, grid_w), in order of first appearance.
      token_index: (sum of group rows after merging,) int32 destination of each merged token,
        aligned with `concatenate([group output.reshape(-1, hidden) for group in groups])`.
    """
    by_grid: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    for item in items:
        t, h, w = item.grid_thw
        slices = item.patches.reshape(t, h * w, -1)
        tokens = item.token_positions.reshape(t, h * w // merge**2)
        by_grid.setdefault((h, w), []).extend(zip(slices, tokens))
    groups, index = [], []
    for grid, entries in by_grid.items():
        n = len(entries)
        target = n if slice_buckets is None else slice_buckets.get(grid, n)
        if target < n:
            raise ValueError(f"grid {grid} has {n} temporal slices, more than its bucket of {target}")
        patches = np.stack([p for p, _ in entries])
        tokens = np.stack([t for _, t in entries])
        if target > n:
            patches = np.concatenate([patches, np.zeros((target - n,) + patches.shape[1:], patches.dtype)])
            tokens = np.concatenate([tokens, np.full((target - n, tokens.shape[1]), num_tokens, tokens.dtype)])
        groups.append(VisionPatches(patches=patches, grid_hw=grid))
        index.append(tokens.reshape(-1))
    token_index = np.concatenate(index).astype(np.int32) if index else np.zeros((0,), np.int32)
    return tuple(groups), token_index
