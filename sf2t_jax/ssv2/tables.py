"""The template tables FineVidBench needs: category, effect, visual synonyms, time reversal.

``template_tables(vocabulary)`` builds them for the templates a source actually uses: the
24 templates the synthetic world renders take their hand-written entries (``curated``), every
other SSv2 template takes the pattern rules (``rules``); synonyms and reversals only ever name
templates of the vocabulary, so distractors are actions the source really contains. The tables
for the full SSv2 vocabulary ship as ``data/ssv2_tables.json`` (regenerate with
``python -m sf2t_jax.ssv2.tables``; a test checks the file is current).
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
import pathlib
import string
from collections.abc import Iterable, Mapping
from typing import Any

from sf2t_jax.errors import InputError
from sf2t_jax.ssv2 import rules
from sf2t_jax.ssv2.curated import CURATED
from sf2t_jax.ssv2.rules import CATEGORIES
from sf2t_jax.ssv2.vocabulary import ssv2_templates

TABLES_FILE = "data/ssv2_tables.json"


class UnknownTemplateError(InputError, KeyError):
    """A template that is not one of the 174 SSv2 templates (nor a curated one)."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class TemplateTables:
    """Per-template tables over one vocabulary; every mapping has exactly its templates."""

    category: Mapping[str, str]  # "distinctive" | "non_typical" | "slight"
    effect: Mapping[str, str]  # effect phrase, "{i}" = placeholder i
    synonyms: Mapping[str, tuple[str, ...]]  # closest first, all in the vocabulary
    reverse: Mapping[str, str | None]  # time-reversed template, or None

    @property
    def templates(self) -> tuple[str, ...]:
        return tuple(self.category)

    def __contains__(self, template: str) -> bool:
        return template in self.category

    def check(self, template: str) -> None:
        if template not in self.category:
            raise UnknownTemplateError(
                f"template {template!r} is not in this vocabulary of {len(self.category)} "
                "templates")

    def to_json(self) -> dict[str, Any]:
        return {t: {"category": self.category[t], "effect": self.effect[t],
                    "synonyms": list(self.synonyms[t]), "reverse": self.reverse[t]}
                for t in self.templates}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TemplateTables":
        return cls(category={t: v["category"] for t, v in d.items()},
                   effect={t: v["effect"] for t, v in d.items()},
                   synonyms={t: tuple(v["synonyms"]) for t, v in d.items()},
                   reverse={t: v["reverse"] for t, v in d.items()})


def template_tables(vocabulary: Iterable[str]) -> TemplateTables:
    """Tables for the given templates (order kept, duplicates dropped).

    Raises:
      UnknownTemplateError: naming every template that is not an SSv2 template.
    """
    vocab = list(dict.fromkeys(vocabulary))
    known = known_templates()
    unknown = [t for t in vocab if t not in known]
    if unknown:
        raise UnknownTemplateError(f"{len(unknown)} template(s) are not SSv2 templates: "
                                   f"{unknown[:10]}")
    in_vocab = set(vocab)
    category, effect, synonyms, reverse = {}, {}, {}, {}
    for t in vocab:
        entry = CURATED.get(t)
        rule_synonyms = rules.synonyms(t, vocab)
        if entry is not None:
            category[t], effect[t] = entry.category, entry.effect
            hand = [s for s in entry.synonyms if s in in_vocab]
            merged = hand + [s for s in rule_synonyms if s not in hand]
            synonyms[t] = tuple(merged[:max(len(hand), rules.MAX_SYNONYMS)])
            reverse[t] = entry.reverse if entry.reverse in in_vocab else None
        else:
            category[t], effect[t] = rules.category(t), rules.effect(t)
            synonyms[t] = rule_synonyms
            reverse[t] = rules.reverse(t, vocab)
        if category[t] not in CATEGORIES:
            raise ValueError(f"{t!r}: category {category[t]!r} not in {CATEGORIES}")
    return TemplateTables(category, effect, synonyms, reverse)


def known_templates() -> frozenset[str]:
    """Every template that has tables: the SSv2 templates and the curated ones."""
    return frozenset(ssv2_templates()) | frozenset(CURATED)


@functools.cache
def ssv2_tables() -> TemplateTables:
    """The shipped tables for all 174 SSv2 templates (``data/ssv2_tables.json``)."""
    path = importlib.resources.files(__package__).joinpath(TABLES_FILE)
    return TemplateTables.from_json(json.loads(path.read_text(encoding="utf-8")))


def fill_effect(effect: str, placeholders: list[str] | tuple[str, ...]) -> str:
    """Fills "{i}" with placeholder i; a missing placeholder reads "something"."""
    fields = [int(f) for _, f, _, _ in string.Formatter().parse(effect) if f is not None]
    values = list(placeholders) + ["something"] * (max(fields, default=-1) + 1
                                                   - len(placeholders))
    return effect.format(*values)


def _write_shipped() -> None:
    path = pathlib.Path(__file__).parent / TABLES_FILE
    tables = template_tables(ssv2_templates())
    path.write_text(json.dumps(tables.to_json(), indent=1, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    print(f"wrote {path} ({len(tables.templates)} templates)")


if __name__ == "__main__":
    _write_shipped()
