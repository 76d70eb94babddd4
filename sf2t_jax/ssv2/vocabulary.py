"""The Something-Something-v2 (SSv2) label vocabulary and its string conventions.

SSv2 label records (``labels/train.json``, ``labels/validation.json``) are lists of
``{"id": "78687", "label": "holding potato next to vicks vaporub bottle",
"template": "Holding [something] next to [something]", "placeholders": ["potato",
"vicks vaporub bottle"]}``. ``labels/labels.json`` maps each class name (the template with the
brackets removed, e.g. "Holding something next to something") to its class id as a string
("19"). The 174 templates, in class-id order, live in ``data/ssv2_templates.txt``; they were
transcribed from two independent public copies of the SSv2 label list, one with brackets and
one without, which agree once the brackets are removed.
"""
from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Sequence

_SLOT = re.compile(r"\[([^\]]*)\]")

NUM_SSV2_CLASSES = 174


@functools.cache
def ssv2_templates() -> tuple[str, ...]:
    """The 174 SSv2 templates with ``[...]`` slots, indexed by SSv2 class id."""
    path = importlib.resources.files(__package__).joinpath("data/ssv2_templates.txt")
    templates = tuple(line for line in path.read_text(encoding="utf-8").splitlines() if line)
    if len(templates) != NUM_SSV2_CLASSES or len(set(templates)) != NUM_SSV2_CLASSES:
        raise ValueError(f"data/ssv2_templates.txt: expected {NUM_SSV2_CLASSES} distinct "
                         f"templates, found {len(templates)} ({len(set(templates))} distinct)")
    return templates


def class_name(template: str) -> str:
    """SSv2 class name: brackets removed ("Holding something next to something")."""
    name = _SLOT.sub(r"\1", template)
    return name[:1].upper() + name[1:]


def slots(template: str) -> tuple[str, ...]:
    """The bracketed slot names of a template, in order (e.g. ("something", "something"))."""
    return tuple(m.group(1) for m in _SLOT.finditer(template))


def num_slots(template: str) -> int:
    return len(slots(template))


def fill(template: str, placeholders: Sequence[str]) -> str:
    """Fills the slots in order: ("Putting [something] onto [something]", [a, b]) gives
    "Putting a onto b".

    A slot that opens the sentence ("[Something] falling like a rock") gets its filler
    capitalised.
    """
    fillers = list(placeholders)
    if len(fillers) != num_slots(template):
        raise ValueError(f"template {template!r} has {num_slots(template)} slots, got "
                         f"{len(fillers)} placeholders {fillers!r}")
    it = iter(fillers)

    def _sub(m: re.Match) -> str:
        word = next(it)
        return word[:1].upper() + word[1:] if m.start() == 0 else word

    return _SLOT.sub(_sub, template)


def label(template: str, placeholders: Sequence[str]) -> str:
    """The SSv2 ``label`` field: the filled template with its first letter in lower case."""
    text = fill(template, placeholders)
    return text[:1].lower() + text[1:]


def label_map() -> dict[str, str]:
    """The content of SSv2's ``labels/labels.json``: class name -> class id as a string."""
    return {class_name(t): str(i) for i, t in enumerate(ssv2_templates())}
