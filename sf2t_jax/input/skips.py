"""Counting skipped samples exactly, across grain worker processes and checkpoints.

Workers do not count: a sample that cannot be made travels through the pipeline as a
`Skipped` marker, and the consumer in the main process (`pipeline.InputIterator`) counts it
when it pulls it. A count therefore covers exactly the samples consumed so far, whatever the
number of workers, and lives in the iterator state, so a restored run resumes the counts too.
"""
from __future__ import annotations

import collections
import logging
from typing import Any

from sf2t_jax.errors import InputError
from sf2t_jax.input.examples import Skipped

log = logging.getLogger(__name__)


class NoUsableVideoError(InputError, RuntimeError):
    """The source gave no usable sample: every record was unreadable or unusable.

    Bad input, not a bug: every command that reads videos refuses it in one line (an
    `InputError`); still a RuntimeError for callers that caught it as one."""


class SkipCounter:
    """Skips by reason (and by task for task and length skips); logs each path once."""

    def __init__(self):
        self.by_reason: collections.Counter[str] = collections.Counter()
        self.by_task: dict[str, collections.Counter[str]] = {}
        self._logged: set[str] = set()

    def add(self, skip: Skipped) -> None:
        self.by_reason[skip.reason] += 1
        if skip.task is not None:
            self.by_task.setdefault(skip.task, collections.Counter())[skip.reason] += 1
        if skip.path not in self._logged:  # once per path: a bad file recurs every epoch
            self._logged.add(skip.path)
            what = f"{skip.task}: {skip.reason}" if skip.task else skip.reason
            log.warning("input: skipping %s (%s)%s", skip.path, what, f": {skip.detail}" if skip.detail else "")

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def state(self) -> dict[str, Any]:
        """JSON-serialisable counts (the iterator state carries them)."""
        return {"by_reason": dict(sorted(self.by_reason.items())),
                "by_task": {t: dict(sorted(c.items())) for t, c in sorted(self.by_task.items())}}

    def set_state(self, state: dict[str, Any]) -> None:
        self.by_reason = collections.Counter({k: int(v) for k, v in state["by_reason"].items()})
        self.by_task = {t: collections.Counter({k: int(v) for k, v in c.items()}) for t, c in state["by_task"].items()}

    def describe(self) -> str:
        """'3 skipped: corrupt 1, not_a_video 2' (or 'none skipped')."""
        if not self.total:
            return "none skipped"
        return f"{self.total} skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_reason.items()))
