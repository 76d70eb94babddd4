"""Fragment-level items: one frame set asked about step by step, as one conversation.

Turns, in order (each sees the earlier questions, with the model's own or the gold answers):
  1 frame_count       how many frames (4 numbers)
  2 meaning_of_order  what the frames show in chronological order; the time-reversed action
                      (``reverse`` table) is always among the distractors when it exists
  3 adjust_or_not     do the frames need reordering (yes / no)
  4 frame_comparison  shuffled sets only: which of four named frames happens earliest (or
                      latest)
  5 rearrangement     shuffled sets only: the shown positions in chronological order (open)

No answer can be read off the text (tests/test_finevidbench_leaks.py):
- Frame comparison is asked about shuffled sets only. Frames are named by their position as
  shown; in a set shown in order the earliest named frame is always the lowest-numbered one,
  so asking it there let "earliest -> lowest number" answer 66% of the turns without the
  video. In a shuffled set the named frames' chronological ranks are a random permutation.
- Adjust-or-not comes before frame comparison: its history (count, meaning of order) does not
  depend on whether the set is shuffled. Asked after a comparison turn, the comparison's gold
  answer (lowest number for "earliest" = likely in order) answered it 84% of the time.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from sf2t_jax.finevidbench.options import LetterBalancer, Vocabulary, arrange, pick_distractors
from sf2t_jax.finevidbench.scene import action_text
from sf2t_jax.finevidbench.schema import Item
from sf2t_jax.finevidbench.source import Record


@dataclasses.dataclass(frozen=True)
class FrameSet:
    """Frames shown for one conversation."""

    shown: tuple[int, ...]  # frame indices (into the clip sampled to frames_per_clip), as shown
    permutation: tuple[int, ...]  # shown position -> chronological rank (0-based)

    @property
    def shuffled(self) -> bool:
        return self.permutation != tuple(range(len(self.permutation)))

    @property
    def order(self) -> tuple[int, ...]:
        """Shown positions (1-based) in chronological order: the rearrangement answer."""
        inverse = np.argsort(self.permutation)
        return tuple(int(i) + 1 for i in inverse)


def sample_frame_set(rng: np.random.Generator, frames_per_clip: int, size: tuple[int, int],
                     shuffled: bool) -> FrameSet:
    """N ~ U{size} distinct frames; if ``shuffled``, shown in a random non-identity order."""
    n = int(rng.integers(size[0], size[1] + 1))
    chosen = np.sort(rng.choice(frames_per_clip, n, replace=False))
    perm = np.arange(n)
    while shuffled and np.all(perm == np.arange(n)):
        perm = rng.permutation(n)
    return FrameSet(tuple(int(chosen[p]) for p in perm), tuple(int(p) for p in perm))


def conversation_items(record: Record, vocab: Vocabulary, set_index: int, frames: FrameSet,
                       frames_per_clip: int, rng: np.random.Generator,
                       balancer: LetterBalancer, set_size: tuple[int, int]) -> list[Item]:
    """The turns of one conversation. set_size: the (fewest, most) frames a set can have."""
    conv = f"{record.id}/set{set_index}"
    n = len(frames.shown)
    items: list[Item] = []

    def add(task: str, question: str, options: tuple[str, ...], answer: str,
            answer_text: str, order: tuple[int, ...] | None = None) -> None:
        turn = len(items) + 1
        items.append(Item(
            item_id=f"{conv}/t{turn}", video_id=record.id, split=record.split,
            level="fragment", task=task, speed="x1", conversation=conv, turn=turn,
            question=question, options=options, answer=answer, answer_text=answer_text,
            category=vocab.category(record.template), template=record.template,
            frames=frames.shown, frames_per_clip=frames_per_clip,
            permutation=frames.permutation, order=order))

    def mc(task: str, question: str, answer: str, distractors: list[str]) -> None:
        options, letter = arrange(answer, distractors, rng, balancer, task)
        add(task, question, options, letter, answer)

    # 1. frame count: three other counts the set could have had (set_size, widened to four
    # values if narrower). A window of consecutive counts around the truth leaked it: the
    # options outside set_size are never right ("the option in 4..8" scored 38%); from the
    # range, every option set is equally likely whichever of its counts is the answer.
    lo, hi = set_size
    pool = [k for k in range(lo, max(hi, lo + 3) + 1) if k != n]
    mc("frame_count", "How many frames are shown?", str(n),
       [str(pool[int(i)]) for i in np.sort(rng.choice(len(pool), 3, replace=False))])

    # 2. meaning of order: the reversed action is the first distractor
    answer = action_text(record, record.template)
    reverse = vocab.tables.reverse[record.template]
    preferred = ([reverse] if reverse else []) + list(vocab.tables.synonyms[record.template])
    distractors = pick_distractors(answer, vocab.candidates(record.template, preferred, rng),
                                   lambda t: action_text(record, t),
                                   what=f"meaning-of-order item of video {record.id}")
    mc("meaning_of_order", "Taken in their true chronological order, what do these frames "
       "show?", answer, distractors)

    # 3. adjust or not: asked before anything whose answer depends on the shuffle
    mc("adjust_or_not", "Do these frames need to be reordered to follow the video's "
       "timeline?", "yes" if frames.shuffled else "no",
       ["no" if frames.shuffled else "yes"])
    if not frames.shuffled:
        return items

    # 4. frame comparison (shuffled sets only): earliest or latest of four named frames
    # (1-based, as shown); their chronological ranks are a random permutation, so the frame
    # numbers say nothing about the answer
    named = sorted(int(i) + 1 for i in rng.choice(n, 4, replace=False))
    earliest = bool(rng.integers(2))
    ranks = {p: frames.permutation[p - 1] for p in named}
    pick = min(named, key=ranks.get) if earliest else max(named, key=ranks.get)
    which = "earliest" if earliest else "latest"
    mc("frame_comparison", f"The frames are numbered in the order shown. Of frames "
       f"{', '.join(map(str, named[:-1]))} and {named[-1]}, which happens {which} in the "
       "video?", f"frame {pick}", [f"frame {p}" for p in named if p != pick])

    # 5. rearrangement (shuffled sets only)
    text = ", ".join(map(str, frames.order))
    add("rearrangement", "List the frame numbers in chronological order, separated by "
        "commas.", (), text, text, order=frames.order)
    return items
