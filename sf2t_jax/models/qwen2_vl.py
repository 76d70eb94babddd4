"""Qwen2-VL: the vision tower, the Qwen2 decoder, and the scatter of vision features into the
token sequence at host-computed positions.

Parameter paths mirror the Hugging Face Hub layout (`visual.*`, `model.*`, `lm_head`), so the
conversion table (`sf2t_jax.convert.table`) is a list of renames and transposes.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sf2t_jax.models import rope, vision_layout
from sf2t_jax.models.config import Qwen2VLConfig
from sf2t_jax.models.layers import Numerics, einsum, linear
from sf2t_jax.models.llm import KVCache, Qwen2Model
from sf2t_jax.models.vision import VisionPatches, VisionTower
from sf2t_jax.parallel.activations import BATCH_LENGTH_EMBED, BATCH_LENGTH_VOCAB, constrain


class Qwen2VL(nnx.Module):
    """Qwen2VLForConditionalGeneration in Flax NNX.

    Inputs are static-shape: `vision` is a tuple of `VisionPatches` (one per spatial grid), and
    `vision_index` says where each merged vision token goes, in one of two layouts:
      * flat (M,): position in the flattened (B*L) sequence, in group order; B*L is padding.
        Used for arbitrary mixes of grids (`hf_logits`).
      * per row (B, M): position within row b; features are one group ordered row-major
        (sample b owns slices [b*P, (b+1)*P)); L is padding. The training/eval batch layout:
        it scatters independently per row, so it shards along the batch.
    Out-of-range positions are dropped.

    A family with another vision tower and the same Qwen2 decoder (Qwen2.5-VL) subclasses this
    and sets `vision_tower`.
    """

    vision_tower = VisionTower  # (vision config, numerics, rngs) -> module mapping VisionPatches to tokens

    def __init__(self, config: Qwen2VLConfig, numerics: Numerics = Numerics(), *, rngs: nnx.Rngs):
        self.config = config
        self.numerics = numerics
        self.visual = self.vision_tower(config.vision, numerics, rngs)
        self.model = Qwen2Model(config.text, numerics, rngs)
        if not config.text.tie_word_embeddings:
            self.lm_head = linear(config.text.hidden_size, config.text.vocab_size, ("embed", "vocab"), bias=False,
                                  numerics=numerics, rngs=rngs)

    # ------------------------------------------------------------------------------------
    # Pieces
    # ------------------------------------------------------------------------------------
    def encode_vision(self, vision: Sequence[VisionPatches]) -> jax.Array:
        """(M, hidden): merged tokens of every group, concatenated in group order."""
        feats = [self.visual(group) for group in vision]
        return jnp.concatenate([f.reshape(-1, f.shape[-1]) for f in feats], axis=0)

    def embed(self, input_ids: jax.Array, vision: Sequence[VisionPatches] = (),
              vision_index: jax.Array | None = None) -> jax.Array:
        """Token embeddings (B, L, D) with vision features written at `vision_index`."""
        embeds = constrain(self.model.embed_tokens(input_ids), BATCH_LENGTH_EMBED)
        if not vision:
            return embeds
        b, l, d = embeds.shape
        feats = self.encode_vision(vision).astype(embeds.dtype)
        if vision_index.ndim == 2:  # per-row positions: the training layout, sharded along batch
            scatter_row = lambda e, i, f: e.at[i].set(f, mode="drop")
            feats = constrain(feats.reshape(b, -1, d), BATCH_LENGTH_EMBED)
            return constrain(jax.vmap(scatter_row)(embeds, vision_index, feats), BATCH_LENGTH_EMBED)
        return embeds.reshape(b * l, d).at[vision_index].set(feats, mode="drop").reshape(b, l, d)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """(B, L, D) final hidden states -> (B, L, vocab) float32 logits."""
        if self.config.text.tie_word_embeddings:  # nnx.Embed.attend, accumulated in float32 (layers.einsum)
            embed = self.model.embed_tokens
            flat = hidden.reshape(-1, hidden.shape[-1]).astype(embed.dtype)
            out = einsum("nd,vd->nv", flat, embed.embedding[...].astype(embed.dtype)).reshape(*hidden.shape[:-1], -1)
        else:
            out = self.lm_head(hidden)
        out = out.astype(jnp.float32)
        return constrain(out, BATCH_LENGTH_VOCAB) if out.ndim == 3 else out

    def __call__(self, input_ids: jax.Array, position_ids: jax.Array, attention_mask: jax.Array | None = None,
                 vision: Sequence[VisionPatches] = (), vision_index: jax.Array | None = None,
                 cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
        """Full forward.

        Args:
          input_ids: (B, L) int32.
          position_ids: (3, B, L) M-RoPE positions from `rope.get_rope_index` (host side).
          attention_mask: (B, L) 1 for tokens, 0 for padding.
          vision / vision_index: see the class docstring.
          cache: optional KV cache to append to (prefill and decode).
        Returns:
          (logits (B, L, vocab) float32, updated cache or None).
        """
        hidden, cache = self.model(self.embed(input_ids, vision, vision_index), position_ids, attention_mask, cache)
        return self.logits(hidden), cache

    # ------------------------------------------------------------------------------------
    # Hugging Face-style entry point (parity checks in a few lines)
    # ------------------------------------------------------------------------------------
    def hf_logits(self, input_ids, attention_mask=None, pixel_values=None, image_grid_thw=None,
                  pixel_values_videos=None, video_grid_thw=None) -> np.ndarray:
        """Logits for exactly the numpy arrays a Hugging Face Qwen2-VL processor produces.

        Regroups the processor's concatenated patch rows into the static layout, computes
        M-RoPE positions on the host, and runs one jitted forward.
        Returns (B, L, vocab) float32 numpy.
        """
        inputs = prepare_hf_inputs(self.config, input_ids, attention_mask, pixel_values, image_grid_thw,
                                   pixel_values_videos, video_grid_thw)
        graphdef, state = nnx.split(self)
        logits = _jitted_logits(graphdef, state, **inputs)
        return np.asarray(jax.device_get(logits))


def prepare_hf_inputs(config: Qwen2VLConfig, input_ids, attention_mask=None, pixel_values=None,
                      image_grid_thw=None, pixel_values_videos=None, video_grid_thw=None, *,
                      tokens_per_second: float | None = None, second_per_grid_ts=None) -> dict:
    """Host-side conversion of processor outputs into `Qwen2VL.__call__` keyword arguments.

    `tokens_per_second` / `second_per_grid_ts` put videos on Qwen2.5-VL's absolute time axis
    (`rope_index.get_rope_index`); None for Qwen2-VL.
    Also returns `rope_deltas` (B,), needed to continue positions when decoding with a cache.
    """
    input_ids = np.asarray(input_ids)
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {input_ids.shape}")
    attention_mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask)
    merge = config.vision.spatial_merge_size
    items = vision_layout.split_hf_visuals(input_ids, _np(pixel_values), _np(image_grid_thw),
                                           config.image_token_id, merge=merge, kind="image")
    items += vision_layout.split_hf_visuals(input_ids, _np(pixel_values_videos), _np(video_grid_thw),
                                            config.video_token_id, merge=merge, kind="video")
    vision, vision_index = vision_layout.group_by_grid(items, input_ids.size, merge=merge)
    position_ids, rope_deltas = rope.get_rope_index(
        input_ids, _np(image_grid_thw), _np(video_grid_thw), attention_mask,
        image_token_id=config.image_token_id, video_token_id=config.video_token_id,
        vision_start_token_id=config.vision_start_token_id, spatial_merge_size=merge,
        tokens_per_second=tokens_per_second, second_per_grid_ts=_np(second_per_grid_ts))
    return dict(
        input_ids=input_ids.astype(np.int32), position_ids=position_ids, attention_mask=attention_mask.astype(np.int32),
        vision=tuple(VisionPatches(patches=g.patches.astype(np.float32), grid_hw=g.grid_hw) for g in vision),
        vision_index=vision_index, rope_deltas=rope_deltas,
    )


def _np(x):
    if x is None:
        return None
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


@partial(jax.jit, static_argnums=0)
def _jitted_logits(graphdef, state, input_ids, position_ids, attention_mask, vision, vision_index, rope_deltas):
    del rope_deltas
    model = nnx.merge(graphdef, state)
    logits, _ = model(input_ids, position_ids, attention_mask, vision, vision_index)
    return logits
