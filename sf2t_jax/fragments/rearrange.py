"""`rearrange`: shuffled frames; list their shown positions in chronological order.

N pairwise-distinct frames (see `motion`; this makes the answer unique) shown under a
non-identity permutation. The answer lists 1-based shown positions, earliest frame first:
"3, 1, 4, 2" means the earliest frame is shown third, so taking the shown frames at
positions 3, 1, 4, 2 restores the true order.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from sf2t_jax.fragments import base, motion
from sf2t_jax.sample import Sample

TASK = "rearrange"


@dataclasses.dataclass(frozen=True)
class RearrangeConfig:
    """Defaults from spec §2 where it speaks; the rest are ours."""

    # Inclusive range of N, the frames shown; capped by the distinct frames the clip has.
    n_frames: tuple[int, int] = (3, 8)
    # Near-static skip and duplicate-frame guard, as in DisorderConfig.
    static_threshold: float = 0.5  # grey levels, mean consecutive difference on thumbnails
    min_frame_diff: float = 1.0  # grey levels, between any two shown frames on thumbnails
    questions: tuple[str, ...] = (
        "The frames are shuffled. List their positions in chronological order.",
        "These frames are out of order. Give the frame numbers from earliest to latest, "
        "separated by commas.",
        "Put the shuffled frames back in time order: which frame comes first, second, and so "
        "on?",
    )
    present: str = "video"  # 'video' or 'images'

    def __post_init__(self):
        owner = "RearrangeConfig"
        base.check_range(owner, "n_frames", self.n_frames, 2)  # a permutation needs 2 frames
        base.check_nonnegative(owner, "static_threshold", self.static_threshold)
        base.check_nonnegative(owner, "min_frame_diff", self.min_frame_diff)
        base.check_questions(owner, "questions", self.questions)
        base.check_present(owner, self.present)


def make_rearrange(frames: np.ndarray, rng: np.random.Generator,
                   config: RearrangeConfig = RearrangeConfig()) -> Sample:
    """frames: uint8 (T, H, W, 3) -> a sample with uint8 (N, H, W, 3) frames, answer '3, 1, 2'.

    Raises SampleSkip('too_short' | 'near_static' | 'too_few_distinct').
    """
    base.check_clip(frames)
    indices = motion.order_indices(frames, rng, TASK, config.n_frames,
                                   config.static_threshold, config.min_frame_diff)
    perm = base.non_identity_permutation(rng, len(indices))  # perm[k]: rank of shown frame k
    shown = indices[perm]
    q, question = base.pick(rng, config.questions)
    return Sample(
        task=TASK, frames=frames[shown], question=question,
        answer=base.chronological_answer(perm), present=config.present,
        metadata={"source_indices": shown.tolist(), "permutation": perm.tolist(),
                  "paraphrase": q},
    )
