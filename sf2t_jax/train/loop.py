"""The trainer, top to bottom: mesh, model, data, optimizer, state (resumed or fresh), loop.

    result = train(experiment, "gs://bucket/run")  # or launch.py train --config ... --workdir ...

`experiment` is the typed `sf2t_jax.experiment.Experiment` (a configs/sf2t.py ConfigDict is
converted, every field checked, before anything is built).

Every process of a multi-host job runs this same function; process 0 writes logs, metrics
and the resolved config. Running it again on the same workdir resumes from the latest
checkpoint: the same batches, the same losses, bit for bit. SIGTERM (preemption) saves the
current step and returns; the caller exits 0 and the next start resumes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
from etils import epath
from flax import nnx, traverse_util

from sf2t_jax import experiment as experiment_lib
from sf2t_jax.errors import InputError
from sf2t_jax.experiment import Experiment, ExperimentLike
from sf2t_jax.models import lora
from sf2t_jax.models import family as families
from sf2t_jax.models.layers import DTYPES
from sf2t_jax.parallel.distributed import every_process
from sf2t_jax.parallel.mesh import select_devices
from sf2t_jax.train import checkpoint as checkpoint_lib
from sf2t_jax.train import data as data_lib
from sf2t_jax.train import heldout as heldout_lib
from sf2t_jax.train import model as model_lib
from sf2t_jax.train import setup as setup_lib
from sf2t_jax.train import state as state_lib
from sf2t_jax.train.errors import TrainConfigError
from sf2t_jax.train.metrics import MetricsWriter

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    """How a call to `train` ended.

    status: 'completed' (reached the last step), 'preempted' (SIGTERM: saved, resume later),
      'input_exhausted' (the data ran out before train.steps) or 'already_complete'.
    step: optimizer steps done; history: this session's per-step metric records;
    compiles: how often the train step was traced (1 = compiled once);
    heldout: the last held-out evaluation's record (train/heldout.py), None without one.
    """

    status: str
    step: int
    total_steps: int
    history: list[dict[str, Any]]
    compiles: int
    workdir: str
    heldout: dict[str, Any] | None = None


class _Preemption:
    """SIGTERM or Ctrl-C (SIGINT) -> a flag the loop checks after every step (the step in
    flight completes, is saved, and the run exits 0); a second Ctrl-C stops at once.

    With several processes JAX's coordination service catches SIGTERM itself and every
    process learns at the same step (`reached_preemption_sync_point`), so they all save the
    same step; installing a Python handler would hide the signal from it.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self.multihost = jax.process_count() > 1
        self._previous = {}
        if not self.multihost:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, frame):
        del frame
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt  # the second Ctrl-C: do not wait for the step and the save
        log.warning("signal %d (%s): stopping after the current step, saving a checkpoint%s", signum,
                    signal.Signals(signum).name, "; Ctrl-C again to stop at once" if signum == signal.SIGINT else "")
        self.requested = True

    def reached(self, step: int) -> bool:
        if self.multihost:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(step)
        return self.requested

    def close(self):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def train(config: ExperimentLike, workdir: str) -> TrainResult:
    # ================================================================================
    # Devices and workdir
    # ================================================================================
    workdir = str(workdir).rstrip("/")
    primary = jax.process_index() == 0
    with _config_errors():
        config = experiment_lib.of(config)  # every field's type, range, name and path: nothing built yet
        model = setup_lib.build_model(config, select_devices(config.mesh.devices))
    mesh, rules, shape, parts = model.mesh, model.rules, model.shape, model.parts
    log.info("mesh %s over %d devices (%d processes), rules %r", dict(mesh.shape), mesh.size, jax.process_count(),
             config.mesh.rules)
    if primary:
        epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    with _config_errors():
        _use_compilation_cache(config.train.compilation_cache, workdir)

    # ================================================================================
    # Model: shape, adapters, trainable vs frozen, shardings (built above; nothing allocated yet)
    # ================================================================================
    n_train, n_frozen = model_lib.count(parts.abstract["trainable"]), model_lib.count(parts.abstract["frozen"])
    log.info("model %s, method %s: %s trainable parameters, %s frozen (%.2f%% trained)", config.model.name,
             config.method, f"{n_train:,}", f"{n_frozen:,}", 100.0 * n_train / max(n_train + n_frozen, 1))

    # ================================================================================
    # Data
    # ================================================================================
    with _config_errors():
        batches = data_lib.open_batches(config, shape, mesh, rules)
        geometry = batches.geometry
        total_steps = data_lib.total_steps(config, geometry)
        accum = config.train.grad_accum
    log.info("batches: %d rows x %d tokens, %d slices of %s patches; %d steps (%.2f epochs), %d micro-steps each",
             geometry.batch_size, geometry.length, geometry.slices, geometry.grid_hw, total_steps,
             total_steps / max(geometry.steps_per_epoch, 1), accum)

    # ================================================================================
    # Optimizer, shardings and the jitted train step (the planner builds the same: train/setup.py)
    # ================================================================================
    with _config_errors():
        built = setup_lib.build_step(config, model, geometry, total_steps)
        ckpt = checkpoint_lib.Checkpointer(workdir, config.checkpoint)
    tx, shardings, train_step = built.tx, built.state_shardings, built.step

    resolved = config.recorded_config()  # the config as given, for config.json and each checkpoint
    resolved["train"]["steps"] = total_steps

    # ================================================================================
    # State: resume from the newest readable checkpoint, or start fresh
    # ================================================================================
    resumed = None
    if ckpt.latest_step() is not None:
        need = ("extra",) if ckpt.save_frozen else ("frozen", "extra")
        values = model_lib.initial_values(parts, config, mesh, rules, only=need)
        target = state_lib.with_shardings(state_lib.abstract_state(parts, tx), shardings)
        if not ckpt.save_frozen:
            target = target.replace(frozen=values["frozen"])
        resumed = ckpt.restore_latest(target, batches)  # ResumeError: none readable, or another shape
    if resumed is not None:
        latest, state = resumed
        _warn_config_changes(ckpt.saved_config(latest), resolved)
        log.info("resumed from step %d", latest)
    else:
        latest = None
        values = model_lib.initial_values(parts, config, mesh, rules)
        state = state_lib.create(values["trainable"], values["frozen"], tx, config.seed, shardings)
        log.info("fresh start%s", f" from {config.init_from}" if config.init_from else " (random init)")
    extra = values["extra"]
    step = int(jax.device_get(state.step))
    if primary:  # written once the state is settled: a refused resume leaves the workdir as it was
        (epath.Path(workdir) / "config.json").write_text(json.dumps(resolved, indent=2, default=str))
    if step >= total_steps:
        log.info("workdir %s is complete (step %d of %d)", workdir, step, total_steps)
        _export(config, workdir, parts, state, extra)
        ckpt.close()
        return TrainResult("already_complete", step, total_steps, [], 0, workdir, heldout_lib.read_last(workdir))
    evaluator = None
    with _config_errors():  # drawn only when there is training left (a finished workdir needs none)
        # the fixed held-out samples and answer priors
        heldout_set = heldout_lib.open_heldout(config, families.row_format(model.shape))
    if heldout_set is not None:
        evaluator = heldout_lib.make_evaluator(config, heldout_set, model, built, geometry, workdir=workdir,
                                               first_step=step, total_steps=total_steps)

    # ================================================================================
    # Loop
    # ================================================================================
    metrics = MetricsWriter(workdir, first_step=step, total_steps=total_steps, every=config.log.every,
                            task_names=geometry.task_names, tensorboard=config.log.tensorboard,
                            flush_seconds=float(config.log.flush_seconds))
    preemption = _Preemption()
    status, first_step, last_saved = "completed", step, step
    fresh_session = latest is None  # fault injection fires only here, so a restart goes on
    try:
        while step < total_steps:
            if fresh_session and step + 1 == config.debug.signal_at_step:
                _inject_signal(config.debug.signal, ckpt)
            batch = _next_batch(batches, step, config.debug)
            if not every_process(batch is not None):  # all stop at the same step, none hangs
                status = "input_exhausted"
                log.warning("the input ran out after %d of %d steps%s", step, total_steps,
                            "" if batch is None else " (on another process)")
                break
            t0 = time.time()
            state, step_metrics = train_step(state, extra, batch)
            step += 1
            if step == first_step + 1:  # the first call of this session compiles
                log.info("train step compiled in %.1fs", time.time() - t0)
                metrics.restart_clock()
            metrics.add(step, step_metrics)
            if metrics.due(step):
                metrics.write()
                _check_skips(batches, config, workdir, final=False)
            if evaluator is not None and evaluator.due(step):
                evaluator.evaluate(step, state, extra)
            stop = preemption.reached(step)
            if ckpt.due(step) or step == total_steps or stop:
                ckpt.save(step, state, batches, resolved)
                last_saved = step
                metrics.flush(force=True)
            if stop:
                status = "preempted"
                log.warning("preempted: checkpoint %d saved; run the same command to resume", step)
                break
        if step > last_saved:  # the input ran out between checkpoints
            ckpt.save(step, state, batches, resolved)
    finally:
        preemption.close()
        metrics.close()
        ckpt.close()
    if status != "preempted":
        _check_skips(batches, config, workdir, final=True)
        if evaluator is not None and (evaluator.last or {}).get("step") != step:  # the input ran out early
            evaluator.evaluate(step, state, extra)

    # ================================================================================
    # Export: LoRA merged into the weights, our native format (launch.py convert --to-hf)
    # ================================================================================
    if status != "preempted":
        _export(config, workdir, parts, state, extra)
    return TrainResult(status, step, total_steps, metrics.history, train_step.traces, workdir,
                       evaluator.last if evaluator is not None else None)


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _config_errors():
    """The set-up's refusals of bad input (`InputError`: a config field, path or data folder
    that cannot work, named in the message) come out as TrainConfigError, the error `train`
    raises for bad input; the command line prints it in one line. Any other exception is a bug
    and keeps its type and traceback (a ValueError from a typo is not a config error)."""
    try:
        yield
    except TrainConfigError:
        raise
    except InputError as e:
        raise TrainConfigError(e.args[0] if e.args else str(e)) from e


