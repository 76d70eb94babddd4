"""`jax.distributed` start-up: one process per host, every process runs the same command.

    TPU VM pods and multislice: automatic. Every worker runs the same command (see
        scripts/tpu_pod.sh); JAX reads the coordinator, the process count and this worker's
        index from the TPU metadata, so no flags are needed.
    CPU / GPU clusters: explicit. Give each process the coordinator address (process 0's host
        and a free port), the number of processes and its own index, either as flags
        (`--coordinator HOST:PORT --num-processes N --process-id I`) or through the environment
        (`SF2T_COORDINATOR`, `SF2T_NUM_PROCESSES`, `SF2T_PROCESS_ID`).
    One process: nothing to do.

This must run before anything touches a device (`jax.devices()`, a jit, an array).
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import os

import jax
import numpy as np

log = logging.getLogger(__name__)

ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID = "SF2T_COORDINATOR", "SF2T_NUM_PROCESSES", "SF2T_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """How this process joins the job. All None: decide automatically (`initialize`)."""

    coordinator: str | None = None  # 'host:port' of process 0's coordination service
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None  # GPU: which local devices this process owns

    @classmethod
    def from_env(cls, **overrides) -> "ClusterSpec":
        """Flags win over SF2T_* environment variables."""
        env = os.environ

        def pick(name, key, cast):
            value = overrides.get(name)
            if value is None and env.get(key):
                value = cast(env[key])
            return value

        ids = overrides.get("local_device_ids")
        return cls(coordinator=pick("coordinator", ENV_COORDINATOR, str),
                   num_processes=pick("num_processes", ENV_NUM_PROCESSES, int),
                   process_id=pick("process_id", ENV_PROCESS_ID, int),
                   local_device_ids=tuple(ids) if ids else None)


GOOGLE_PCI_VENDOR = "0x1ae0"  # TPU chips on a TPU VM's PCI bus (how JAX itself counts them)


def _tpu_chips() -> int:
    """TPU chips attached to this host, read from the PCI bus without touching a device."""
    count = 0
    for path in glob.glob("/sys/bus/pci/devices/*/vendor"):
        try:
            with open(path) as f:
                count += f.read().strip() == GOOGLE_PCI_VENDOR
        except OSError:
            continue
    return count


def _on_tpu() -> bool:
    """A TPU VM (chips on the bus) or a GKE / multislice TPU job (its environment variables).
    JAX then finds the workers itself: from the GCE metadata server on a TPU VM pod (no
    variable names them there), from TPU_WORKER_HOSTNAMES / MEGASCALE_* on GKE."""
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return (_tpu_chips() > 0 or len([h for h in hosts.split(",") if h]) > 1
            or bool(os.environ.get("MEGASCALE_COORDINATOR_ADDRESS")))


def initialize(spec: ClusterSpec = ClusterSpec()) -> bool:
    """Starts `jax.distributed` when this job spans several processes. Idempotent.

    Returns True when a multi-process runtime is (now) up.
    Raises ValueError naming the missing setting when an explicit spec is incomplete.
    """
    if jax.distributed.is_initialized():
        return True
    explicit = [spec.coordinator, spec.num_processes, spec.process_id]
    if any(v is not None for v in explicit):
        missing = [name for name, v in zip(("--coordinator", "--num-processes", "--process-id"), explicit) if v is None]
        if missing:
            raise ValueError(f"distributed start-up: {', '.join(missing)} missing (give all three, or none on TPU)")
        if spec.num_processes == 1:
            return False
        if not 0 <= spec.process_id < spec.num_processes:
            raise ValueError(f"--process-id {spec.process_id} is not in [0, {spec.num_processes})")
        log.info("jax.distributed: process %d of %d, coordinator %s", spec.process_id, spec.num_processes,
                 spec.coordinator)
        jax.distributed.initialize(spec.coordinator, spec.num_processes, spec.process_id,
                                   local_device_ids=list(spec.local_device_ids) if spec.local_device_ids else None)
        return True
    if _on_tpu():
        # On every TPU worker, pod or not: JAX reads the coordinator, the process count and this
        # worker's index from the TPU metadata (one worker: a one-process service, harmless).
        log.info("jax.distributed: TPU detected, initialising from the TPU metadata")
        try:
            jax.distributed.initialize()
        except ValueError as e:  # no TPU cluster JAX recognises (e.g. a bare TPU host): one process
            log.warning("jax.distributed: no TPU cluster metadata (%s); running as one process", e)
            return False
        return True
    return False


def is_coordinator() -> bool:
    """Process 0 writes logs, metrics and the resolved config."""
    return jax.process_index() == 0


def every_process(mine: bool) -> bool:
    """True when `mine` is true on every process (one tiny host all-gather on several
    processes). Lets all processes take the same branch where one alone could differ (its input
    ran out, its checkpoint shard is unreadable), so none is left waiting in a collective."""
    if jax.process_count() == 1:
        return mine
    from jax.experimental import multihost_utils

    return bool(np.min(multihost_utils.process_allgather(np.int32(mine))))


def max_over_processes(mine: int) -> int:
    """The largest of every process's `mine` (e.g. a code for what went wrong where)."""
    if jax.process_count() == 1:
        return mine
    from jax.experimental import multihost_utils

    return int(np.max(multihost_utils.process_allgather(np.int32(mine))))
