"""Metrics: one JSON line per step, TensorBoard event files, and a console progress line.

    WORKDIR/metrics/session-<first step>.jsonl   {"step": s, "loss": ..., "accuracy": ..., ...}
    WORKDIR/tensorboard/                         the same scalars (tensorboardX, no TensorFlow)

Each run of the trainer (a session) writes its own JSON-lines file, starting at the step it
resumed from; a session killed between checkpoints leaves records for steps that the next
session computes again. `read_metrics(workdir)` returns one record per step, the latest
session winning. Local files are appended and flushed at every log; remote ones (`gs://`)
cannot be appended, so the session file is rewritten at most every `log.flush_seconds`, at
checkpoints and at the end.

Only process 0 writes. Device metrics are fetched once per `log.every` steps (one transfer
for the whole interval), so logging never stalls the device pipeline in between.
"""
from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

import jax
from etils import epath

log = logging.getLogger(__name__)


def _is_local(path: str) -> bool:
    return "://" not in path


def read_metrics(workdir: str) -> list[dict[str, Any]]:
    """Every step's record, in step order; for a step logged by several sessions, the last."""
    by_step: dict[int, dict[str, Any]] = {}
    directory = epath.Path(workdir) / "metrics"
    if not directory.exists():
        return []
    for path in sorted(directory.glob("session-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class MetricsWriter:
    """Collects per-step device metrics and writes them every `every` steps (process 0)."""

    def __init__(self, workdir: str, *, first_step: int, total_steps: int, every: int, task_names: tuple[str, ...],
                 tensorboard: bool = True, flush_seconds: float = 120.0):
        if every < 1:
            raise ValueError(f"log.every={every}: expected >= 1")
        self.every, self.total, self.task_names = every, total_steps, task_names
        self.enabled = jax.process_index() == 0
        self.pending: list[tuple[int, dict[str, jax.Array]]] = []
        self.lines: list[str] = []
        self.local = _is_local(workdir)
        self.flush_seconds, self.last_flush = flush_seconds, time.time()
        self.interval_start, self.interval_steps = time.time(), 0
        self.history: list[dict[str, Any]] = []  # every record of this session (for tests and summaries)
        self.tb = None
        if not self.enabled:
            return
        directory = epath.Path(workdir) / "metrics"
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"session-{first_step:09d}.jsonl"
        if tensorboard:
            from tensorboardX import SummaryWriter

            # purge_step: TensorBoard drops events of steps >= first_step that a killed session
            # wrote, so a resumed curve has no doubled segment.
            self.tb = SummaryWriter(str(epath.Path(workdir) / "tensorboard"), purge_step=first_step + 1,
                                    flush_secs=int(flush_seconds))

    def restart_clock(self) -> None:
        """Starts the rate clock now (after the first step's compilation)."""
        self.interval_start, self.interval_steps = time.time(), 0

    def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
        """Records the (device) metrics of `step` (1-based: the state after `step` updates)."""
        self.pending.append((step, metrics))
        self.interval_steps += 1

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.total

    def write(self, *, force_flush: bool = False) -> dict[str, Any] | None:
        """Fetches pending metrics (one transfer), writes them, prints a progress line.
        Returns the last record (None when nothing was pending)."""
        if not self.pending:
            return None
        fetched = jax.device_get([m for _, m in self.pending])
        steps = [s for s, _ in self.pending]
        self.pending = []
        now = time.time()
        elapsed = max(now - self.interval_start, 1e-9)
        step_time = elapsed / max(self.interval_steps, 1)
        tokens = sum(float(m["tokens"]) for m in fetched)
        records = []
        for step, m in zip(steps, fetched):
            record = {"step": step, **{k: float(m[k]) for k in ("loss", "accuracy", "grad_norm", "lr",
                                                                  "target_tokens", "tokens")}}
            record["step_time"] = step_time
            record["tokens_per_second"] = tokens / elapsed
            for i, name in enumerate(self.task_names):
                n = float(m["task_count"][i])
                if n:
                    record[f"accuracy/{name}"] = float(m["task_correct"][i]) / n
            if "batch_digest" in m:  # debug.batch_digest: one uint32 per global row
                record["batch_digest"] = [int(v) for v in m["batch_digest"]]
            records.append(record)
        self.interval_start, self.interval_steps = now, 0
        self.history.extend(records)
        last = records[-1]
        if self.enabled:
            self.lines.extend(json.dumps(r) for r in records)
            if self.tb is not None:
                for r in records:
                    for k, v in r.items():
                        if k not in ("step", "batch_digest"):
                            self.tb.add_scalar(f"train/{k}", v, r["step"])
            self.flush(force=force_flush)
            eta = (self.total - last["step"]) * step_time
            log.info("step %d/%d | loss %.4f | acc %.3f | gnorm %.3g | lr %.2e | %.2f steps/s | %.0f tok/s | ETA %s",
                     last["step"], self.total, last["loss"], last["accuracy"], last["grad_norm"], last["lr"],
                     1.0 / step_time, last["tokens_per_second"], _duration(eta))
        return last

    def flush(self, force: bool = False) -> None:
        """Local: append what is new. Remote: rewrite the session file, at most every
        `flush_seconds` unless forced (checkpoints, end of training)."""
        if not self.enabled or not self.lines:
            return
        if self.local:
            with open(self.path, "a") as f:
                f.write("".join(line + "\n" for line in self.lines))
        elif force or time.time() - self.last_flush >= self.flush_seconds:
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.history))
        else:
            return
        self.lines = []
        self.last_flush = time.time()
        if force and self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        self.write(force_flush=True)
        self.flush(force=True)
        if self.tb is not None:
            self.tb.close()
