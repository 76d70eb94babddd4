"""Topology names -> the devices a plan compiles for, and the chip figures it projects with.

    v5e:4x4      16 TPU v5e chips (2D torus AxB)          v6e:2x4      8 TPU v6e chips (AxB)
    v5p:2x2x2    8 TPU v5p chips (3D torus AxBxC)         v4:2x2x1     4 TPU v4 chips (AxBxC)
    cpu:8        the first 8 local CPU devices (no libtpu needed; XLA_FLAGS=
                 --xla_force_host_platform_device_count=8 gives a CPU host 8 devices)

TPU topologies are device *descriptions* from libtpu (`jax.experimental.topologies`): enough
to lower and compile a program for them ahead of time on any machine, not to run it. They need
`pip install '.[plan]'` (jax[tpu] of the pinned jax version; nothing else changes). `slices`
> 1 describes a multislice job of that many identical slices (devices carry `slice_index`, so
`mesh.dcn` spans them as it does on real hardware).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re

from sf2t_jax.errors import InputError

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """One accelerator chip: its dense bf16 matmul peak and its HBM."""

    name: str
    peak_flops: float  # bf16 FLOP/s per chip
    hbm_bytes: int
    dims: int  # 2: topology AxB, 3: AxBxC
    chip_config: str  # libtpu's chip_config_name: 'megacore' = one JAX device per chip


# Public Google Cloud TPU figures (cloud.google.com/tpu/docs/v4, /v5e, /v5p, /v6e; "System
# architecture" tables): peak bf16 compute and HBM capacity per chip.
CHIPS = {
    "v4": Chip("TPU v4", 275e12, 32 * GIB, 3, "megacore"),
    "v5e": Chip("TPU v5e", 197e12, 16 * GIB, 2, "default"),
    "v5p": Chip("TPU v5p", 459e12, 95 * GIB, 3, "default"),
    "v6e": Chip("TPU v6e", 918e12, 32 * GIB, 2, "default"),
}
KNOWN = ", ".join([f"{k}:{'x'.join('AB' if c.dims == 2 else 'ABC')}" for k, c in CHIPS.items()] + ["cpu:N"])


@dataclasses.dataclass(frozen=True)
class Topology:
    """What a plan compiles for.

    name: as given ('v5e:4x4'); kind: 'v5e' | ... | 'cpu'; chip: None for cpu (no published
    peak or HBM); devices: TPU device descriptions or local CPU devices, `slices` x chips-per-slice.
    """

    name: str
    kind: str
    chip: Chip | None
    slices: int
    devices: tuple

    @property
    def chips(self) -> int:
        return len(self.devices)

    @property
    def is_tpu(self) -> bool:
        return self.chip is not None

    def describe(self) -> str:
        if not self.is_tpu:
            return f"{self.name}: {self.chips} local CPU devices"
        slices = f" x {self.slices} slices" if self.slices > 1 else ""
        return (f"{self.name}{slices}: {self.chips} {self.chip.name} chips, {self.chip.peak_flops / 1e12:.0f} TFLOP/s "
                f"bf16 and {self.chip.hbm_bytes / GIB:.0f} GiB HBM each")


def libtpu_available() -> bool:
    return importlib.util.find_spec("libtpu") is not None


def parse(name: str, slices: int = 1) -> Topology:
    """`v5e:4x4`, `v5p:2x2x2`, `v4:2x2x1`, `v6e:2x4` or `cpu:N` -> a Topology; anything else is
    an InputError naming it and listing the valid forms."""
    kind, sep, shape = name.partition(":")
    if slices < 1:
        raise InputError(f"--slices {slices}: expected >= 1")
    if kind == "cpu" and sep and shape.isdigit() and int(shape) > 0:
        if slices != 1:
            raise InputError(f"--topology {name}: cpu:N takes no --slices (use mesh.dcn over processes instead)")
        return Topology(name, "cpu", None, 1, _cpu_devices(int(shape), name))
    chip = CHIPS.get(kind)
    pattern = r"\d+x\d+" if chip is None or chip.dims == 2 else r"\d+x\d+x\d+"
    if chip is None or not sep or not re.fullmatch(pattern, shape):
        raise InputError(f"--topology {name!r} is not a known topology; expected one of: {KNOWN} "
                         "(e.g. v5e:4x4, v5p:2x2x2, cpu:8)")
    if not libtpu_available():
        raise InputError(f"--topology {name} compiles for TPU ahead of time, which needs libtpu: "
                         "pip install '.[plan]' (jax[tpu] of the same jax version). "
                         "--topology cpu:N works without it.")
    return Topology(name, kind, chip, slices, _tpu_devices(name, chip, shape, slices))


def _cpu_devices(n: int, name: str) -> tuple:
    import jax

    devices = jax.devices("cpu")
    if n > len(devices):
        raise InputError(f"--topology {name}: this process has {len(devices)} CPU device(s); start it with "
                         f"XLA_FLAGS=--xla_force_host_platform_device_count={n} (launch.py plan does this itself "
                         "when JAX has not started yet)")
    return tuple(devices[:n])


def _tpu_devices(name: str, chip: Chip, shape: str, slices: int) -> tuple:
    # libtpu takes a machine-wide lock (/tmp/libtpu_lockfile) when it loads, refusing a second
    # process (another plan, or training on a TPU VM) with "ABORTED: Internal error when accessing
    # libtpu multi-process lockfile"; a plan only compiles and never opens a TPU.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies

    dims = [int(d) for d in shape.split("x")]
    # Hosts hold a 2x2 block of chips (4 chips per VM host on v4, v5p and the multi-host v5e /
    # v6e slices); only the compile target matters here, not how hosts are cut.
    bounds = (min(dims[0], 2), min(dims[1], 2), 1)
    try:
        topo = topologies.get_topology_desc(topology_name=name, platform="tpu", chip_config_name=chip.chip_config,
                                            chips_per_host_bounds=bounds, num_slices=slices)
    except Exception as e:  # libtpu refuses shapes it does not build (e.g. v5e:3x3)
        raise InputError(f"--topology {name}: libtpu cannot describe it: {e}") from None
    devices = tuple(topo.devices)
    want = math.prod(dims) * slices
    if len(devices) != want:
        raise InputError(f"--topology {name}: libtpu described {len(devices)} devices, expected {want} (one per chip)")
    return devices
