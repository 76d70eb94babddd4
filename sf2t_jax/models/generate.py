"""Greedy generation with a KV cache: one jitted prefill, then one jitted decode loop.

Prompts are left-padded to one length L, so every row writes the cache at the same slot. New
tokens continue the M-RoPE positions as `slot + rope_delta` on all three rows (transformers'
`cache_position + rope_deltas`). Rows that have emitted an end token emit `pad_token_id`
afterwards, as `generate(do_sample=False)` does.

`decode` continues any cache in this layout: `prefill`'s, or the per-question views of
`eval.loglik.prefill_shared` (packed prompts that share prefixes).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sf2t_jax.models.llm import KVCache
from sf2t_jax.parallel.activations import layout_context
from sf2t_jax.models.qwen2_vl import Qwen2VL


@partial(jax.jit, static_argnames=("graphdef", "max_new_tokens"))
def prefill(graphdef, state, input_ids, position_ids, attention_mask, vision, vision_index, *, max_new_tokens: int):
    """Runs the prompt through the model into a fresh cache of length L + max_new_tokens.

    Returns (logits of the last prompt token (B, vocab) float32, cache).
    """
    model = nnx.merge(graphdef, state)
    b, l = input_ids.shape
    cache = KVCache.create(model.config.text, b, l + max_new_tokens, model.numerics.dtype)
    hidden, cache = model.model(model.embed(input_ids, vision, vision_index), position_ids, attention_mask, cache)
    return model.logits(hidden[:, -1:])[:, 0], cache


@partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "layout"), donate_argnames=("cache",))
def decode(graphdef, state, first_logits, cache: KVCache, rope_deltas, eos_ids, pad_id, budget=None, *,
           max_new_tokens: int, layout=None):
    """Greedy decoding of up to `max_new_tokens`, stopping early once every row has ended.

    Args:
      budget: optional (B,) int32 tokens each row may generate (at most `max_new_tokens`); a
        row that has used its budget ends as if it had emitted an end token.
      layout: optional (mesh, rules): activations constrained by logical name on that mesh.
    Returns (tokens (B, max_new_tokens) int32 with `pad_id` after a row's end token, the cache);
    the cache is returned so that its donated buffers are reused in place.
    """
    model = nnx.merge(graphdef, state)
    b = first_logits.shape[0]

    def step(carry):
        i, logits, cache, done, tokens = carry
        token = jnp.where(done, pad_id, jnp.argmax(logits, axis=-1).astype(jnp.int32))
        tokens = tokens.at[:, i].set(token)
        done = done | jnp.isin(token, eos_ids) | (i + 1 >= limit)
        positions = jnp.broadcast_to((cache.length + rope_deltas)[None, :, None], (3, b, 1))
        embeds = model.model.embed_tokens(token[:, None])
        hidden, cache = model.model(embeds, positions, jnp.ones((b, 1), jnp.int32), cache)
        return i + 1, model.logits(hidden)[:, 0], cache, done, tokens

    def keep_going(carry):
        i, _, _, done, _ = carry
        return (i < max_new_tokens) & ~jnp.all(done)

    tokens = jnp.full((b, max_new_tokens), pad_id, jnp.int32)
    limit = jnp.full((b,), max_new_tokens, jnp.int32) if budget is None else budget
    init = (jnp.zeros((), jnp.int32), first_logits, cache, limit <= 0, tokens)
    with layout_context(layout):
        _, _, cache, _, tokens = jax.lax.while_loop(keep_going, step, init)
    return tokens, cache


def greedy_generate(model: Qwen2VL, inputs: dict, *, max_new_tokens: int, eos_token_ids: Sequence[int],
                    pad_token_id: int) -> np.ndarray:
    """Greedy continuation of a left-padded batch.

    Args:
      inputs: `Qwen2VL.__call__` arguments plus `rope_deltas`, e.g. from
        `sf2t_jax.models.qwen2_vl.prepare_hf_inputs`.
    Returns:
      (B, max_new_tokens) int32 numpy tokens.
    """
    graphdef, state = nnx.split(model)
    logits, cache = prefill(graphdef, state, inputs["input_ids"], inputs["position_ids"], inputs["attention_mask"],
                            inputs["vision"], inputs["vision_index"], max_new_tokens=max_new_tokens)
    tokens, _ = decode(graphdef, state, logits, cache, jnp.asarray(inputs["rope_deltas"]),
                    jnp.asarray(list(eos_token_ids), jnp.int32), jnp.int32(pad_token_id), max_new_tokens=max_new_tokens)
    return np.asarray(tokens)
