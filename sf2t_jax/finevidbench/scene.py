"""Scene-level items: Action and Effect (at several playback speeds) and Speed."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sf2t_jax import ssv2
from sf2t_jax.finevidbench.options import (LetterBalancer, Vocabulary, adapt_placeholders,
                                           arrange, pick_distractors)
from sf2t_jax.finevidbench.schema import SPEED_ANSWERS, Item
from sf2t_jax.finevidbench.source import Record
from sf2t_jax.ssv2 import fill_effect

ACTION_QUESTIONS = (
    "Which action does the video show?",
    "What is happening in this video?",
    "Which description matches what happens in the video?",
)
EFFECT_QUESTIONS = (
    "What changed after the action?",
    "What is different at the end of the video compared with the start?",
    "Which statement is true once the action is over?",
)
SPEED_QUESTIONS = (
    "How fast is the action in this video?",
    "At what speed is this video playing?",
    "Is this video slow, normal, fast, or static?",
)
SPEED_OPTIONS = ("slow", "normal", "fast", "static")


def action_text(record: Record, template: str) -> str:
    """The template filled with the clip's objects: "Putting red star onto blue square"."""
    return ssv2.fill(template, adapt_placeholders(record.template, record.placeholders,
                                                  template))


def effect_text(vocab: Vocabulary, record: Record, template: str) -> str:
    """The template's effect with the clip's objects: "red star is on top of blue square"."""
    return fill_effect(vocab.effect(template),
                       adapt_placeholders(record.template, record.placeholders, template))


def _item(record: Record, vocab: Vocabulary, task: str, speed: str, question: str,
          options: tuple[str, ...], letter: str) -> Item:
    item_id = f"{record.id}/{task}/{speed}"
    return Item(item_id=item_id, video_id=record.id, split=record.split, level="scene",
                task=task, speed=speed, conversation=item_id, turn=1, question=question,
                options=options, answer=letter, answer_text=options["ABCD".index(letter)],
                category=vocab.category(record.template), template=record.template)


def _pick(rng: np.random.Generator, texts: Sequence[str]) -> str:
    return texts[int(rng.integers(len(texts)))]


def action_item(record: Record, vocab: Vocabulary, speed: str, rng: np.random.Generator,
                balancer: LetterBalancer) -> Item:
    """4 filled templates; distractors are visual synonyms first, then random templates."""
    answer = action_text(record, record.template)
    candidates = vocab.candidates(record.template, vocab.tables.synonyms[record.template], rng)
    distractors = pick_distractors(answer, candidates, lambda t: action_text(record, t),
                                   what=f"action item of video {record.id}")
    options, letter = arrange(answer, distractors, rng, balancer, "action")
    return _item(record, vocab, "action", speed, _pick(rng, ACTION_QUESTIONS), options, letter)


def effect_item(record: Record, vocab: Vocabulary, speed: str, rng: np.random.Generator,
                balancer: LetterBalancer) -> Item:
    """4 effect phrases: the template's effect against those of its synonyms, then random."""
    answer = effect_text(vocab, record, record.template)
    candidates = vocab.candidates(record.template, vocab.tables.synonyms[record.template], rng)
    distractors = pick_distractors(answer, candidates,
                                   lambda t: effect_text(vocab, record, t),
                                   what=f"effect item of video {record.id}")
    options, letter = arrange(answer, distractors, rng, balancer, "effect")
    return _item(record, vocab, "effect", speed, _pick(rng, EFFECT_QUESTIONS), options, letter)


def speed_item(record: Record, vocab: Vocabulary, speed: str, rng: np.random.Generator,
               balancer: LetterBalancer) -> Item:
    """slow (x0.5) / normal (x1) / fast (x2, x4) / static."""
    answer = SPEED_ANSWERS[speed]
    options, letter = arrange(answer, [o for o in SPEED_OPTIONS if o != answer], rng, balancer,
                              "speed")
    return _item(record, vocab, "speed", speed, _pick(rng, SPEED_QUESTIONS), options, letter)
