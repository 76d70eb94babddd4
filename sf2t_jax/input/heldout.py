"""A fixed held-out set per task, and each task's answer prior, drawn by the training sampler.

The held-out samples are the pipeline's own samples (`InputPipeline.prepare(g)`: the same
decode, task draw, prompt and frames as training) of the held-out split, taken in stream order
g = 0, 1, 2, ... and kept per task until every task has `per_task`: a pure function of the
config, so every process and every resumed session scores the same set. Skipped samples are
counted per task and reason (`SkipCounter`), never fatal.

A task's *answer prior* is the best constant answer: the most frequent answer text among the
first `prior_per_task` training-split samples of that task (ties: the smallest text), scored
on the held-out samples. A model that only learned a task's answer distribution reaches it.

    held = draw_heldout(input_config, split="validation", per_task=48, prior_per_task=200)
    held.samples, held.priors["count"].answer
"""
from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Sequence

from sf2t_jax.errors import InputError
from sf2t_jax.input.batching import BatchSpec
from sf2t_jax.input.config import InputConfig
from sf2t_jax.input.examples import Prepared
from sf2t_jax.input.pipeline import InputPipeline
from sf2t_jax.input.skips import SkipCounter

log = logging.getLogger(__name__)

# Stream positions drawn at most per wanted sample (`per_task` x tasks): enough for a task of a
# fifth of the mix with half its samples skipped; a task still short after that is scored on
# what it has (its `n` says so).
DRAWS_PER_SAMPLE = 8


class HeldoutError(InputError):
    """The held-out split gave no usable sample (or cannot be read)."""


@dataclasses.dataclass(frozen=True)
class TaskDraw:
    """Samples of each task in stream order, and what the draw skipped.

    samples: task -> up to `per_task` `Prepared` samples (answers only are kept for priors).
    skips: every skipped stream position, by task and reason (decode skips have no task).
    draws: stream positions drawn.
    """

    samples: dict[str, list[Prepared]]
    skips: SkipCounter
    draws: int


def draw_by_task(pipeline: InputPipeline, tasks: Sequence[str], per_task: int) -> TaskDraw:
    """Stream positions g = 0, 1, ... of `pipeline` until each of `tasks` has `per_task` samples
    (or `DRAWS_PER_SAMPLE * per_task * len(tasks)` positions were drawn)."""
    samples: dict[str, list[Prepared]] = {t: [] for t in tasks}
    skips = SkipCounter()
    limit = DRAWS_PER_SAMPLE * per_task * len(tasks)
    g = 0
    while g < limit and any(len(s) < per_task for s in samples.values()):
        out = pipeline.prepare(g)
        g += 1
        if not isinstance(out, Prepared):
            skips.add(out)
            continue
        task = out.sample.task
        skips.add_sample(task)
        if len(samples.get(task, ())) < per_task:
            samples[task].append(out)
    return TaskDraw(samples, skips, g)


@dataclasses.dataclass(frozen=True)
class Prior:
    """A task's best constant answer and how often it was the training answer."""

    answer: str
    count: int  # training samples with this answer
    drawn: int  # training samples of the task drawn


@dataclasses.dataclass(frozen=True)
class HeldoutSet:
    """The fixed held-out samples (ordered by task, then stream position) and each task's prior.

    samples: the samples to score, as the pipeline made them (`Prepared.example` is the row).
    tasks: the enabled tasks, in the pipeline's `task_names` order.
    priors: task -> its `Prior` (tasks without training samples have none).
    skips: {"heldout": ..., "prior": ...}: `SkipCounter.state()` of either draw.
    split, draws: the held-out split and its stream positions drawn.
    spec: the batch shapes (this process's rows), the training pipeline's.
    """

    samples: list[Prepared]
    tasks: tuple[str, ...]
    priors: dict[str, Prior]
    skips: dict[str, dict]
    split: str
    draws: int
    spec: BatchSpec

    def indices(self, task: str) -> list[int]:
        """Positions in `samples` of `task`'s samples."""
        return [i for i, s in enumerate(self.samples) if s.sample.task == task]


def majority_answer(answers: Sequence[str]) -> Prior:
    """The most frequent answer (ties: the smallest text, so the choice is deterministic)."""
    counts = collections.Counter(answers)
    best = min(counts, key=lambda a: (-counts[a], a))
    return Prior(answer=best, count=counts[best], drawn=len(answers))


def draw_heldout(config: InputConfig, *, split: str, per_task: int, prior_per_task: int,
                 process_index: int = 0, process_count: int = 1, tokenizer=None, video_time=None,
                 rows=None) -> HeldoutSet:
    """The held-out set of `config`'s stream on `split`, and the priors from `config.split`.

    Both pipelines are `config` itself (mode, task mix, SFT mix, seed, shapes) read forever from
    their split in the main process; only the split differs between them. `video_time`, `rows`:
    see `InputPipeline`.
    Raises HeldoutError when the held-out split gives no usable sample at all.
    """
    forever = dict(num_epochs=0, workers=0, threads=0)
    heldout = InputPipeline(dataclasses.replace(config, split=split, **forever), tokenizer=tokenizer,
                            process_index=process_index, process_count=process_count, video_time=video_time, rows=rows)
    train = InputPipeline(dataclasses.replace(config, **forever), tokenizer=heldout.tokenizer,
                          process_index=process_index, process_count=process_count, video_time=video_time, rows=rows)
    tasks = tuple(t for t in config.task_names if t in config.enabled_tasks())
    held = draw_by_task(heldout, tasks, per_task)
    samples = [s for t in tasks for s in held.samples[t]]
    if not samples:
        raise HeldoutError(f"heldout.split={split!r}: no usable sample in the first {held.draws} samples of "
                           f"{heldout.source!r} ({held.skips.describe()})")
    prior_draw = draw_by_task(train, tasks, prior_per_task)
    priors = {t: majority_answer([p.sample.answer for p in s]) for t, s in prior_draw.samples.items() if s}
    short = [f"{t} {len(held.samples[t])}" for t in tasks if len(held.samples[t]) < per_task]
    if short:
        log.warning("held-out: fewer than heldout.samples_per_task=%d samples in %d draws: %s", per_task,
                    held.draws, ", ".join(short))
    log.info("held-out: %d samples of %s from split %r (%d drawn, %s); priors from %d %r samples",
             len(samples), ", ".join(tasks), split, held.draws, held.skips.describe(), prior_draw.draws, config.split)
    return HeldoutSet(samples=samples, tasks=tasks, priors=priors,
                      skips={"heldout": held.skips.state(), "prior": prior_draw.skips.state()},
                      split=split, draws=held.draws, spec=heldout.spec)
