"""Sampling a scene: the template's actors and motion, static distractors, the camera."""
from __future__ import annotations

import numpy as np

from sf2t_jax import ssv2
from sf2t_jax.world import motion
from sf2t_jax.world.shapes import WORLD_COLOURS, WORLD_SHAPES
from sf2t_jax.world.templates import TemplateSpec
from sf2t_jax.world.tracks import Scene, Track

_PLACEMENT_TRIES = 64


def _action_span(rng: np.random.Generator, n: int) -> tuple[int, int]:
    """First and last action frames: the action fills 50-75% of the clip, with still frames
    before and after, so order and speed questions have something to see."""
    length = int(np.clip(round(rng.uniform(0.5, 0.75) * (n - 1)), 2, n - 3))
    t0 = int(rng.integers(1, n - 1 - length))
    return t0, t0 + length


def _clear_of(tracks: list[Track], x: float, y: float, r: float, ax: float, ay: float) -> bool:
    """True if a disc (x, y, r) keeps clear of every present track in every frame."""
    for t in tracks:
        dx = (t.x - x) / ax
        dy = (t.y - y) / ay
        gap = np.hypot(dx, dy) - (t.size + r) * 1.15 - 0.03
        if np.any(gap[t.present] < 0):
            return False
    return True


def sample_scene(spec: TemplateSpec, rng: np.random.Generator, *, num_frames: int,
                 height: int, width: int, max_objects: int) -> Scene:
    """Draws one clip of ``spec`` (ground truth only; ``render`` turns it into pixels).

    The template's actors are always there; static distractors are added up to
    ``max_objects`` shapes in all, where they fit without touching anything that moves (a
    distractor that does not fit is left out, so scenes hold 1 to ``max_objects`` shapes).
    All shapes in a scene have different colours, so a colour names one object.
    """
    unit = min(height, width)
    t0, t1 = _action_span(rng, num_frames)
    stage = motion.Stage(rng=rng, num_frames=num_frames, t0=t0, t1=t1, ax=unit / width,
                         ay=unit / height)
    colours = list(rng.permutation(list(WORLD_COLOURS)))
    bodies = []
    for b in spec.bodies:
        shape = str(b.shapes[int(rng.integers(len(b.shapes)))])
        colour = str(colours.pop())
        bodies.append(motion.Body(f"{colour} {shape}", shape, colour, rng.uniform(*b.size)))
    mov = spec.program(stage, bodies)

    distractors: list[Track] = []
    for _ in range(int(rng.integers(len(bodies), max(max_objects, len(bodies)) + 1))
                   - len(bodies)):
        shape, colour = str(WORLD_SHAPES[int(rng.integers(len(WORLD_SHAPES)))]), str(colours.pop())
        r = rng.uniform(0.08, 0.11)
        for _ in range(_PLACEMENT_TRIES):
            x, y = rng.uniform(0.12, 0.88), rng.uniform(0.15, motion.FLOOR - r * stage.ay)
            if _clear_of(mov.actors + mov.hands + distractors, x, y, r, stage.ax, stage.ay):
                distractors.append(Track(
                    name=f"{colour} {shape}", shape=shape, colour=colour, role="distractor",
                    x=stage.full(x), y=stage.full(y), size=stage.full(r),
                    angle=stage.full(rng.uniform(0, 360)),
                    present=np.ones(num_frames, bool)))
                break

    tracks = distractors + mov.actors + mov.hands
    zoom = stage.full(1.0) if mov.zoom is None else np.asarray(mov.zoom, np.float64)
    cx, cy = mov.zoom_centre
    for t in tracks:  # camera: a similarity about the zoom centre, so nothing new collides
        t.x = (cx + (t.x - cx) * zoom).astype(np.float32)
        t.y = (cy + (t.y - cy) * zoom).astype(np.float32)
        t.size = (t.size * zoom).astype(np.float32)

    names = iter(b.name for b, s in zip(bodies, spec.bodies) if s.named)
    placeholders = [mov.part if slot == "part" else next(names)
                    for slot in ssv2.slots(spec.template)]
    if mov.part is None and "part" in ssv2.slots(spec.template):
        raise ValueError(f"{spec.template!r}: its program did not choose a [part]")
    return Scene(template=spec.template, placeholders=placeholders, tracks=tracks,
                 zoom=zoom.astype(np.float32), zoom_centre=(float(cx), float(cy)),
                 background_seed=int(rng.integers(2**31)), action_span=(t0, t1))
