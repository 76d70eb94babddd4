"""The world's templates: 24 real SSv2 templates, each with a motion program and its tables.

Every template string is a real SSv2 template (``ssv2.ssv2_templates()``), so a rendered clip is
a genuine SSv2-format record and the real-SSv2 code path serves both. Where the spec's examples
have no SSv2 wording we use the closest real template:
  * "Moving [something] from left to right" -> "Pushing/Pulling [something] from left to right"
    (SSv2 has no "Moving ... from left to right");
  * "Putting [something] on [something]" -> "Putting [something] onto [something]";
  * "Taking [something] off [something]" -> "Pushing [something] off of [something]";
  * "Making [something] bigger / smaller" -> "Approaching [something] with your camera" /
    "Moving away from [something] with your camera";
  * "Turning [something] clockwise" -> "Spinning [something] so it continues spinning";
  * "[Something] appearing" -> "Uncovering [something]" (and "Covering [something] with
    [something]" for disappearing).

Tables (hand-written here for the world; ``rules`` derives them for all 174 SSv2 templates):
  category  "distinctive" (a clear motion signature), "non_typical" (put / move / take: flexible,
            no single signature), "slight" (hold / show / touch: barely any motion);
  effect    what is true after the action, with ``{0}``, ``{1}`` standing for the placeholders
            in template order;
  synonyms  visually close templates of the world, closest first (opposite direction, push vs
            pull, put on vs take off, bigger vs smaller);
  reverse   the template a time-reversed clip shows, or None when no template fits (reversing
            a push leaves the hand ahead of the object: it shows a pull the other way).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from sf2t_jax.world import motion
from sf2t_jax.world.shapes import COVER_SHAPES, ROTATION_SHAPES, SHAPES

CATEGORIES = ("distinctive", "non_typical", "slight")

DEFAULT_SIZE = (0.09, 0.13)


@dataclasses.dataclass(frozen=True)
class BodySpec:
    """What an actor may look like."""

    shapes: tuple[str, ...] = SHAPES
    size: tuple[float, float] = DEFAULT_SIZE  # circumradius range, size units
    named: bool = True  # fills a "[something]" slot (the cover of "Uncovering" does not)


@dataclasses.dataclass(frozen=True)
class TemplateSpec:
    template: str
    category: str
    effect: str
    synonyms: tuple[str, ...]
    reverse: str | None
    program: Callable[[motion.Stage, list[motion.Body]], motion.Motion]
    bodies: tuple[BodySpec, ...] = (BodySpec(),)


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

_ROTATING = (BodySpec(shapes=ROTATION_SHAPES),)
_TWO = (BodySpec(), BodySpec())
_COVERED = BodySpec(size=(0.07, 0.085))
_COVERING = BodySpec(shapes=COVER_SHAPES, size=(0.16, 0.18))

_SPECS = (
    # distinctive
    TemplateSpec(PUSH_LR, "distinctive", "{0} is further to the right",
                 (PUSH_RL, PULL_LR, PULL_RL), PULL_RL, motion.slide(+1, pull=False)),
    TemplateSpec(PUSH_RL, "distinctive", "{0} is further to the left",
                 (PUSH_LR, PULL_RL, PULL_LR), PULL_LR, motion.slide(-1, pull=False)),
    TemplateSpec(PULL_LR, "distinctive", "{0} is further to the right",
                 (PULL_RL, PUSH_LR, PUSH_RL), PUSH_RL, motion.slide(+1, pull=True)),
    TemplateSpec(PULL_RL, "distinctive", "{0} is further to the left",
                 (PULL_LR, PUSH_RL, PUSH_LR), PUSH_LR, motion.slide(-1, pull=True)),
    TemplateSpec(UP, "distinctive", "{0} is higher up", (DOWN, PICK_UP, PUT_DOWN), DOWN,
                 motion.lift(up=True)),
    TemplateSpec(DOWN, "distinctive", "{0} is lower down", (UP, PUT_DOWN, FALL), UP,
                 motion.lift(up=False)),
    TemplateSpec(UPSIDE_DOWN, "distinctive", "{0} is upside down", (SPIN, HOLD), None,
                 motion.turn_upside_down, _ROTATING),
    TemplateSpec(SPIN, "distinctive", "{0} keeps spinning", (UPSIDE_DOWN, POKE), None,
                 motion.spin, _ROTATING),
    TemplateSpec(APPROACH, "distinctive", "{0} looks bigger", (AWAY, SHOW), AWAY,
                 motion.camera((1.5, 1.8))),
    TemplateSpec(AWAY, "distinctive", "{0} looks smaller", (APPROACH, SHOW), APPROACH,
                 motion.camera((0.55, 0.7))),
    TemplateSpec(FALL, "distinctive", "{0} has fallen onto the table", (DOWN, PUT_DOWN), None,
                 motion.fall),
    # non-typical
    TemplateSpec(CLOSER, "non_typical", "{0} and {1} are closer together", (APART, NEXT_TO),
                 APART, motion.pair(closer=True), _TWO),
    TemplateSpec(APART, "non_typical", "{0} and {1} are further apart", (CLOSER, NEXT_TO),
                 CLOSER, motion.pair(closer=False), _TWO),
    TemplateSpec(ONTO, "non_typical", "{0} is on top of {1}", (OFF, NEXT_TO, COVER), OFF,
                 motion.put_onto, _TWO),
    TemplateSpec(OFF, "non_typical", "{0} is no longer on top of {1}", (ONTO, NEXT_TO), ONTO,
                 motion.push_off, _TWO),
    TemplateSpec(NEXT_TO, "non_typical", "{0} is next to {1}", (ONTO, PUT_DOWN, CLOSER), None,
                 motion.put_next_to, _TWO),
    TemplateSpec(PUT_DOWN, "non_typical", "{0} is on the table", (PICK_UP, NEXT_TO, FALL),
                 PICK_UP, motion.put_down),
    TemplateSpec(PICK_UP, "non_typical", "{0} is in the air", (PUT_DOWN, UP), PUT_DOWN,
                 motion.pick_up),
    TemplateSpec(COVER, "non_typical", "{0} is hidden under {1}", (UNCOVER, ONTO), UNCOVER,
                 motion.cover(covering=True), (_COVERED, _COVERING)),
    TemplateSpec(UNCOVER, "non_typical", "{0} can be seen", (COVER, PICK_UP), COVER,
                 motion.cover(covering=False),
                 (_COVERED, dataclasses.replace(_COVERING, named=False))),
    # slight
    TemplateSpec(HOLD, "slight", "{0} stays in the hand", (SHOW, TOUCH, POKE), None,
                 motion.hold),
    TemplateSpec(SHOW, "slight", "{0} has been shown to the camera", (HOLD, APPROACH), None,
                 motion.show),
    TemplateSpec(TOUCH, "slight", "{1} has not moved", (POKE, HOLD), None, motion.touch),
    TemplateSpec(POKE, "slight", "{0} has barely moved", (TOUCH, HOLD), None,
                 motion.poke_lightly),
)

WORLD_TEMPLATES: dict[str, TemplateSpec] = {s.template: s for s in _SPECS}


def world_templates() -> tuple[str, ...]:
    """The world's templates in a fixed order."""
    return tuple(WORLD_TEMPLATES)


def spec(template: str) -> TemplateSpec:
    try:
        return WORLD_TEMPLATES[template]
    except KeyError:
        raise KeyError(f"template {template!r} is not one the world can render; it renders "
                       f"{len(WORLD_TEMPLATES)} templates (world_templates())") from None
