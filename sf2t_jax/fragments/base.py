"""What every fragment task shares: small helpers and config checks.

A task is a pure function `(frames, rng, config) -> sample.Sample` that may raise
`sample.SampleSkip`. All randomness comes from the `rng` argument, so a sample is a function of
`(clip, seed, index, config)` alone (see `sample.sample_rng`).
"""
from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from sf2t_jax.sample import PRESENT_MODES

YES, NO = "yes", "no"


# ----------------------------------------------------------------------------------------
# Small helpers used by the tasks.
# ----------------------------------------------------------------------------------------
def check_clip(frames: np.ndarray) -> tuple[int, int, int]:
    """Returns (T, H, W) of a uint8 (T, H, W, 3) clip; raises ValueError otherwise."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 \
            or frames.shape[-1] != 3:
        got = (f"{frames.dtype} array of shape {frames.shape}" if isinstance(frames, np.ndarray)
               else type(frames).__name__)
        raise ValueError(f"frames: expected a uint8 array of shape (T, H, W, 3), got {got}")
    t, h, w, _ = frames.shape
    return t, h, w


def require_size(task: str, height: int, width: int, minimum: int) -> None:
    if height < minimum or width < minimum:
        raise ValueError(f"{task}: frames must be at least {minimum}x{minimum} pixels, "
                         f"got {height}x{width}")


def pick(rng: np.random.Generator, options: Sequence[Any]) -> tuple[int, Any]:
    """A uniformly drawn (position, element) of a non-empty sequence."""
    k = int(rng.integers(len(options)))
    return k, options[k]


def draw_count(rng: np.random.Generator, lo: int, hi: int) -> int:
    """N ~ U{lo..hi}, inclusive."""
    return int(rng.integers(lo, hi + 1))


def random_sorted_indices(rng: np.random.Generator, num_frames: int, n: int) -> np.ndarray:
    """n distinct frame indices of a `num_frames` clip, uniformly drawn, increasing. int64 (n,)."""
    return np.sort(rng.choice(num_frames, size=n, replace=False))


def non_identity_permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    """A uniform random permutation of range(n) other than the identity (n >= 2). int64 (n,)."""
    while True:  # rejection: the identity has probability 1/n! <= 1/2
        perm = rng.permutation(n)
        if np.any(perm != np.arange(n)):
            return perm


def chronological_answer(permutation: np.ndarray) -> str:
    """'3, 1, 4, 2': the 1-based shown positions of the frames, earliest first.

    `permutation[k]` is the chronological rank of the frame shown at position k, so its
    inverse lists, rank by rank, where each frame is shown.
    """
    return ", ".join(str(int(p) + 1) for p in np.argsort(permutation))


# ----------------------------------------------------------------------------------------
# Config validation: errors name the field and what was expected.
# ----------------------------------------------------------------------------------------
def check_range(owner: str, field: str, value: Any, minimum: int) -> None:
    ok = (isinstance(value, tuple) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
          and minimum <= value[0] <= value[1])
    if not ok:
        raise ValueError(f"{owner}.{field}: expected a tuple (lo, hi) of ints with "
                         f"{minimum} <= lo <= hi, got {value!r}")


def check_float_range(owner: str, field: str, value: Any, lo: float, hi: float) -> None:
    ok = (isinstance(value, tuple) and len(value) == 2
          and all(isinstance(v, (int, float)) for v in value)
          and lo <= value[0] <= value[1] <= hi)
    if not ok:
        raise ValueError(f"{owner}.{field}: expected a tuple (a, b) with "
                         f"{lo} <= a <= b <= {hi}, got {value!r}")


def check_probability(owner: str, field: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}.{field}: expected a probability in [0, 1], got {value!r}")


def check_nonnegative(owner: str, field: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{owner}.{field}: expected a number >= 0, got {value!r}")


def check_present(owner: str, value: Any) -> None:
    if value not in PRESENT_MODES:
        raise ValueError(f"{owner}.present: expected one of {PRESENT_MODES}, got {value!r}")


def check_subset(owner: str, field: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    ok = (isinstance(value, tuple) and value and len(set(value)) == len(value)
          and all(v in allowed for v in value))
    if not ok:
        raise ValueError(f"{owner}.{field}: expected a non-empty tuple of distinct names "
                         f"from {allowed}, got {value!r}")


def check_questions(owner: str, field: str, value: Any, placeholders: tuple[str, ...] = ()) -> None:
    """A non-empty tuple of str.format templates that use only `placeholders`."""
    if not (isinstance(value, tuple) and value and all(isinstance(q, str) and q for q in value)):
        raise ValueError(f"{owner}.{field}: expected a non-empty tuple of non-empty strings, "
                         f"got {value!r}")
    for k, q in enumerate(value):
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(q) if name is not None}
        except ValueError as e:
            raise ValueError(f"{owner}.{field}[{k}]: not a valid format string ({e}): {q!r}")
        if not names <= set(placeholders):
            raise ValueError(f"{owner}.{field}[{k}]: unknown placeholder(s) "
                             f"{sorted(names - set(placeholders))}; allowed: "
                             f"{list(placeholders)}: {q!r}")
