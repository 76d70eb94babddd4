"""Next-token cross-entropy on answer tokens, as sums, so that normalisation happens once.

The loss of a step is `sum of token losses / number of target tokens in the global batch`.
Every device and every accumulation micro-step returns *sums* over its rows; the step divides
by the global target count. So a batch split across 8 devices or into 4 micro-steps gives the
same loss and the same gradient as the whole batch at once; averaging per-device or per-micro-
step means would over-weight the rows of a shard with few answer tokens.
"""
from __future__ import annotations

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
