"""Orbax checkpoints of a training run: WORKDIR/checkpoints/<step>/{state, data, config, digests}.

    state    the TrainState (step, params, opt_state, rng, and the frozen parameters unless
             checkpoint.save_frozen is off), written by every process for its own shards
    data     each process's input-iterator state (grain's handler: process_<i>-of-<n>.json)
    config   the resolved experiment config (JSON), to see what a checkpoint was trained with
    digests  one uint32 per state array (train/digest.py), computed from the arrays saved

Saves are asynchronous (`checkpoint.async_save`): `save` returns once the arrays are copied
off the devices, and the files are written while training goes on. A step is never seen
half-written: on local disk orbax writes `<step>.orbax-checkpoint-tmp` and renames it when
complete; on gs:// a step counts only once its `commit_success.txt` is written. A run killed
mid-write resumes from the previous step (leftover tmp folders are removed at the next start).
Restores go straight into the target shardings (the abstract state carries them), on any mesh
shape. WORKDIR may be a `gs://` path.

Resume (`restore_latest`) tries the steps newest to oldest. A step that cannot be read (a file
missing, truncated or overwritten, an empty folder, arrays that do not match their digests) is
damage: it is reported in one line and, once an older step has been read, renamed to
`checkpoints/damaged/<step>-<item>-<time>` (orbax lists only folders named by a number, so it
never sees it again). If no step can be read the run refuses to start, moving nothing, unless
`checkpoint.allow_fresh_start` is set. A checkpoint of another shape than the config (another
LoRA rank, model or method) is not damage: the run refuses, naming the arrays that differ.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from typing import Any

import grain
import orbax.checkpoint as ocp
import jax
import numpy as np
from etils import epath

from sf2t_jax.errors import InputError
from sf2t_jax.experiment import CheckpointSettings
from sf2t_jax.parallel.distributed import max_over_processes
from sf2t_jax.train.digest import tree_digests
from sf2t_jax.train.state import TrainState

log = logging.getLogger(__name__)

DAMAGED = "damaged"  # checkpoints/damaged/<step>-<item>-<time>: unreadable steps, set aside
ITEMS = ("step folder", "state", "digests", "data")  # what can be unreadable, in the order read


class ResumeError(InputError):
    """The workdir's checkpoints cannot be resumed with this config (none readable, or another
    shape); the message says which and what to do."""


@dataclasses.dataclass(frozen=True)
class Damage:
    """Why checkpoint `step` cannot be read: `item` (state, data, digests, or the step folder)
    and what is wrong with it, in one line."""

    step: int
    item: str
    problem: str

    def __str__(self) -> str:
        return f"checkpoint {self.step}: {self.item} unreadable: {self.problem}"


class _Unreadable(Exception):
    def __init__(self, item: str, problem: str):
        super().__init__(item, problem)
        self.item, self.problem = item, problem


class _IteratorSnapshot:
    """The iterator state as it was at `save` time, in the form grain's orbax handler writes
    (bytes of JSON): the real iterator moves on while an async save is still writing."""

    def __init__(self, state: dict[str, Any]):
        self._state = json.dumps(state, indent=1).encode()

    def get_state(self) -> bytes:
        return self._state


class _IteratorRestorer:
    """Receives the saved bytes from grain's orbax handler and hands the decoded state to any
    iterator with `set_state(dict)` (grain's own, the input pipeline's, or a wrapper)."""

    def __init__(self, iterator):
        self.iterator = iterator

    def set_state(self, state: bytes) -> None:
        self.iterator.set_state(json.loads(state))

    def start_prefetch(self) -> None:
        if hasattr(self.iterator, "start_prefetch"):
            self.iterator.start_prefetch()


def _to_tree(state: TrainState, save_frozen: bool) -> dict[str, Any]:
    tree = {"step": state.step, "params": state.params, "opt_state": state.opt_state, "rng": state.rng}
    if save_frozen:
        tree["frozen"] = state.frozen
    return tree


class Checkpointer:
    """Save / restore / resume for one workdir, as the experiment's `checkpoint` settings say."""

    def __init__(self, workdir: str, config: CheckpointSettings):
        self.directory = epath.Path(workdir) / "checkpoints"
        self.every = int(config.every)
        self.save_frozen = bool(config.save_frozen)
        self.allow_fresh_start = bool(config.allow_fresh_start)
        # every >= 1, keep >= 1: validation.check_train
        options = ocp.CheckpointManagerOptions(max_to_keep=int(config.keep), create=True,
                                               enable_async_checkpointing=bool(config.async_save),
                                               cleanup_tmp_directories=True)
        handlers = {"state": ocp.StandardCheckpointHandler(use_ocdbt=bool(config.ocdbt)),
                    "data": grain.checkpoint.CheckpointHandler(), "config": ocp.JsonCheckpointHandler(),
                    "digests": ocp.JsonCheckpointHandler()}
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def save(self, step: int, state: TrainState, data_iterator, config_dict: dict[str, Any]) -> None:
        """Starts saving `state` (after `step` updates) and the iterator position of this moment."""
        tree = _to_tree(state, self.save_frozen)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(tree),
            data=grain.checkpoint.CheckpointSave(_IteratorSnapshot(data_iterator.get_state())),
            config=ocp.args.JsonSave(config_dict),
            digests=ocp.args.JsonSave(_digests(tree)),
        )
        self.manager.save(step, args=args, force=True)
        log.info("checkpoint %d: saving to %s", step, self.directory)

    def restore(self, step: int, target: TrainState, data_iterator) -> TrainState:
        """Restores the state into `target`'s shardings (ShapeDtypeStructs) and moves
        `data_iterator` to where it was. Without saved frozen parameters, `target.frozen` must
        hold their values already (they are passed through)."""
        state = self._restore_state(step, target)
        self._restore_data(step, data_iterator)
        log.info("checkpoint %d: restored from %s", step, self.directory)
        return state

    def _restore_state(self, step: int, target: TrainState) -> TrainState:
        r = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_to_tree(target, self.save_frozen))))["state"]
        return TrainState(step=r["step"], params=r["params"], opt_state=r["opt_state"], rng=r["rng"],
                          frozen=r["frozen"] if self.save_frozen else target.frozen)

    def _restore_data(self, step: int, data_iterator) -> None:
        self.manager.restore(step, args=ocp.args.Composite(
            data=grain.checkpoint.CheckpointRestore(_IteratorRestorer(data_iterator))))

    def restore_latest(self, target: TrainState, data_iterator) -> tuple[int, TrainState] | None:
        """Resumes from the newest checkpoint that reads back whole: (its step, the state), with
        `data_iterator` moved to where it was; None when there is none (a fresh start).

        Unreadable steps newer than the one used are set aside (`checkpoints/damaged/`).
        Raises ResumeError when steps exist but none is readable (unless
        `allow_fresh_start`: then they are set aside and None is returned, the iterator where it
        started), and when a step has another shape than `target` (nothing is moved)."""
        _quiet_failed_reads(self.directory)
        start = data_iterator.get_state()
        damaged: list[Damage] = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                state = self._read(step, target, data_iterator)
            except _Unreadable as e:
                damaged.append(Damage(step, e.item, e.problem))
                log.warning("%s", damaged[-1])
                continue
            if damaged:
                self._set_aside(damaged)
                log.warning("resuming from checkpoint %d, the newest readable one (%d newer set aside in %s)", step,
                            len(damaged), self.directory / DAMAGED)
            return step, state
        data_iterator.set_state(start)  # a failed read may have moved it
        if damaged and not self.allow_fresh_start:
            raise ResumeError(
                f"no readable checkpoint in {self.directory} (" + "; ".join(f"{d.step}: {d.item}" for d in damaged)
                + "); nothing was moved. Set checkpoint.allow_fresh_start=true to set them aside in "
                f"{self.directory / DAMAGED} and train from scratch, or use another --workdir")
        if damaged:
            self._set_aside(damaged)
            log.warning("checkpoint.allow_fresh_start: no readable checkpoint; %d set aside in %s, training from "
                        "scratch", len(damaged), self.directory / DAMAGED)
        return None

    def _read(self, step: int, target: TrainState, data_iterator) -> TrainState:
        """Checkpoint `step` read whole, or _Unreadable. Each process reads its own shards and
        iterator file, so after each stage all agree before going on: all go on to the same
        older step, and none enters the digests' collective program alone.
        A shape that differs from `target` raises ResumeError.
        Known gap: with two processes, when only process 1's iterator file was missing the
        resume hung (seen once, not yet tracked down; orbax's restore may wait on a barrier the
        failing process never reaches). Single-process resume is tested."""

        def state():
            if not any((self.directory / str(step)).iterdir()):
                raise _Unreadable("step folder", "it is empty")
            self._check_shapes(step, target)
            return _read_item("state", lambda: self._restore_state(step, target))

        restored = _agreed(state)
        digests = _agreed(lambda: self._saved_digests(step))
        if digests is not None:
            _agreed(lambda: self._verify(digests, restored))
        _agreed(lambda: _read_item("data", lambda: self._restore_data(step, data_iterator)))
        return restored

    def _check_shapes(self, step: int, target: TrainState) -> None:
        """ResumeError naming the arrays whose names or shapes differ from `target`'s."""
        try:
            metadata = self.manager.item_metadata(step)["state"]
        except Exception as e:  # noqa: BLE001
            raise _Unreadable("state", f"metadata: {_one_line(e)}") from e
        if metadata is None:
            raise _Unreadable("state", "metadata missing or unreadable")
        saved = {m.name: tuple(m.shape) for m in jax.tree.leaves(metadata)}
        wanted = _shapes(_to_tree(target, self.save_frozen))
        # Parameters first: their optimizer moments repeat the same difference.
        order = lambda keys: sorted(keys, key=lambda k: (not k.startswith(("params.", "frozen.")), k))
        differ = [f"{k} {saved[k]} saved, {wanted[k]} in the config" for k in order(saved.keys() & wanted.keys())
                  if saved[k] != wanted[k]]
        differ += [f"{k} {wanted[k]} not in the checkpoint" for k in order(wanted.keys() - saved.keys())]
        differ += [f"{k} {saved[k]} not in the config" for k in order(saved.keys() - wanted.keys())]
        if differ:
            raise ResumeError(
                f"checkpoint {step} in {self.directory} has another shape than the config ({len(differ)} arrays "
                f"differ: {'; '.join(differ[:4])}{'; ...' if len(differ) > 4 else ''}): it was trained with "
                f"another model, method or LoRA rank (see {self.directory / str(step) / 'config'}). "
                "Start a new run with another --workdir, or resume this one with its own config")

    def _saved_digests(self, step: int) -> dict[str, int] | None:
        """The digests saved with checkpoint `step` (None for checkpoints from before digests)."""
        if not (self.directory / str(step) / "digests").exists():
            return None
        return _read_item("digests", lambda: self.manager.restore(
            step, args=ocp.args.Composite(digests=ocp.args.JsonRestore()))["digests"])

    def _verify(self, saved: dict[str, int], state: TrainState) -> None:
        """_Unreadable when an array read back differs from the digest saved with it (a flipped
        byte the storage format does not detect). One collective program on every process."""
        now = _digests(_to_tree(state, self.save_frozen))
        wrong = [k for k in sorted(now) if saved.get(k) != now[k]]
        if wrong:
            raise _Unreadable("state", f"{len(wrong)} arrays differ from their saved digests: {', '.join(wrong[:3])}")

    def _set_aside(self, damaged: list[Damage]) -> None:
        """Renames each damaged step to checkpoints/damaged/<step>-<item>-<UTC time> (process 0;
        the others wait), then re-lists the steps."""
        if jax.process_index() == 0:
            aside = self.directory / DAMAGED
            aside.mkdir(parents=True, exist_ok=True)
            # A file in it: on gs:// a folder exists only through its objects, and a rename
            # needs the destination's folder to exist.
            (aside / "README.txt").write_text(
                "Checkpoints that could not be read back when the run resumed (launch.py train), moved here "
                "from checkpoints/<step>; the run's log names the file and the error. Training went on from "
                "an older step. Delete them when no longer wanted.\n")
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            for d in damaged:
                destination = aside / f"{d.step}-{d.item.replace(' ', '_')}-{stamp}"
                (self.directory / str(d.step)).rename(destination)
                log.warning("checkpoint %d: moved to %s", d.step, destination)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"set aside damaged checkpoints in {self.directory}")
        self.manager.reload()

    def saved_config(self, step: int) -> dict[str, Any] | None:
        """The config checkpoint `step` was trained with (None if it has none)."""
        try:
            return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        except (FileNotFoundError, KeyError, ValueError):
            return None

    def wait(self) -> None:
        """Blocks until every save in flight is committed."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _shapes(tree) -> dict[str, tuple[int, ...]]:
    """{orbax's name for each array ('params.model.layers.0...'): its shape}."""
    return {name: tuple(leaf.shape) for name, leaf in ocp.tree.to_flat_dict(tree, sep=".").items()}


def _digests(tree) -> dict[str, int]:
    """{orbax's name for each array: its uint32 digest} (one jitted program, fetched once)."""
    flat = ocp.tree.to_flat_dict(tree, sep=".")
    values = jax.device_get(tree_digests(list(flat.values())))
    return {name: int(np.asarray(v)) for name, v in zip(flat, values)}


def _quiet_failed_reads(directory: epath.Path) -> None:
    """Keeps a failed read of a checkpoint under `directory` from printing tracebacks that are
    not errors of their own (the failure is reported once, in one line). When one of orbax's
    parallel reads fails, orbax closes its event loop while tensorstore completes the others:
    their callbacks raise "Event loop is closed" into `sys.unraisablehook`, read coroutines
    closed mid-failure raise their own read error there, and their failed tasks are logged by
    asyncio ("Task / _GatheringFuture exception was never retrieved") when collected. Seen on a
    truncated OCDBT manifest and truncated array data. Anything else still gets through."""
    where = str(directory)
    previous = sys.unraisablehook
    if getattr(previous, "quiet_failed_reads", False):
        return

    def hook(unraisable):
        error = unraisable.exc_value
        closed_loop = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
        # A read coroutine closed while failing ("Exception ignored in: <coroutine object
        # _read_array_index_and_device_put ...>"): its error names the file under `directory`.
        read_of_ours = where in str(error)
        if not (closed_loop or read_of_ours):
            previous(unraisable)

    hook.quiet_failed_reads = True
    sys.unraisablehook = hook

    def failed_read(record: logging.LogRecord) -> bool:
        # "Task / _GatheringFuture exception was never retrieved": the future's repr in the
        # message is shortened (reprlib) and may lose the path; the exception itself names the
        # file (its TensorStore spec), so look there too.
        error = record.exc_info[1] if record.exc_info else None
        return where in record.getMessage() or (error is not None and where in str(error))

    logging.getLogger("asyncio").addFilter(lambda record: not failed_read(record))


def _agreed(stage):
    """stage(), unless it raised _Unreadable on any process: then _Unreadable on every one (its
    own, or naming the item that failed elsewhere)."""
    problem, result = None, None
    try:
        result = stage()
    except _Unreadable as e:
        problem = e
    worst = max_over_processes(0 if problem is None else ITEMS.index(problem.item) + 1)
    if worst:
        raise problem or _Unreadable(ITEMS[worst - 1], "unreadable on another process")
    return result


def _read_item(item: str, read):
    """read(), or _Unreadable naming `item` and the error in one line."""
    try:
        return read()
    except (ResumeError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001  whatever a damaged file raises (tensorstore, zstd, JSON, orbax)
        raise _Unreadable(item, _one_line(e)) from e


def _one_line(error: Exception) -> str:
    """`Type: first line of the message`, at most 200 characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= 200 else text[:197] + "..."
