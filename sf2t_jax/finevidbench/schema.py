"""One benchmark item, and the JSON-lines files that hold them.

Schema (one JSON object per line; ``null`` where a field does not apply):

  item_id        str   unique: "{video_id}/{task}/{speed}" (scene) or
                       "{video_id}/set{k}/t{turn}" (fragment)
  video_id       str   SSv2 id; the video is ``videos/{video_id}.webm|mp4``
  split          str   label split the video comes from
  level          str   "scene" | "fragment"
  task           str   one of TASKS
  speed          str   one of SPEEDS: the clip is played at this speed (pixels are made by the
                       consumer: "x0.5" repeats frames, "x2"/"x4" skip, "static" repeats one)
  conversation   str   items sharing it form one multi-turn inquiry (scene items: item_id)
  turn           int   1-based position in the conversation (scene items: 1); each turn sees
                       the earlier questions with the model's own answers (eval's default) or
                       the gold ones (eval config prompt.history)
  question       str
  options        [str] option texts for multiple choice, letter i = "ABCD"[i]; [] if open
  answer         str   the gold letter ("A".."D") for multiple choice, else the answer text
  answer_text    str   the gold option text (= answer for open items)
  category       str   "distinctive" | "non_typical" | "slight" (of the clip's template)
  template       str   the clip's SSv2 template
  frames         [int] fragment items: indices of the frames shown, in the order shown, into
                       the clip sampled uniformly to ``frames_per_clip`` frames, i.e. decoded
                       frame ``round(linspace(0, T - 1, frames_per_clip))[i]`` of a T-frame
                       clip; null for scene items (the consumer samples its own budget)
  frames_per_clip int  fragment items: the uniform sampling ``frames`` refers to; else null
  permutation    [int] fragment items: shown position -> chronological rank (0-based), so
                       ``frames[k] == sorted(frames)[permutation[k]]``; identity if in order
  order          [int] rearrangement items: shown positions (1-based) in chronological order
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sf2t_jax.errors import InputError
from sf2t_jax.fileio import atomic_write_jsonl

LETTERS = "ABCD"
SPEEDS = ("x0.5", "x1", "x2", "x4", "static")
SPEED_FACTORS = {"x0.5": 0.5, "x1": 1.0, "x2": 2.0, "x4": 4.0, "static": 0.0}
SPEED_ANSWERS = {"x0.5": "slow", "x1": "normal", "x2": "fast", "x4": "fast",
                 "static": "static"}
SCENE_TASKS = ("action", "effect", "speed")
FRAGMENT_TASKS = ("frame_count", "meaning_of_order", "frame_comparison", "adjust_or_not",
                  "rearrangement")
TASKS = SCENE_TASKS + FRAGMENT_TASKS


@dataclasses.dataclass(frozen=True)
class Item:
    item_id: str
    video_id: str
    split: str
    level: str
    task: str
    speed: str
    conversation: str
    turn: int
    question: str
    options: tuple[str, ...]
    answer: str
    answer_text: str
    category: str
    template: str
    frames: tuple[int, ...] | None = None
    frames_per_clip: int | None = None
    permutation: tuple[int, ...] | None = None
    order: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"item {self.item_id}: task {self.task!r} not in {TASKS}")
        if self.speed not in SPEEDS:
            raise ValueError(f"item {self.item_id}: speed {self.speed!r} not in {SPEEDS}")
        if self.options:
            if len(set(self.options)) != len(self.options) or len(self.options) > 4:
                raise ValueError(f"item {self.item_id}: options must be 2-4 distinct texts, "
                                 f"got {self.options}")
            allowed = LETTERS[: len(self.options)]
            if self.answer not in allowed:
                raise InputError(f"item {self.item_id}: field 'answer': {self.answer!r} is not among the "
                                 f"{len(self.options)} options (expected one of {', '.join(allowed)})")
            if self.options[LETTERS.index(self.answer)] != self.answer_text:
                raise ValueError(f"item {self.item_id}: answer {self.answer} is not "
                                 f"{self.answer_text!r}")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("options", "frames", "permutation", "order"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Item":
        d = dict(d)
        for k in ("options", "frames", "permutation", "order"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)


def write_jsonl(path: str | Path, items: Iterable[Item]) -> int:
    """Writes items atomically, one JSON object per line; returns how many."""
    return atomic_write_jsonl(path, (it.to_json() for it in items))


def read_jsonl(path: str | Path) -> list[Item]:
    items = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    items.append(Item.from_json(json.loads(line)))
                except (json.JSONDecodeError, TypeError, ValueError) as e:
                    raise InputError(f"{path}:{n}: not a benchmark item ({e})") from e
    return items
