"""The scorer's prefill: packed rows of prompts and their options, in one forward pass.

A row (`batching.make_batch`) holds several prompts that share prefixes, then the options of
every question of the row, back to back:

    [ trunk | branch | branch ][ trunk | branch ] [ q1: A | B | C | D ][ q2: A | B ] ... padding

Each token attends causally to the tokens its own prompt would have seen alone: a prompt token
to its group's trunk and its own branch; an option token to its question's prompt (the trunk
and branch slots up to the question's last token) and to the earlier tokens of its own option.
So the K options of a question cost their real tokens, not K copies of the prompt, and their
scores equal those of the question scored alone (tests/test_eval_parity.py checks them
against transformers).

Option k's token j sits at position `next + j` on all three M-RoPE rows (`next` = the prompt's
max position + 1), exactly where greedy decoding would put an answer's token j. Token 0 is
predicted by the hidden state of the question's last prompt token, token j > 0 by that of the
option's token j-1. Only those hidden states go through the vocabulary projection (the costly
part with a 152k vocabulary). Score = mean NLL over the option's tokens; the choice is the argmin.

For greedy decoding the same pass also writes a KV cache, and each question gets a compact
*view* of it: its own prompt's slots gathered in order, the layout `models.generate.prefill`
gives, which `models.generate.decode` continues.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from sf2t_jax.models.llm import KVCache
from sf2t_jax.parallel.activations import layout_context


def row_mask(token_group, token_branch, token_end, token_option):
    """(R, L, L) bool: which key (last axis) each query may attend to, besides causality and
    padding (see the module docstring). token_end: the first slot a token may no longer see
    (options: one past their question's last token; prompt tokens: L)."""
    slot = jnp.arange(token_group.shape[1])
    q = lambda x: x[:, :, None]
    k = lambda x: x[:, None, :]
    prompt_key = ((k(token_group) == q(token_group)) & ((k(token_branch) == 0) | (k(token_branch) == q(token_branch)))
                  & (slot[None, None, :] < q(token_end)) & (k(token_option) == 0))
    own_option = (k(token_option) > 0) & (k(token_option) == q(token_option))
    return prompt_key | own_option


@partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "layout"))
def prefill_shared(graphdef, state, input_ids, position_ids, token_group, token_branch, token_end, token_option,
                   vision, vision_index, item_last, option_first, option_count, score_from, score_token,
                   score_option, item_row, item_view, item_view_mask, *, max_new_tokens: int | None = None,
                   layout=None):
    """Runs packed rows; returns each question's last logits and options' mean NLL.

    Args:
      input_ids, position_ids: (R, L), (3, R, L) packed rows (prompts, then options).
      token_group, token_branch, token_end, token_option: (R, L) int32 (`row_mask`); token_group
        0 marks padding.
      vision, vision_index: per-row layout (`Qwen2VL.embed`).
      item_last: (N,) int32 flat index into R*L of each question's last prompt token.
      option_first, option_count: (N, K) int32 each option's first token and its length (0:
        no such option: fewer than K, or a padding question).
      score_from, score_token, score_option: (M,) int32: the token at flat slot score_from
        predicts score_token, a token (after the first) of option score_option (a flat index
        into N*K; N*K for padding entries).
      item_row, item_view, item_view_mask: (N,), (N, V), (N, V): question n's prompt lies in row
        item_row[n] at slots item_view[n][item_view_mask[n]] (used with `max_new_tokens`).
      max_new_tokens: None: no cache. Else a cache view per question with room for this many
        tokens.
      layout: optional (mesh, rules): activations constrained by logical name on that mesh
        (parallel/activations.py), as in the train step.
    Returns:
      (last_logits (N, vocab) float32, mean_nll (N, K) float32 (+inf for a missing option),
      choice (N,) int32 argmin, cache views (N rows: V slots left-aligned and masked past each
      prompt's end, then the room) or None).
    """
    with layout_context(layout):
        return _prefill_shared(nnx.merge(graphdef, state), input_ids, position_ids, token_group, token_branch,
                               token_end, token_option, vision, vision_index, item_last, option_first, option_count,
                               score_from, score_token, score_option, item_row, item_view, item_view_mask,
                               max_new_tokens)


def _prefill_shared(model, input_ids, position_ids, token_group, token_branch, token_end, token_option, vision,
                    vision_index, item_last, option_first, option_count, score_from, score_token, score_option,
                    item_row, item_view, item_view_mask, max_new_tokens):
    r, l = input_ids.shape
    n, k = option_first.shape
    valid = token_group > 0
    attend = row_mask(token_group, token_branch, token_end, token_option)
    embeds = model.embed(input_ids, vision, vision_index)
    cache = None if max_new_tokens is None else KVCache.create(model.config.text, r, l, model.numerics.dtype)
    hidden, cache = model.model(embeds, position_ids, valid, cache, attend=attend)
    hidden = hidden.reshape(r * l, -1)
    logits = model.logits(jnp.concatenate([hidden[item_last], hidden[score_from]])[None])[0]
    last_logits, scored = logits[:n], logits[n:]
    logp = jnp.take_along_axis(jax.nn.log_softmax(scored, axis=-1), score_token[:, None], axis=-1)[:, 0]
    rest = jnp.zeros((n * k,), jnp.float32).at[score_option].add(logp, mode="drop").reshape(n, k)
    first = jnp.take_along_axis(jax.nn.log_softmax(last_logits, axis=-1), option_first, axis=-1)
    mean_nll = jnp.where(option_count > 0, -(first + rest) / jnp.maximum(option_count, 1), jnp.inf)
    choice = jnp.argmin(mean_nll, axis=-1).astype(jnp.int32)
    if cache is None:
        return last_logits, mean_nll, choice, None
    rows = item_row[:, None]
    room = ((0, 0), (0, max_new_tokens), (0, 0), (0, 0))
    view = lambda x: jnp.pad(x[rows, item_view], room)
    views = KVCache(keys=tuple(map(view, cache.keys)), values=tuple(map(view, cache.values)),
                    key_mask=jnp.pad(item_view_mask, ((0, 0), (0, max_new_tokens))),
                    length=jnp.asarray(item_view.shape[1], jnp.int32))
    return last_logits, mean_nll, choice, views
