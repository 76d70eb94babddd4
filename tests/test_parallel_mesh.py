"""Meshes from (within-slice, across-slice) sizes, and jax.distributed start-up settings."""
import pytest

from sf2t_jax.parallel import distributed
from sf2t_jax.parallel.mesh import MESH_AXES, make_hybrid_mesh, resolve_sizes


def test_within_slice_sizes_fill_the_devices():
    assert dict(make_hybrid_mesh((1, -1, 1)).shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    mesh = make_hybrid_mesh((2, 1, -1))
    assert mesh.axis_names == MESH_AXES and dict(mesh.shape) == {"data": 2, "fsdp": 1, "tensor": 4}
    assert len(set(mesh.devices.flat)) == 8


def test_mesh_sizes_that_do_not_fit_are_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"mesh.ici=\(3, 1, 1\) needs 3 devices, but 8 are available"):
        make_hybrid_mesh((3, 1, 1))
    with pytest.raises(ValueError, match=r"mesh.ici=\(-1, -1, 1\): at most one size may be -1"):
        make_hybrid_mesh((-1, -1, 1))
    with pytest.raises(ValueError, match=r"mesh.ici=\(1, 3, -1\): 3 does not divide the 8 devices"):
        make_hybrid_mesh((1, 3, -1))
    # One process and no TPU slices: there is nothing for a DCN axis to span.
    with pytest.raises(ValueError, match=r"mesh.dcn=\(2, 1, 1\) asks for 2 slices, but the devices form 1"):
        make_hybrid_mesh((1, -1, 1), dcn=(2, 1, 1))
    with pytest.raises(ValueError, match=r"mesh.dcn=\(-1, 1, 1\)"):
        make_hybrid_mesh((1, -1, 1), dcn=(-1, 1, 1))
    assert resolve_sizes((1, -1, 2), 8, "x") == (1, 4, 2)


def test_cluster_spec_reads_flags_over_environment(monkeypatch):
    monkeypatch.setenv(distributed.ENV_COORDINATOR, "10.0.0.1:1234")
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "4")
    monkeypatch.setenv(distributed.ENV_PROCESS_ID, "2")
    spec = distributed.ClusterSpec.from_env(process_id=3)
    assert (spec.coordinator, spec.num_processes, spec.process_id) == ("10.0.0.1:1234", 4, 3)


def test_incomplete_or_inconsistent_cluster_flags_are_refused(monkeypatch):
    for key in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID,
                "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValueError, match="--num-processes, --process-id missing"):
        distributed.initialize(distributed.ClusterSpec(coordinator="127.0.0.1:1"))
    with pytest.raises(ValueError, match=r"--process-id 2 is not in \[0, 2\)"):
        distributed.initialize(distributed.ClusterSpec("127.0.0.1:1", 2, 2))
    # A single process (explicitly, or nothing set on a non-TPU machine): no coordination service.
    assert distributed.initialize(distributed.ClusterSpec("127.0.0.1:1", 1, 0)) is False
    assert distributed.initialize(distributed.ClusterSpec.from_env()) is False


def test_select_devices_takes_a_prefix_or_refuses():
    import jax
    import pytest as _pytest

    from sf2t_jax.parallel.mesh import make_mesh, select_devices

    assert select_devices(0) == jax.devices()
    assert select_devices(2) == jax.devices()[:2]
    assert make_mesh(fsdp=-1, devices=select_devices(2)).size == 2
    with _pytest.raises(ValueError, match=r"mesh.devices=9: expected 0 \(all\) or 1..8"):
        select_devices(9)


_TPU_VM_SCRIPT = """
import socket, sys
from unittest import mock
import jax
from jax._src.clusters import cloud_tpu_cluster
from sf2t_jax.parallel import distributed

# This host pretends to be worker 0 of a one-worker TPU VM pod: our chip detection and JAX's
# metadata queries are mocked (none may leave the machine); jax.distributed.initialize itself
# runs for real, on loopback.
def no_network(*args, **kwargs):
    raise AssertionError(f"a metadata query escaped the mock: {args}")

tpu = cloud_tpu_cluster.GceTpuCluster
with mock.patch.object(cloud_tpu_cluster, "get_metadata", no_network), \\
        mock.patch.object(cloud_tpu_cluster, "get_tpu_env_value", lambda key: None), \\
        mock.patch.object(distributed, "_tpu_chips", return_value=4), \\
        mock.patch.object(tpu, "is_env_present", classmethod(lambda cls: True)), \\
        mock.patch.object(tpu, "_get_worker_list_in_slice", staticmethod(lambda: ["127.0.0.1"])), \\
        mock.patch.object(tpu, "_get_process_id_in_slice", staticmethod(lambda: 0)):
    assert distributed.initialize() is True
assert jax.distributed.is_initialized() and jax.process_count() == 1
print("initialised")
"""


def test_a_tpu_vm_initialises_jax_distributed_from_its_metadata(tmp_path):
    """No TPU_WORKER_HOSTNAMES on a TPU VM pod: the chips on the bus are enough to hand over to
    JAX's own cluster detection."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TPU_", "MEGASCALE_"))}
    env.update(JAX_PLATFORMS="cpu", JAX_COORDINATOR_PORT=str(port))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", _TPU_VM_SCRIPT], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "initialised" in proc.stdout, proc.stderr[-2000:]


def test_no_tpu_no_flags_is_one_process(monkeypatch):
    monkeypatch.setattr(distributed, "_tpu_chips", lambda: 0)
    for key in ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    assert distributed._on_tpu() is False
