"""The one build function: mesh, model, optimizer, shardings and the jitted train step, from a
typed experiment (`sf2t_jax.experiment.Experiment`), for the trainer (`train/loop.py`), the planner (`plan/aot.py`) and the benchmarks alike,
so the planner compiles exactly what `launch.py train` runs.

    model = build_model(config, devices)                    # mesh, rules, shape, parts: no memory
    built = build_step(config, model, geometry, total_steps)  # optimizer, shardings, jitted step

The trainer opens its data between the two calls (the batch geometry comes from the source);
the planner computes the geometry from the config alone (`plan.aot.batch_geometry`). Every
set-up error is a ValueError or KeyError whose message names the config field.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import optax
from jax.sharding import Mesh, NamedSharding

from sf2t_jax.batch import batch_axes
from sf2t_jax.experiment import Experiment
from sf2t_jax.models.family import ModelConfig
from sf2t_jax.parallel.mesh import make_hybrid_mesh
from sf2t_jax.parallel.sharding import Rules, named_rules
from sf2t_jax.train import data as data_lib
from sf2t_jax.train import model as model_lib
from sf2t_jax.train import optimizer as optimizer_lib
from sf2t_jax.train import state as state_lib
from sf2t_jax.train.errors import TrainConfigError
from sf2t_jax.train.step import TrainStep, make_train_step


@dataclasses.dataclass
class ModelSetup:
    """mesh and rules (`config.mesh`), the model's shape, and its split into trainable / frozen /
    extra parts with their shardings (abstract: nothing allocated)."""

    mesh: Mesh
    rules: Rules
    shape: ModelConfig
    parts: Any  # train/model.py Parts


@dataclasses.dataclass
class StepSetup:
    """The optimizer, every sharding, and the jitted step `(state, extra, batch) -> (state, metrics)`."""

    tx: optax.GradientTransformation
    schedule: optax.Schedule
    state_shardings: Any  # TrainState of NamedSharding
    batch_shardings: dict[str, NamedSharding]
    step: TrainStep
    accum: int


def build_model(config: Experiment, devices: Sequence, shape: ModelConfig | None = None) -> ModelSetup:
    """The mesh over `devices` (`mesh.devices` > 0 takes the first that many) and the split model
    of `config.model.name`'s shape, or of `shape` when given (benchmarks' own shapes)."""
    count = config.mesh.devices
    if count > len(devices):  # (>= 0: checked by experiment.from_config; the count is known only here)
        raise TrainConfigError(f"mesh.devices={count}: expected 0 (all) or 1..{len(devices)}")
    mesh = make_hybrid_mesh(config.mesh.ici, config.mesh.dcn, list(devices[:count] if count else devices))
    rules = named_rules(config.mesh.rules)
    shape = shape or model_lib.model_config(config)
    return ModelSetup(mesh, rules, shape, model_lib.split_model(config, shape, mesh, rules))


def check_batch(batch: int, accum: int, mesh: Mesh, rules: Rules) -> None:
    """The global batch must split over the micro-steps and the mesh's batch shards."""
    axes = batch_axes(mesh, rules)
    shards = 1
    for a in axes:
        shards *= mesh.shape[a]
    if batch % (shards * accum):
        raise TrainConfigError(f"input.batch_size={batch} must be divisible by train.grad_accum ({accum}) x the mesh's batch "
                         f"shards ({' x '.join(axes) or 'none'} = {shards}), i.e. by {shards * accum}")


def build_step(config: Experiment, model: ModelSetup, geometry: data_lib.BatchGeometry,
               total_steps: int) -> StepSetup:
    """Optimizer (its schedule over `total_steps`), state and batch shardings, and the jitted
    step with every training option the config sets (accumulation, dropout, activation
    constraints, `loss_positions`, `loss_chunk`, batch digests)."""
    mesh, rules, parts = model.mesh, model.rules, model.parts
    accum = config.train.grad_accum
    check_batch(geometry.batch_size, accum, mesh, rules)
    tx, schedule = optimizer_lib.make_optimizer(dataclasses.replace(config.train, steps=max(int(total_steps), 1)))
    shardings = state_lib.train_state_shardings(parts, tx, mesh)
    batch_shardings = data_lib.batch_shardings(geometry, mesh, rules)
    step = make_train_step(
        parts, tx, schedule, grid_hw=geometry.grid_hw, num_tasks=geometry.num_tasks, accum=accum,
        dropout=config.method == "lora" and config.lora.dropout > 0, state_shardings=shardings,
        extra_shardings=parts.shardings["extra"], batch_shardings=batch_shardings,
        rules=rules if config.mesh.constrain_activations else None,
        loss_positions=config.train.loss_positions, loss_chunk=config.train.loss_chunk,
        digest=config.debug.batch_digest)
    return StepSetup(tx, schedule, shardings, batch_shardings, step, accum)
