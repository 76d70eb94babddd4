"""Counting skipped samples exactly, across grain worker processes and checkpoints.

Workers do not count: a sample that cannot be made travels through the pipeline as a
`Skipped` marker, and the consumer in the main process (`pipeline.InputIterator`) counts it
when it pulls it. A count therefore covers exactly the samples consumed so far, whatever the
number of workers, and lives in the iterator state, so a restored run resumes the counts too.

Good samples are counted per task as well, so each task's skip share per reason is known
(`SkipCounter.rates`); a trainer refuses to go on when a share passes its limit
(`check_share`): a task that loses most of its samples (too long for max_length, say) would
otherwise leave a silently biased training mix.
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


class SkipShareError(InputError):
    """A task lost more of its samples to one skip reason than the configured share."""


# A task's share is judged before the end of a run once this many of its samples were drawn
# (a 5% share is then at least 5 skips, not one unlucky sample); at the end, whatever the count.
MIN_DRAWN_MID_RUN = 100


class SkipCounter:
    """Skips by reason (and by task for task and length skips), good samples by task, and the
    longest too-long sample per task; logs each path once."""

    def __init__(self):
        self.by_reason: collections.Counter[str] = collections.Counter()
        self.by_task: dict[str, collections.Counter[str]] = {}
        self.samples_by_task: collections.Counter[str] = collections.Counter()
        self.longest: dict[str, int] = {}  # task -> most tokens of a too_long sample
        self._logged: set[str] = set()

    def add_sample(self, task: str) -> None:
        """Counts a good sample of `task` (the denominator of its skip shares)."""
        self.samples_by_task[task] += 1

    def add(self, skip: Skipped) -> None:
        self.by_reason[skip.reason] += 1
        if skip.task is not None:
            self.by_task.setdefault(skip.task, collections.Counter())[skip.reason] += 1
        if skip.tokens is not None and skip.task is not None:
            self.longest[skip.task] = max(self.longest.get(skip.task, 0), int(skip.tokens))
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
                "by_task": {t: dict(sorted(c.items())) for t, c in sorted(self.by_task.items())},
                "samples_by_task": dict(sorted(self.samples_by_task.items())),
                "longest": dict(sorted(self.longest.items()))}

    def set_state(self, state: dict[str, Any]) -> None:
        self.by_reason = collections.Counter({k: int(v) for k, v in state["by_reason"].items()})
        self.by_task = {t: collections.Counter({k: int(v) for k, v in c.items()}) for t, c in state["by_task"].items()}
        # checkpoints written before good samples were counted have neither
        self.samples_by_task = collections.Counter({k: int(v) for k, v in state.get("samples_by_task", {}).items()})
        self.longest = {k: int(v) for k, v in state.get("longest", {}).items()}

    def rates(self) -> dict[str, dict[str, Any]]:
        """Per task: samples drawn (good + skipped), good samples, skips and their share per
        reason, and (too_long) the longest sample's tokens. Decode skips have no task: they
        appear under "(decode)" with the share of all samples drawn."""
        out: dict[str, dict[str, Any]] = {}
        for task in sorted(set(self.samples_by_task) | set(self.by_task)):
            skipped = self.by_task.get(task, collections.Counter())
            drawn = self.samples_by_task[task] + sum(skipped.values())
            out[task] = {"drawn": drawn, "samples": self.samples_by_task[task],
                         "skipped": dict(sorted(skipped.items())),
                         "share": {k: v / drawn for k, v in sorted(skipped.items())}}
            if task in self.longest:
                out[task]["longest_too_long"] = self.longest[task]
        decode = {k: v - sum(c[k] for c in self.by_task.values()) for k, v in self.by_reason.items()}
        decode = {k: v for k, v in sorted(decode.items()) if v}
        if decode:
            drawn = sum(self.samples_by_task.values()) + self.total
            out["(decode)"] = {"drawn": drawn, "skipped": decode, "share": {k: v / drawn for k, v in decode.items()}}
        return out

    def check_share(self, limit: float, *, final: bool, limit_name: str, length_name: str) -> None:
        """Raises `SkipShareError` when a task lost more than `limit` of its drawn samples to
        one reason (judged mid-run once it has `MIN_DRAWN_MID_RUN` drawn, at the end always),
        naming the task, the reason, the share and, for too_long, the length that holds the
        longest sample seen. Decode skips (no task) are not judged: they are the files'."""
        for task, r in self.rates().items():
            if task == "(decode)" or not (final or r["drawn"] >= MIN_DRAWN_MID_RUN):
                continue
            for reason, share in r["share"].items():
                if share <= limit:
                    continue
                if reason == "too_long":
                    fix = (f"the longest had {r['longest_too_long']} tokens: set {length_name} >= "
                           f"{r['longest_too_long']}")
                else:
                    fix = "the first skipped clip is logged above"
                raise SkipShareError(
                    f"input: task {task!r} lost {share:.1%} of its samples to {reason} ({r['skipped'][reason]} of "
                    f"{r['drawn']} drawn), more than {limit_name}={limit:g}; {fix}")

    def describe(self) -> str:
        """'3 skipped: corrupt 1, not_a_video 2' (or 'none skipped')."""
        if not self.total:
            return "none skipped"
        return f"{self.total} skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_reason.items()))
