"""What every fragment task shares: the sample, the typed skip, the per-sample RNG, checks.

A task is a pure function `(frames, rng, config) -> FragmentSample` that may raise
`FragmentSkip`. All randomness comes from the `rng` argument, so a sample is a function of
`(clip, seed, index, config)` alone (see `sample_rng`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import string
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

PRESENT_MODES = ("video", "images")  # one N-frame video, or one image per frame
SKIP_REASONS = (
    "too_short",  # the clip has fewer frames than the task's smallest fragment
    "near_static",  # consecutive frames barely differ: temporal order cannot be judged
    "too_few_distinct",  # not enough mutually distinct frames for an unambiguous order
)
YES, NO = "yes", "no"


@dataclasses.dataclass(frozen=True, eq=False)
class FragmentSample:
    """One self-supervised question-answer sample.

    Attributes:
      task: the task name (`count`, `consistency`, `localize`, `disorder`, `rearrange`).
      frames: uint8 (N, H, W, 3), the frames to show, in the order shown. A fresh array,
        never a view of the input clip.
      question: the user turn. Frame positions in it are 1-based, in the order shown.
      answer: the short canonical answer, the only tokens the loss is on.
      present: 'video' (one video of N frames) or 'images' (one image per frame).
      metadata: JSON-serialisable facts about how the sample was made (source frame indices,
        permutation, span, edit, paraphrase id), for tests, previews and summaries. Never
        shown to the model.
    """

    task: str
    frames: np.ndarray
    question: str
    answer: str
    present: str = "video"
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def digest(self) -> str:
        """sha256 over every field, pixels included: equal digests mean byte-identical samples."""
        h = hashlib.sha256()
        head = [self.task, self.present, self.question, self.answer,
                str(self.frames.dtype), list(self.frames.shape)]
        h.update(json.dumps(head).encode())
        h.update(np.ascontiguousarray(self.frames).tobytes())
        h.update(json.dumps(self.metadata, sort_keys=True).encode())
        return h.hexdigest()


class FragmentSkip(Exception):
    """A clip that cannot give this task a valid sample. Count it by `reason` and move on.

    Raised rather than retried so that the task mix is never silently changed; the caller
    decides (the input pipeline counts skips per task and reason).
    """

    def __init__(self, reason: str, task: str, detail: str = ""):
        if reason not in SKIP_REASONS:
            raise ValueError(f"FragmentSkip.reason: expected one of {SKIP_REASONS}, got {reason!r}")
        super().__init__(f"{task}: skipped ({reason})" + (f": {detail}" if detail else ""))
        self.reason, self.task, self.detail = reason, task, detail

    def __reduce__(self):  # picklable across grain worker processes
        return (FragmentSkip, (self.reason, self.task, self.detail))


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample `index` under `seed`, independent of every other index.

    Each of seed and index enters the SeedSequence as exactly two 32-bit words, so distinct
    (seed, index) pairs never share an entropy pool (a plain `[seed, index]` list does for
    values of 2**32 and above).
    """
    words = []
    for name, value in (("seed", seed), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or not 0 <= value < 2**64:
            raise ValueError(f"{name}: expected an integer in [0, 2**64), got {value!r}")
        value = int(value)
        words += [value & 0xFFFFFFFF, value >> 32]
    return np.random.default_rng(np.random.SeedSequence(words))


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
