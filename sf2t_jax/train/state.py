"""The train state: everything a step reads and writes, and everything a checkpoint restores.

    step       () int32     optimizer updates applied so far
    params     pure dict    trainable parameters, master dtype (float32 by default)
    frozen     pure dict    frozen parameters (never updated; no optimizer state)
    opt_state  optax state  for `params` only
    rng        (2,) uint32  base key; step s uses fold_in(rng, s), so a resumed run draws the
                            same dropout masks as one that never stopped
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from sf2t_jax.parallel.sharding import optimizer_shardings, replicated


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    frozen: Any
    opt_state: Any
    rng: jax.Array


def abstract_state(parts, tx: optax.GradientTransformation) -> TrainState:
    """ShapeDtypeStructs of the whole state (no memory)."""
    params = parts.abstract["trainable"]
    return TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params, frozen=parts.abstract["frozen"],
                      opt_state=jax.eval_shape(tx.init, params), rng=jax.ShapeDtypeStruct((2,), jnp.uint32))


def train_state_shardings(parts, tx: optax.GradientTransformation, mesh: Mesh) -> TrainState:
    """Parameters follow the rules table; Adam's moments follow their parameters; scalars and
    the key are replicated."""
    abstract = abstract_state(parts, tx)
    return TrainState(step=replicated(mesh), params=parts.shardings["trainable"], frozen=parts.shardings["frozen"],
                      opt_state=optimizer_shardings(tx, abstract.opt_state, parts.shardings["trainable"], mesh),
                      rng=replicated(mesh))


def with_shardings(abstract: TrainState, shardings: TrainState) -> TrainState:
    """ShapeDtypeStructs carrying their target shardings: what orbax restores into."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def create(params, frozen, tx: optax.GradientTransformation, seed: int, shardings: TrainState) -> TrainState:
    """A fresh state at step 0: the optimizer state is created directly in its shardings."""
    opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
    step = jax.device_put(jnp.zeros((), jnp.int32), shardings.step)
    rng = jax.device_put(jax.random.PRNGKey(seed), shardings.rng)
    return TrainState(step=step, params=params, frozen=frozen, opt_state=opt_state, rng=rng)
