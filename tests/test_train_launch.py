"""`launch.py train` as users run it (subprocesses, tiny model, CPU): exact resume after SIGKILL,
preemption (SIGTERM) and resume on gs:// through a loopback emulator, two processes against one,
--init-from a converted checkpoint, and refusals of bad settings.

Every run starts from the same converted checkpoint (made here), and they share a persistent
compilation cache, so only the first run of each device layout compiles. Runs compute in
float32 and record each global batch's row digests (`debug.batch_digest`): what must be exact
is compared with `==`, what only reduction order can move is compared within a bound derived
from float32's epsilon and the step count (`tolerances.steps_atol`), never from one machine.
"""
import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx, traverse_util

from sf2t_jax.convert.native import save_native
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.models.qwen2_vl import Qwen2VL
from sf2t_jax.train.metrics import read_metrics
from gcs_emulator import free_port, storage_emulator
from tolerances import steps_atol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 12
# The recipe (LoRA on the LLM projections, merger trained, ViT frozen) at test size.
TRAIN = ["--config", "configs/sf2t.py:frames=4", "--config.input.max_length=64", f"--config.train.steps={STEPS}",
         "--config.checkpoint.every=6", "--config.log.every=1", "--config.export.final=false",
         "--config.model.dtype=float32", "--config.debug.batch_digest=true"]
NO_TB = "--config.log.tensorboard=false"  # TensorBoard is checked once, in the reference run


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


def _records(workdir):
    records = read_metrics(str(workdir))
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    return records


def _losses(workdir):
    return [r["loss"] for r in _records(workdir)]


def _digests(workdir):
    """Per step, the uint32 digest of every global batch row (train/digest.py)."""
    return [r["batch_digest"] for r in _records(workdir)]


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
    assert _digests(tmp_path) == _digests(reference)  # the same batches, steps 1-12
    assert _losses(tmp_path) == _losses(reference)  # bit for bit
    _assert_same_state(_state(tmp_path, 12), _state(reference, 12))


def test_ctrl_c_finishes_the_step_saves_and_exits_zero_then_resume_is_bit_exact(env, base, reference, tmp_path):
    stopped = _launch(env, tmp_path, "--init-from", base, "--config.debug.signal_at_step=8",
                      "--config.debug.signal=SIGINT", NO_TB)
    assert "signal 2 (SIGINT): stopping after the current step" in stopped.stderr
    assert "preempted: checkpoint 8 saved" in stopped.stderr and "Traceback" not in stopped.stderr
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["6", "8"]
    resumed = _launch(env, tmp_path, "--init-from", base, "--config.debug.signal_at_step=8",
                      "--config.debug.signal=SIGINT", NO_TB)
    assert "resumed from step 8" in resumed.stderr
    assert _digests(tmp_path) == _digests(reference) and _losses(tmp_path) == _losses(reference)


@pytest.fixture
def gcs(tmp_path):
    with storage_emulator(tmp_path) as emulator:
        yield emulator


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
    assert "signal 15 (SIGTERM): stopping after the current step" in stopped.stderr
    assert "preempted: checkpoint 9 saved" in stopped.stderr
    resumed = _launch(one, workdir, "--init-from", base, *plain, extra_env=gcs_env)
    assert "resumed from step 9" in resumed.stderr and "completed at step 12 of 12" in resumed.stderr
    for key, value in gcs_env.items():
        monkeypatch.setenv(key, value)
    assert _losses(workdir) == _losses(tmp_path)
    _assert_same_state(_state(workdir, 12), _state(tmp_path, 12))


