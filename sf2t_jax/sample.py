"""The sample: frames, one question about them and its answer.

Every source of training text makes one: the five fragment tasks (`sf2t_jax.fragments`), and the
captions and scene questions of labelled videos (`sf2t_jax.input.scene`). The input pipeline
encodes it (patchify, chat template, loss mask) without knowing which made it. A maker that
cannot use a clip raises `SampleSkip`; all its randomness comes from `sample_rng(seed, index)`,
so sample `index` is a function of (clip, seed, index, config) alone.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np

PRESENT_MODES = ("video", "images")  # one N-frame video, or one image per frame
SKIP_REASONS = (
    "too_short",  # the clip has fewer frames than the task's smallest fragment
    "near_static",  # consecutive frames barely differ: temporal order cannot be judged
    "too_few_distinct",  # not enough mutually distinct frames for an unambiguous order
)


@dataclasses.dataclass(frozen=True, eq=False)
class Sample:
    """One question-answer sample over frames.

    Attributes:
      task: what made it: a fragment task (`count`, `consistency`, `localize`, `disorder`,
        `rearrange`) or a scene task (`caption`, `action`, `effect`, `speed`).
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


class SampleSkip(Exception):
    """A clip that cannot give this task a valid sample. Count it by `reason` and move on.

    Raised rather than retried so that the task mix is never silently changed; the caller
    decides (the input pipeline counts skips per task and reason).
    """

    def __init__(self, reason: str, task: str, detail: str = ""):
        if reason not in SKIP_REASONS:
            raise ValueError(f"SampleSkip.reason: expected one of {SKIP_REASONS}, got {reason!r}")
        super().__init__(f"{task}: skipped ({reason})" + (f": {detail}" if detail else ""))
        self.reason, self.task, self.detail = reason, task, detail

    def __reduce__(self):  # picklable across grain worker processes
        return (SampleSkip, (self.reason, self.task, self.detail))


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
