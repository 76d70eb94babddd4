"""The world's templates: 24 real SSv2 templates, each with a motion program and its actors.

Every template string is a real SSv2 template (``ssv2.ssv2_templates()``), so a rendered clip is
a genuine SSv2-format record and the real-SSv2 code path serves both. Their tables (category,
effect, synonyms, reverse), and why each template was chosen, are in ``sf2t_jax.ssv2.curated``;
this module adds how the world renders each one.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from sf2t_jax.ssv2.curated import (APART, APPROACH, AWAY, CLOSER, COVER, DOWN, FALL, HOLD, NEXT_TO, OFF,
                                   ONTO, PICK_UP, POKE, PULL_LR, PULL_RL, PUSH_LR, PUSH_RL, PUT_DOWN,
                                   SHOW, SPIN, TOUCH, UNCOVER, UP, UPSIDE_DOWN)
from sf2t_jax.world import motion
from sf2t_jax.world.shapes import COVER_SHAPES, ROTATION_SHAPES, WORLD_SHAPES

DEFAULT_SIZE = (0.09, 0.13)


@dataclasses.dataclass(frozen=True)
class BodySpec:
    """What an actor may look like."""

    shapes: tuple[str, ...] = WORLD_SHAPES
    size: tuple[float, float] = DEFAULT_SIZE  # circumradius range, size units
    named: bool = True  # fills a "[something]" slot (the cover of "Uncovering" does not)


@dataclasses.dataclass(frozen=True)
class TemplateSpec:
    """How the world renders one template (its tables: ``ssv2.curated.CURATED[template]``)."""

    template: str
    program: Callable[[motion.Stage, list[motion.Body]], motion.Motion]
    bodies: tuple[BodySpec, ...] = (BodySpec(),)


_ROTATING = (BodySpec(shapes=ROTATION_SHAPES),)
_TWO = (BodySpec(), BodySpec())
_COVERED = BodySpec(size=(0.07, 0.085))
_COVERING = BodySpec(shapes=COVER_SHAPES, size=(0.16, 0.18))

_SPECS = (  # this order is part of the world: build.template_for shuffles positions in it
    # distinctive
    TemplateSpec(PUSH_LR, motion.slide(+1, pull=False)),
    TemplateSpec(PUSH_RL, motion.slide(-1, pull=False)),
    TemplateSpec(PULL_LR, motion.slide(+1, pull=True)),
    TemplateSpec(PULL_RL, motion.slide(-1, pull=True)),
    TemplateSpec(UP, motion.lift(up=True)),
    TemplateSpec(DOWN, motion.lift(up=False)),
    TemplateSpec(UPSIDE_DOWN, motion.turn_upside_down, _ROTATING),
    TemplateSpec(SPIN, motion.spin, _ROTATING),
    TemplateSpec(APPROACH, motion.camera((1.5, 1.8))),
    TemplateSpec(AWAY, motion.camera((0.55, 0.7))),
    TemplateSpec(FALL, motion.fall),
    # non-typical
    TemplateSpec(CLOSER, motion.pair(closer=True), _TWO),
    TemplateSpec(APART, motion.pair(closer=False), _TWO),
    TemplateSpec(ONTO, motion.put_onto, _TWO),
    TemplateSpec(OFF, motion.push_off, _TWO),
    TemplateSpec(NEXT_TO, motion.put_next_to, _TWO),
    TemplateSpec(PUT_DOWN, motion.put_down),
    TemplateSpec(PICK_UP, motion.pick_up),
    TemplateSpec(COVER, motion.cover(covering=True), (_COVERED, _COVERING)),
    TemplateSpec(UNCOVER, motion.cover(covering=False),
                 (_COVERED, dataclasses.replace(_COVERING, named=False))),
    # slight
    TemplateSpec(HOLD, motion.hold),
    TemplateSpec(SHOW, motion.show),
    TemplateSpec(TOUCH, motion.touch),
    TemplateSpec(POKE, motion.poke_lightly),
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
