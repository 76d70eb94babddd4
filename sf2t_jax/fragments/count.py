"""`count`: N frames at random sorted indices; the answer is N.

Duplicate frames are kept on purpose: the question is how many frames the model was given,
not how many distinct moments it saw.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from sf2t_jax.fragments import base
from sf2t_jax.sample import Sample, SampleSkip

TASK = "count"


@dataclasses.dataclass(frozen=True)
class CountConfig:
    """Defaults from spec §2."""

    # Inclusive range of N, the frames shown; N ~ U{lo..min(hi, T)} for a clip of T frames,
    # so a clip shorter than hi still gives samples (counts above T are then not drawn).
    n_frames: tuple[int, int] = (2, 16)
    # Paraphrases, one drawn per sample; no placeholders.
    questions: tuple[str, ...] = (
        "How many frames does this video contain?",
        "Count the frames in this video. How many are there?",
        "How many frames are shown? Answer with a number.",
        "What is the number of frames you see?",
    )
    present: str = "video"  # 'video' or 'images'

    def __post_init__(self):
        base.check_range("CountConfig", "n_frames", self.n_frames, 1)
        base.check_questions("CountConfig", "questions", self.questions)
        base.check_present("CountConfig", self.present)


def make_count(frames: np.ndarray, rng: np.random.Generator,
               config: CountConfig = CountConfig()) -> Sample:
    """frames: uint8 (T, H, W, 3) -> a sample with uint8 (N, H, W, 3) frames and answer str(N).

    Raises SampleSkip('too_short') when T < n_frames[0].
    """
    t, _, _ = base.check_clip(frames)
    lo, hi = config.n_frames
    if t < lo:
        raise SampleSkip("too_short", TASK, f"{t} frames, needs at least {lo}")
    n = base.draw_count(rng, lo, min(hi, t))
    indices = base.random_sorted_indices(rng, t, n)
    q, question = base.pick(rng, config.questions)
    return Sample(
        task=TASK, frames=frames[indices], question=question, answer=str(n),
        present=config.present,
        metadata={"source_indices": indices.tolist(), "paraphrase": q},
    )
