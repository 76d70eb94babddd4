"""How a multiple-choice question is put to the model, and how its answer is written.

One module for the benchmark's scorer (`eval/inquiry.py`) and the SFT training samples
(`input/scene.py`), so a model is trained in exactly the format it is evaluated in.
"""
from __future__ import annotations

from collections.abc import Sequence

from sf2t_jax.finevidbench.schema import LETTERS

ANSWER_STYLES = ("text", "letter", "letter_text")


def multiple_choice(question: str, options: Sequence[str], instruction: str = "") -> str:
    """The question, one lettered option per line ("A. ..."), then the instruction if any."""
    lines = [question] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    if instruction:
        lines.append(instruction)
    return "\n".join(lines)


def written_answers(options: Sequence[str], style: str) -> list[str]:
    """Each option as an answer would write it: its text, its letter, or "B. text"."""
    if style == "text":
        return list(options)
    if style == "letter":
        return list(LETTERS[: len(options)])
    if style == "letter_text":
        return [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    raise ValueError(f"unknown answer style {style!r}; known: {', '.join(ANSWER_STYLES)}")
