"""Prompts: the scene question, and the fragment-level step-by-step inquiry.

A fragment conversation asks about one frame set in turns (frame count, meaning of order,
frame comparison, adjust-or-not, rearrangement). Turn t is asked after turns 1..t-1 with their
*gold* answers (specs/sf2t.md §3), so each turn is scored on its own and an early mistake does
not cascade; chain accuracy then measures whether a model gets a whole chain right.

    [system]  (Qwen2-VL's default unless configured)
    user      <video> Q1 + options + instruction
    assistant gold answer 1
    ...
    user      Qt + options + instruction          <- scored (loglik) / answered (generate)

The visual goes with the first question only, as in a real multi-turn chat.
"""
from __future__ import annotations

from collections.abc import Sequence

from sf2t_jax.eval.config import EvalSettings
from sf2t_jax.eval.items import check_conversations
from sf2t_jax.finevidbench.prompt import multiple_choice, written_answers
from sf2t_jax.finevidbench.schema import LETTERS, Item


def question_text(item: Item, instruction: str) -> str:
    """The user turn's text: the question, lettered options and the instruction (multiple
    choice), or the question alone (open items)."""
    if not item.options:
        return item.question
    return multiple_choice(item.question, item.options, instruction)


def gold_answer(item: Item, style: str) -> str:
    """How an earlier turn's gold answer appears in the history: "B" or "B. option text";
    open items by their answer text."""
    if not item.options:
        return item.answer_text
    return option_targets(item, style)[LETTERS.index(item.answer)]


def option_targets(item: Item, style: str) -> list[str]:
    """The answer as each option would be written, in option order: the option text, its
    letter, or "B. option text". Loglik scores these continuations."""
    return written_answers(item.options, style)


class Inquiry:
    """Conversations of a benchmark, for building each turn's history.

    Built from every item of the file (not only the selected ones), so a task filter that
    keeps only turn 3 still shows turns 1 and 2 as history.
    """

    def __init__(self, items: Sequence[Item]):
        check_conversations(items)
        self._turns: dict[str, dict[int, Item]] = {}
        for it in items:
            self._turns.setdefault(it.conversation, {})[it.turn] = it

    def history(self, item: Item) -> list[Item]:
        """Earlier turns of the item's conversation, in order."""
        turns = self._turns.get(item.conversation)
        if turns is None or turns.get(item.turn) != item:
            raise KeyError(f"item {item.item_id} is not part of this benchmark's conversations")
        return [turns[t] for t in range(1, item.turn)]

    def messages(self, item: Item, settings: EvalSettings, visual: Sequence[dict]) -> list[dict]:
        """Chat messages for `text.encode_chat`, ending with the item's question.

        Args:
          visual: content items for the frames, e.g. [{"type": "video"}] or one
            {"type": "image"} per frame; they open the first user turn.
        """
        messages = [{"role": "system", "content": settings.system}] if settings.system else []
        history = self.history(item)
        for k, turn in enumerate(history + [item]):
            text = {"type": "text", "text": question_text(turn, settings.instruction)}
            messages.append({"role": "user", "content": (list(visual) if k == 0 else []) + [text]})
            if turn is not item:
                messages.append({"role": "assistant", "content": gold_answer(turn, settings.history_answer)})
        return messages
