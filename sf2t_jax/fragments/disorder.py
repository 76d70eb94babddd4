"""`disorder`: are these frames in their true temporal order.

N pairwise-distinct frames (see `motion`), shown in order -> "yes", or with probability
p_shuffled permuted -> "no": either a full shuffle (any non-identity permutation) or one
swap of two neighbours, the hard case. Because the frames are pairwise distinct, every "no"
sequence visibly differs from the true one. A question drawn from `reorder_questions` asks the
opposite ("do they need reordering?"), so its answers swap: "yes" for permuted frames.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from sf2t_jax.fragments import base, motion
from sf2t_jax.sample import Sample

TASK = "disorder"


@dataclasses.dataclass(frozen=True)
class DisorderConfig:
    """Defaults from spec §2 where it speaks; the rest are ours."""

    # Inclusive range of N, the frames shown; capped by the distinct frames the clip has.
    n_frames: tuple[int, int] = (4, 16)
    p_shuffled: float = 0.5  # probability of a "no" (permuted) sample
    # Among "no" samples: probability of a full shuffle, else one adjacent swap.
    p_full_shuffle: float = 0.5
    # Clips whose mean consecutive-frame difference (grey levels, on ~32 px block-mean
    # thumbnails, see `motion`) is below this are near-static and skipped: their order cannot
    # be judged. Thumbnails average pixel noise away: on 224 px frames, i.i.d. noise of
    # sigma 2 measures 0.33 and a 40 px object moving 5 px a frame measures 1.1.
    static_threshold: float = 0.5
    # Every two shown frames differ by at least this (same measure), so duplicates are never
    # both shown (needs > 0) and a noisy static clip (sigma 4 measures 0.65) gives no
    # fragment. Frames of slow motion are then drawn further apart in time.
    min_frame_diff: float = 1.0
    questions: tuple[str, ...] = (
        "Are these frames in the correct temporal order?",
        "Is this frame sequence in its true chronological order? Answer yes or no.",
        "Do these frames play in the order the events happened?",
    )
    # Questions whose "yes" means the frames are out of order, drawn alongside `questions`
    # (uniformly over both; `questions` may then be empty, for that polarity alone). Empty by
    # default (the spec's question only); then samples are exactly as without the field.
    reorder_questions: tuple[str, ...] = ()
    present: str = "video"  # 'video' or 'images'

    def __post_init__(self):
        owner = "DisorderConfig"
        base.check_range(owner, "n_frames", self.n_frames, 2)  # a permutation needs 2 frames
        base.check_probability(owner, "p_shuffled", self.p_shuffled)
        base.check_probability(owner, "p_full_shuffle", self.p_full_shuffle)
        base.check_nonnegative(owner, "static_threshold", self.static_threshold)
        base.check_nonnegative(owner, "min_frame_diff", self.min_frame_diff)
        if self.questions or not self.reorder_questions:  # one of the two polarities at least
            base.check_questions(owner, "questions", self.questions)
        if self.reorder_questions:
            base.check_questions(owner, "reorder_questions", self.reorder_questions)
        base.check_present(owner, self.present)


def make_disorder(frames: np.ndarray, rng: np.random.Generator,
                  config: DisorderConfig = DisorderConfig()) -> Sample:
    """frames: uint8 (T, H, W, 3) -> a sample with uint8 (N, H, W, 3) frames, 'yes' or 'no'
    (to `questions`: in order; to `reorder_questions`: permuted).

    Raises SampleSkip('too_short' | 'near_static' | 'too_few_distinct').
    """
    base.check_clip(frames)
    indices = motion.order_indices(frames, rng, TASK, config.n_frames,
                                   config.static_threshold, config.min_frame_diff)
    n = len(indices)
    perm = np.arange(n)  # perm[k]: chronological rank of the frame shown at position k
    if rng.random() < config.p_shuffled:
        if rng.random() < config.p_full_shuffle:
            order, perm = "shuffle", base.non_identity_permutation(rng, n)
        else:
            order, k = "adjacent_swap", int(rng.integers(n - 1))
            perm[[k, k + 1]] = perm[[k + 1, k]]
        answer = base.NO
    else:
        order, answer = "in_order", base.YES
    shown = indices[perm]
    q, question = base.pick(rng, config.questions + config.reorder_questions)
    if q >= len(config.questions):  # "do they need reordering?": the answer swaps
        answer = base.NO if answer == base.YES else base.YES
    return Sample(
        task=TASK, frames=frames[shown], question=question, answer=answer,
        present=config.present,
        metadata={"source_indices": shown.tolist(), "order": order,
                  "permutation": perm.tolist(), "paraphrase": q},
    )
