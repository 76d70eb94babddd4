"""Labelled scene samples from `video_sft` records: captions (pretraining the "base" model) and
scene QA (the SFT baseline), in exactly the benchmark's format.

A `video_sft` record holds one video, its caption and its scene questions (action, effect,
speed; 4 options each). Sample g takes one of them, chosen by `sample_rng(seed, g)`, and shows
`scene_frames` frames of the clip replayed at the question's speed over the clip's middle —
the plan the benchmark's scorer uses (`video.centered_speed_indices`). The question is
formatted by `finevidbench.prompt`, the module the scorer formats with.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sf2t_jax.datasets.facts import FACT_TASKS
from sf2t_jax.finevidbench.prompt import ANSWER_STYLES, multiple_choice, written_answers
from sf2t_jax.finevidbench.schema import LETTERS
from sf2t_jax.sample import Sample, SampleSkip, sample_rng
from sf2t_jax.video.sampling import NotEnoughFrames, centered_speed_indices

SCENE_MODES = ("captions", "scene_qa")
CAPTION_TASK = "caption"
QA_TASKS = ("action", "effect", "speed")
SCENE_TASK_NAMES = (CAPTION_TASK,) + QA_TASKS + FACT_TASKS
CAPTION_QUESTIONS = (
    "Describe the action in this video.",
    "What is happening in this video?",
    "What does the video show?",
)
# The fields a scene sample reads besides the video (kept by `sources.RecordSource`).
SCENE_FIELDS = ("caption", "qa")


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """How scene samples are made.

    mode: 'captions' (question: a caption request; answer: the caption, shown at x1) or
      'scene_qa' (one of the record's action/effect/speed questions at its speed).
    fact_share: 'captions' only: the share of samples that ask one of the record's non-temporal
      fact questions (`datasets.facts`: colour, shape, how many; multiple choice in the
      benchmark's format) instead of the caption; records without any stay captions.
    scene_frames: frames shown (6, the scorer's `video.scene_frames` default).
    instruction: text after the lettered options ('' ; the scorer's `prompt.instruction`).
    answer_style: how the answer is written: 'text' (the option's text, the default and the
      scorer's default log-likelihood target), 'letter' or 'letter_text'.
    """

    mode: str = "scene_qa"
    scene_frames: int = 6
    instruction: str = ""
    answer_style: str = "text"
    fact_share: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.fact_share <= 1.0:
            raise ValueError(f"fact_share={self.fact_share}: expected a share in [0, 1]")
        if self.fact_share and self.mode != "captions":
            raise ValueError(f"fact_share={self.fact_share}: fact questions join captions only (mode {self.mode!r})")
        if self.mode not in SCENE_MODES:
            raise ValueError(f"scene mode {self.mode!r}: expected one of {SCENE_MODES}")
        if self.answer_style not in ANSWER_STYLES:
            raise ValueError(f"answer_style {self.answer_style!r}: expected one of {ANSWER_STYLES}")
        if self.scene_frames < 1:
            raise ValueError(f"scene_frames={self.scene_frames}: expected >= 1")

    @property
    def tasks(self) -> tuple[str, ...]:
        if self.mode == "captions":
            return (CAPTION_TASK,) + (FACT_TASKS if self.fact_share else ())
        return QA_TASKS


def make_scene_sample(clip: np.ndarray, record: dict[str, Any], seed: int, index: int,
                      config: SceneConfig) -> Sample:
    """Sample `index` of a `video_sft` record.

    Args:
      clip: uint8 (T, H, W, 3), every frame of the video (speed plans index the whole clip).
      record: with `caption` (str) and `qa` (a dict of per-question arrays, as tfds reads a
        Sequence feature: task, speed, question, options (n, 4), answer, answer_text).
    Raises:
      SampleSkip('too_short') when the clip is shorter than the question's speed needs.
    """
    rng = sample_rng(seed, index)
    qa = record["qa"]
    kinds = [_text(t) for t in qa["task"]]
    asked = FACT_TASKS if config.mode == "captions" else QA_TASKS
    questions = [j for j, kind in enumerate(kinds) if kind in asked]
    # captions draw the fact coin only when fact questions are on, so the caption stream is
    # the same as before they existed
    if config.mode == "captions" and not (config.fact_share and questions and rng.random() < config.fact_share):
        task, speed = CAPTION_TASK, "x1"
        question = CAPTION_QUESTIONS[int(rng.integers(len(CAPTION_QUESTIONS)))]
        answer = _text(record["caption"])
        meta: dict[str, Any] = {}
    else:
        if not questions:  # video_sft gives every record its action, effect and speed questions
            raise ValueError(f"video_sft record {_text(record.get('id', '?'))}: no {'/'.join(asked)} question in qa")
        j = questions[int(rng.integers(len(questions)))]
        task, speed = _text(qa["task"][j]), _text(qa["speed"][j])
        options = [_text(o) for o in qa["options"][j]]
        letter = _text(qa["answer"][j])
        question = multiple_choice(_text(qa["question"][j]), options, config.instruction)
        answer = written_answers(options, config.answer_style)[LETTERS.index(letter)]
        meta = {"question_index": j, "answer_letter": letter}
    try:
        plan = centered_speed_indices(len(clip), config.scene_frames, speed)
    except NotEnoughFrames as e:
        raise SampleSkip("too_short", task, str(e)) from None
    return Sample(task=task, frames=clip[plan].copy(), question=question, answer=answer, present="video",
                  metadata={"speed": speed, "frames": [int(i) for i in plan], **meta})


def _text(value) -> str:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)
