"""Reading a FineVidBench JSON-lines file strictly, and selecting what to evaluate.

`finevidbench.read_jsonl` trusts its input; a benchmark converted from another release (or
edited by hand) deserves an error that names the file, the line and the field, before any
video is decoded: a missing field, a wrong type, an answer that is not among the options, a
fragment item without its frames, a conversation with a missing turn.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sf2t_jax.errors import InputError
from sf2t_jax.finevidbench.schema import FRAGMENT_TASKS, LETTERS, SPEEDS, TASKS, Item

_FIELDS = {f.name: f for f in dataclasses.fields(Item)}
_REQUIRED = tuple(n for n, f in _FIELDS.items() if f.default is dataclasses.MISSING)
_STR = ("item_id", "video_id", "split", "level", "task", "speed", "conversation", "question",
        "answer", "answer_text", "category", "template")


class BenchmarkError(InputError):
    """A benchmark file that cannot be evaluated; the message names file, line and field."""


def load_items(path: str | Path) -> list[Item]:
    """Every item of a benchmark file, checked line by line.

    Raises:
      FileNotFoundError: no such file.
      BenchmarkError: "{path}:{line}: field 'answer': ..." for the first bad line; a folder, a
        file that is not UTF-8 text, or one without items.
    """
    path = Path(path)
    if path.is_dir():
        raise BenchmarkError(f"benchmark {path} is a folder; expected a FineVidBench JSON-lines file "
                             "(e.g. finevidbench_test.jsonl, written by launch.py prepare)")
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = e.object.count(b"\n", 0, e.start) + 1
        raise BenchmarkError(f"{path}:{line}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                             "expected FineVidBench JSON lines") from None
    items, lines = [], {}
    for n, line in enumerate(text.split("\n"), 1):  # as file iteration: \u2028 is no line break
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise BenchmarkError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        item = parse_item(record, where)
        if item.item_id in lines:
            raise BenchmarkError(f"{where}: field 'item_id': {item.item_id!r} repeats line "
                                 f"{lines[item.item_id]}")
        lines[item.item_id] = n
        items.append(item)
    if not items:
        raise BenchmarkError(f"{path}: no items ({'an empty file' if not text.strip() else 'only blank lines'}); "
                             "expected FineVidBench JSON lines, one item per line")
    check_conversations(items, str(path))
    return items


def parse_item(record: Any, where: str = "<item>") -> Item:
    """One JSON object -> `Item`, or a `BenchmarkError` naming `where` and the field."""

    def bad(field: str, message: str) -> BenchmarkError:
        return BenchmarkError(f"{where}: field {field!r}: {message}")

    if not isinstance(record, dict):
        raise BenchmarkError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for name in _REQUIRED:
        if name not in record:
            raise bad(name, "missing")
    for name in record:
        if name not in _FIELDS:
            raise bad(name, f"not in the FineVidBench schema (known: {', '.join(_FIELDS)})")
    for name in _STR:
        if not isinstance(record[name], str):
            raise bad(name, f"expected a string, got {record[name]!r}")
    if record["task"] not in TASKS:
        raise bad("task", f"{record['task']!r} is not one of {', '.join(TASKS)}")
    if record["speed"] not in SPEEDS:
        raise bad("speed", f"{record['speed']!r} is not one of {', '.join(SPEEDS)}")
    if not isinstance(record["turn"], int) or record["turn"] < 1:
        raise bad("turn", f"expected an integer >= 1, got {record['turn']!r}")
    options = record["options"]
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise bad("options", f"expected a list of strings, got {options!r}")
    if options:
        letters = LETTERS[:len(options)]
        if not 2 <= len(options) <= len(LETTERS):
            raise bad("options", f"expected 2 to {len(LETTERS)} options, got {len(options)}")
        if len(set(options)) != len(options):
            raise bad("options", f"options repeat: {options}")
        if record["answer"] not in letters:
            raise bad("answer", f"{record['answer']!r} is not among the {len(options)} options "
                                f"(expected one of {', '.join(letters)})")
        if options[letters.index(record["answer"])] != record["answer_text"]:
            raise bad("answer_text", f"{record['answer_text']!r} is not option {record['answer']} "
                                     f"({options[letters.index(record['answer'])]!r})")
    elif record["answer"] != record["answer_text"]:
        raise bad("answer_text", "an open item's answer_text must equal its answer")
    if record["task"] in FRAGMENT_TASKS:
        _check_fragment(record, bad)
    if record["task"] == "rearrangement":
        order = record.get("order")
        n = len(record["frames"])
        if not isinstance(order, list) or sorted(order) != list(range(1, n + 1)):
            raise bad("order", f"expected a permutation of 1..{n} (the frames shown), got {order!r}")
        if options:
            raise bad("options", "a rearrangement item is open: options must be []")
    try:
        return Item.from_json(record)
    except (TypeError, ValueError, IndexError) as e:
        raise BenchmarkError(f"{where}: {e}") from None


def _check_fragment(record: dict, bad) -> None:
    frames, per_clip, perm = record.get("frames"), record.get("frames_per_clip"), record.get("permutation")
    if not isinstance(per_clip, int) or per_clip < 1:
        raise bad("frames_per_clip", f"a fragment item needs an integer >= 1, got {per_clip!r}")
    if not isinstance(frames, list) or not frames or not all(isinstance(i, int) and 0 <= i < per_clip
                                                             for i in frames):
        raise bad("frames", f"a fragment item needs frame indices in [0, {per_clip}), got {frames!r}")
    if not isinstance(perm, list) or sorted(perm) != list(range(len(frames))):
        raise bad("permutation", f"expected a permutation of 0..{len(frames) - 1}, got {perm!r}")


def check_conversations(items: Sequence[Item], source: str = "benchmark") -> None:
    """Each conversation has turns 1..n once each, on one video and one frame set."""
    by_conv: dict[str, list[Item]] = {}
    for it in items:
        by_conv.setdefault(it.conversation, []).append(it)
    for conv, turns in by_conv.items():
        numbers = sorted(t.turn for t in turns)
        if numbers != list(range(1, len(turns) + 1)):
            raise BenchmarkError(f"{source}: conversation {conv!r} has turns {numbers}; expected "
                                 f"1..{len(turns)} (each turn's history needs every earlier one)")
        first = turns[0]
        for t in turns[1:]:
            for field in ("video_id", "frames", "frames_per_clip", "permutation", "speed"):
                if getattr(t, field) != getattr(first, field):
                    raise BenchmarkError(f"{source}: item {t.item_id}: field {field!r} differs from "
                                         f"item {first.item_id} of the same conversation")


def select(items: Sequence[Item], *, tasks: Iterable[str] = (), max_videos: int = 0) -> list[Item]:
    """Items of the first `max_videos` videos (in file order; 0 = all) whose task is in `tasks`
    (empty = all). Whole videos are kept, so every conversation keeps its history."""
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
    videos = list(dict.fromkeys(it.video_id for it in items))
    keep = set(videos[:max_videos] if max_videos else videos)
    return [it for it in items if it.video_id in keep and (not tasks or it.task in tasks)]
