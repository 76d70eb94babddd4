"""`consistency`: two frames of one clip; are they the same, and where do they differ.

Two modes (the first shown frame is always the clip frame i, unedited):
  * same: (identical) frame i twice -> "yes"; or (next) i and i + delta, or (edit) i and a
    local edit of i -> "no". "yes" is pixel-identical; every "no" pair differs visibly: a
    (next) pair must change some grid cell by >= min_next_change, edits by >= the edit
    config's min_change.
  * where: frame i and a copy with one 3x3 grid cell edited -> the cell's name, one of
    `edits.CELL_NAMES` ("top left" ... "center" ... "bottom right").
"""
from __future__ import annotations

import dataclasses

import numpy as np

from sf2t_jax.fragments import base
from sf2t_jax.fragments.edits import CELL_NAMES, EditConfig, cell_changes, edit_cell
from sf2t_jax.sample import Sample, SampleSkip

TASK = "consistency"
DIFFERENT_KINDS = ("next", "edit")
MIN_SIDE = 6  # pixels; every grid cell at least 2x2


@dataclasses.dataclass(frozen=True)
class ConsistencyConfig:
    """Defaults from spec §2 where it speaks; the rest are ours."""

    p_where: float = 0.5  # probability of the 'where' mode, else 'same'
    p_identical: float = 0.5  # in 'same' mode: probability of the "yes" (identical) pair
    # In 'same' mode, how a "no" pair is made, drawn uniformly: 'next' (frame i + delta) and
    # 'edit' (a local edit of frame i).
    different_kinds: tuple[str, ...] = DIFFERENT_KINDS
    delta_range: tuple[int, int] = (1, 4)  # 'next': delta ~ U{lo..hi} frames
    # 'next': the most-changed grid cell must differ by at least this (mean |change|, grey
    # levels), so the pair is not a near-duplicate. Lower than the edit bar: natural motion
    # is subtler than an edit, and subtle is the point of the task.
    min_next_change: float = 4.0
    # 'next': (i, delta) draws tried before using an edit instead (a clip whose nearby frames
    # are near-duplicates). The fallback keeps the yes/no balance; metadata says 'edit'.
    next_tries: int = 8
    edit: EditConfig = EditConfig()  # edit kinds and visibility, shared by both modes
    same_questions: tuple[str, ...] = (
        "Are these two frames exactly the same?",
        "Is the second frame an exact copy of the first? Answer yes or no.",
        "Look closely: are the two frames identical?",
    )
    # Placeholder {regions}: the nine canonical cell names, comma-separated.
    where_questions: tuple[str, ...] = (
        "Which region differs between the two frames?",
        "The two frames differ in one cell of a 3x3 grid. Which one? Answer with one of: "
        "{regions}.",
        "Where is the difference between these two frames? Choose from: {regions}.",
    )
    present: str = "video"  # 'video' or 'images'

    def __post_init__(self):
        owner = "ConsistencyConfig"
        base.check_probability(owner, "p_where", self.p_where)
        base.check_probability(owner, "p_identical", self.p_identical)
        base.check_subset(owner, "different_kinds", self.different_kinds, DIFFERENT_KINDS)
        base.check_range(owner, "delta_range", self.delta_range, 1)
        base.check_nonnegative(owner, "min_next_change", self.min_next_change)
        if not (isinstance(self.next_tries, int) and self.next_tries >= 1):
            raise ValueError(f"{owner}.next_tries: expected an int >= 1, got {self.next_tries!r}")
        if not isinstance(self.edit, EditConfig):
            raise ValueError(f"{owner}.edit: expected an EditConfig, got {self.edit!r}")
        base.check_questions(owner, "same_questions", self.same_questions)
        base.check_questions(owner, "where_questions", self.where_questions, ("regions",))
        base.check_present(owner, self.present)


def make_consistency(frames: np.ndarray, rng: np.random.Generator,
                     config: ConsistencyConfig = ConsistencyConfig()) -> Sample:
    """frames: uint8 (T, H, W, 3) -> a sample with uint8 (2, H, W, 3) frames.

    Answers: 'yes' / 'no' (same mode) or a cell name (where mode). Raises
    SampleSkip('too_short') for an empty clip.
    """
    t, h, w = base.check_clip(frames)
    if t < 1:
        raise SampleSkip("too_short", TASK, "0 frames, needs at least 1")
    base.require_size(TASK, h, w, MIN_SIDE)
    i = int(rng.integers(t))
    if rng.random() < config.p_where:
        cell = int(rng.integers(9))
        edited, kind = edit_cell(frames[i], cell, rng, config.edit)
        q, template = base.pick(rng, config.where_questions)
        return Sample(
            task=TASK, frames=np.stack([frames[i], edited]),
            question=template.format(regions=", ".join(CELL_NAMES)),
            answer=CELL_NAMES[cell], present=config.present,
            metadata={"mode": "where", "source_indices": [i, i], "cell": CELL_NAMES[cell],
                      "edit": kind, "paraphrase": q},
        )

    meta = {"mode": "same"}
    if rng.random() < config.p_identical:
        second, answer = frames[i], base.YES
        meta.update(kind="identical", source_indices=[i, i])
    else:
        answer = base.NO
        _, kind = base.pick(rng, config.different_kinds)
        pair = _next_pair(frames, rng, config) if kind == "next" else None
        if pair is not None:
            i, j = pair
            second = frames[j]
            meta.update(kind="next", source_indices=[i, j], delta=j - i)
        else:
            cell = int(rng.integers(9))
            second, edit = edit_cell(frames[i], cell, rng, config.edit)
            meta.update(kind="edit", source_indices=[i, i], cell=CELL_NAMES[cell], edit=edit)
    q, question = base.pick(rng, config.same_questions)
    meta["paraphrase"] = q
    return Sample(
        task=TASK, frames=np.stack([frames[i], second]), question=question, answer=answer,
        present=config.present, metadata=meta,
    )


def _next_pair(frames, rng, config) -> tuple[int, int] | None:
    """(i, i + delta) whose frames visibly differ, or None after `next_tries` draws."""
    lo, hi = config.delta_range
    for _ in range(config.next_tries):
        delta = base.draw_count(rng, lo, hi)
        if delta >= len(frames):
            continue
        i = int(rng.integers(len(frames) - delta))
        if cell_changes(frames[i], frames[i + delta]).max() >= config.min_next_change:
            return i, i + delta
    return None
