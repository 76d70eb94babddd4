"""Pattern rules that give any of the 174 SSv2 templates a category, an effect, visual
synonyms and a time reversal.

Rules match the template with its slots renamed ``S0``, ``S1``, ... in order
("Putting S0 onto S1"); effects come out with ``{0}``, ``{1}``, ... for the placeholders.

category (first rule that applies):
  1. slight: the object barely changes: holding / showing / touching, pretending, and phrases
     that say so ("slightly", "so lightly", "nothing happens", "doesn't fall", "not enough",
     "stays where it is", "just a little bit", "without the stack collapsing", "almost falls
     off but doesn't");
  2. distinctive: a clear motion signature: a direction ("left to right", "Moving S0 up"),
     the camera moving, or a signature verb (spin, roll, fall, tear, fold, open, close,
     squeeze, twist, bend, throw, tip, pour, spill, stretch, break, collide, deflect, ...);
  3. non_typical: everything else (put, move, take, drop, lift, push onto, cover, ...).
effect: an ordered list of specific patterns (directions, spatial relations such as
  "<verb> S0 onto S1" -> "{0} is on {1}", removals, state changes), then a passive fallback
  "<verb>ing S0 rest" -> "{0} has been <participle> rest". Every SSv2 template is covered
  without the fallback raising (tested).
reverse: what the clip shows played backwards, by swapping opposite directions (left/right,
  up/down, upwards/downwards, towards/away, closer/away), opposite verbs (open/close,
  fold/unfold, cover/uncover, put into/take out of, plug into/pull out of, bury/dig out, put
  onto/push off of, pick up/put on a surface, approach/move away with the camera), and for a
  push or a pull across the table both direction and verb (played backwards, the hand leads:
  a push from left to right looks like a pull from right to left). None if the swap is not a
  template of the vocabulary.
synonyms: the reversal, then every single swap above (direction only, verb only, push/pull,
  put/drop, pretending to X/X, ...) that lands on a template of the vocabulary, then the
  vocabulary's templates most similar in words (at least two content words shared and
  Jaccard >= 0.5), at most ``MAX_SYNONYMS``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from sf2t_jax.ssv2.vocabulary import slots

# FineVidBench's three kinds of template by how much they move; ``category`` picks one.
CATEGORIES = ("distinctive", "non_typical", "slight")
MAX_SYNONYMS = 6

_SLOT = re.compile(r"\[[^\]]*\]")
_STOP = {"something", "s0", "s1", "s2", "the", "a", "of", "it", "so", "that", "to", "and",
         "your", "with", "on", "is"}


def _indexed(template: str) -> str:
    """"Putting [something] onto [something]" -> "Putting S0 onto S1"."""
    counter = iter(range(len(slots(template))))
    return _SLOT.sub(lambda m: f"S{next(counter)}", template)


# --------------------------------------------------------------------- category

_SLIGHT = re.compile(
    r"^(Holding|Showing|Touching|Pretending)|slightly|so lightly|nothing happens|"
    r"doesn't fall|not enough|stays where it is|just a little bit|without the stack|"
    r"almost falls off but doesn't|doesn't glide")
_DISTINCTIVE = re.compile(  # matched on the lower-cased indexed form
    r"left to right|right to left|^moving s0 (up|down)$|camera|upside down|spin|roll|fall|"
    r"tear|fold|opening|closing|squeez|twist|bend|throw|tipping|pour|spill|stretch|separat|break|"
    r"deform|collaps|overflow|collid|deflect")
_NOT_A_SIGNATURE = "without letting it roll"  # a careful put: no roll is the point


def category(template: str) -> str:
    s = _indexed(template)
    if _SLIGHT.search(s):
        return "slight"
    if _DISTINCTIVE.search(s.lower().replace(_NOT_A_SIGNATURE, "")):
        return "distinctive"
    return "non_typical"


# --------------------------------------------------------------------- effect

_PREP_STATE = {"onto": "on", "into": "in", "behind": "behind", "in front of": "in front of",
               "next to": "next to", "underneath": "under", "in": "in", "to": "attached to"}

_EFFECTS: list[tuple[str, str]] = [
    # nothing or almost nothing changes
    (r"Pretending .*", "S0 is unchanged"),
    (r".*(nothing happens|so nothing happens)", "S0 is unchanged"),
    (r"Poking S0 so lightly .*", "S0 has barely moved"),
    (r"(Poking|Pushing) S0 so (that )?it slightly moves", "S0 has moved slightly"),
    (r"Touching \(without moving\) S0 of S1", "S1 has not moved"),
    # the camera
    (r"Approaching S0 with your camera", "S0 looks bigger"),
    (r"Moving away from S0 with your camera", "S0 looks smaller"),
    (r"Turning the camera (\w+) while filming S0", r"the view of S0 has turned \1"),
    (r"Moving S0 towards the camera", "S0 is closer to the camera"),
    (r"Moving S0 away from the camera", "S0 is further from the camera"),
    # directions
    (r"\w+ S0 from left to right", "S0 is further to the right"),
    (r"\w+ S0 from right to left", "S0 is further to the left"),
    (r"Moving S0 up", "S0 is higher up"),
    (r"Moving S0 down", "S0 is lower down"),
    # two things
    (r"Moving S0 and S1 closer to each other", "S0 and S1 are closer together"),
    (r"Moving S0 and S1 away from each other", "S0 and S1 are further apart"),
    (r"Moving S0 and S1 so they collide with each other", "S0 and S1 have collided"),
    (r"Moving S0 and S1 so they pass each other", "S0 and S1 have passed each other"),
    (r"Moving S0 closer to S1", "S0 is closer to S1"),
    (r"Moving S0 away from S1", "S0 is further from S1"),
    (r"S0 colliding with S1 and both are being deflected", "S0 and S1 have bounced apart"),
    (r"S0 colliding with S1 and both come to a halt", "S0 and S1 have stopped"),
    (r"S0 being deflected from S1", "S0 has bounced off S1"),
    # holding and showing
    (r"Holding S0", "S0 is held in the hand"),
    (r"Holding S0 (behind|in front of|next to|over) S1", r"S0 is held \1 S1"),
    (r"Showing that S0 is empty", "S0 is empty"),
    (r"Showing that S0 is inside S1", "S0 is inside S1"),
    (r"Showing a photo of S0 to the camera", "a photo of S0 has been shown to the camera"),
    (r"Showing S0 to the camera", "S0 has been shown to the camera"),
    (r"Showing S0 (behind|next to|on top of) S1", r"S0 has been shown \1 S1"),
    # falling, rolling, spinning
    (r"S0 falling like a (.*)", r"S0 has fallen like a \1"),
    (r"Spinning S0 so it continues spinning", "S0 keeps spinning"),
    (r"Spinning S0 that quickly stops spinning", "S0 has stopped spinning"),
    (r"(Poking|Pushing) S0 so (that )?it spins( around)?", "S0 is spinning"),
    (r"Poking S0 so that it falls over", "S0 has fallen over"),
    (r"Pushing S0 so that it almost falls off but doesn't", "S0 is at the edge"),
    (r"Pushing S0 so that it falls off the table", "S0 has fallen off the table"),
    (r"Moving S0 across a surface until it falls down", "S0 has fallen off the table"),
    (r"Moving S0 across a surface without it falling down", "S0 is further along the table"),
    (r"(Letting|Rolling) S0 roll along a flat surface|Rolling S0 on a flat surface",
     "S0 has rolled along the table"),
    (r"Letting S0 roll down a slanted surface", "S0 has rolled down the slope"),
    (r"Letting S0 roll up a slanted surface, so it rolls back down", "S0 has rolled back down"),
    (r"Poking a stack of S0 so the stack collapses", "the stack of S0 has collapsed"),
    (r"Poking a stack of S0 without the stack collapsing", "the stack of S0 still stands"),
    (r"Poking a hole into S0", "S0 has a hole in it"),
    # putting on surfaces
    (r"Putting S0 on (a|a flat) surface.*", "S0 is on the table"),
    (r"Putting S0 upright on the table", "S0 stands upright"),
    (r"(Putting S0 upright on the table, so|Laying S0 on the table on).*", "S0 lies on its side"),
    (r"Putting S0 and S1 on the table", "S0 and S1 are on the table"),
    (r"Putting S0, S1 and S2 on the table", "S0, S1 and S2 are on the table"),
    (r"Putting S0 S1 onto S2", "S0 S1 are on S2"),
    (r"Stacking S0 S1", "S0 S1 are stacked"),
    (r"Putting S0", "S0 is on the table"),
    (r"Putting S0 onto a slanted surface but it doesn't glide down", "S0 stays on the slope"),
    (r"Putting S0 that can't roll onto a slanted surface, so it slides down",
     "S0 has slid down the slope"),
    (r"Putting S0 that can't roll onto a slanted surface, so it stays where it is",
     "S0 stays on the slope"),
    (r"Putting S0 on the edge of S1 so .*|Putting S0 onto S1 so it falls down",
     "S0 has fallen off S1"),
    (r"Picking S0 up", "S0 is in the air"),
    (r"Piling S0 up", "S0 is piled up"),
    # lifting, tilting, tipping
    (r"Lifting S0 up completely without letting it drop down", "S0 is in the air"),
    (r"Lifting S0 up completely, then letting it drop down", "S0 has dropped back down"),
    (r"Lifting S0 with S1 on it", "S0 and S1 are in the air"),
    (r"Lifting up one end of S0 without letting it drop down", "one end of S0 is raised"),
    (r"Lifting up one end of S0, then letting it drop down", "S0 lies flat again"),
    (r"Lifting a surface with S0 on it but not enough .*", "S0 stays on the surface"),
    (r"Lifting a surface with S0 on it until it starts sliding down", "S0 is sliding down"),
    (r"Tilting S0 with S1 on it slightly .*", "S1 is still on S0"),
    (r"Tilting S0 with S1 on it until it falls off", "S1 has fallen off S0"),
    (r"Tipping S0 over", "S0 has tipped over"),
    (r"Tipping S0 with S1 over, so S2 falls out", "S2 has fallen out of S0"),
    # throwing
    (r"Throwing S0", "S0 has been thrown"),
    (r"Throwing S0 in the air and catching it", "S0 is back in the hand"),
    (r"Throwing S0 in the air and letting it fall", "S0 has fallen down"),
    (r"Throwing S0 onto a surface", "S0 is on the table"),
    (r"Throwing S0 against S1", "S0 has hit S1"),
    # failing
    (r"Failing to put S0 into S1 because .*", "S0 is not in S1"),
    (r"Trying but failing to attach S0 to S1 .*", "S0 is not attached to S1"),
    (r"Trying to pour S0 into S1, but missing so it spills next to it", "S0 is next to S1"),
    (r"Plugging S0 into S1 but pulling it right out .*", "S0 is not plugged into S1"),
    (r"Pouring S0 into S1 until it overflows", "S1 is overflowing with S0"),
    # removals and coverings
    (r"Covering S0 with S1", "S0 is covered by S1"),
    (r"Uncovering S0", "S0 can be seen"),
    (r"Removing S0, revealing S1 behind", "S1 can be seen"),
    (r"\w+ S0 out of S1", "S0 is out of S1"),
    (r"\w+ S0 off of S1", "S0 is no longer on S1"),
    (r"Pulling S0 from behind of S1", "S0 is no longer behind S1"),
    (r"Moving S0 of S1", "S0 of S1 has moved"),
    # spatial relations after a placing verb
    (r"\w+ S0 (onto|into|behind|in front of|next to|underneath|in|to) S1", None),
    # changes of state
    (r"Opening S0", "S0 is open"),
    (r"Closing S0", "S0 is closed"),
    (r"Folding S0", "S0 is folded"),
    (r"Unfolding S0", "S0 is unfolded"),
    (r"Squeezing S0", "S0 is squeezed"),
    (r"Twisting S0", "S0 is twisted"),
    (r"Twisting \(wringing\) S0 wet until water comes out", "water has come out of S0"),
    (r"Bending S0 so that it deforms", "S0 is bent"),
    (r"Bending S0 until it breaks", "S0 is broken"),
    (r"Tearing S0 into two pieces|Pulling two ends of S0 so that it separates into two pieces",
     "S0 is in two pieces"),
    (r"Tearing S0 just a little bit", "S0 is slightly torn"),
    (r"Pulling two ends of S0 so that it gets stretched", "S0 is stretched"),
    (r"Turning S0 upside down", "S0 is upside down"),
]
_EFFECTS_COMPILED = [(re.compile(p), r) for p, r in _EFFECTS]

# Past participles for the passive fallback "<verb>ing S0 rest" -> "S0 has been <pp> rest".
_PARTICIPLE = {"Hitting": "hit", "Pushing": "pushed", "Pulling": "pulled", "Scooping":
               "scooped", "Taking": "taken", "Moving": "moved", "Putting": "put",
               "Dropping": "dropped", "Lifting": "lifted", "Showing": "shown"}


def _to_braces(s: str) -> str:
    return re.sub(r"S(\d)", r"{\1}", s)


def effect(template: str) -> str:
    """Effect phrase with ``{i}`` for placeholder i, e.g. "{0} is on {1}"."""
    s = _indexed(template)
    for pattern, repl in _EFFECTS_COMPILED:
        m = pattern.fullmatch(s)
        if m is None:
            continue
        if repl is None:  # spatial relation
            return _to_braces(f"S0 is {_PREP_STATE[m.group(1)]} S1")
        return _to_braces(m.expand(repl))
    m = re.fullmatch(r"(\w+) S0(.*)", s)
    if m and m.group(1) in _PARTICIPLE:
        return _to_braces(f"S0 has been {_PARTICIPLE[m.group(1)]}{m.group(2)}")
    raise ValueError(f"no effect rule covers template {template!r}")


# --------------------------------------------------------------------- swaps

# Each swap works both ways. Phrase swaps replace a phrase inside the indexed form; whole
# swaps replace the whole indexed form.
_DIRECTION_PHRASES = [
    ("from left to right", "from right to left"),
    ("upwards", "downwards"),
    ("camera left", "camera right"),
    ("towards the camera", "away from the camera"),
    ("closer to each other", "away from each other"),
]
_DIRECTION_WHOLES = [
    ("Moving S0 up", "Moving S0 down"),
    ("Moving S0 closer to S1", "Moving S0 away from S1"),
    ("Approaching S0 with your camera", "Moving away from S0 with your camera"),
]
_REVERSAL_WHOLES = [
    ("Opening S0", "Closing S0"),
    ("Folding S0", "Unfolding S0"),
    ("Covering S0 with S1", "Uncovering S0"),
    ("Putting S0 into S1", "Taking S0 out of S1"),
    ("Plugging S0 into S1", "Pulling S0 out of S1"),
    ("Burying S0 in S1", "Digging S0 out of S1"),
    ("Putting S0 onto S1", "Pushing S0 off of S1"),
    ("Pushing S0 onto S1", "Pushing S0 off of S1"),
    ("Picking S0 up", "Putting S0 on a surface"),
]
_CLOSE_PHRASES = [  # visually close, not reversals
    ("Pushing ", "Pulling "),
    ("Putting ", "Dropping "),
    ("Putting ", "Pretending to put "),
]
_CLOSE_WHOLES = [
    ("Putting S0 onto S1", "Putting S0 next to S1"),
    ("Opening S0", "Pretending to open S0 without actually opening it"),
    ("Closing S0", "Pretending to close S0 without actually closing it"),
    ("Picking S0 up", "Pretending to pick S0 up"),
    ("Turning S0 upside down", "Pretending to turn S0 upside down"),
    ("Holding S0", "Showing S0 to the camera"),
    ("Putting S0 into S1", "Stuffing S0 into S1"),
    ("Tearing S0 into two pieces", "Tearing S0 just a little bit"),
    ("S0 falling like a rock", "S0 falling like a feather or paper"),
    ("Spinning S0 so it continues spinning", "Spinning S0 that quickly stops spinning"),
]


def _swap(s: str, phrases: list[tuple[str, str]], wholes: list[tuple[str, str]]) -> list[str]:
    """Every string one swap away from ``s``, in rule order."""
    out = []
    for a, b in phrases:
        for x, y in ((a, b), (b, a)):
            if x in s:
                out.append(s.replace(x, y, 1))
    for a, b in wholes:
        if s == a:
            out.append(b)
        elif s == b:
            out.append(a)
    return out


def _in_vocabulary(candidates: Iterable[str], template: str, by_indexed: dict[str, str]
                   ) -> list[str]:
    out = []
    for c in candidates:
        t = by_indexed.get(c)
        if t is not None and t != template and t not in out:
            out.append(t)
    return out


def reverse(template: str, vocabulary: Iterable[str]) -> str | None:
    """The template a time-reversed clip of ``template`` shows, if the vocabulary has it."""
    by_indexed = {_indexed(t): t for t in vocabulary}
    s = _indexed(template)
    if re.fullmatch(r"(Pushing|Pulling) S0 from (left to right|right to left)", s):
        verb = "Pulling" if s.startswith("Pushing") else "Pushing"
        flipped = _swap(s, _DIRECTION_PHRASES, [])[0]
        candidates = [verb + flipped[flipped.index(" "):]]
    else:
        candidates = (_swap(s, _DIRECTION_PHRASES, _DIRECTION_WHOLES)
                      + _swap(s, [], _REVERSAL_WHOLES))
    found = _in_vocabulary(candidates, template, by_indexed)
    return found[0] if found else None


def _words(template: str) -> set[str]:
    return {w for w in re.findall(r"[a-z']+", _indexed(template).lower()) if w not in _STOP}


def synonyms(template: str, vocabulary: Iterable[str]) -> tuple[str, ...]:
    """Visually close templates of the vocabulary, closest first (see module docstring)."""
    vocabulary = list(vocabulary)
    by_indexed = {_indexed(t): t for t in vocabulary}
    s = _indexed(template)
    rev = reverse(template, vocabulary)
    ordered = [rev] if rev else []
    single = (_swap(s, _DIRECTION_PHRASES, _DIRECTION_WHOLES) + _swap(s, [], _REVERSAL_WHOLES)
              + _swap(s, _CLOSE_PHRASES, _CLOSE_WHOLES))
    for t in _in_vocabulary(single, template, by_indexed):
        if t not in ordered:
            ordered.append(t)
    words = _words(template)
    scored = []
    for t in vocabulary:
        if t == template or t in ordered:
            continue
        other = _words(t)
        union = words | other
        shared = len(words & other)
        if shared >= 2 and shared / len(union) >= 0.5:
            scored.append((-shared / len(union), t))
    ordered += [t for _, t in sorted(scored)]
    return tuple(ordered[:MAX_SYNONYMS])