def _next_batch(batches, step: int, debug: experiment_lib.DebugSettings) -> dict | None:
    """The next global batch, or None when this process's input is exhausted (or, for tests,
    `debug.input_ends_at_step` says this process's input ends here)."""
    if jax.process_index() == debug.input_ends_process and step == debug.input_ends_at_step:
        log.warning("debug: this process's input ends at step %d", step)
        return None
    try:
        return next(batches)
    except StopIteration:
        return None


def _check_skips(batches, config: Experiment, workdir: str, *, final: bool) -> None:
    """Stops the run when a task lost more than `train.max_skip_share` of its samples to one
    skip reason (`SkipCounter.check_share`; every process agrees, so none hangs); writes the
    skip rates per task and reason to WORKDIR/input_skips.json at the end and when stopping."""
    skips = getattr(batches.host, "skips", None)  # video input only: synthetic rows never skip
    if skips is None:
        return
    from sf2t_jax.input.skips import SkipShareError

    error = None
    try:
        skips.check_share(float(config.train.max_skip_share), final=final, limit_name="train.max_skip_share",
                          length_name="input.max_length")
    except SkipShareError as e:
        error = e
    if (final or error is not None) and jax.process_index() == 0:
        rates = skips.rates()
        (epath.Path(workdir) / "input_skips.json").write_text(json.dumps(
            {"limit": float(config.train.max_skip_share), "stopped": error is not None,
             "note": "process 0's share of the input", "tasks": rates}, indent=1))
        for task, r in rates.items():
            shares = ", ".join(f"{k} {v:.1%}" for k, v in r["share"].items()) or "none skipped"
            log.info("input skips: %s: %s of %d drawn", task, shares, r["drawn"])
    if not every_process(error is None):
        raise error or SkipShareError("input: another process's input passed train.max_skip_share (see its log)")


