"""The Qwen2 decoder of Qwen2-VL: GQA attention with M-RoPE, RMSNorm, SwiGLU, and a KV cache.

    h = x + o_proj(attn(rope(q_proj(rms1(x))), rope(k_proj(rms1(x))), v_proj(rms1(x))))
    y = h + down_proj(silu(gate_proj(rms2(h))) * up_proj(rms2(h)))

q/k/v projections have biases in Qwen2 (specs/qwen2_vl.md §1.7), none in Llama
(`TextConfig.qkv_bias`); o_proj and the MLP have none. A Llama decoder (LLaVA-NeXT-Video) is
this one with 1D RoPE: a single `mrope_section` of head_dim/2 frequencies, all rotated by
position row 0.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from sf2t_jax.models import rope
from sf2t_jax.models.config import TextConfig
from sf2t_jax.models.attention import AttentionMask, attend
from sf2t_jax.models.layers import Numerics, RMSNorm, layer_at, linear, run_layers, stacked_layers
from sf2t_jax.parallel.activations import (BATCH_LENGTH_EMBED, BATCH_LENGTH_HEADS, BATCH_LENGTH_KV_HEADS,
                                           BATCH_LENGTH_MLP, constrain)


@flax.struct.dataclass
class KVCache:
    """Keys and values of every layer for a batch of left-padded prompts.

    keys, values: per layer (B, S, kv_heads, head_dim); S = prompt length + new tokens.
    key_mask: (B, S) bool, True at slots that hold a real (non-padding) token.
    length: () int32, slots written so far; the same for every row, since prompts are
      left-padded to one length.
    """

    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]
    key_mask: jax.Array
    length: jax.Array

    @classmethod
    def create(cls, cfg: TextConfig, batch: int, max_length: int, dtype=jnp.float32) -> "KVCache":
        shape = (batch, max_length, cfg.num_key_value_heads, cfg.head_dim)
        zeros = tuple(jnp.zeros(shape, dtype) for _ in range(cfg.num_hidden_layers))
        return cls(keys=zeros, values=tuple(jnp.zeros(shape, dtype) for _ in range(cfg.num_hidden_layers)),
                   key_mask=jnp.zeros((batch, max_length), bool), length=jnp.zeros((), jnp.int32))


class Attention(nnx.Module):
    def __init__(self, cfg: TextConfig, numerics: Numerics, rngs: nnx.Rngs):
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.precision, self.implementation = numerics.precision, numerics.attention
        q_dim, kv_dim = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.q_proj = linear(cfg.hidden_size, q_dim, ("embed", "q_heads"), bias=cfg.qkv_bias, numerics=numerics,
                             rngs=rngs)
        self.k_proj = linear(cfg.hidden_size, kv_dim, ("embed", "kv_heads"), bias=cfg.qkv_bias, numerics=numerics,
                             rngs=rngs)
        self.v_proj = linear(cfg.hidden_size, kv_dim, ("embed", "kv_heads"), bias=cfg.qkv_bias, numerics=numerics,
                             rngs=rngs)
        self.o_proj = linear(q_dim, cfg.hidden_size, ("q_heads", "embed"), bias=False, numerics=numerics, rngs=rngs)

    def __call__(self, x, cos, sin, mask: AttentionMask, kv=None, write_index=None):
        """x: (B, L, D); cos/sin: (B, L, head_dim); mask: over (B, L, Lk).

        With `kv` (a layer's cached keys/values, each (B, S, kv_heads, head_dim)), the new keys
        and values are written at `write_index` and attention runs over all S slots (Lk = S).
        Returns (output (B, L, D), updated kv or None).
        """
        b, l, _ = x.shape
        q = constrain(self.q_proj(x).reshape(b, l, self.num_heads, self.head_dim), BATCH_LENGTH_HEADS)
        k = constrain(self.k_proj(x).reshape(b, l, self.num_kv_heads, self.head_dim), BATCH_LENGTH_KV_HEADS)
        v = constrain(self.v_proj(x).reshape(b, l, self.num_kv_heads, self.head_dim), BATCH_LENGTH_KV_HEADS)
        q, k = rope.apply_rotary(q, cos, sin), rope.apply_rotary(k, cos, sin)
        if kv is not None:
            cache_k, cache_v = kv
            k = jax.lax.dynamic_update_slice(cache_k, k.astype(cache_k.dtype), (0, write_index, 0, 0))
            v = jax.lax.dynamic_update_slice(cache_v, v.astype(cache_v.dtype), (0, write_index, 0, 0))
            kv = (k, v)
        out = constrain(attend(q, k.astype(q.dtype), v.astype(q.dtype), mask, implementation=self.implementation,
                               precision=self.precision), BATCH_LENGTH_HEADS)
        return constrain(self.o_proj(out.reshape(b, l, self.num_heads * self.head_dim)), BATCH_LENGTH_EMBED), kv


class MLP(nnx.Module):
    def __init__(self, cfg: TextConfig, numerics: Numerics, rngs: nnx.Rngs):
        self.gate_proj = linear(cfg.hidden_size, cfg.intermediate_size, ("embed", "mlp"), bias=False, numerics=numerics, rngs=rngs)
        self.up_proj = linear(cfg.hidden_size, cfg.intermediate_size, ("embed", "mlp"), bias=False, numerics=numerics, rngs=rngs)
        self.down_proj = linear(cfg.intermediate_size, cfg.hidden_size, ("mlp", "embed"), bias=False, numerics=numerics, rngs=rngs)

    def __call__(self, x):
        hidden = constrain(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x), BATCH_LENGTH_MLP)
        return constrain(self.down_proj(hidden), BATCH_LENGTH_EMBED)


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: TextConfig, numerics: Numerics, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, numerics=numerics)
        self.self_attn = Attention(cfg, numerics, rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, numerics=numerics)
        self.mlp = MLP(cfg, numerics, rngs)

    def __call__(self, x, cos, sin, mask, kv=None, write_index=None):
        x = constrain(x, BATCH_LENGTH_EMBED)
        attn_out, kv = self.self_attn(constrain(self.input_layernorm(x), BATCH_LENGTH_EMBED), cos, sin, mask, kv,
                                      write_index)
        x = constrain(x + attn_out, BATCH_LENGTH_EMBED)
        out = x + self.mlp(constrain(self.post_attention_layernorm(x), BATCH_LENGTH_EMBED))
        return constrain(out, BATCH_LENGTH_EMBED), kv


class Qwen2Model(nnx.Module):
    """Token embedding, decoder layers and the final norm (Hub prefix `model.`)."""

    def __init__(self, cfg: TextConfig, numerics: Numerics, rngs: nnx.Rngs):
        self.cfg = cfg
        self.numerics = numerics
        self.embed_tokens = nnx.Embed(
            cfg.vocab_size, cfg.hidden_size, dtype=numerics.dtype, param_dtype=numerics.param_dtype,
            embedding_init=nnx.with_metadata(nnx.initializers.normal(0.02), logical_axes=("vocab", "embed")),
            rngs=rngs,
        )
        if numerics.scan_layers:
            self.layers = stacked_layers(lambda r: DecoderLayer(cfg, numerics, r), cfg.num_hidden_layers, rngs)
        else:
            self.layers = nnx.List([DecoderLayer(cfg, numerics, rngs) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, numerics=numerics)

    def __call__(self, embeds: jax.Array, position_ids: jax.Array, attention_mask: jax.Array | None,
                 cache: KVCache | None = None, attend: jax.Array | None = None) -> tuple[jax.Array, KVCache | None]:
        """Runs the decoder.

        Args:
          embeds: (B, L, D) input embeddings (text embeddings with vision features scattered in).
          position_ids: (3, B, L) M-RoPE positions (`rope.get_rope_index`).
          attention_mask: (B, L) 1/True for real tokens, 0 for padding; None means all real.
          cache: when given, the L new tokens are appended at `cache.length` and attend to
            every earlier slot (prefill: the prompt; decode: L = 1).
          attend: optional (B, L, S) bool (S = L, or the cache's slots), ANDed into the causal
            and padding mask: e.g. packed prompts that share a prefix (`generate.prefill_shared`).
        Returns:
          (hidden states after the final norm (B, L, D), updated cache or None).
        """
        b, l, _ = embeds.shape
        valid = jnp.ones((b, l), bool) if attention_mask is None else attention_mask.astype(bool)
        cos, sin = rope.mrope_cos_sin(position_ids, self.cfg.head_dim, self.cfg.rope_theta, self.cfg.mrope_section,
                                      linear_factor=self.cfg.rope_scaling_factor)
        cos, sin = cos.astype(embeds.dtype), sin.astype(embeds.dtype)
        if cache is None:
            # Causal plus padding, structured so a fused kernel can take it; `attend` (dense)
            # sends attention down the XLA path.
            mask = AttentionMask(valid=None if attention_mask is None else valid, dense=attend, causal=True)
        else:
            key_mask = jax.lax.dynamic_update_slice(cache.key_mask, valid, (0, cache.length))
            query_slot = cache.length + jnp.arange(l)
            slot = jnp.arange(key_mask.shape[1])
            dense = (slot[None, :] <= query_slot[:, None])[None] & key_mask[:, None, :]
            mask = AttentionMask(dense=dense if attend is None else dense & attend)
        x = constrain(embeds, BATCH_LENGTH_EMBED)
        if cache is None:
            x = run_layers(self.layers, _layer_forward, x, cos, sin, mask, numerics=self.numerics)
            return constrain(self.norm(x), BATCH_LENGTH_EMBED), None
        new_keys, new_values = [], []
        for i in range(self.cfg.num_hidden_layers):
            layer = layer_at(self.layers, i) if self.numerics.scan_layers else self.layers[i]
            x, (k, v) = layer(x, cos, sin, mask, (cache.keys[i], cache.values[i]), cache.length)
            new_keys.append(k)
            new_values.append(v)
        cache = KVCache(keys=tuple(new_keys), values=tuple(new_values), key_mask=key_mask, length=cache.length + l)
        return constrain(self.norm(x), BATCH_LENGTH_EMBED), cache


def _layer_forward(layer: DecoderLayer, x, cos, sin, mask):
    return layer(x, cos, sin, mask)[0]
