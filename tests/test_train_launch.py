"""`launch.py train` as users run it (subprocesses, tiny model, CPU): exact resume after SIGKILL,
preemption (SIGTERM) and resume on gs:// through a loopback emulator, two processes against one,
--init-from a converted checkpoint, and refusals of bad settings.

Every run starts from the same converted checkpoint (made here), and they share a persistent
compilation cache, so only the first run of each device layout compiles.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx, traverse_util

from sf2t_jax.convert.native import save_native
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.models.qwen2_vl import Qwen2VL
from sf2t_jax.train.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 12
# The recipe (LoRA on the LLM projections, merger trained, ViT frozen) at test size.
TRAIN = ["--config", "configs/sf2t.py:frames=4", "--config.input.max_length=64", f"--config.train.steps={STEPS}",
         "--config.checkpoint.every=6", "--config.log.every=1", "--config.export.final=false"]
NO_TB = "--config.log.tensorboard=false"  # TensorBoard is checked once, in the reference run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("jax_cache")
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A converted tiny checkpoint (our native format) every run starts from."""
    directory = tmp_path_factory.mktemp("base") / "native"
    save_native(Qwen2VL(qwen2vl_tiny(), rngs=nnx.Rngs(42)), str(directory))
    return str(directory)


def _launch(env, workdir, *extra, check=True, timeout=300, extra_env=None):
    cmd = [sys.executable, os.path.join(ROOT, "launch.py"), "train", *TRAIN, "--workdir", str(workdir), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env={**env, **(extra_env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _losses(workdir):
    records = read_metrics(str(workdir))
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    return [r["loss"] for r in records]


def _state(workdir, step):
    """The saved TrainState as numpy, read onto one device whatever mesh wrote it."""
    path = f"{workdir}/checkpoints/{step}/state"
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with ocp.StandardCheckpointer() as checkpointer:
        meta = checkpointer.metadata(path).item_metadata.tree
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta)
        tree = checkpointer.restore(path, target)
    return {jax.tree_util.keystr(path, simple=True, separator="."): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def reference(env, base, tmp_path_factory):
    """12 steps, never interrupted."""
    workdir = tmp_path_factory.mktemp("reference")
    proc = _launch(env, workdir, "--init-from", base)
    assert "fresh start from" in proc.stderr and "completed at step 12 of 12" in proc.stderr
    return workdir


def test_reference_run_trains_adapters_only_and_writes_what_it_should(reference, base):
    assert sorted(os.listdir(reference / "checkpoints")) == ["12", "6"]
    assert os.listdir(reference / "tensorboard") and json.loads((reference / "config.json").read_text())["train"][
        "steps"] == STEPS
    state = _state(reference, 12)
    # The frozen base is bit for bit the converted checkpoint; the adapters (B starts at 0) moved.
    with ocp.StandardCheckpointer() as checkpointer:
        converted = traverse_util.flatten_dict(checkpointer.restore(f"{base}/params"))
    for key, value in converted.items():
        name = ".".join(map(str, key))
        frozen = state.get(f"frozen.{name}")
        if frozen is not None:
            np.testing.assert_array_equal(frozen, np.asarray(value), err_msg=name)
    assert sum(k.startswith("frozen.") for k in state) == 51
    assert np.abs(state["params.model.layers.0.self_attn.q_proj.lora_b"]).max() > 0
    assert int(state["step"]) == STEPS


def test_sigkill_after_a_checkpoint_then_resume_is_bit_exact(env, base, reference, tmp_path):
    killed = _launch(env, tmp_path, "--init-from", base, "--config.debug.signal_at_step=9",
                     "--config.debug.signal=SIGKILL", NO_TB, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["6"]  # step 6 committed, 7-8 lost
    resumed = _launch(env, tmp_path, "--init-from", base, "--config.debug.signal_at_step=9",
                      "--config.debug.signal=SIGKILL", NO_TB)
    assert "resumed from step 6" in resumed.stderr
    assert _losses(tmp_path) == _losses(reference)  # bit for bit, steps 1-12
    _assert_same_state(_state(tmp_path, 12), _state(reference, 12))


@pytest.fixture
def gcs(tmp_path):
    """gcp-storage-emulator on 127.0.0.1 (NOTES.md): the env a gs:// workdir needs."""
    port, bucket = _free_port(), "sf2t-test"
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator"), "start",
                               "--host", "127.0.0.1", "--port", str(port), "--default-bucket", bucket, "--in-memory",
                               "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline, "the storage emulator did not start"
            time.sleep(0.2)
    url = f"http://127.0.0.1:{port}"
    gcs_env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "dummy",
               "FSSPEC_GS": '{"token": "anon"}', "NO_GCE_CHECK": "true", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
               "GOOGLE_CLOUD_PROJECT": "test"}
    yield bucket, gcs_env
    server.terminate()
    server.wait(timeout=10)


def _devices(env, n):
    return {**env, "XLA_FLAGS": env.get("XLA_FLAGS", "").replace("device_count=8", f"device_count={n}")}


def test_sigterm_saves_and_exits_zero_then_resume_from_gcs_is_bit_exact(env, base, gcs, tmp_path, monkeypatch):
    bucket, gcs_env = gcs
    workdir = f"gs://{bucket}/runs/preempted"
    # The emulator is a single-threaded stub that slows down with every object it holds, and
    # lacks the conditional writes OCDBT's manifest needs (real GCS has them). So: one device
    # (one object per array), plain per-array checkpoints, only the preemption and final saves,
    # frozen parameters re-read from --init-from on resume, and few requests in flight.
    one = _devices(env, 1)
    plain = ("--config.checkpoint.ocdbt=false", "--config.checkpoint.every=100", "--config.checkpoint.save_frozen=false",
             NO_TB)
    gcs_env = {**gcs_env, "TENSORSTORE_GCS_REQUEST_CONCURRENCY": "1", "TENSORSTORE_HTTP_REQUEST_CONCURRENCY": "1"}
    _launch(one, tmp_path, "--init-from", base, *plain)  # the uninterrupted twin, on local disk
    plain += ("--config.debug.signal_at_step=9",)
    stopped = _launch(one, workdir, "--init-from", base, *plain, extra_env=gcs_env)
    assert "signal 15: stopping after the current step" in stopped.stderr
    assert "preempted: checkpoint 9 saved" in stopped.stderr
    resumed = _launch(one, workdir, "--init-from", base, *plain, extra_env=gcs_env)
    assert "resumed from step 9" in resumed.stderr and "completed at step 12 of 12" in resumed.stderr
    for key, value in gcs_env.items():
        monkeypatch.setenv(key, value)
    assert _losses(workdir) == _losses(tmp_path)
    _assert_same_state(_state(workdir, 12), _state(tmp_path, 12))


def test_two_processes_train_like_one(env, base, reference, tmp_path):
    """jax.distributed on localhost, 4 CPU devices each: the same global batches, the same losses."""
    port = _free_port()
    cmd = [sys.executable, os.path.join(ROOT, "launch.py"), "train", *TRAIN, "--workdir", str(tmp_path),
           "--init-from", base, NO_TB, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
           # fsdp = 2 processes (the across-slice axis) x 4 devices each: the reference's layout
           "--config.mesh.dcn=(1,2,1)", "--config.mesh.ici=(1,4,1)"]
    procs = [subprocess.Popen(cmd + ["--process-id", str(i)], cwd=ROOT, env=_devices(env, 4), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=400) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    ours, theirs = _losses(tmp_path), _losses(reference)
    # Cross-process sums reduce in another order than one process's; Adam amplifies the rounding
    # over 12 steps (measured: max 8.7e-6 relative at step 11, 1 ulp over the first 8). Another
    # batch order or a missing shard moves the loss by 1e-3 or more.
    np.testing.assert_allclose(ours, theirs, rtol=3e-5)
    state, ref = _state(tmp_path, 12), _state(reference, 12)  # written by 2 processes, read by 1
    for key in ref:
        # bfloat16 compute: a gradient summed in another order can round to the neighbouring
        # bfloat16 value (2**-8 relative) in a handful of elements; all else agrees to 1e-4.
        close = np.isclose(state[key], ref[key], rtol=1e-4, atol=1e-6)
        assert close.mean() > 0.999, (key, close.mean())
        np.testing.assert_allclose(state[key], ref[key], rtol=1e-2, atol=1e-6, err_msg=key)


def test_bad_settings_are_refused_with_a_message_not_a_traceback(env, tmp_path):
    proc = _launch(env, tmp_path, "--config.mesh.ici=(3,1,1)", check=False, timeout=120)
    assert proc.returncode == 1 and "error: mesh.ici=(3, 1, 1) needs 3 devices, but 8 are available" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "checkpoints").exists()
