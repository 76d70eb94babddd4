"""Answer extraction from generated text, with an explicit "unparsable" outcome.

Peers' parsers guess: lmms-eval and VLMEvalKit fall back to a random letter, and loose regexes
read "A person moves ..." as option A. Here every extractor returns `Extracted(value, reason)`;
`value is None` means unparsable, which the metrics count as wrong (never as a guess), and
`reason` says which rule fired or why nothing did, so a surprising rate can be audited.

Extractors (the text is a model's full answer, special tokens already removed):
  choice(text, options)      -> "A".."D"     multiple choice against the item's option texts
  yes_no(text)               -> "yes" | "no"
  number(text)               -> int          digits or number words ("seven")
  region(text)               -> one of REGIONS ("top left" ... "bottom right")
  span(text)                 -> (start, end) "frames 3 to 9", "frame 4" -> (4, 4)
  permutation(text, n)       -> tuple        a permutation of 1..n ("3, 1, 2", "3 1 2")
The rule in every case: one reading, or none. Two different readings ("yes and no",
"frame 3 or frame 5") are unparsable.
"""
from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Sequence
from typing import Any

LETTERS = "ABCD"
REGIONS = ("top left", "top center", "top right", "middle left", "center", "middle right",
           "bottom left", "bottom center", "bottom right")
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}


@dataclasses.dataclass(frozen=True)
class Extracted:
    """value: the parsed answer, or None when unparsable. reason: the rule that decided."""

    value: Any
    reason: str

    @property
    def parsed(self) -> bool:
        return self.value is not None


def _none(reason: str) -> Extracted:
    return Extracted(None, reason)


def _norm(text: str) -> str:
    """Lower case, punctuation to spaces (hyphens too: "top-left"), whitespace collapsed."""
    table = str.maketrans({c: " " for c in string.punctuation})
    return " ".join(text.lower().translate(table).split())


def _one(values: Sequence[Any], what: str) -> Extracted:
    distinct = list(dict.fromkeys(values))
    if not distinct:
        return _none(f"no {what}")
    if len(distinct) > 1:
        return _none(f"ambiguous {what}: {distinct}")
    return Extracted(distinct[0], what)


# ----------------------------------------------------------------------------------------
# Letters
# ----------------------------------------------------------------------------------------
# Explicit letter markers, strongest first. An uppercase letter is trusted after an answer
# phrase ("The answer is B because ..."); a lowercase one only when punctuation or the end
# closes it, so "the answer is a person" stays prose.
_PHRASE = r"\b(?i:answer|option|choice)\b\s*(?i:is|:|=|would be)?\s*(?i:option\s*)?[(\[]?"
_LETTER_RULES = (
    ("whole answer is a letter", re.compile(r"^\W*([A-Da-d])\W*$")),
    ("answer phrase", re.compile(_PHRASE + r"([A-D])(?![\w'-])")),
    ("answer phrase", re.compile(_PHRASE + r"([a-d])(?=[)\]]|[.,:;!?]|\s*$)")),
    ("leading letter", re.compile(r"^\W*?[(\[]?([A-Da-d])[)\].:]")),
    ("parenthesised letter", re.compile(r"[(\[]([A-D])[)\]]")),
)
_BARE_LETTER = re.compile(r"(?<![\w'-])([A-D])(?![\w'-])")
# "A" followed by a lower-case word is the article ("A person moves ..."), unless the word
# is one that follows a named option ("A is correct", "A seems right").
_AFTER_LETTER = frozenset("is was seems would should could appears matches fits best and or "
                          "because since".split())


def _article(text: str, end: int) -> bool:
    m = re.match(r"\s+([a-z]+)", text[end:])
    return m is not None and m.group(1) not in _AFTER_LETTER


def letter(text: str) -> Extracted:
    """A letter A-D given explicitly; prose that merely starts with "A" is not one."""
    text = text.strip()
    for reason, rule in _LETTER_RULES:
        for m in rule.finditer(text):
            if not (m.group(1) == "A" and _article(text, m.end(1))):
                return Extracted(m.group(1).upper(), reason)
    bare = [m.group(1) for m in _BARE_LETTER.finditer(text)
            if not (m.group(1) == "A" and _article(text, m.end(1)))]
    return _one(bare, "standalone capital letter")


# ----------------------------------------------------------------------------------------
# Typed answers
# ----------------------------------------------------------------------------------------
def yes_no(text: str) -> Extracted:
    words = _norm(text).split()
    return _one([w for w in words if w in ("yes", "no")], "yes/no")


def _integers(text: str) -> list[int]:
    """Digits and number words, in order of appearance."""
    out = []
    for token in re.findall(r"\d+|[A-Za-z]+", text):
        if token.isdigit():
            out.append(int(token))
        elif token.lower() in _NUMBER_WORDS:
            out.append(_NUMBER_WORDS[token.lower()])
    return out


def number(text: str) -> Extracted:
    return _one(_integers(text), "number")


_VERTICAL = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom",
             "middle": "middle", "center": "middle", "centre": "middle", "mid": "middle"}
_HORIZONTAL = {"left": "left", "right": "right", "center": "center", "centre": "center",
               "middle": "center"}


