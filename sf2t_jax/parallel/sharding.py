"""Logical axis names -> `NamedSharding`s, through a rules table (`sf2t_jax.parallel.rules`).

Mesh style, decided once for the project: meshes use `AxisType.Auto` (GSPMD) and jitted
functions take explicit `in_shardings` / `out_shardings`; no `jax.set_mesh` explicit mode.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# The tables themselves (no JAX there); `named_rules` is re-exported for the callers that pick
# a table and build shardings in one place.
from sf2t_jax.parallel.rules import Rules, named_rules  # noqa: F401

log = logging.getLogger(__name__)


def logical_to_spec(axes: Sequence[str | None], rules: Rules) -> PartitionSpec:
    """('embed', 'mlp') -> PartitionSpec('fsdp', 'tensor') by the first matching rule.

    A logical name with no rule is an error (a typo must not silently replicate a weight); a
    mesh axis is used at most once per array, later dimensions that want it are replicated.
    """
    table = dict(rules)
    used: set[str] = set()
    out = []
    for name in axes:
        if name is None:
            out.append(None)
            continue
        if name not in table:
            raise KeyError(f"logical axis {name!r} has no sharding rule; known: {', '.join(sorted(table))}")
        mesh_axes = table[name]
        mesh_axes = () if mesh_axes is None else (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)
        mesh_axes = tuple(a for a in mesh_axes if a not in used)
        used.update(mesh_axes)
        out.append(None if not mesh_axes else mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes)
    return PartitionSpec(*out)


def entry_axes(entry) -> tuple[str, ...]:
    """One PartitionSpec entry (None, 'fsdp' or ('data', 'fsdp')) as a tuple of mesh axis names."""
    return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)


def entry_size(entry, mesh: Mesh) -> int:
    """How many ways one PartitionSpec entry splits its dimension on `mesh`."""
    return int(np.prod([mesh.shape[a] for a in entry_axes(entry)]))


def fit_to_shape(spec: PartitionSpec, shape: Sequence[int], mesh: Mesh, what: str | None = None) -> PartitionSpec:
    """Replicates dimensions that the mesh does not divide evenly (logged once per array when
    `what` names it)."""
    fitted = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        size = entry_size(axes, mesh)
        if dim % size:
            if what is not None:
                log.info("%s: dimension %d is not divisible by mesh axes %s (size %d); replicating it", what, dim,
                         entry_axes(axes), size)
            fitted.append(None)
        else:
            fitted.append(axes)
    return PartitionSpec(*fitted)


def sharding_for(axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Rules, what: str = "array") -> NamedSharding:
    return NamedSharding(mesh, fit_to_shape(logical_to_spec(axes, rules), shape, mesh, what))


def variable_shardings(state: nnx.State, mesh: Mesh, rules: Rules) -> nnx.State:
    """A tree like `state` (concrete or abstract) with a `NamedSharding` per variable.

    Variables without `logical_axes` metadata are replicated.
    """

    def one(path, var):
        axes = var.get_metadata().get("logical_axes") if isinstance(var, nnx.Variable) else None
        shape = var.shape if hasattr(var, "shape") else np.shape(var[...])
        if axes is None:
            return NamedSharding(mesh, PartitionSpec())
        if len(axes) != len(shape):
            raise ValueError(f"{'.'.join(map(str, path))}: logical axes {axes} do not match shape {tuple(shape)}")
        return sharding_for(axes, shape, mesh, rules, what=".".join(map(str, path)))

    return jax.tree_util.tree_map_with_path(
        lambda p, v: one(tuple(getattr(k, "key", getattr(k, "idx", k)) for k in p), v),
        state, is_leaf=lambda x: isinstance(x, nnx.Variable))


# Mesh axes that split model state; 'data' replicas are data-parallel copies by design.
STATE_AXES = ("fsdp", "tensor")


def fully_shard(sharding: NamedSharding, shape: Sequence[int]) -> NamedSharding:
    """`sharding` with every state axis of size > 1 that it leaves unused put on the largest
    dimension that the axis divides and that no axis of size > 1 splits yet (ZeRO-3 style).

    For trained parameters (and so their optimizer state): a LoRA B of shape (rank, heads·dim)
    whose heads map to 'tensor' would otherwise be whole on every device of an FSDP-only mesh.
    """
    mesh = sharding.mesh
    spec = list(tuple(sharding.spec) + (None,) * (len(shape) - len(sharding.spec)))
    used = {a for entry in spec for a in entry_axes(entry) if mesh.shape[a] > 1}
    for axis in STATE_AXES:
        size = mesh.shape.get(axis, 1)
        if size == 1 or axis in used:
            continue
        free = [d for d in range(len(shape)) if entry_size(spec[d], mesh) == 1 and shape[d] % size == 0]
        if free:
            d = max(free, key=lambda i: shape[i])
            spec[d], used = axis, used | {axis}
    return NamedSharding(mesh, PartitionSpec(*spec))


# ----------------------------------------------------------------------------------------
# Trees of shardings for training: parameters, optimizer state, batches.
# ----------------------------------------------------------------------------------------
def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def optimizer_shardings(tx, abstract_opt_state, param_shardings, mesh: Mesh):
    """Each optimizer-state leaf that mirrors a parameter (Adam's mu and nu, ...) gets that
    parameter's sharding; everything else (step counts, scalars) is replicated.

    Needed because `jax.jit(tx.init)` in GSPMD (Auto) mode does not propagate the parameter
    shardings to the moments: it put them all on one device (NOTES.md).
    """
    import optax

    return optax.tree_map_params(tx, lambda _, sharding: sharding, abstract_opt_state, param_shardings,
                                 transform_non_params=lambda _: replicated(mesh))


def batch_sharding(axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Rules,
                   what: str = "batch") -> NamedSharding:
    """The sharding of one batch array. Unlike parameters, a batch dimension that the mesh
    does not divide is an error, never silently replicated (every device would compute the
    whole batch)."""
    spec = logical_to_spec(axes, rules)
    for dim, entry in zip(shape, spec):
        size = entry_size(entry, mesh)
        if dim % size:
            raise ValueError(f"{what}: dimension of size {dim} is not divisible by mesh axes {entry_axes(entry)} "
                             f"(size {size})")
    return NamedSharding(mesh, spec)

