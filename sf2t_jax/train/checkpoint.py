"""Orbax checkpoints of a training run: WORKDIR/checkpoints/<step>/{state, data, config}.

    state   the TrainState (step, params, opt_state, rng, and the frozen parameters unless
            checkpoint.save_frozen is off), written by every process for its own shards
    data    each process's input-iterator state (grain's handler: process_<i>-of-<n>.json)
    config  the resolved experiment config (JSON), to see what a checkpoint was trained with

Saves are asynchronous (`checkpoint.async_save`): `save` returns once the arrays are copied
off the devices, and the files are written while training goes on; a step directory appears
only when complete, so a run killed mid-write resumes from the previous one. Restores go
straight into the target shardings (the abstract state carries them), on any mesh shape.
WORKDIR may be a `gs://` path.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import grain
import orbax.checkpoint as ocp
from etils import epath

from sf2t_jax.train.state import TrainState

log = logging.getLogger(__name__)


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
    """Save / restore / resume for one workdir."""

    def __init__(self, workdir: str, config):
        self.directory = epath.Path(workdir) / "checkpoints"
        self.every = int(config.every)
        self.save_frozen = bool(config.save_frozen)
        # every >= 1, keep >= 1: validation.check_train
        options = ocp.CheckpointManagerOptions(max_to_keep=int(config.keep), create=True,
                                               enable_async_checkpointing=bool(config.async_save))
        handlers = {"state": ocp.StandardCheckpointHandler(use_ocdbt=bool(config.ocdbt)),
                    "data": grain.checkpoint.CheckpointHandler(), "config": ocp.JsonCheckpointHandler()}
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def save(self, step: int, state: TrainState, data_iterator, config_dict: dict[str, Any]) -> None:
        """Starts saving `state` (after `step` updates) and the iterator position of this moment."""
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_to_tree(state, self.save_frozen)),
            data=grain.checkpoint.CheckpointSave(_IteratorSnapshot(data_iterator.get_state())),
            config=ocp.args.JsonSave(config_dict),
        )
        self.manager.save(step, args=args, force=True)
        log.info("checkpoint %d: saving to %s", step, self.directory)

    def restore(self, step: int, target: TrainState, data_iterator) -> TrainState:
        """Restores the state into `target`'s shardings (ShapeDtypeStructs) and moves
        `data_iterator` to where it was. Without saved frozen parameters, `target.frozen` must
        hold their values already (they are passed through)."""
        tree = _to_tree(target, self.save_frozen)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(tree),
            data=grain.checkpoint.CheckpointRestore(_IteratorRestorer(data_iterator)),
        ))
        r = restored["state"]
        log.info("checkpoint %d: restored from %s", step, self.directory)
        return TrainState(step=r["step"], params=r["params"], opt_state=r["opt_state"], rng=r["rng"],
                          frozen=r["frozen"] if self.save_frozen else target.frozen)

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
