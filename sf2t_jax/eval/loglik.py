"""Option log-likelihood against a shared, prefilled prompt.

The prompt (with its video) runs once through `models.generate.prefill`; its KV cache rows are
then replicated K times and each option's tokens are appended to one copy, so the K options of
a question cost K short continuations, not K prompts:

    prompt ─prefill─► cache (B, S) ─repeat K─► (B*K, S) ─append options (B*K, T)─► NLL

Option tokens are right-padded; they sit at cache slots L.. and positions `slot + rope_delta`
on all three M-RoPE rows, exactly where greedy decoding would put an answer. Token 0 of every
option is predicted by the prompt's last logits; token j > 0 by the hidden state of option
token j-1. Score = mean NLL over the option's tokens; the choice is the argmin.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from sf2t_jax.models.llm import KVCache


@partial(jax.jit, static_argnames=("graphdef",))
def option_nll(graphdef, state, last_logits, cache: KVCache, rope_deltas, option_ids, option_mask):
    """Mean negative log-likelihood of each option's tokens.

    Args:
      last_logits: (B, V) float32 logits after the prompt (`prefill`'s first output).
      cache: the prompt's cache, B rows, `cache.length` = L prompt slots written and room for
        T more; not donated (greedy decoding may reuse it afterwards).
      rope_deltas: (B,) int32 M-RoPE deltas of the (left-padded) prompts.
      option_ids: (B, K, T) int32, right-padded; option_mask: (B, K, T) bool.
    Returns:
      mean_nll: (B, K) float32; +inf for an empty option (padding: fewer than K options).
      choice: (B,) int32 argmin over options.
    """
    model = nnx.merge(graphdef, state)
    b, k, t = option_ids.shape
    rep = lambda x: jnp.repeat(x, k, axis=0)  # row b -> rows b*K .. b*K+K-1
    shared = KVCache(keys=tuple(map(rep, cache.keys)), values=tuple(map(rep, cache.values)),
                     key_mask=rep(cache.key_mask), length=cache.length)
    ids = option_ids.reshape(b * k, t)
    mask = option_mask.reshape(b * k, t)
    slots = cache.length + jnp.arange(t)
    positions = jnp.broadcast_to(slots[None, :] + rep(rope_deltas)[:, None], (3, b * k, t))
    hidden, _ = model.model(model.model.embed_tokens(ids), positions, mask, shared)
    # Token j+1 is predicted at option position j; the last position predicts nothing.
    rest = jax.nn.log_softmax(model.logits(hidden[:, :-1]), axis=-1)
    rest = jnp.take_along_axis(rest, ids[:, 1:, None], axis=-1)[..., 0].reshape(b, k, t - 1)
    first = jax.nn.log_softmax(last_logits, axis=-1)
    first = jnp.take_along_axis(first[:, None, :], option_ids[:, :, :1], axis=-1)
    logp = jnp.where(option_mask, jnp.concatenate([first, rest], axis=-1), 0.0)
    n = option_mask.sum(-1)
    mean_nll = jnp.where(n > 0, -logp.sum(-1) / jnp.maximum(n, 1), jnp.inf)
    return mean_nll, jnp.argmin(mean_nll, axis=-1).astype(jnp.int32)
