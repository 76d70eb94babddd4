"""Prompts: the scene question, and the fragment-level step-by-step inquiry.

A fragment conversation asks about one frame set in turns (frame count, meaning of order,
adjust-or-not, then for shuffled sets frame comparison and rearrangement). Turn t is asked after
turns 1..t-1 with, as the assistant's replies, either

  own   (the default, `EvalSettings.history`) the model's own earlier answers: what a real
        step-by-step inquiry shows, and what no gold answer can leak into a later turn;
        `runner.evaluate` then asks all first turns, then all second turns, ...
  gold  the gold answers: each turn is scored on its own and an early mistake does not
        cascade (specs/sf2t.md §3 as first written; whether the paper shows gold or own
        answers is not known).
  none  no earlier turns: each question asked alone with the frames, as SF²T's single-turn
        samples are trained. Not the benchmark's inquiry: it tells a skill the model lacks
        from one it does not carry into a multi-turn conversation.

Chain accuracy measures whether a model gets a whole chain right.

    [system]  (Qwen2-VL's default unless configured)
    user      <video> Q1 + options + instruction
    assistant answer 1 (own or gold)
    ...
    user      Qt + options + instruction          <- scored (loglik) / answered (generate)

The visual goes with the first question only, as in a real multi-turn chat.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

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


def own_answer(item: Item, record: dict, style: str) -> str:
    """How the model's own answer to `item` appears in a later turn's history: the option it
    chose (loglik: argmin), written like a gold answer in `style`; or the text it generated
    (generate), as it wrote it."""
    if record["scored_by"] == "generate":
        return record["text"]
    return option_targets(item, style)[LETTERS.index(record["pred"])]


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

    def shown_history(self, item: Item, settings: EvalSettings) -> list[Item]:
        """The earlier turns the item's prompt shows: `history`, or none under history="none"."""
        return [] if settings.history == "none" else self.history(item)

    def with_history(self, items: Sequence[Item]) -> list[Item]:
        """`items` and every earlier turn of their conversations, in benchmark file order
        (own history must ask the earlier turns, whether or not they are to be scored)."""
        wanted = {t.item_id for it in items for t in self.history(it) + [it]}
        if len(wanted) == len(items):
            return list(items)
        return [it for turns in self._turns.values() for it in sorted(turns.values(), key=lambda t: t.turn)
                if it.item_id in wanted]

    def messages(self, item: Item, settings: EvalSettings, visual: Sequence[dict],
                 answers: Mapping[int, str] | None = None) -> list[dict]:
        """Chat messages for `text.encode_chat`, ending with the item's question.

        Args:
          visual: content items for the frames, e.g. [{"type": "video"}] or one
            {"type": "image"} per frame; they open the first user turn.
          answers: {turn: the model's own answer} for every earlier turn (own history); None:
            the gold answers (or no earlier turns, history="none").
        """
        messages = [{"role": "system", "content": settings.system}] if settings.system else []
        history = self.shown_history(item, settings)
        if answers is not None:
            missing = [t.turn for t in history if t.turn not in answers]
            if missing:
                raise KeyError(f"item {item.item_id}: no own answer for earlier turn(s) {missing}")
        for k, turn in enumerate(history + [item]):
            text = {"type": "text", "text": question_text(turn, settings.instruction)}
            messages.append({"role": "user", "content": (list(visual) if k == 0 else []) + [text]})
            if turn is not item:
                reply = gold_answer(turn, settings.history_answer) if answers is None else answers[turn.turn]
                messages.append({"role": "assistant", "content": reply})
        return messages


def turn_rounds(items: Sequence[Item]) -> list[list[Item]]:
    """Items grouped by turn (round k holds every turn k+1, in the given order): under own
    history round k's prompts need round k-1's answers. Scene items are all turn 1."""
    rounds: dict[int, list[Item]] = {}
    for it in items:
        rounds.setdefault(it.turn, []).append(it)
    return [rounds[t] for t in sorted(rounds)]