def _launch_two_processes(env, workdir, base, *extra):
    """jax.distributed on localhost, 4 CPU devices each: fsdp = 2 processes (the across-slice
    axis) x 4 devices, the single-process reference's layout."""
    port = free_port()
    cmd = [sys.executable, os.path.join(ROOT, "launch.py"), "train", *TRAIN, "--workdir", str(workdir),
           "--init-from", base, NO_TB, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
           "--config.mesh.dcn=(1,2,1)", "--config.mesh.ici=(1,4,1)", *extra]
    procs = [subprocess.Popen(cmd + ["--process-id", str(i)], cwd=ROOT, env=_devices(env, 4), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=400) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    return [err for _, err in outputs]


def _expected_data_states(step, process_count):
    """Each process's input-iterator state after `step` batches, from the pipeline itself."""
    from sf2t_jax.configuration import load_config
    from sf2t_jax.experiment import from_config
    from sf2t_jax.train import model as model_lib
    from sf2t_jax.train.synthetic_batches import synthetic_dataset

    config = from_config(load_config(TRAIN[1], [a[len("--config."):] for a in TRAIN[2:]]))
    states = {}
    for i in range(process_count):
        iterator = iter(synthetic_dataset(config.input, config.data, model_lib.model_config(config), process_index=i,
                                          process_count=process_count)[0])
        for _ in range(step):
            next(iterator)
        states[f"process_{i}-of-{process_count}.json"] = iterator.get_state()
    return states


def test_two_processes_train_like_one(env, base, reference, tmp_path):
    """Two processes train on the same global batches as one and reach the same state, up to the
    order of their sums. A dropped or duplicated process share, or another batch order, changes
    the digests; every float result must agree within `tolerances.steps_atol`."""
    _launch_two_processes(env, tmp_path, base)
    # Exact: each step's global batch, row by row; what each process checkpointed.
    assert _digests(tmp_path) == _digests(reference)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == sorted(os.listdir(reference / "checkpoints")) == ["12", "6"]
    for step in (6, 12):
        data = tmp_path / "checkpoints" / str(step) / "data"
        for name, want in _expected_data_states(step, 2).items():
            assert json.loads((data / name).read_text()) == want, (step, name)
        for name, want in _expected_data_states(step, 1).items():
            assert json.loads((reference / "checkpoints" / str(step) / "data" / name).read_text()) == want
    # Reduction order only: every step's loss, and the final state (written by 2 processes, read by 1).
    ours, theirs = np.array(_losses(tmp_path)), np.array(_losses(reference))
    steps = np.arange(1, STEPS + 1)
    np.testing.assert_array_less(np.abs(ours - theirs), steps_atol(theirs, steps) + 1e-30)
    state, ref = _state(tmp_path, STEPS), _state(reference, STEPS)
    assert state.keys() == ref.keys()
    for key, want in ref.items():
        got = state[key]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        if key.startswith("frozen.") or not np.issubdtype(want.dtype, np.floating):
            np.testing.assert_array_equal(got, want, err_msg=key)  # never updated, or integers: exact
            continue
        # Per tensor, in norm: a single element near zero can flip its Adam step's sign, the
        # tensor as a whole moves by rounding only.
        diff = np.linalg.norm((got - want).astype(np.float64))
        assert diff <= steps_atol(np.linalg.norm(want.astype(np.float64)), STEPS, want.dtype), (key, diff)


def test_two_processes_train_in_bfloat16(env, base, tmp_path):
    """Smoke test of the recipe's bfloat16 compute on two processes: finite, falling losses
    (bfloat16 rounding depends on the CPU's kernels, so nothing here is compared with a reference)."""
    _launch_two_processes(env, tmp_path, base, "--config.model.dtype=bfloat16", "--config.train.lr=3e-3",
                          "--config.checkpoint.every=100")
    losses = np.array(_losses(tmp_path))
    assert np.isfinite(losses).all() and losses[-4:].mean() < losses[:4].mean(), losses


def test_when_one_process_runs_out_of_data_both_stop_at_the_same_step_with_a_checkpoint(env, base, tmp_path):
    """Process 1's input ends after 5 batches: neither process hangs in the next step's
    collectives; both end at step 5, input exhausted, and checkpoint 5 holds both shards."""
    errs = _launch_two_processes(env, tmp_path, base, "--config.debug.input_ends_at_step=5",
                                 "--config.debug.input_ends_process=1", "--config.checkpoint.every=100")
    assert "the input ran out after 5 of 12 steps (on another process)" in errs[0]
    assert "train: input_exhausted at step 5 of 12" in errs[0]  # process 0 logs the outcome
    assert "the input ran out after 5 of 12 steps\n" in errs[1]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["5"]
    assert sorted(os.listdir(tmp_path / "checkpoints" / "5" / "data")) == [
        "commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"]


def test_a_restart_loads_the_compiled_step_from_the_workdir_cache(env, base, tmp_path):
    """train.compilation_cache='workdir': the first start compiles the step into
    WORKDIR/compilation_cache; the restart after a preemption finds it there."""
    own = {k: v for k, v in env.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    steps = lambda: sorted(p.name for p in (tmp_path / "compilation_cache").iterdir() if "train_step" in p.name)
    stopped = _launch(own, tmp_path, "--init-from", base, NO_TB, "--config.debug.signal_at_step=3",
                      "--config.checkpoint.every=100")
    assert "preempted: checkpoint 3 saved" in stopped.stderr
    first = steps()
    assert len(first) == 1, first
    resumed = _launch(own, tmp_path, "--init-from", base, NO_TB, "--config.debug.signal_at_step=3",
                      "--config.checkpoint.every=100")
    assert "resumed from step 3" in resumed.stderr and steps() == first  # a hit: nothing new compiled


def test_bad_settings_are_refused_with_a_message_not_a_traceback(env, tmp_path):
    proc = _launch(env, tmp_path, "--config.mesh.ici=(3,1,1)", check=False, timeout=120)
    assert proc.returncode == 1 and "error: mesh.ici=(3, 1, 1) needs 3 devices, but 8 are available" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "checkpoints").exists()
