"""Hand-written tables for 24 real SSv2 templates: the ones the synthetic world renders.

``tables.template_tables`` takes these entries over the pattern rules (``rules``) for these
templates; the world (``sf2t_jax.world.templates``) gives each of them a motion program. Where
the spec's examples have no SSv2 wording we use the closest real template:
  * "Moving [something] from left to right" -> "Pushing/Pulling [something] from left to right"
    (SSv2 has no "Moving ... from left to right");
  * "Putting [something] on [something]" -> "Putting [something] onto [something]";
  * "Taking [something] off [something]" -> "Pushing [something] off of [something]";
  * "Making [something] bigger / smaller" -> "Approaching [something] with your camera" /
    "Moving away from [something] with your camera";
  * "Turning [something] clockwise" -> "Spinning [something] so it continues spinning";
  * "[Something] appearing" -> "Uncovering [something]" (and "Covering [something] with
    [something]" for disappearing).

Tables:
  category  "distinctive" (a clear motion signature), "non_typical" (put / move / take: flexible,
            no single signature), "slight" (hold / show / touch: barely any motion);
  effect    what is true after the action, with ``{0}``, ``{1}`` standing for the placeholders
            in template order;
  synonyms  visually close templates of these 24, closest first (opposite direction, push vs
            pull, put on vs take off, bigger vs smaller);
  reverse   the template a time-reversed clip shows, or None when no template fits (reversing
            a push leaves the hand ahead of the object: it shows a pull the other way).
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class CuratedEntry:
    """The hand-written tables of one template."""

    template: str
    category: str
    effect: str
    synonyms: tuple[str, ...]
    reverse: str | None


PUSH_LR = "Pushing [something] from left to right"
PUSH_RL = "Pushing [something] from right to left"
PULL_LR = "Pulling [something] from left to right"
PULL_RL = "Pulling [something] from right to left"
UP = "Moving [something] up"
DOWN = "Moving [something] down"
UPSIDE_DOWN = "Turning [something] upside down"
SPIN = "Spinning [something] so it continues spinning"
APPROACH = "Approaching [something] with your camera"
AWAY = "Moving away from [something] with your camera"
FALL = "[Something] falling like a rock"
CLOSER = "Moving [something] and [something] closer to each other"
APART = "Moving [something] and [something] away from each other"
ONTO = "Putting [something] onto [something]"
OFF = "Pushing [something] off of [something]"
NEXT_TO = "Putting [something] next to [something]"
PUT_DOWN = "Putting [something] on a surface"
PICK_UP = "Picking [something] up"
COVER = "Covering [something] with [something]"
UNCOVER = "Uncovering [something]"
HOLD = "Holding [something]"
SHOW = "Showing [something] to the camera"
TOUCH = "Touching (without moving) [part] of [something]"
POKE = "Poking [something] so lightly that it doesn't or almost doesn't move"

_ENTRIES = (
    # distinctive
    CuratedEntry(PUSH_LR, "distinctive", "{0} is further to the right",
                 (PUSH_RL, PULL_LR, PULL_RL), PULL_RL),
    CuratedEntry(PUSH_RL, "distinctive", "{0} is further to the left",
                 (PUSH_LR, PULL_RL, PULL_LR), PULL_LR),
    CuratedEntry(PULL_LR, "distinctive", "{0} is further to the right",
                 (PULL_RL, PUSH_LR, PUSH_RL), PUSH_RL),
    CuratedEntry(PULL_RL, "distinctive", "{0} is further to the left",
                 (PULL_LR, PUSH_RL, PUSH_LR), PUSH_LR),
    CuratedEntry(UP, "distinctive", "{0} is higher up", (DOWN, PICK_UP, PUT_DOWN), DOWN),
    CuratedEntry(DOWN, "distinctive", "{0} is lower down", (UP, PUT_DOWN, FALL), UP),
    CuratedEntry(UPSIDE_DOWN, "distinctive", "{0} is upside down", (SPIN, HOLD), None),
    CuratedEntry(SPIN, "distinctive", "{0} keeps spinning", (UPSIDE_DOWN, POKE), None),
    CuratedEntry(APPROACH, "distinctive", "{0} looks bigger", (AWAY, SHOW), AWAY),
    CuratedEntry(AWAY, "distinctive", "{0} looks smaller", (APPROACH, SHOW), APPROACH),
    CuratedEntry(FALL, "distinctive", "{0} has fallen onto the table", (DOWN, PUT_DOWN), None),
    # non-typical
    CuratedEntry(CLOSER, "non_typical", "{0} and {1} are closer together", (APART, NEXT_TO),
                 APART),
    CuratedEntry(APART, "non_typical", "{0} and {1} are further apart", (CLOSER, NEXT_TO),
                 CLOSER),
    CuratedEntry(ONTO, "non_typical", "{0} is on top of {1}", (OFF, NEXT_TO, COVER), OFF),
    CuratedEntry(OFF, "non_typical", "{0} is no longer on top of {1}", (ONTO, NEXT_TO), ONTO),
    CuratedEntry(NEXT_TO, "non_typical", "{0} is next to {1}", (ONTO, PUT_DOWN, CLOSER), None),
    CuratedEntry(PUT_DOWN, "non_typical", "{0} is on the table", (PICK_UP, NEXT_TO, FALL),
                 PICK_UP),
    CuratedEntry(PICK_UP, "non_typical", "{0} is in the air", (PUT_DOWN, UP), PUT_DOWN),
    CuratedEntry(COVER, "non_typical", "{0} is hidden under {1}", (UNCOVER, ONTO), UNCOVER),
    CuratedEntry(UNCOVER, "non_typical", "{0} can be seen", (COVER, PICK_UP), COVER),
    # slight
    CuratedEntry(HOLD, "slight", "{0} stays in the hand", (SHOW, TOUCH, POKE), None),
    CuratedEntry(SHOW, "slight", "{0} has been shown to the camera", (HOLD, APPROACH), None),
    CuratedEntry(TOUCH, "slight", "{1} has not moved", (POKE, HOLD), None),
    CuratedEntry(POKE, "slight", "{0} has barely moved", (TOUCH, HOLD), None),
)

CURATED: dict[str, CuratedEntry] = {e.template: e for e in _ENTRIES}
