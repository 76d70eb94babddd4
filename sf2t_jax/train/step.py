"""The train step: one pure function of (state, batch), jitted once with explicit shardings.

DESIGN decision 1: the NNX graph is split once (`train/model.py`); inside the step the model
is rebuilt with `nnx.merge` from plain arrays, so tracing is cheap and the jitted function
sees only pytrees. The state is donated: parameters and optimizer state are updated in place.

Gradient accumulation splits the global batch (B rows) into A micro-batches of B/A rows and
scans over them, summing gradients. Micro-batch a takes rows {j*A + a}: every device keeps
working on its own rows (a contiguous split would leave most devices idle in each micro-step).
Every micro-step's loss is divided by the target-token count of the whole global batch, so
the summed gradient is exactly the gradient of the global-batch loss (train/loss.py).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from sf2t_jax.batch import FIELDS
from sf2t_jax.models.vision import batch_vision
from sf2t_jax.parallel.activations import activation_sharding
from sf2t_jax.parallel.sharding import Rules
from sf2t_jax.train.digest import batch_digest
from sf2t_jax.train.loss import chunked_token_sums, gather_targets, shifted_targets
from sf2t_jax.train.state import TrainState

Batch = dict[str, jax.Array]


def split_micro(batch: Batch, accum: int, shardings: dict[str, NamedSharding] | None = None) -> Batch:
    """(.., B, ..) -> (A, .., B/A, ..) with micro-batch a = rows {j*A + a}; the row split stays
    on the devices that hold the rows (no data movement)."""
    out = {}
    for key, x in batch.items():
        d = FIELDS[key].batch_dim
        b = x.shape[d]
        x = x.reshape(*x.shape[:d], b // accum, accum, *x.shape[d + 1:])
        x = jnp.moveaxis(x, d + 1, 0)
        if shardings is not None:
            spec = shardings[key].spec
            x = jax.lax.with_sharding_constraint(x, NamedSharding(shardings[key].mesh, PartitionSpec(None, *spec)))
        out[key] = x
    return out


def target_weights(batch: Batch) -> jax.Array:
    """(B, L-1) float32: 1 at answer tokens of valid rows, aligned with next-token targets."""
    _, weights = shifted_targets(batch["input_ids"], batch["loss_mask"] * batch["valid"][:, None])
    return weights.astype(jnp.float32)


def forward_hidden(model, batch: Batch, grid_hw: tuple[int, int]) -> jax.Array:
    """The model's final hidden states (B, L, D) for a batch of the contract (vision patches
    merged into the sequence): what the loss and the held-out scorer (train/heldout.py) read."""
    embeds = model.embed(batch["input_ids"], batch_vision(batch["vision_patches"], grid_hw), batch["vision_index"])
    hidden, _ = model.model(embeds, batch["position_ids"], batch["attention_mask"])
    return hidden


def make_loss_sums(parts, grid_hw: tuple[int, int], num_tasks: int, dropout: bool, loss_positions: int = 0,
                   loss_chunk: int = 0) -> Callable:
    """(params, frozen, extra, key, batch) -> sums over the batch's target tokens (train/loss.py).

    loss_positions: 0 runs the LM head at every position; K > 0 only at each row's first K
    target positions (`loss.gather_targets`): the same sums while no row has more than K
    targets. Target weight left out is counted in 'dropped' and makes 'loss_sum' NaN, so an
    undersized K cannot go unnoticed (the trainer also checks each batch on the host).
    loss_chunk: C > 0 runs the LM head C positions at a time (`loss.chunked_token_sums`): no
    (B, L, V) float32 logits, the same sums.
    """

    def loss_sums(params, frozen, extra, key, batch: Batch) -> dict[str, jax.Array]:
        model = parts.merge(params, frozen, extra)
        if dropout:
            nnx.reseed(model, dropout=key, policy="match_shape")  # stacked streams: one key per layer
        hidden = forward_hidden(model, batch, grid_hw)
        targets, _ = shifted_targets(batch["input_ids"], batch["loss_mask"])
        hidden, weights, dropped = hidden[:, :-1], target_weights(batch), jnp.zeros((), jnp.float32)
        if loss_positions:
            hidden, targets, weights, dropped = gather_targets(hidden, targets, weights, loss_positions)
        sums = chunked_token_sums(model.logits, hidden, targets, weights, batch["task_id"], num_tasks, loss_chunk)
        sums["loss_sum"] = jnp.where(dropped > 0, jnp.nan, sums["loss_sum"])
        sums["dropped"] = dropped
        return sums

    return loss_sums


def make_grad_fn(loss_sums: Callable, accum: int, batch_shardings: dict[str, NamedSharding] | None = None
                 ) -> Callable:
    """(params, frozen, extra, key, batch) -> (grads, sums) of the global-batch mean loss
    `sum(token losses) / sum(target tokens)`, accumulated over `accum` micro-batches."""

    def grad_fn(params, frozen, extra, key, batch: Batch):
        total = jnp.maximum(jnp.sum(target_weights(batch)), 1.0)

        def micro(mb: Batch, k):
            def loss(p):
                sums = loss_sums(p, frozen, extra, k, mb)
                return sums["loss_sum"] / total, sums

            (_, sums), grads = jax.value_and_grad(loss, has_aux=True)(params)
            return grads, sums

        if accum == 1:
            return micro(batch, key)
        micro_batches = split_micro(batch, accum, batch_shardings)

        def body(grads, xs):
            mb, i = xs
            g, sums = micro(mb, jax.random.fold_in(key, i))
            return jax.tree.map(jnp.add, grads, g), sums

        grads, sums = jax.lax.scan(body, jax.tree.map(jnp.zeros_like, params), (micro_batches, jnp.arange(accum)))
        return grads, jax.tree.map(lambda x: jnp.sum(x, axis=0), sums)  # per-micro-step sums -> totals

    return grad_fn


def make_train_step(parts, tx: optax.GradientTransformation, schedule: optax.Schedule, *, grid_hw, num_tasks: int,
                    accum: int, dropout: bool, state_shardings: TrainState, extra_shardings: Any,
                    batch_shardings: dict[str, NamedSharding], rules: Rules | None, loss_positions: int = 0,
                    loss_chunk: int = 0, digest: bool = False):
    """The jitted step `(state, extra, batch) -> (state, metrics)`; `state` is donated.

    rules: the logical-axis rules; activations are constrained by them on the batch's mesh
    (`parallel/activations.py`), so every row stays on the devices that hold it. None: no
    activation constraints (GSPMD infers every layout; for comparison only).
    loss_positions: K > 0 runs the LM head only at each row's first K answer positions
    (`make_loss_sums`); every row must have at most K targets. loss_chunk: C > 0 runs the LM
    head C positions at a time (no (B, L, V) float32 logits; the same sums).
    metrics (replicated float32): loss, accuracy (answer tokens whose argmax is right),
    grad_norm (before clipping), lr (of this update), target_tokens, tokens (non-padding),
    task_correct / task_count (num_tasks,), dropped_targets (0 unless K is too small);
    with `digest`, also batch_digest (B,) uint32: a bit-exact fingerprint of each global row
    (`train/digest.py`), to check that every layout trains on the same batches.
    `step.traces` counts how often Python traced the function: 1 means it compiled once.
    """
    grad_fn = make_grad_fn(make_loss_sums(parts, grid_hw, num_tasks, dropout, loss_positions, loss_chunk), accum,
                           batch_shardings)
    mesh = next(iter(batch_shardings.values())).mesh
    traces = [0]

    def train_step(state: TrainState, extra, batch: Batch):
        traces[0] += 1
        key = jax.random.fold_in(state.rng, state.step)
        with activation_sharding(mesh, rules) if rules is not None else contextlib.nullcontext():
            grads, sums = grad_fn(state.params, state.frozen, extra, key, batch)
        total = jnp.maximum(sums["count"], 1.0)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": sums["loss_sum"] / total,
            "accuracy": sums["correct"] / total,
            "grad_norm": optax.tree.norm(grads),
            "lr": jnp.asarray(schedule(state.step), jnp.float32),
            "target_tokens": sums["count"],
            "tokens": jnp.sum(batch["attention_mask"]).astype(jnp.float32),
            "task_correct": sums["task_correct"],
            "task_count": sums["task_count"],
            "dropped_targets": sums["dropped"],
        }
        if digest:
            metrics["batch_digest"] = batch_digest(batch, {k: FIELDS[k].batch_dim for k in batch})
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    jitted = jax.jit(train_step, in_shardings=(state_shardings, extra_shardings, batch_shardings),
                     out_shardings=(state_shardings, NamedSharding(mesh, PartitionSpec())), donate_argnums=(0,))
    return TrainStep(jitted, traces)


class TrainStep:
    """The jitted step plus `traces`: how often Python traced it (1 = compiled once)."""

    def __init__(self, jitted, traces: list[int]):
        self.jitted, self._traces = jitted, traces

    def __call__(self, state: TrainState, extra, batch: Batch):
        return self.jitted(state, extra, batch)

    @property
    def traces(self) -> int:
        return self._traces[0]

    def lower(self, *args):
        return self.jitted.lower(*args)
