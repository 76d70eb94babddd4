"""Rotary position embeddings of Qwen2-VL.

Host side (numpy, outside jit): `get_rope_index` computes the 3-row M-RoPE position ids
(temporal, height, width) of the LLM sequence, and `vision_rope_positions` the 2D (row, col)
patch positions of the ViT. Device side (jax): `mrope_cos_sin` / `vision_cos_sin` turn those
positions into cos/sin tables and `apply_rotary` rotates queries and keys.

Everything matches transformers' `modeling_qwen2_vl.py` (see specs/qwen2_vl.md §1.4, §1.6).
"""
from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np


# ----------------------------------------------------------------------------------------
# Host side: position ids.
# ----------------------------------------------------------------------------------------
def get_rope_index(
    input_ids: np.ndarray,
    image_grid_thw: np.ndarray | None = None,
    video_grid_thw: np.ndarray | None = None,
    attention_mask: np.ndarray | None = None,
    *,
    image_token_id: int,
    video_token_id: int,
    vision_start_token_id: int,
    spatial_merge_size: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """M-RoPE position ids, exactly as transformers' `Qwen2VLModel.get_rope_index`.

    Args:
      input_ids: (B, L) int token ids.
      image_grid_thw / video_grid_thw: (N, 3) grids in patch units, rows consumed in order of
        appearance across the whole batch.
      attention_mask: (B, L) 1 for real tokens, 0 for padding (either side).
    Returns:
      position_ids: (3, B, L) int32; padded slots hold 1, as in transformers.
      rope_deltas: (B,) int32, `max(position) + 1 - L`, used for decoding with a KV cache.
    """
    input_ids = np.asarray(input_ids)
    batch, length = input_ids.shape
    if attention_mask is None:
        attention_mask = np.ones_like(input_ids)
    attention_mask = np.asarray(attention_mask)
    image_rows = iter(np.zeros((0, 3), np.int64) if image_grid_thw is None else np.asarray(image_grid_thw))
    video_rows = iter(np.zeros((0, 3), np.int64) if video_grid_thw is None else np.asarray(video_grid_thw))

    position_ids = np.ones((3, batch, length), np.int64)
    deltas = np.zeros((batch,), np.int64)
    for b in range(batch):
        valid = attention_mask[b] == 1
        ids = input_ids[b][valid]
        after_start = ids[1:][ids[:-1] == vision_start_token_id]
        n_vision = int(np.sum(after_start == image_token_id) + np.sum(after_start == video_token_id))
        pieces: list[np.ndarray] = []
        next_pos = 0
        start = 0
        for _ in range(n_vision):
            ed = _next_vision_token(ids, start, image_token_id, video_token_id)
            rows = image_rows if ids[ed] == image_token_id else video_rows
            try:
                t, h, w = (int(v) for v in next(rows))
            except StopIteration:
                kind = "image_grid_thw" if ids[ed] == image_token_id else "video_grid_thw"
                raise ValueError(f"get_rope_index: row {b} has more vision blocks than {kind} has rows") from None
            gt, gh, gw = t, h // spatial_merge_size, w // spatial_merge_size
            n_text = ed - start
            pieces.append(np.broadcast_to(np.arange(n_text) + next_pos, (3, n_text)))
            base = next_pos + n_text
            t_idx = np.repeat(np.arange(gt), gh * gw)
            h_idx = np.tile(np.repeat(np.arange(gh), gw), gt)
            w_idx = np.tile(np.arange(gw), gt * gh)
            block = np.stack([t_idx, h_idx, w_idx]) + base
            pieces.append(block)
            next_pos = int(block.max()) + 1
            start = ed + gt * gh * gw
        n_tail = len(ids) - start
        pieces.append(np.broadcast_to(np.arange(n_tail) + next_pos, (3, n_tail)))
        positions = np.concatenate(pieces, axis=1)
        position_ids[:, b, valid] = positions
        deltas[b] = (int(positions.max()) + 1 if positions.size else 0) - length
    return position_ids.astype(np.int32), deltas.astype(np.int32)


def _next_vision_token(ids: np.ndarray, start: int, image_token_id: int, video_token_id: int) -> int:
    hits = np.nonzero((ids[start:] == image_token_id) | (ids[start:] == video_token_id))[0]
    if hits.size == 0:
        raise ValueError("get_rope_index: a <|vision_start|> is not followed by image or video pad tokens")
    return start + int(hits[0])


def vision_rope_positions(grid_h: int, grid_w: int, merge: int = 2) -> np.ndarray:
    """(row, col) patch positions of one temporal slice, in the processor's patch order.

    Rows are ordered (bh, bw, mh, mw) — 2x2 merge windows kept contiguous — so that row
    `((bh*(gw/m)+bw)*m+mh)*m+mw` has position `(bh*m+mh, bw*m+mw)`.
    Returns (grid_h*grid_w, 2) int32.
    """
    if grid_h % merge or grid_w % merge:
        raise ValueError(f"vision grid ({grid_h}, {grid_w}) is not divisible by spatial_merge_size={merge}")
    bh, bw, mh, mw = np.meshgrid(
        np.arange(grid_h // merge), np.arange(grid_w // merge), np.arange(merge), np.arange(merge), indexing="ij"
    )
    rows = (bh * merge + mh).reshape(-1)
    cols = (bw * merge + mw).reshape(-1)
    return np.stack([rows, cols], axis=-1).astype(np.int32)


# ----------------------------------------------------------------------------------------
# Device side: cos/sin tables and rotation.
# ----------------------------------------------------------------------------------------
def _inv_freq(rotary_dim: int, theta: float) -> jnp.ndarray:
    return 1.0 / (theta ** (jnp.arange(0, rotary_dim, 2, dtype=jnp.float32) / rotary_dim))


def mrope_cos_sin(
    position_ids: jnp.ndarray, head_dim: int, theta: float, mrope_section: Sequence[int]
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos/sin for M-RoPE.

    Args:
      position_ids: (3, B, L) temporal/height/width positions.
    Returns:
      cos, sin: (B, L, head_dim) float32. Frequency f takes its position from row k where
      `mrope_section` assigns f to section k (e.g. [16, 24, 24]: t for f<16, h for f<40, w after).
    """
    if sum(mrope_section) != head_dim // 2:
        raise ValueError(f"mrope_section {list(mrope_section)} must sum to head_dim/2 = {head_dim // 2}")
    inv_freq = _inv_freq(head_dim, theta)  # (head_dim/2,)
    row_of_freq = np.repeat(np.arange(len(mrope_section)), mrope_section)  # static (head_dim/2,)
    pos = position_ids.astype(jnp.float32)[row_of_freq]  # (head_dim/2, B, L)
    freqs = jnp.moveaxis(pos, 0, -1) * inv_freq  # (B, L, head_dim/2)
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def vision_cos_sin(positions: np.ndarray, head_dim: int, theta: float = 10000.0) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos/sin for the ViT's 2D RoPE.

    Args:
      positions: (S, 2) (row, col) patch positions (static, from `vision_rope_positions`).
    Returns:
      cos, sin: (S, head_dim) float32; the first half of the rotary frequencies rotate with the
      row, the second half with the column.
    """
    inv_freq = _inv_freq(head_dim // 2, theta)  # (head_dim/4,)
    pos = jnp.asarray(positions, jnp.float32)
    freqs = jnp.concatenate([pos[:, :1] * inv_freq, pos[:, 1:] * inv_freq], axis=-1)  # (S, head_dim/2)
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def _rotate_half(x: jnp.ndarray) -> jnp.ndarray:
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rotary(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    """Rotate (..., L, heads, head_dim) by cos/sin of shape (..., L, head_dim), in float32."""
    x32 = x.astype(jnp.float32)
    cos, sin = cos[..., None, :], sin[..., None, :]
    return (x32 * cos + _rotate_half(x32) * sin).astype(x.dtype)
