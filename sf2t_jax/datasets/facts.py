"""Non-temporal multiple-choice questions about a video's objects (colour, shape, how many),
from the synthetic world's ground truth (`tracks/{id}.json`).

They teach the captioning base the benchmark's multiple-choice format without any temporal
label (issue 15, spec §4): which colour the {shape} is, which shape the {colour} object is, how
many objects the scene holds. A frame answers each of them, so a model trained on them learns
the format, not motion. Sources without tracks (real SSv2) get none.

Each question is a `video_sft` QA entry (`features.qa_example`'s fields) of task `colour`,
`shape` or `objects`, at speed x1. The option vocabularies are the colours and shapes of the
split's own objects (the hand is not an object here: it appears in some templates only).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sf2t_jax.datasets.features import NUM_OPTIONS
from sf2t_jax.errors import InputError
from sf2t_jax.finevidbench.schema import SPEED_FACTORS
from sf2t_jax.finevidbench.options import LetterBalancer, arrange

log = logging.getLogger(__name__)

FACT_TASKS = ("colour", "shape", "objects")
HAND_ROLE = "hand"
COLOUR_QUESTION = "What colour is the {shape}?"
SHAPE_QUESTION = "What shape is the {colour} object?"
COUNT_QUESTION = "How many objects does the video show?"


class FactsError(InputError):
    """A tracks file that cannot be read or lacks the fields the fact questions read; names
    the file and what was expected."""


def scene_objects(tracks: Mapping[str, Any], path: str = "tracks") -> list[tuple[str, str]]:
    """(colour, shape) of every object of a tracks record, the hand left out."""
    try:
        return [(str(o["colour"]), str(o["shape"])) for o in tracks["objects"] if o["role"] != HAND_ROLE]
    except (KeyError, TypeError) as e:
        raise FactsError(f"{path}: expected objects with colour, shape and role ({e!r} missing)") from None


@dataclasses.dataclass(frozen=True)
class SceneFacts:
    """The objects of each video with tracks, and the option vocabularies (sorted)."""

    objects: Mapping[str, list[tuple[str, str]]]
    colours: tuple[str, ...]
    shapes: tuple[str, ...]


def read_scene_facts(tracks_dir: Path, video_ids: Iterable[str]) -> SceneFacts | None:
    """The facts of the ids with a `tracks_dir/{id}.json`; None (logged) when there is no
    tracks folder or its objects show fewer than NUM_OPTIONS colours or shapes, too few for a
    four-option question. Pass every training split's ids, so a small split still gets a
    full vocabulary."""
    if not tracks_dir.is_dir():
        return None
    objects = {}
    for video_id in video_ids:
        path = tracks_dir / f"{video_id}.json"
        if path.is_file():
            try:
                tracks = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise FactsError(f"{path}: expected the world's tracks JSON ({e})") from None
            objects[video_id] = scene_objects(tracks, str(path))
    colours = tuple(sorted({c for scene in objects.values() for c, _ in scene}))
    shapes = tuple(sorted({s for scene in objects.values() for _, s in scene}))
    if min(len(colours), len(shapes)) < NUM_OPTIONS:
        log.warning("%s: the objects show %d colours and %d shapes; fact questions need %d of each: none asked",
                    tracks_dir, len(colours), len(shapes), NUM_OPTIONS)
        return None
    return SceneFacts(objects, colours, shapes)


def _entry(task: str, question: str, options: Sequence[str], letter: str) -> dict[str, Any]:
    return {"task": task, "speed": "x1", "speed_factor": SPEED_FACTORS["x1"], "question": question,
            "options": np.array(options, dtype=object), "answer": letter,
            "answer_text": options["ABCD".index(letter)]}


def fact_questions(objects: Sequence[tuple[str, str]], colours: Sequence[str], shapes: Sequence[str],
                   rng: np.random.Generator, balancer: LetterBalancer) -> list[dict[str, Any]]:
    """The fact questions one scene answers unambiguously: the colour of a shape that appears
    once, the shape of a colour that appears once (one of each, drawn), and the object count.

    Args:
      objects: (colour, shape) per object of the scene.
      colours, shapes: the option vocabularies (sorted); each needs NUM_OPTIONS entries.
    """
    if not objects:
        return []
    out = []
    # (task, question, the attribute named in the question, the one asked for, its vocabulary)
    for task, question, named, asked, vocab in (("colour", COLOUR_QUESTION, 1, 0, colours),
                                                 ("shape", SHAPE_QUESTION, 0, 1, shapes)):
        unique = sorted(v for v in {o[named] for o in objects} if sum(o[named] == v for o in objects) == 1)
        if not unique:
            continue
        key = unique[int(rng.integers(len(unique)))]
        answer = next(o[asked] for o in objects if o[named] == key)
        wrong = [v for v in vocab if v != answer]
        distractors = [wrong[int(i)] for i in rng.choice(len(wrong), NUM_OPTIONS - 1, replace=False)]
        options, letter = arrange(answer, distractors, rng, balancer, task)
        out.append(_entry(task, question.format(shape=key, colour=key), options, letter))
    n = len(objects)
    counts = [str(k) for k in range(max(1, n - NUM_OPTIONS + 1), max(1, n - NUM_OPTIONS + 1) + NUM_OPTIONS)]
    options, letter = arrange(str(n), [c for c in counts if c != str(n)], rng, balancer, "objects")
    out.append(_entry("objects", COUNT_QUESTION, options, letter))
    return out
