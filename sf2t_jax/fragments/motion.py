"""Frame differences for the order tasks: the near-static test and distinct-frame selection.

Order is only learnable when the shown frames can be told apart. Two things break that:
  * a near-static clip (nothing moves): every order looks right;
  * duplicate frames (frame-rate conversion repeats frames; a held pose gives runs of
    near-identical frames). Random sorted indices can then pick two frames that look the
    same, and swapping them changes nothing visible: a "no, shuffled" disorder label and the
    rearrangement answer become wrong or ambiguous.
So `disorder` and `rearrange` draw their frames with `order_indices`: pairwise distinct, every
two chosen frames differ by at least `min_frame_diff`, which makes any non-identity
permutation visibly different from the true order and the rearrangement answer unique.

Differences are mean absolute differences in uint8 grey levels (averaged over pixels and
channels) measured on block-mean thumbnails of about 32 px a side. The block mean never
increases a difference (|mean(a - b)| <= mean|a - b|), so frames found distinct on thumbnails
are distinct at full resolution, and identical frames always measure 0.
"""
from __future__ import annotations

import numpy as np

from sf2t_jax.fragments.base import draw_count
from sf2t_jax.sample import SampleSkip

THUMBNAIL_SIZE = 32  # target side of the block-mean thumbnails, in pixels


def thumbnails(frames: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """Block-mean downsampling. uint8 (T, H, W, 3) -> float32 (T, h, w, 3), h ~ min(H, size)."""
    t, height, width, c = frames.shape
    by, bx = max(1, height // size), max(1, width // size)
    h, w = height // by, width // bx
    # Two integer sums over contiguous axes: ~7x faster than one mean over axes (2, 4).
    rows = frames[:, : h * by, : w * bx].reshape(t, h, by, w * bx * c).sum(2, dtype=np.uint32)
    blocks = rows.reshape(t, h, w, bx, c).sum(3)
    return blocks.astype(np.float32) / np.float32(by * bx)


def mean_motion(thumbs: np.ndarray) -> float:
    """Mean absolute difference between consecutive thumbnails (0.0 for fewer than 2)."""
    if len(thumbs) < 2:
        return 0.0
    return float(np.abs(np.diff(thumbs, axis=0)).mean())


def distinct_pool(thumbs: np.ndarray, rng: np.random.Generator, max_count: int,
                  min_diff: float) -> np.ndarray:
    """Up to `max_count` frame indices, pairwise at least `min_diff` apart, in random order.

    Greedy over a random permutation of the clip: a frame is kept if it differs enough from
    every frame kept so far. When all frames are distinct the first n kept are a uniform
    random n-subset, as plain random indices would be. int64 (k,), k <= max_count.
    """
    kept: list[int] = []
    for t in rng.permutation(len(thumbs)):
        if kept and np.abs(thumbs[kept] - thumbs[t]).mean(axis=(1, 2, 3)).min() < min_diff:
            continue
        kept.append(int(t))
        if len(kept) == max_count:
            break
    return np.asarray(kept, dtype=np.int64)


def order_indices(frames: np.ndarray, rng: np.random.Generator, task: str,
                  n_frames: tuple[int, int], static_threshold: float,
                  min_frame_diff: float) -> np.ndarray:
    """Increasing frame indices for an order task, or a `SampleSkip` saying why not.

    N ~ U{lo..min(hi, k)} where k is the number of distinct frames found (at most hi): a clip
    with few distinct moments gives shorter fragments rather than none. Skips, checked in
    this order: `too_short` (T < lo), `near_static` (mean motion < static_threshold),
    `too_few_distinct` (k < lo). int64 (N,).
    """
    lo, hi = n_frames
    if len(frames) < lo:
        raise SampleSkip("too_short", task, f"{len(frames)} frames, needs at least {lo}")
    thumbs = thumbnails(frames)
    motion = mean_motion(thumbs)
    if motion < static_threshold:
        raise SampleSkip("near_static", task,
                           f"mean frame difference {motion:.3f} < {static_threshold}")
    pool = distinct_pool(thumbs, rng, hi, min_frame_diff)
    if len(pool) < lo:
        raise SampleSkip("too_few_distinct", task,
                           f"{len(pool)} frames differ by >= {min_frame_diff}, needs {lo}")
    n = draw_count(rng, lo, len(pool))
    return np.sort(pool[:n])
