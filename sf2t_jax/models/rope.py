"""Rotary position embeddings of Qwen2-VL, device side.

The positions are computed on the host (`rope_index`: the 3-row M-RoPE ids of the LLM
sequence and the 2D patch positions of the ViT); here `mrope_cos_sin` / `vision_cos_sin` turn
them into cos/sin tables and `apply_rotary` rotates queries and keys. Both match transformers'
`modeling_qwen2_vl.py` (see specs/qwen2_vl.md §1.4, §1.6).
"""
from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from sf2t_jax.models.rope_index import get_rope_index, vision_rope_positions  # noqa: F401  (re-exported)


# ----------------------------------------------------------------------------------------
# Device side: cos/sin tables and rotation.
# ----------------------------------------------------------------------------------------
def _inv_freq(rotary_dim: int, theta: float) -> jnp.ndarray:
    return 1.0 / (theta ** (jnp.arange(0, rotary_dim, 2, dtype=jnp.float32) / rotary_dim))


def mrope_cos_sin(
    position_ids: jnp.ndarray, head_dim: int, theta: float, mrope_section: Sequence[int], *,
    linear_factor: float = 1.0,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos/sin for M-RoPE.

    Args:
      position_ids: (3, B, L) temporal/height/width positions.
      linear_factor: transformers' "linear" RoPE scaling: every frequency divided by it.
    Returns:
      cos, sin: (B, L, head_dim) float32. Frequency f takes its position from row k where
      `mrope_section` assigns f to section k (e.g. [16, 24, 24]: t for f<16, h for f<40, w after).
    """
    if sum(mrope_section) != head_dim // 2:
        raise ValueError(f"mrope_section {list(mrope_section)} must sum to head_dim/2 = {head_dim // 2}")
    inv_freq = _inv_freq(head_dim, theta)  # (head_dim/2,)
    if linear_factor != 1.0:
        inv_freq = inv_freq / linear_factor
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
