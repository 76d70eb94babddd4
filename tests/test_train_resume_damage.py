"""`launch.py train` resuming a workdir whose checkpoints are damaged or of another shape, as a
user runs it (subprocesses, tiny model, CPU).

One run is stopped (SIGTERM) after step 7 with checkpoints 3, 6 and 7; each test damages a copy
of it and resumes. A damaged latest checkpoint is set aside (checkpoints/damaged/) and the run
goes on from checkpoint 6, reproducing the uninterrupted run's batches and losses bit for bit.
"""
import hashlib
import os
import re
import shutil

import numpy as np
import pytest
import tensorstore as ts
from etils import epath

from gcs_emulator import storage_emulator
from test_train_launch import NO_TB, _devices, _digests, _launch, _losses, base, env, reference  # noqa: F401

EVERY_3 = ("--config.checkpoint.every=3", NO_TB)
STOP = (*EVERY_3, "--config.debug.signal_at_step=7")  # SIGTERM: stop after step 7


@pytest.fixture(scope="module")
def stopped(env, base, tmp_path_factory):
    """A workdir stopped after step 7 of 12: checkpoints 3, 6, 7 (7 is the one damaged)."""
    workdir = tmp_path_factory.mktemp("stopped")
    proc = _launch(env, workdir, "--init-from", base, *STOP)
    assert "preempted: checkpoint 7 saved" in proc.stderr
    assert sorted(os.listdir(workdir / "checkpoints")) == ["3", "6", "7"]
    return workdir


def _copy(stopped, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(stopped, workdir)
    return workdir


def _snapshot(workdir):
    """{relative path: sha256 of its bytes} of every file under the workdir."""
    out = {}
    for root, _, files in os.walk(workdir):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, workdir)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


# ---- ways to damage a file: what a full disk, a crashed copy or bad media leave -----------------
def _remove(path):
    path.unlink()


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zero_fill(path):
    path.write_bytes(bytes(path.stat().st_size))