def _use_compilation_cache(setting: str, workdir: str) -> None:
    """`train.compilation_cache`: 'workdir' (the default: $JAX_COMPILATION_CACHE_DIR when set,
    else WORKDIR/compilation_cache), 'off', or a directory (local or gs://). A resumed run then
    loads the compiled step instead of compiling it again (minutes for a 7B step on TPU)."""
    if setting == "off":
        return
    if setting == "workdir":
        path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or f"{workdir}/compilation_cache"
    else:
        path = setting
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # cache every program of the run
    log.info("compilation cache: %s", path)


def _warn_config_changes(saved: dict | None, current: dict) -> None:
    if saved is None:
        return
    flat_saved = traverse_util.flatten_dict(saved, sep=".")
    flat_now = traverse_util.flatten_dict(json.loads(json.dumps(current, default=str)), sep=".")
    changed = sorted(k for k in flat_now.keys() | flat_saved.keys()
                     if not k.startswith("debug.") and flat_now.get(k) != flat_saved.get(k))
    if changed:
        log.warning("resuming with a config that differs from the checkpoint's in: %s (a resumed run is only "
                    "identical to an uninterrupted one when nothing that affects training changed)", ", ".join(changed))


def _inject_signal(name: str, ckpt) -> None:
    """Fault injection (`debug.signal_at_step`): wait for checkpoints in flight, then signal."""
    ckpt.wait()
    log.warning("debug: sending %s to myself", name)
    os.kill(os.getpid(), getattr(signal, name))


def _export(config: Experiment, workdir: str, parts, state, extra) -> None:
    """WORKDIR/export: the trained model with adapters merged, per layer (unscanned), in
    `export.dtype`; `launch.py convert --to-hf` turns it into a Hugging Face checkpoint."""
    if not config.export.final:
        return
    out = epath.Path(workdir) / "export"
    if (out / "config.json").exists():
        log.info("export: %s exists", out)
        return
    dtype = DTYPES[config.export.dtype or config.model.param_dtype]
    model = parts.merge(state.params, state.frozen, extra)
    lora.merge_lora(model)
    flat = traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    if model.numerics.scan_layers:
        flat = model_lib.unstack_layers(flat)
    numerics = dataclasses.replace(model.numerics, param_dtype=dtype, scan_layers=False, remat="none")
    model_class = families.family_of(model.config).model_class
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: model_class(model.config, numerics, rngs=nnx.Rngs(0))))
    cast = jax.jit(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x)
    nnx.replace_by_pure_dict(abstract, traverse_util.unflatten_dict({k: cast(v) for k, v in flat.items()}))
    from sf2t_jax.convert.native import save_native

    save_native(nnx.merge(graphdef, abstract), str(out))
    log.info("export: %s (LoRA merged, %s)", out, jnp.dtype(dtype).name)
