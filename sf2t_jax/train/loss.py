"""Next-token cross-entropy on answer tokens, as sums, so that normalisation happens once.

The loss of a step is `sum of token losses / number of target tokens in the global batch`.
Every device and every accumulation micro-step returns *sums* over its rows; the step divides
by the global target count. So a batch split across 8 devices or into 4 micro-steps gives the
same loss and the same gradient as the whole batch at once; averaging per-device or per-micro-
step means would over-weight the rows of a shard with few answer tokens.

Only answer tokens are targets, a handful per row, yet the LM head over every position is the
largest matmul of a step at Qwen2's 151,936-token vocabulary (and its (B, L, V) float32 logits
the largest activation). `gather_targets` keeps the hidden states of a row's first K target
positions, so the head runs on (B, K) positions instead of (B, L): the same loss, gradients
and accuracy whenever no row has more than K targets (`make_train_step(loss_positions=K)`).

`chunked_token_sums` runs the head over blocks of positions in a scan, each block's logits
recomputed in the backward pass, so no (B, L, V) float32 array exists at any time: the peak is
one block's (B, C, V). Same sums, in another order (token_sums of the blocks, added).
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax


def shifted_targets(input_ids: jax.Array, loss_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Position t predicts token t+1: targets (B, L-1) = input_ids[:, 1:], weights = loss_mask[:, 1:].

    `loss_mask` is 1 at target tokens (the contract of the input pipeline), so the weight sits
    on the token being predicted, not on the position predicting it.
    """
    return input_ids[:, 1:], loss_mask[:, 1:]


def token_sums(logits: jax.Array, targets: jax.Array, weights: jax.Array, task_id: jax.Array,
               num_tasks: int) -> dict[str, jax.Array]:
    """Sums over the target tokens of a (micro-)batch.

    Args:
      logits: (B, L-1, V) float32, the predictions for `targets` (logits[:, :-1] of the model).
      targets: (B, L-1) int32 token ids.
      weights: (B, L-1) 0/1 target mask (answer tokens of valid rows).
      task_id: (B,) int32, for per-task accuracy.
      num_tasks: static number of task ids.
    Returns float32 scalars `loss_sum`, `correct`, `count` and (num_tasks,) `task_correct`,
    `task_count`.
    """
    weights = weights.astype(jnp.float32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)  # (B, L-1)
    hits = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32) * weights
    one_hot = jax.nn.one_hot(task_id, num_tasks, dtype=jnp.float32)  # (B, T)
    return {
        "loss_sum": jnp.sum(losses * weights),
        "correct": jnp.sum(hits),
        "count": jnp.sum(weights),
        "task_correct": one_hot.T @ jnp.sum(hits, axis=1),
        "task_count": one_hot.T @ jnp.sum(weights, axis=1),
    }


def target_positions(weights: jax.Array, k: int) -> jax.Array:
    """(B, L-1) target weights -> (B, k) int32 positions: each row's target positions in order,
    then (when the row has fewer than k) its first non-target positions, whose weights are 0.

    A stable sort of `weights == 0` puts targets first; no position is taken twice, so the
    gathered weights sum to the row's target count, or fall short of it when the row has more
    than k targets (`gather_targets` reports those as dropped).
    """
    if not 0 < k <= weights.shape[1]:
        raise ValueError(f"loss_positions={k}: expected 1..{weights.shape[1]} (the predicted positions per row)")
    return jnp.argsort(weights == 0, axis=1, stable=True)[:, :k].astype(jnp.int32)


def gather_targets(hidden: jax.Array, targets: jax.Array, weights: jax.Array, k: int
                   ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Keeps k positions per row: the target positions (`target_positions`).

    Args:
      hidden: (B, L-1, D) final hidden states of the predicting positions.
      targets, weights: (B, L-1) as for `token_sums`.
    Returns (hidden (B, k, D), targets (B, k), weights (B, k), dropped ()): `dropped` counts
    target weight left out (rows with more than k targets); 0 means the loss is exact.
    """
    idx = target_positions(weights, k)
    take = lambda x: jnp.take_along_axis(x, idx if x.ndim == 2 else idx[..., None], axis=1)
    kept = take(weights)
    dropped = jnp.sum(weights.astype(jnp.float32)) - jnp.sum(kept.astype(jnp.float32))
    return take(hidden), take(targets), kept, dropped


def chunked_token_sums(head: Callable[[jax.Array], jax.Array], hidden: jax.Array, targets: jax.Array,
                       weights: jax.Array, task_id: jax.Array, num_tasks: int, chunk: int) -> dict[str, jax.Array]:
    """`token_sums(head(hidden), ...)` computed `chunk` positions at a time.

    Args:
      head: (B, C, D) hidden states -> (B, C, V) float32 logits (the model's LM head).
      hidden: (B, N, D) hidden states of the predicting positions; targets, weights: (B, N).
      chunk: positions per block; 0 (or >= N) computes the whole head at once. N is padded to a
        multiple of it with zero-weight positions.
    """
    b, n, _ = hidden.shape
    if chunk <= 0 or chunk >= n:
        return token_sums(head(hidden), targets, weights, task_id, num_tasks)
    pad = -n % chunk
    blocks = lambda x: jnp.moveaxis(jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2)).reshape(
        b, (n + pad) // chunk, chunk, *x.shape[2:]), 1, 0)  # (blocks, B, chunk, ...)

    @jax.checkpoint  # the backward pass recomputes a block's logits instead of keeping them all
    def block_sums(h, t, w):
        return token_sums(head(h), t, w, task_id, num_tasks)

    def body(total, xs):
        sums = block_sums(*xs)
        return jax.tree.map(jnp.add, total, sums), None

    zero = jax.tree.map(jnp.zeros_like, jax.eval_shape(block_sums, *(x[:, :chunk] for x in (hidden, targets, weights))))
    total, _ = jax.lax.scan(body, zero, (blocks(hidden), blocks(targets), blocks(weights)))
    return total
