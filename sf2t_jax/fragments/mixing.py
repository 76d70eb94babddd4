"""The task mix: one config for all five tasks, and `make_sample`, the pipeline's entry point.

`make_sample(frames, seed, index, config)` seeds a generator from (seed, index) alone, draws
a task by weight, and runs it, so any sample can be regenerated on its own, in any worker,
in any order.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import numpy as np

from sf2t_jax.fragments.consistency import ConsistencyConfig, make_consistency
from sf2t_jax.fragments.count import CountConfig, make_count
from sf2t_jax.fragments.disorder import DisorderConfig, make_disorder
from sf2t_jax.fragments.localize import LocalizeConfig, make_localize
from sf2t_jax.fragments.rearrange import RearrangeConfig, make_rearrange
from sf2t_jax.sample import Sample, sample_rng

# Task name -> its function; also the name of the task's config field in FragmentsConfig.
TASKS: dict[str, Callable[..., Sample]] = {
    "count": make_count,
    "consistency": make_consistency,
    "localize": make_localize,
    "disorder": make_disorder,
    "rearrange": make_rearrange,
}
TASK_NAMES = tuple(TASKS)
CONFIG_TYPES = {
    "count": CountConfig,
    "consistency": ConsistencyConfig,
    "localize": LocalizeConfig,
    "disorder": DisorderConfig,
    "rearrange": RearrangeConfig,
}


def _unknown(name: object) -> ValueError:
    return ValueError(f"unknown fragment task {name!r}; known tasks: {', '.join(TASK_NAMES)}")


@dataclasses.dataclass(frozen=True)
class FragmentsConfig:
    """All five tasks and how they are mixed."""

    # Relative sampling weight per task; uniform by default (spec §2). Accepts a mapping or
    # (name, weight) pairs; a task left out has weight 0 (off), so {'count': 1} trains count
    # alone and leave-one-out sets one weight to 0. Stored as (name, weight) pairs in
    # TASK_NAMES order: hashable and picklable for grain workers.
    weights: Mapping[str, float] | tuple[tuple[str, float], ...] = tuple(
        (name, 1.0) for name in TASK_NAMES)
    count: CountConfig = CountConfig()
    consistency: ConsistencyConfig = ConsistencyConfig()
    localize: LocalizeConfig = LocalizeConfig()
    disorder: DisorderConfig = DisorderConfig()
    rearrange: RearrangeConfig = RearrangeConfig()

    def __post_init__(self):
        given = dict(self.weights)
        for name, weight in given.items():
            if name not in TASKS:
                raise ValueError(f"FragmentsConfig.weights: {_unknown(name)}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                    or not math.isfinite(weight) or weight < 0:
                raise ValueError(f"FragmentsConfig.weights[{name!r}]: expected a finite "
                                 f"number >= 0, got {weight!r}")
        if sum(given.values()) <= 0:
            raise ValueError(f"FragmentsConfig.weights: at least one task needs a weight > 0, "
                             f"got {given}")
        object.__setattr__(self, "weights",
                           tuple((name, float(given.get(name, 0.0))) for name in TASK_NAMES))
        for name, expected in CONFIG_TYPES.items():
            if not isinstance(getattr(self, name), expected):
                raise ValueError(f"FragmentsConfig.{name}: expected a {expected.__name__}, "
                                 f"got {getattr(self, name)!r}")

    def probabilities(self) -> np.ndarray:
        """float64 (5,): the chance of each task, in TASK_NAMES order."""
        w = np.array([weight for _, weight in self.weights])
        return w / w.sum()

    def task_config(self, name: str):
        """The config of task `name`."""
        if name not in TASKS:
            raise _unknown(name)
        return getattr(self, name)


def draw_task(rng: np.random.Generator, config: FragmentsConfig) -> str:
    """A task name drawn with the config's weights (one uniform draw from rng)."""
    return TASK_NAMES[int(rng.choice(len(TASK_NAMES), p=config.probabilities()))]


def make_task(name: str, frames: np.ndarray, rng: np.random.Generator,
              config: FragmentsConfig = FragmentsConfig()) -> Sample:
    """Runs task `name` with its config from `config`. May raise SampleSkip."""
    if name not in TASKS:
        raise _unknown(name)
    return TASKS[name](frames, rng, config.task_config(name))


def make_sample(frames: np.ndarray, seed: int, index: int,
                config: FragmentsConfig = FragmentsConfig(),
                task: str | None = None) -> Sample:
    """Sample `index` of a fragment stream: a pure function of its arguments.

    Args:
      frames: uint8 (T, H, W, 3), the decoded clip.
      seed, index: non-negative ints; the generator is `sample_rng(seed, index)`.
      config: the task configs and mixing weights.
      task: run this task instead of drawing one (previews, per-task evals); its weight
        does not matter then.
    Returns a Sample. Raises SampleSkip when the clip cannot serve the drawn task;
    the caller counts it by `reason` (retrying with another task would change the mix).
    """
    rng = sample_rng(seed, index)
    name = draw_task(rng, config) if task is None else task
    return make_task(name, frames, rng, config)
