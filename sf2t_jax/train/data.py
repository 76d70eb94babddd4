"""Where batches come from, and how host rows become global arrays on the mesh.

The trainer consumes any *host iterator*: `next(it)` gives this process's rows of the batch
contract (`sf2t_jax/batch.py`: names, shapes, dtypes, logical axes) as numpy (or global
`jax.Array`s already), and `it.get_state()` / `it.set_state(s)` save and restore its position
as JSON-serialisable data (a grain `DatasetIterator` is one). B is the GLOBAL batch; each host
holds B / process_count rows, and `batch.to_global` makes the global arrays.

Sources (`config.data.source`):
  synthetic  `train/synthetic_batches.py`: generated rows with the real shapes and a learnable answer.
  videos     the fragment pipeline (`sf2t_jax.input.InputPipeline` over `config.input`), with
             `data.sft_weight` of its samples scene QA from `data.sft_source` (joint SFT+SF²T).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from sf2t_jax.batch import BatchShape, batch_shardings, to_global
from sf2t_jax.experiment import Experiment
from sf2t_jax.parallel.sharding import Rules
from sf2t_jax.train.errors import TrainConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchGeometry(BatchShape):
    """The static shapes of every global batch (`BatchShape`: B is the global batch size), and
    what the trainer needs to know about the stream.

    steps_per_epoch: global batches in one pass over the source (an estimate for video
    sources, whose skipped clips are only known when read); num_tasks: task ids in `task_id`;
    task_names: what they name. patch_dim and tokens_per_slice come from the model family's
    `slice_layout`.
    """

    steps_per_epoch: int
    num_tasks: int
    task_names: tuple[str, ...]


def check_targets(batch: dict[str, np.ndarray], max_targets: int) -> None:
    """Raises ValueError when a row has more target tokens than `max_targets` (the LM head
    runs at that many positions per row: `train.loss_positions`)."""
    counts = (np.asarray(batch["loss_mask"])[:, 1:] != 0).sum(axis=1) * (np.asarray(batch["valid"]) != 0)
    if counts.size and counts.max() > max_targets:
        row = int(counts.argmax())
        raise TrainConfigError(f"train.loss_positions={max_targets}: row {row} of this host's batch has {int(counts[row])} "
                         "target tokens; raise train.loss_positions (or set 0: the LM head at every position)")


class GlobalBatches:
    """Wraps a host iterator: `next()` gives global arrays; state calls go to the host iterator.

    `max_targets` > 0 (the step's `loss_positions`): every host row must have at most that
    many target tokens; a row with more is an error naming it (checked on the numpy rows).
    """

    def __init__(self, host_iterator, geometry: BatchGeometry, shardings: dict[str, NamedSharding],
                 max_targets: int = 0):
        self.host = host_iterator
        self.geometry = geometry
        self.shardings = shardings
        self.max_targets = int(max_targets)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, jax.Array]:
        batch = next(self.host)
        if self.max_targets and isinstance(batch.get("loss_mask"), np.ndarray):
            check_targets(batch, self.max_targets)
        return to_global(batch, self.geometry, self.shardings)

    def get_state(self) -> dict[str, Any]:
        return self.host.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self.host.set_state(state)


def open_batches(config: Experiment, model_config, mesh: Mesh, rules: Rules) -> GlobalBatches:
    """The batch iterator `config.data.source` names, for this process, on `mesh`."""
    source = config.data.source
    if source == "synthetic":
        from sf2t_jax.train import synthetic_batches

        dataset, g = synthetic_batches.synthetic_dataset(config.input, config.data, model_config,
                                                 process_index=jax.process_index(),
                                                 process_count=jax.process_count())
        geometry = BatchGeometry(batch_size=config.input.batch_size, length=g.length, slices=g.slices,
                                 grid_hw=g.grid_hw,
                                 steps_per_epoch=config.data.synthetic_examples // config.input.batch_size,
                                 num_tasks=synthetic_batches.NUM_TASK_IDS,
                                 task_names=synthetic_batches.TASK_NAMES + ("sft",), patch_dim=g.patch_dim,
                                 tokens_per_slice=g.tokens_per_slice)
        host = iter(dataset)
    elif source == "videos":
        host, geometry = _video_batches(config, model_config)
    else:  # experiment.from_config allows only these two
        raise AssertionError(f"data.source={source!r}")
    return GlobalBatches(host, geometry, batch_shardings(geometry, mesh, rules),
                         max_targets=config.train.loss_positions)


def _video_batches(config: Experiment, model_config):
    """The input pipeline (`sf2t_jax.input`) over `config.input`, as numpy host rows, with the
    model family's video positions."""
    from sf2t_jax.input import InputPipeline
    from sf2t_jax.models.family import row_format

    pipeline = InputPipeline(config.input, rows=row_format(model_config))
    pipeline.check_usable()  # a source of broken videos is refused before the workdir is written
    spec = pipeline.spec
    per_epoch = pipeline.records_per_epoch * jax.process_count() // config.input.batch_size
    geometry = BatchGeometry(batch_size=spec.global_batch_size, length=spec.max_length, slices=spec.slices,
                             grid_hw=tuple(spec.grid_hw), steps_per_epoch=max(per_epoch, 1),
                             num_tasks=len(pipeline.config.task_names), task_names=pipeline.config.task_names,
                             patch_dim=spec.patch_dim, tokens_per_slice=spec.vision_tokens // spec.slices)
    return pipeline.iterator(None), geometry


def total_steps(config: Experiment, geometry: BatchGeometry) -> int:
    """`train.steps`, or (when 0) `input.num_epochs` passes over the source."""
    if config.train.steps > 0:
        return config.train.steps
    epochs = config.input.num_epochs
    if epochs <= 0:
        raise TrainConfigError("train.steps=0 means 'input.num_epochs passes', but input.num_epochs=0 (forever); "
                         "set train.steps")
    return max(1, math.floor(epochs * geometry.steps_per_epoch))