def _corrupt(path):
    """Flips 16 bytes in the middle (the file keeps its size). Where they land depends on the
    order orbax's threads wrote the chunks: a raw zstd block reads back silently wrong (the
    digests catch it), a compressed block or a b-tree node fails to decode (the read fails)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def _flip_one_value(state_dir):
    """Flips one mantissa bit of the first value of the first parameter array, rewritten through
    tensorstore so every format check passes: the silent media error only the digests see."""
    kvstore = {"driver": "ocdbt", "base": f"file://{state_dir}/"}
    names = sorted({key.decode().split("/")[0] for key in ts.KvStore.open(kvstore).result().list().result()})
    name = next(n for n in names if n.startswith("params."))
    array = ts.open({"driver": "zarr", "kvstore": {**kvstore, "path": name + "/"}}).result()
    values = array.read().result()
    assert values.dtype == np.float32, (name, values.dtype)
    flat = values.reshape(-1).view(np.uint32).copy()
    flat[0] ^= 1 << 20
    array.write(flat.view(np.float32).reshape(values.shape)).result()
    return name


def _empty(step_dir):
    shutil.rmtree(step_dir)
    step_dir.mkdir()


def _damage(step_dir, how, pattern):
    if how is _empty:
        return _empty(step_dir)
    if how is _flip_one_value:
        return _flip_one_value(step_dir / pattern)
    paths = sorted(step_dir.glob(pattern))
    assert paths, pattern
    for path in paths:
        how(path)


ARRAY_DATA = "state/ocdbt.process_0/d/*"  # every array-data file of the OCDBT layout
ITERATOR = "data/process_0-of-1.json"
# (damage, files of checkpoint 7, the item reported, what the report says)
CASES = {
    "remove-array-metadata": (_remove, "state/_METADATA", "state", "metadata"),
    "truncate-array-data": (_truncate, ARRAY_DATA, "state", ""),
    "zero-fill-iterator-state": (_zero_fill, ITERATOR, "data", "JSONDecodeError"),
    # Either the read fails or the digests catch it, depending on where the bytes land.
    "corrupt-array-data": (_corrupt, ARRAY_DATA, "state", ""),
    # A value silently wrong in a well-formed file: only the digests saved with the arrays see it.
    "flip-one-value": (_flip_one_value, "state", "state", "1 arrays differ from their saved digests: params."),
    "truncate-index": (_truncate, "state/manifest.ocdbt", "state", ""),
    "empty-step-folder": (_empty, None, "step folder", "it is empty"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_latest_checkpoint_is_set_aside_and_resume_from_the_previous_is_bit_exact(
        env, base, reference, stopped, tmp_path, case):
    how, pattern, item, problem = CASES[case]
    workdir = _copy(stopped, tmp_path)
    _damage(workdir / "checkpoints" / "7", how, pattern)
    damaged_files = _snapshot(workdir / "checkpoints" / "7")

    resumed = _launch(env, workdir, "--init-from", base, *STOP)

    reports = [line for line in resumed.stderr.splitlines() if "checkpoint 7: " + item + " unreadable: " in line]
    assert len(reports) == 1 and problem in reports[0], resumed.stderr[-3000:]
    assert "resuming from checkpoint 6, the newest readable one" in resumed.stderr
    assert "resumed from step 6" in resumed.stderr and "Traceback" not in resumed.stderr
    # Moved aside whole (renamed, not deleted), out of orbax's sight; training went on past it.
    assert sorted(os.listdir(workdir / "checkpoints")) == ["12", "6", "9", "damaged"]
    aside = sorted(os.listdir(workdir / "checkpoints" / "damaged"))
    assert len(aside) == 2 and aside[1] == "README.txt", aside
    assert re.fullmatch(rf"7-{item.replace(' ', '_')}-\d{{8}}T\d{{6}}Z", aside[0]), aside
    assert _snapshot(workdir / "checkpoints" / "damaged" / aside[0]) == damaged_files
    assert _digests(workdir) == _digests(reference)  # the same batches, steps 1-12
    assert _losses(workdir) == _losses(reference)  # bit for bit


def test_with_every_checkpoint_damaged_the_run_refuses_unless_a_fresh_start_is_allowed(
        env, base, reference, stopped, tmp_path):
    workdir = _copy(stopped, tmp_path)
    checkpoints = workdir / "checkpoints"
    _damage(checkpoints / "7", _remove, "state/_METADATA")
    _damage(checkpoints / "6", _zero_fill, ITERATOR)
    _damage(checkpoints / "3", _empty, None)
    before = _snapshot(workdir)

    refused = _launch(env, workdir, "--init-from", base, *STOP, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: no readable checkpoint in {checkpoints} (7: state; 6: data; 3: step folder); "
                           "nothing was moved. Set checkpoint.allow_fresh_start=true"), last
    assert _snapshot(workdir) == before  # nothing moved, nothing written (config.json included)

    # (Without the fault injection, which would stop a fresh start again at step 7.)
    fresh = _launch(env, workdir, "--init-from", base, *EVERY_3, "--config.checkpoint.allow_fresh_start=true")
    assert "no readable checkpoint; 3 set aside" in fresh.stderr and "fresh start from" in fresh.stderr
    aside = sorted(os.listdir(checkpoints / "damaged"))
    assert [name.split("-")[:2] for name in aside[:3]] == [["3", "step_folder"], ["6", "data"], ["7", "state"]]
    assert _digests(workdir) == _digests(reference) and _losses(workdir) == _losses(reference)


def test_another_lora_rank_over_a_workdir_is_refused_naming_the_arrays_and_moves_nothing(env, base, stopped, tmp_path):
    workdir = _copy(stopped, tmp_path)
    before = _snapshot(workdir)
    refused = _launch(env, workdir, "--init-from", base, *STOP, "--config.lora.rank=4", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr and "unreadable" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: checkpoint 7 in {workdir / 'checkpoints'} has another shape than the config ("), last
    # The adapters' shapes, named with the saved and the configured shape (rank 16 vs 4).
    assert "params.model.layers.0.mlp.down_proj.lora_a (128, 16) saved, (128, 4) in the config" in last
    assert "Start a new run with another --workdir" in last and "strict" not in last
    assert _snapshot(workdir) == before


def test_on_gcs_a_damaged_latest_checkpoint_is_set_aside_and_resume_is_bit_exact(env, base, tmp_path, monkeypatch):
    """The same fallback on gs:// (loopback emulator; one device and plain per-array files, as
    test_train_launch's GCS test explains), against an uninterrupted local twin."""
    one = _devices(env, 1)
    plain = ("--config.checkpoint.ocdbt=false", "--config.checkpoint.every=6", "--config.checkpoint.save_frozen=false",
             NO_TB)
    twin = tmp_path / "twin"
    _launch(one, twin, "--init-from", base, *plain)
    with storage_emulator(tmp_path) as (bucket, gcs_env):
        gcs_env = {**gcs_env, "TENSORSTORE_GCS_REQUEST_CONCURRENCY": "1", "TENSORSTORE_HTTP_REQUEST_CONCURRENCY": "1"}
        workdir = f"gs://{bucket}/runs/damaged"
        stop = (*plain, "--config.debug.signal_at_step=9")
        assert "preempted: checkpoint 9 saved" in _launch(one, workdir, "--init-from", base, *stop,
                                                          extra_env=gcs_env).stderr
        for key, value in gcs_env.items():
            monkeypatch.setenv(key, value)
        checkpoints = epath.Path(workdir) / "checkpoints"
        (checkpoints / "9" / ITERATOR).unlink()
        resumed = _launch(one, workdir, "--init-from", base, *stop, extra_env=gcs_env)
        assert "checkpoint 9: data unreadable: " in resumed.stderr and "resumed from step 6" in resumed.stderr
        aside = sorted(p.name for p in (checkpoints / "damaged").iterdir())
        assert len(aside) == 2 and aside[0].startswith("9-data-") and aside[1] == "README.txt", aside
        assert (checkpoints / "damaged" / aside[0] / "state").exists() and not (checkpoints / "9").exists()
        assert _losses(workdir) == _losses(twin)