def _region_name(vertical: str, horizontal: str) -> str:
    if vertical == "middle":
        return "center" if horizontal == "center" else f"middle {horizontal}"
    return f"{vertical} {horizontal}"


def region(text: str) -> Extracted:
    """A 3x3 grid cell: "top-left", "upper left", "centre", "middle right", ..."""
    words = _norm(text).split()
    found = []
    for i in range(len(words) - 1):
        if words[i] in _VERTICAL and words[i + 1] in _HORIZONTAL:
            found.append(_region_name(_VERTICAL[words[i]], _HORIZONTAL[words[i + 1]]))
    if not found:  # a lone "center" / "middle" is the central cell
        found = ["center" for i, w in enumerate(words) if w in ("center", "centre", "middle")]
    return _one(found, "region")


_SPAN = re.compile(r"(\d+)\s*(?:-|–|—|to|through|until)\s*(?:frames?\s*)?(\d+)", re.IGNORECASE)


def span(text: str) -> Extracted:
    """A 1-based frame span: "frames 3-5", "Frame 3 to frame 5" -> (3, 5); "frame 4" -> (4, 4)."""
    spans = [(int(a), int(b)) for a, b in _SPAN.findall(text)]
    if spans:
        result = _one(spans, "frame span")
        if result.parsed and result.value[0] > result.value[1]:
            return _none(f"span {result.value} runs backwards")
        return result
    single = _one(_integers(text), "single frame")
    return Extracted((single.value, single.value), single.reason) if single.parsed else single


_RUN = re.compile(r"\d+(?:\s*(?:,|;|->|→|>|\s)\s*(?:frames?\s*)?\d+)+", re.IGNORECASE)


def permutation(text: str, n: int) -> Extracted:
    """The order of n shown frames, 1-based: "3,1,2", "3 1 2", "frame 3, frame 1, frame 2".

    Every integer in the text first; if that is not a permutation of 1..n, each run of
    separated integers ("... the order is 3, 1, 2."); exactly one run must qualify.
    """
    target = set(range(1, n + 1))

    def ok(seq):
        return len(seq) == n and set(seq) == target

    everything = [int(d) for d in re.findall(r"\d+", text)]
    if ok(everything):
        return Extracted(tuple(everything), "all integers")
    runs = [tuple(int(d) for d in re.findall(r"\d+", m.group(0))) for m in _RUN.finditer(text)]
    good = [r for r in runs if ok(r)]
    if good:
        return _one(good, "integer run")
    if everything:
        return _none(f"{everything} is not a permutation of 1..{n}")
    return _none("no integers")


# ----------------------------------------------------------------------------------------
# Multiple choice against option texts
# ----------------------------------------------------------------------------------------
def choice(text: str, options: Sequence[str]) -> Extracted:
    """The chosen letter of a multiple-choice item.

    In order: the answer equals an option's text ("no.", "Yes!", "frame 3"); an explicit
    letter ("The answer is B.", "(c)", "b) yes"); a typed reading when every option is of one
    type (yes/no, numbers, "frame k", regions); exactly one option's text inside the answer.
    A letter beyond the options ("C" of two) is unparsable: it names no option.
    """
    letters = LETTERS[:len(options)]
    norm = [_norm(o) for o in options]
    said = _norm(text)
    if not said:
        return _none("empty answer")
    if said in norm:
        return Extracted(letters[norm.index(said)], "option text")
    explicit = letter(text)
    if explicit.parsed:
        if explicit.value not in letters:
            return _none(f"letter {explicit.value} is not among the {len(options)} options")
        return explicit
    typed = _typed_choice(text, norm)
    if typed is not None:
        return typed
    # Whole-word containment; when a longer option contains a shorter one ("pushing x" /
    # "pushing x left"), the longer match is the reading.
    contained = [i for i, o in enumerate(norm) if o and re.search(rf"\b{re.escape(o)}\b", said)]
    if contained:
        longest = max(len(norm[i]) for i in contained)
        contained = [i for i in contained if len(norm[i]) == longest]
    result = _one([letters[i] for i in contained], "option text inside the answer")
    return result if result.parsed else _none(f"{explicit.reason}; {result.reason}")


def _typed_choice(text: str, norm: Sequence[str]) -> Extracted | None:
    """A yes/no, number, frame or region reading mapped onto the options, if they are all
    of that type; None when the options are free text."""
    letters = LETTERS[:len(norm)]
    if set(norm) <= {"yes", "no"}:
        read = yes_no(text)
    elif all(o.isdigit() for o in norm):
        read = number(text)
        read = Extracted(str(read.value), read.reason) if read.parsed else read
    elif all(re.fullmatch(r"frame \d+", o) for o in norm):
        read = number(text)
        read = Extracted(f"frame {read.value}", read.reason) if read.parsed else read
    elif set(norm) <= set(REGIONS):
        read = region(text)
    else:
        return None
    if not read.parsed:
        return read
    if read.value not in norm:
        return _none(f"{read.reason} {read.value!r} is not an option")
    return Extracted(letters[norm.index(read.value)], read.reason)
