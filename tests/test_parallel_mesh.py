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
