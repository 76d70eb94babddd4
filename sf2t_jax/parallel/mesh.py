"""Device meshes with axes ('data', 'fsdp', 'tensor'), in GSPMD (`AxisType.Auto`) style."""
from __future__ import annotations

import logging
import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from sf2t_jax.errors import InputError

MESH_AXES = ("data", "fsdp", "tensor")

log = logging.getLogger(__name__)


def make_mesh(data: int = 1, fsdp: int = -1, tensor: int = 1, devices=None) -> Mesh:
    """A mesh over `devices` (default: all). One size may be -1: it takes the devices left over.

    Raises InputError naming the sizes when they do not multiply to the device count.
    """
    devices = jax.devices() if devices is None else list(devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise InputError(f"mesh sizes {dict(zip(MESH_AXES, sizes))}: at most one may be -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise InputError(f"mesh sizes {dict(zip(MESH_AXES, sizes))} do not divide {len(devices)} devices")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise InputError(f"mesh sizes {dict(zip(MESH_AXES, sizes))} need {math.prod(sizes)} devices, have {len(devices)}")
    return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


# ----------------------------------------------------------------------------------------
# Meshes from config: within-slice (ICI) and across-slice (DCN) sizes, MaxText style.
# ----------------------------------------------------------------------------------------
def resolve_sizes(sizes, total: int, field: str) -> tuple[int, ...]:
    """(data, fsdp, tensor) with at most one -1 -> concrete sizes whose product is `total`.

    `field` names the config field in error messages (e.g. 'mesh.ici').
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) != len(MESH_AXES) or any(s == 0 or s < -1 for s in sizes):
        raise InputError(f"{field}={tuple(sizes)}: expected {len(MESH_AXES)} sizes {MESH_AXES}, each positive or -1")
    if sizes.count(-1) > 1:
        raise InputError(f"{field}={tuple(sizes)}: at most one size may be -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if total % known:
            raise InputError(f"{field}={tuple(sizes)}: {known} does not divide the {total} devices available")
        sizes[sizes.index(-1)] = total // known
    if math.prod(sizes) != total:
        raise InputError(f"{field}={tuple(sizes)} needs {math.prod(sizes)} devices, but {total} are available")
    return tuple(sizes)


def _granules(devices) -> tuple[str, list[list]]:
    """Groups devices into the units that DCN connects: TPU slices when the devices span
    several (multislice), otherwise processes (GPU/CPU clusters; every CPU device says
    slice 0)."""
    slices = {getattr(d, "slice_index", None) for d in devices}
    attr = "slice_index" if len(slices) > 1 and None not in slices else "process_index"
    groups: dict[int, list] = {}
    for d in devices:
        groups.setdefault(getattr(d, attr), []).append(d)
    return attr, [groups[k] for k in sorted(groups)]


def make_hybrid_mesh(ici=(1, -1, 1), dcn=(1, 1, 1), devices=None) -> Mesh:
    """A ('data', 'fsdp', 'tensor') mesh whose axis i has size dcn[i] * ici[i].

    Args:
      ici: sizes within one slice (fast interconnect). One may be -1: the devices left over.
      dcn: sizes across slices (data-centre network); their product is the number of slices
        (TPU multislice) or, where devices carry no slice index, of processes. No -1 here.
      devices: default all devices.
    Device order within a slice follows the physical topology (`mesh_utils`), so neighbours on
    the mesh are neighbours on the torus; the DCN factor is the outer (slower) one of each axis.
    """
    from jax.experimental import mesh_utils

    devices = jax.devices() if devices is None else list(devices)
    dcn = tuple(int(s) for s in dcn)
    if len(dcn) != len(MESH_AXES) or any(s < 1 for s in dcn):
        raise InputError(f"mesh.dcn={dcn}: expected {len(MESH_AXES)} positive sizes {MESH_AXES} (no -1 across slices)")
    n_slices = math.prod(dcn)
    if n_slices == 1:
        ici = resolve_sizes(ici, len(devices), "mesh.ici")
        try:
            grid = mesh_utils.create_device_mesh(ici, devices)
        except (AssertionError, NotImplementedError, ValueError) as e:
            # A shape mesh_utils cannot lay onto the physical topology: device order instead
            # (correct, possibly slower collectives).
            log.warning("mesh.ici=%s: no topology-aware layout (%s); using device order", ici, e)
            grid = np.asarray(devices).reshape(ici)
    else:
        attr, groups = _granules(devices)
        if len(groups) != n_slices:
            raise InputError(f"mesh.dcn={tuple(dcn)} asks for {n_slices} slices, but the devices form {len(groups)} "
                             f"(grouped by {attr})")
        ici = resolve_sizes(ici, len(groups[0]), "mesh.ici")
        grid = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, process_is_granule=attr == "process_index")
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def select_devices(count: int) -> list:
    """The devices a mesh spans: all of them (count=0), or the first `count` (one process only;
    e.g. a small model on one device of a multi-device host, or tests on 8 fake CPU devices)."""
    devices = jax.devices()
    if count == 0:
        return devices
    if jax.process_count() > 1:
        raise InputError(f"mesh.devices={count}: a subset of devices needs a single process; use 0 (all)")
    if not 0 < count <= len(devices):
        raise InputError(f"mesh.devices={count}: expected 0 (all) or 1..{len(devices)}")
    return devices[:count]
