"""The demo's overall progress line: stages done, time spent, and an ETA for the whole run.

Each stage has an a-priori cost estimate (seconds per training step, per benchmark question,
per clip prepared, measured on a 2-core CPU at scale small); once a stage finishes, the
estimates of the stages still to come are rescaled by how fast this machine actually was.
"""
from __future__ import annotations

import dataclasses
import logging
import time

log = logging.getLogger("sf2t_jax.demo")


@dataclasses.dataclass
class Task:
    name: str
    estimate_s: float
    done: bool = False
    seconds: float = 0.0
    skipped: bool = False  # found finished (resumed run): says nothing about this machine's speed


class Plan:
    """An ordered list of tasks with estimated costs; `stage(name)` times one and logs the ETA."""

    def __init__(self, tasks: list[tuple[str, float]]):
        self.tasks = {name: Task(name, max(est, 1e-3)) for name, est in tasks}
        self.start = time.perf_counter()

    def _speed(self) -> float:
        """Measured / estimated time over the finished tasks (1 before any)."""
        done = [t for t in self.tasks.values() if t.done and not t.skipped]
        if not done:
            return 1.0
        return sum(t.seconds for t in done) / sum(t.estimate_s for t in done)

    def eta_s(self) -> float:
        return self._speed() * sum(t.estimate_s for t in self.tasks.values() if not t.done)

    def banner(self, name: str) -> None:
        index = list(self.tasks).index(name) + 1
        elapsed = time.perf_counter() - self.start
        log.info("=" * 88)
        log.info("demo [%d/%d] %s | elapsed %s | ETA for the whole demo %s", index, len(self.tasks), name,
                 duration(elapsed), duration(self.eta_s()))
        log.info("=" * 88)

    def finish(self, name: str, seconds: float, *, skipped: bool = False) -> None:
        task = self.tasks[name]
        task.done, task.seconds, task.skipped = True, seconds, skipped
        log.info("demo: %s %s in %s; remaining ETA %s", name, "found done" if skipped else "done",
                 duration(seconds), duration(self.eta_s()))

    def skipped(self) -> list[str]:
        return [t.name for t in self.tasks.values() if t.done and t.skipped]

    def seconds(self) -> dict[str, float]:
        return {t.name: round(t.seconds, 1) for t in self.tasks.values() if t.done}


def duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
