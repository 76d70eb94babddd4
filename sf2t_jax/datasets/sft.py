"""The labelled SFT set: per training video, its caption and scene-level QA.

The questions are built by the same code as FineVidBench's scene level (action with visual-
synonym distractors, effect, speed), so the SFT baseline is trained in the benchmark's format
on disjoint videos: what it gains over SF²T comes from labels, not from the question format.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from sf2t_jax.datasets import facts, features
from sf2t_jax.finevidbench import scene
from sf2t_jax.finevidbench.options import LetterBalancer, Vocabulary
from sf2t_jax.finevidbench.schema import SPEEDS
from sf2t_jax.finevidbench.source import Record
from sf2t_jax import ssv2
from sf2t_jax.ssv2 import TemplateTables


@dataclasses.dataclass(frozen=True)
class SftConfig:
    """Which scene questions each SFT video gets."""

    seed: int = 0
    """Every choice (question wording, distractors, letters) derives from it and the id."""
    scene_speeds: tuple[str, ...] = ("x0.5", "x1", "x2", "x4")
    """Speeds at which Action and Effect are asked."""
    speed_speeds: tuple[str, ...] = SPEEDS
    """Speeds at which Speed is asked."""
    facts: bool = True
    """Add the non-temporal object questions (`facts`: colour, shape, how many) where the source
    has the world's tracks/; the captioning base may train on them, scene QA never does."""

    def __post_init__(self):
        bad = [s for s in (*self.scene_speeds, *self.speed_speeds) if s not in SPEEDS]
        if bad:
            raise ValueError(f"SftConfig speeds {bad}: expected values in {SPEEDS}")
        if "static" in self.scene_speeds:
            raise ValueError("SftConfig.scene_speeds: a static clip shows no action")


def _rng(seed: int, *parts: str) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha256("/".join(("sft",) + parts).encode()).digest()[:8],
                         "little")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))


def sft_examples(records: Sequence[Record], tables: TemplateTables, config: SftConfig,
                 split: str, scene_facts: facts.SceneFacts | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, example) per video, in the order given; see ``features`` for the fields.

    Letters are balanced over the split (each n consecutive questions use each letter once).
    With `config.facts` and `scene_facts` (the world's tracks/), a video's QA also holds its
    fact questions (`facts.FACT_TASKS`), drawn from their own random streams so the action,
    effect and speed questions are the same with or without them.
    """
    vocab = Vocabulary(tables)
    balancer = LetterBalancer(_rng(config.seed, "letters", split))
    scenes = scene_facts.objects if config.facts and scene_facts is not None else {}
    fact_balancer = LetterBalancer(_rng(config.seed, "fact letters", split))
    for record in records:
        rng = _rng(config.seed, "video", record.id)
        items = ([scene.action_item(record, vocab, s, rng, balancer) for s in config.scene_speeds]
                 + [scene.effect_item(record, vocab, s, rng, balancer)
                    for s in config.scene_speeds]
                 + [scene.speed_item(record, vocab, s, rng, balancer)
                    for s in config.speed_speeds])
        qa = [features.qa_example(it) for it in items]
        if record.id in scenes:
            qa += facts.fact_questions(scenes[record.id], scene_facts.colours, scene_facts.shapes,
                                       _rng(config.seed, "facts", record.id), fact_balancer)
        example = features.video_example(record)
        example.update(caption=ssv2.fill(record.template, record.placeholders),
                       template=record.template, category=vocab.category(record.template), qa=qa)
        yield record.id, example
