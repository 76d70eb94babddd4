"""The features of our TFDS datasets (exactly what is stored), and record <-> example helpers.

Read back with ``tfds.data_source`` (no TensorFlow): ``Text`` fields come back as UTF-8
``bytes``, scalars as numpy scalars, ``Sequence`` fields as Python lists. Stored order is the
order written (``disable_shuffling``): ids ascending, numeric ids numerically.

Video record (``sf2t_corpus``, ``finevidbench/videos``; the first three fields of
``video_sft``)::

  id       Text            SSv2 video id ("2000017")
  video    bytes           the encoded file as it is on disk (WebM/VP9 like SSv2, or MP4);
                           decode with ``sf2t_jax.video.decode_video(bytes, name=id)``
  format   Text            container, from the file extension: "webm" | "mp4"

``video_sft`` adds, per video (labelled; for the SFT baseline only)::

  caption  Text            the filled SSv2 template: "Putting red star onto blue square"
  template Text            the SSv2 template: "Putting [something] onto [something]"
  category Text            "distinctive" | "non_typical" | "slight"
  qa       Sequence of     scene-level multiple choice about this video, each:
    task         Text      "action" | "effect" | "speed"
    speed        Text      "x0.5" | "x1" | "x2" | "x4" | "static": play the clip at this speed
    speed_factor float32   source frames advanced per shown frame (0.5, 1, 2, 4; 0 = one frame
                           repeated), for ``sf2t_jax.video.speed_indices``
    question     Text      without the options
    options      (4,) Text option texts; letter i is "ABCD"[i]
    answer       Text      gold letter "A".."D"
    answer_text  Text      gold option text

``finevidbench/items`` is one benchmark item per record, the JSON-lines schema of
``sf2t_jax.finevidbench.schema`` (``Item``) plus two fields; ``null`` there is stored as an
empty list or 0 here (``item_from_example`` restores the exact ``Item``)::

  item_id, video_id, split, level, task, speed, conversation, question,
  answer, answer_text, category, template      Text
  turn             int32
  options          Sequence(Text)     4 (scene, most fragment turns), 2 (adjust_or_not),
                                      0 (rearrangement: open answer)
  frames           Sequence(int32)    fragment items; [] for scene items
  frames_per_clip  int32              fragment items; 0 for scene items
  permutation      Sequence(int32)    fragment items; [] for scene items
  order            Sequence(int32)    rearrangement items; [] otherwise
  speed_factor     float32            as in video_sft
  video_index      int64              record index of the video in ``finevidbench/videos``
                                      (same split), so its bytes are stored once
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from sf2t_jax.finevidbench.schema import SPEED_FACTORS, Item
from sf2t_jax.finevidbench.source import Record

_text = tfds.features.Text
_bytes = lambda: tfds.features.Tensor(shape=(), dtype=np.object_)  # noqa: E731
_scalar = lambda dtype: tfds.features.Tensor(shape=(), dtype=dtype)  # noqa: E731
_ints = lambda: tfds.features.Sequence(_scalar(np.int32))  # noqa: E731

NUM_OPTIONS = 4


# ---- features ------------------------------------------------------------------------------
def video_fields() -> dict[str, tfds.features.FeatureConnector]:
    return {"id": _text(), "video": _bytes(), "format": _text()}


def video_features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(video_fields())


def sft_features() -> tfds.features.FeaturesDict:
    qa = tfds.features.Sequence({
        "task": _text(), "speed": _text(), "speed_factor": _scalar(np.float32),
        "question": _text(),
        "options": tfds.features.Tensor(shape=(NUM_OPTIONS,), dtype=np.object_),
        "answer": _text(), "answer_text": _text()})
    return tfds.features.FeaturesDict({**video_fields(), "caption": _text(),
                                       "template": _text(), "category": _text(), "qa": qa})


_ITEM_TEXT = ("item_id", "video_id", "split", "level", "task", "speed", "conversation",
              "question", "answer", "answer_text", "category", "template")


def item_features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        **{k: _text() for k in _ITEM_TEXT},
        "turn": _scalar(np.int32), "options": tfds.features.Sequence(_text()),
        "frames": _ints(), "frames_per_clip": _scalar(np.int32), "permutation": _ints(),
        "order": _ints(), "speed_factor": _scalar(np.float32),
        "video_index": _scalar(np.int64)})


# ---- records -> examples -------------------------------------------------------------------
def video_format(record: Record) -> str:
    return record.video.suffix.lstrip(".").lower()


def video_example(record: Record) -> dict[str, Any]:
    return {"id": record.id, "video": record.video.read_bytes(), "format": video_format(record)}


def qa_example(item: Item) -> dict[str, Any]:
    """A scene item as one ``video_sft`` QA entry."""
    if len(item.options) != NUM_OPTIONS:
        raise ValueError(f"item {item.item_id}: SFT questions have {NUM_OPTIONS} options, got "
                         f"{item.options}")
    return {"task": item.task, "speed": item.speed, "speed_factor": SPEED_FACTORS[item.speed],
            "question": item.question, "options": np.array(item.options, dtype=object),
            "answer": item.answer, "answer_text": item.answer_text}


def item_example(item: Item, video_index: int) -> dict[str, Any]:
    d = item.to_json()
    out = {k: d[k] for k in _ITEM_TEXT}
    out.update(turn=item.turn, options=list(item.options), frames=list(item.frames or ()),
               frames_per_clip=item.frames_per_clip or 0,
               permutation=list(item.permutation or ()), order=list(item.order or ()),
               speed_factor=SPEED_FACTORS[item.speed], video_index=video_index)
    return out


# ---- examples read back -> python ------------------------------------------------------------
def text(value: bytes | str) -> str:
    """A ``Text`` field as read back (bytes) -> str."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def item_from_example(example: Mapping[str, Any]) -> Item:
    """A ``finevidbench/items`` record read back -> the exact ``Item`` of the JSON lines."""
    fields = {k: text(example[k]) for k in _ITEM_TEXT}
    ints = lambda k: tuple(int(v) for v in example[k])  # noqa: E731
    fragment = fields["level"] == "fragment"
    return Item(**fields, turn=int(example["turn"]),
                options=tuple(text(o) for o in example["options"]),
                frames=ints("frames") if fragment else None,
                frames_per_clip=int(example["frames_per_clip"]) if fragment else None,
                permutation=ints("permutation") if fragment else None,
                order=ints("order") if fields["task"] == "rearrangement" else None)
