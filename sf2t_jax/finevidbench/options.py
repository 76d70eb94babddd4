"""Multiple-choice plumbing: balanced answer letters, distractors, placeholder transfer."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from sf2t_jax import ssv2
from sf2t_jax.ssv2 import TemplateTables, ssv2_tables


class LetterBalancer:
    """Draws the answer position of each n-option item from shuffled blocks of all n positions.

    Among every n consecutive n-option items of one stream each letter is the answer exactly
    once, so the letters of a benchmark are balanced to within one block, whatever the item
    mix. Streams (the benchmark uses one per task) keep the blocks from tying consecutive
    turns of a conversation together: with one block over all tasks, turn t's letter was
    rarely turn t-1's, and "any letter but the previous turn's" scored 33% on 4 options.
    """

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._queues: dict[tuple[str, int], list[int]] = {}

    def position(self, n: int, stream: str = "") -> int:
        queue = self._queues.setdefault((stream, n), [])
        if not queue:
            queue.extend(int(i) for i in self._rng.permutation(n))
        return queue.pop()


def arrange(answer: str, distractors: Sequence[str], rng: np.random.Generator,
            balancer: LetterBalancer, stream: str = "") -> tuple[tuple[str, ...], str]:
    """Options in a random order with the answer at a balanced position (within ``stream``,
    see `LetterBalancer`).

    Returns:
      (options, letter): the option texts and the gold letter.
    """
    others = [distractors[int(i)] for i in rng.permutation(len(distractors))]
    pos = balancer.position(len(others) + 1, stream)
    options = tuple(others[:pos] + [answer] + others[pos:])
    return options, "ABCD"[pos]


def adapt_placeholders(src_template: str, src_placeholders: Sequence[str],
                       dst_template: str) -> list[str]:
    """Carries a clip's placeholders over to another template's slots.

    Slots first take unused placeholders whose slot has the same name ("[part]" <- "[part]"),
    then the remaining slots take the remaining placeholders in order, and a slot left over
    reads as its own name ("something"): so a distractor names the clip's objects, as the
    answer does.
    """
    src_slots = [s.lower() for s in ssv2.slots(src_template)]
    dst_slots = [s.lower() for s in ssv2.slots(dst_template)]
    unused = list(range(len(src_placeholders)))
    out: list[str | None] = [None] * len(dst_slots)
    for j, slot in enumerate(dst_slots):
        same = [i for i in unused if src_slots[i] == slot]
        if same:
            unused.remove(same[0])
            out[j] = src_placeholders[same[0]]
    for j, slot in enumerate(dst_slots):
        if out[j] is None:
            out[j] = src_placeholders[unused.pop(0)] if unused else slot
    return out


def pick_distractors(answer_text: str, candidates: Iterable[str],
                     text_of: Callable[[str], str], k: int = 3, what: str = "") -> list[str]:
    """The first ``k`` distinct texts of ``candidates`` (templates) other than the answer.

    A template whose text equals the answer or an earlier distractor is passed over (pushing
    and pulling to the right have the same effect).

    Raises:
      ValueError: fewer than ``k`` distinct texts exist (naming ``what``).
    """
    out: list[str] = []
    seen = {answer_text}
    for template in candidates:
        text = text_of(template)
        if text not in seen:
            seen.add(text)
            out.append(text)
            if len(out) == k:
                return out
    raise ValueError(f"{what}: only {len(out)} distinct distractors exist for "
                     f"{answer_text!r}; the template pool is too small")


class Vocabulary:
    """The tables of a source, with all 174 SSv2 templates as a last-resort distractor pool.

    Distractors come from the visual synonyms first, then from the source's own templates in a
    random order, and only then from the rest of SSv2 (a source with very few templates).
    """

    def __init__(self, tables: TemplateTables):
        self.tables = tables
        self._fallback = ssv2_tables()
        self._rest = tuple(t for t in ssv2.ssv2_templates() if t not in tables)

    def category(self, template: str) -> str:
        return self.tables.category[template]

    def effect(self, template: str) -> str:
        table = self.tables if template in self.tables else self._fallback
        return table.effect[template]

    def candidates(self, template: str, preferred: Iterable[str],
                   rng: np.random.Generator) -> list[str]:
        own = [t for t in self.tables.templates if t != template]
        rest = list(self._rest)
        return ([t for t in preferred if t != template]
                + [own[int(i)] for i in rng.permutation(len(own))]
                + [rest[int(i)] for i in rng.permutation(len(rest))])
