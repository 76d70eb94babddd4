"""Host batches -> global `jax.Array`s on a mesh, the batch dimension sharded over ('data', 'fsdp').

Each process holds its own B rows (its share of the data, by process index); the global batch
is their concatenation in process order, built without any host seeing another's rows
(`jax.make_array_from_process_local_data`). Only `batching.BATCH_KEYS` go to devices.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sf2t_jax.input.batching import BATCH_KEYS, BatchSpec

DEFAULT_BATCH_AXES = ("data", "fsdp")  # parallel/rules.py DEFAULT_RULES: ("batch", ("data", "fsdp"))


def batch_axes_from_rules(rules: Sequence[tuple[str, object]]) -> tuple[str, ...]:
    """The mesh axes a rules table maps the logical 'batch' axis to."""
    from sf2t_jax.parallel.sharding import logical_to_spec

    spec = logical_to_spec(("batch",), rules)[0]
    return () if spec is None else (spec,) if isinstance(spec, str) else tuple(spec)


def batch_shardings(mesh: Mesh, batch_axes: Sequence[str] = DEFAULT_BATCH_AXES) -> dict[str, NamedSharding]:
    """{key: NamedSharding}: the batch dimension (dim 1 of position_ids, else dim 0) over `batch_axes`."""
    axes = tuple(batch_axes)
    batch = axes if len(axes) != 1 else axes[0]
    batch = batch or None
    return {key: NamedSharding(mesh, PartitionSpec(None, batch) if key == "position_ids" else PartitionSpec(batch))
            for key in BATCH_KEYS}


def check_mesh(spec: BatchSpec, mesh: Mesh, batch_axes: Sequence[str] = DEFAULT_BATCH_AXES) -> None:
    """The global batch must split evenly over the batch axes, and hosts must agree on the count."""
    ways = int(np.prod([mesh.shape[a] for a in batch_axes])) if batch_axes else 1
    if spec.global_batch_size % ways:
        raise ValueError(f"input.batch_size={spec.global_batch_size} does not divide over mesh axes "
                         f"{tuple(batch_axes)} of size {ways}")
    if spec.num_processes != jax.process_count():
        raise ValueError(f"the pipeline was built for {spec.num_processes} processes but jax runs "
                         f"{jax.process_count()}")


def to_global(batch: Mapping[str, np.ndarray], spec: BatchSpec, shardings: Mapping[str, NamedSharding]
              ) -> dict[str, jax.Array]:
    """This host's rows -> global arrays of `spec.shapes()`, one per key of `BATCH_KEYS`."""
    shapes = spec.shapes(global_shapes=True)
    return {key: jax.make_array_from_process_local_data(shardings[key], batch[key], shapes[key][0])
            for key in BATCH_KEYS}
