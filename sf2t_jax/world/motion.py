"""Motion programs: how the actors (and the hands moving them) move for each template.

A program is ``program(stage, bodies) -> Motion``: ``bodies`` are the template's actors (shape,
colour, base size) in placeholder order, followed by any extra actor the template needs but
does not name (the cover in "Uncovering [something]"). Programs work in normalised *world*
coordinates (see ``tracks``); the camera (zoom) is applied afterwards by ``scene``.
Every program is deterministic given ``stage.rng``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from sf2t_jax.world.tracks import Track

FLOOR = 0.86  # y of the table surface; resting objects sit on it
HAND_SIZE = 0.085  # palm circumradius, in size units


@dataclasses.dataclass(frozen=True)
class Body:
    """A shape before it moves: what it is and how big (circumradius, size units)."""

    name: str
    shape: str
    colour: str
    size: float


@dataclasses.dataclass(frozen=True)
class Stage:
    """Clip timing and geometry shared by every program."""

    rng: np.random.Generator
    num_frames: int
    t0: int  # first frame of the action
    t1: int  # last frame of the action (t1 > t0)
    ax: float  # one size unit in x units: min(H, W) / W
    ay: float  # one size unit in y units: min(H, W) / H

    @property
    def t(self) -> np.ndarray:
        return np.arange(self.num_frames, dtype=np.float64)

    def progress(self, t0: float | None = None, t1: float | None = None) -> np.ndarray:
        """Linear progress (T,) float64: 0 up to t0, 1 from t1 on."""
        t0 = self.t0 if t0 is None else t0
        t1 = self.t1 if t1 is None else t1
        return np.clip((self.t - t0) / max(t1 - t0, 1e-6), 0.0, 1.0)

    def ease(self, t0: float | None = None, t1: float | None = None) -> np.ndarray:
        """Smoothstep progress (T,) float64: starts and stops gently, as a hand would."""
        s = self.progress(t0, t1)
        return s * s * (3.0 - 2.0 * s)

    def full(self, value: float) -> np.ndarray:
        return np.full(self.num_frames, value, np.float64)

    def uniform(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def sign(self) -> float:
        return float(self.rng.choice((-1.0, 1.0)))

    def rest_y(self, body: Body) -> float:
        """y of a body resting on the table."""
        return FLOOR - body.size * self.ay


@dataclasses.dataclass
class Motion:
    actors: list[Track]  # in body order
    hands: list[Track] = dataclasses.field(default_factory=list)
    zoom: np.ndarray | None = None  # (T,), None = no camera motion
    zoom_centre: tuple[float, float] = (0.5, 0.5)
    part: str | None = None  # filler of a "[part]" slot, for templates that have one


def _track(body: Body, stage: Stage, x, y, size=None, angle=None, present=None) -> Track:
    full = stage.full
    return Track(
        name=body.name, shape=body.shape, colour=body.colour, role="actor",
        x=np.broadcast_to(x, stage.num_frames), y=np.broadcast_to(y, stage.num_frames),
        size=full(body.size) if size is None else size,
        angle=full(0.0) if angle is None else np.broadcast_to(angle, stage.num_frames),
        present=np.ones(stage.num_frames, bool) if present is None else present)


def _hand(stage: Stage, cx, cy, arm: str, first: int, last: int) -> Track:
    """A hand whose palm is at (cx, cy) from frame ``first`` to ``last`` (inclusive).

    It glides in from beyond the ``arm`` edge over a few frames before and out after, and is
    absent otherwise, so it never pops into view.
    """
    n = stage.num_frames
    cx = np.broadcast_to(np.asarray(cx, np.float64), n).copy()
    cy = np.broadcast_to(np.asarray(cy, np.float64), n).copy()
    glide = max(2, n // 8)
    off = {"top": (None, -0.15), "bottom": (None, 1.15), "left": (-0.15, None),
           "right": (1.15, None)}[arm]
    x, y = cx.copy(), cy.copy()
    present = np.zeros(n, bool)
    for t in range(n):
        if t < first:
            u, anchor = (first - t) / glide, first
        elif t > last:
            u, anchor = (t - last) / glide, last
        else:
            present[t] = True
            continue
        if u >= 1.0:
            continue
        present[t] = True
        u = u * u  # accelerate away from the contact point
        tx = cx[anchor] if off[0] is None else off[0]
        ty = cy[anchor] if off[1] is None else off[1]
        x[t] = (1 - u) * cx[anchor] + u * tx
        y[t] = (1 - u) * cy[anchor] + u * ty
    return Track(name="hand", shape="palm", colour="skin", role="hand", x=x, y=y,
                 size=stage.full(HAND_SIZE), angle=stage.full(0.0), present=present, arm=arm)


def _side_gap(stage: Stage, body: Body) -> float:
    """x distance from a body's centre to the palm centre of a hand touching its side."""
    return (body.size + 0.8 * HAND_SIZE) * stage.ax


def _top_gap(stage: Stage, body: Body) -> float:
    """y distance from a body's centre to the palm centre of a hand resting on its top."""
    return (body.size + 0.6 * HAND_SIZE) * stage.ay


# --------------------------------------------------------------------- distinctive

def slide(direction: float, pull: bool) -> Callable[[Stage, list[Body]], Motion]:
    """Pushing / pulling across the table; the hand trails (push) or leads (pull)."""
    def program(stage: Stage, bodies: list[Body]) -> Motion:
        (a,) = bodies
        y = stage.uniform(0.4, 0.7)
        x0, x1 = stage.uniform(0.15, 0.28), stage.uniform(0.72, 0.85)
        if direction < 0:
            x0, x1 = 1 - x0, 1 - x1
        x = x0 + (x1 - x0) * stage.ease()
        side = direction if pull else -direction
        hand = _hand(stage, x + side * _side_gap(stage, a), y, "bottom", stage.t0, stage.t1)
        return Motion([_track(a, stage, x, y)], [hand])
    return program


def lift(up: bool) -> Callable[[Stage, list[Body]], Motion]:
    """Moving up / down; the hand holds the side."""
    def program(stage: Stage, bodies: list[Body]) -> Motion:
        (a,) = bodies
        x = stage.uniform(0.3, 0.7)
        low, high = stage.rest_y(a), stage.uniform(0.2, 0.3)
        y0, y1 = (low, high) if up else (high, low)
        y = y0 + (y1 - y0) * stage.ease()
        side = stage.sign()
        hand = _hand(stage, x + side * _side_gap(stage, a), y, "right" if side > 0 else "left",
                     stage.t0, stage.t1)
        return Motion([_track(a, stage, x, y)], [hand])
    return program


def turn_upside_down(stage: Stage, bodies: list[Body]) -> Motion:
    (a,) = bodies
    x, y = stage.uniform(0.35, 0.65), stage.uniform(0.4, 0.6)
    angle = stage.uniform(-10, 10) + stage.sign() * 180.0 * stage.ease()
    side = stage.sign()
    hand = _hand(stage, x + side * _side_gap(stage, a), y, "right" if side > 0 else "left",
                 stage.t0, stage.t1)
    return Motion([_track(a, stage, x, y, angle=angle)], [hand])


def spin(stage: Stage, bodies: list[Body]) -> Motion:
    """A flick at t0, then steady spinning to the end of the clip."""
    (a,) = bodies
    x, y = stage.uniform(0.35, 0.65), stage.rest_y(a) - stage.uniform(0.0, 0.2)
    rate = stage.sign() * stage.uniform(12.0, 24.0)  # degrees per frame, below aliasing
    angle = stage.uniform(0, 360) + rate * np.maximum(stage.t - stage.t0, 0.0)
    side = stage.sign()
    hand = _hand(stage, x + side * _side_gap(stage, a), y, "right" if side > 0 else "left",
                 stage.t0 - 1, stage.t0)
    return Motion([_track(a, stage, x, y, angle=angle)], [hand])


def camera(final_zoom: tuple[float, float]) -> Callable[[Stage, list[Body]], Motion]:
    """Approaching (zoom in) / moving away from (zoom out) an object with the camera."""
    def program(stage: Stage, bodies: list[Body]) -> Motion:
        (a,) = bodies
        x, y = stage.uniform(0.35, 0.65), stage.uniform(0.35, 0.65)
        z1 = stage.uniform(*final_zoom)
        zoom = 1.0 + (z1 - 1.0) * stage.ease()
        return Motion([_track(a, stage, x, y)], zoom=zoom, zoom_centre=(x, y))
    return program


def fall(stage: Stage, bodies: list[Body]) -> Motion:
    """Released at t0, it falls with constant acceleration and lands on the table."""
    (a,) = bodies
    x, y0, y1 = stage.uniform(0.25, 0.75), stage.uniform(0.15, 0.3), stage.rest_y(a)
    land = stage.t0 + max(2.0, 0.4 * (stage.t1 - stage.t0))
    y = y0 + (y1 - y0) * stage.progress(stage.t0, land) ** 2
    hand = _hand(stage, x, y0 - _top_gap(stage, a), "top", 0, stage.t0)
    return Motion([_track(a, stage, x, y)], [hand])


# --------------------------------------------------------------------- non-typical

def pair(closer: bool) -> Callable[[Stage, list[Body]], Motion]:
    """Moving two things closer to / away from each other, one hand each."""
    def program(stage: Stage, bodies: list[Body]) -> Motion:
        a, b = bodies
        y = stage.uniform(0.45, 0.7)
        near = (a.size + b.size) * stage.ax * 0.6 + 0.04
        far_a, far_b = stage.uniform(0.12, 0.22), stage.uniform(0.78, 0.88)
        s = stage.ease()
        (xa0, xa1), (xb0, xb1) = ((far_a, 0.5 - near), (far_b, 0.5 + near))
        if not closer:
            xa0, xa1, xb0, xb1 = xa1, xa0, xb1, xb0
        xa, xb = xa0 + (xa1 - xa0) * s, xb0 + (xb1 - xb0) * s
        hands = [_hand(stage, xa - _side_gap(stage, a), y, "left", stage.t0, stage.t1),
                 _hand(stage, xb + _side_gap(stage, b), y, "right", stage.t0, stage.t1)]
        return Motion([_track(a, stage, xa, y), _track(b, stage, xb, y)], hands)
    return program


def _place(stage: Stage, x1: float, y1: float, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A path from a raised start beside (x1, y1) down to (x1, y1) at progress s (T,).

    Passing ``1 - s`` plays it backwards: lifted off, then carried away.
    """
    x0 = float(np.clip(x1 + stage.sign() * stage.uniform(0.22, 0.32), 0.12, 0.88))
    y0 = stage.uniform(0.18, 0.3)
    # x arrives first, y later: the path stays above whatever it lands on.
    sx, sy = np.sqrt(s), s * s
    return x0 + (x1 - x0) * sx, y0 + (y1 - y0) * sy


def put_onto(stage: Stage, bodies: list[Body]) -> Motion:
    a, b = bodies
    xb, yb = stage.uniform(0.35, 0.65), stage.rest_y(b)
    xa, ya = _place(stage, xb, yb - (a.size + b.size) * stage.ay * 0.9, stage.ease())
    hand = _hand(stage, xa, ya - _top_gap(stage, a), "top", stage.t0, stage.t1)
    return Motion([_track(a, stage, xa, ya), _track(b, stage, xb, yb)], [hand])


def push_off(stage: Stage, bodies: list[Body]) -> Motion:
    """From on top of b, pushed sideways until it drops onto the table beside b."""
    a, b = bodies
    xb, yb = stage.uniform(0.35, 0.65), stage.rest_y(b)
    direction = stage.sign()
    mid = stage.t0 + 0.65 * (stage.t1 - stage.t0)
    xa = xb + direction * (a.size + b.size) * stage.ax * 1.25 * stage.ease(stage.t0, mid)
    ya = yb - (a.size + b.size) * stage.ay * 0.9
    ya = ya + (stage.rest_y(a) - ya) * stage.progress(mid, stage.t1) ** 2
    hand = _hand(stage, xa - direction * _side_gap(stage, a), ya,
                 "left" if direction > 0 else "right", stage.t0, int(mid))
    return Motion([_track(a, stage, xa, ya), _track(b, stage, xb, yb)], [hand])


def put_next_to(stage: Stage, bodies: list[Body]) -> Motion:
    a, b = bodies
    xb, yb = stage.uniform(0.4, 0.6), stage.rest_y(b)
    x1 = xb + stage.sign() * ((a.size + b.size) * stage.ax + 0.05)
    xa, ya = _place(stage, x1, stage.rest_y(a), stage.ease())
    hand = _hand(stage, xa, ya - _top_gap(stage, a), "top", stage.t0, stage.t1)
    return Motion([_track(a, stage, xa, ya), _track(b, stage, xb, yb)], [hand])


def put_down(stage: Stage, bodies: list[Body]) -> Motion:
    """Putting on a surface: from the air down onto the table."""
    (a,) = bodies
    xa, ya = _place(stage, stage.uniform(0.3, 0.7), stage.rest_y(a), stage.ease())
    hand = _hand(stage, xa, ya - _top_gap(stage, a), "top", stage.t0, stage.t1)
    return Motion([_track(a, stage, xa, ya)], [hand])


def pick_up(stage: Stage, bodies: list[Body]) -> Motion:
    """Picking up: the reverse of putting down."""
    (a,) = bodies
    x, y0, y1 = stage.uniform(0.3, 0.7), stage.rest_y(a), stage.uniform(0.2, 0.3)
    y = y0 + (y1 - y0) * stage.ease()
    hand = _hand(stage, x, y - _top_gap(stage, a), "top", stage.t0, stage.t1)
    return Motion([_track(a, stage, x, y)], [hand])


def cover(covering: bool) -> Callable[[Stage, list[Body]], Motion]:
    """Covering b with the cover (bodies = [b, cover]), or uncovering it (the reverse).

    The cover is drawn after b and, centred on it, hides it completely.
    """
    def program(stage: Stage, bodies: list[Body]) -> Motion:
        b, c = bodies
        xb, yb = stage.uniform(0.35, 0.65), stage.rest_y(b)
        s = stage.ease()
        xc, yc = _place(stage, xb, yb, s if covering else 1.0 - s)
        hand = _hand(stage, xc, yc - _top_gap(stage, c), "top", stage.t0, stage.t1)
        return Motion([_track(b, stage, xb, yb), _track(c, stage, xc, yc)], [hand])
    return program


# --------------------------------------------------------------------- slight

def _wobble(stage: Stage, amplitude: float) -> np.ndarray:
    """Smooth random wobble (T,) with peak |value| <= amplitude: a hand is never still."""
    t = stage.t
    w = sum(np.sin(2 * np.pi * stage.uniform(0.05, 0.2) * t + stage.uniform(0, 2 * np.pi))
            for _ in range(2))
    return amplitude * w / 2.0


def hold(stage: Stage, bodies: list[Body]) -> Motion:
    (a,) = bodies
    x0, y0 = stage.uniform(0.3, 0.7), stage.uniform(0.35, 0.6)
    x, y = x0 + _wobble(stage, 0.006), y0 + _wobble(stage, 0.006)
    hand = _hand(stage, x, y + _top_gap(stage, a), "bottom", 0, stage.num_frames - 1)
    return Motion([_track(a, stage, x, y)], [hand])


def show(stage: Stage, bodies: list[Body]) -> Motion:
    """Showing to the camera: held up, brought a little closer (a scale pulse) and back."""
    (a,) = bodies
    x0, y0 = stage.uniform(0.35, 0.65), stage.uniform(0.35, 0.6)
    bump = np.sin(np.pi * stage.ease())
    size = a.size * (1.0 + 0.15 * bump)
    x, y = x0 + _wobble(stage, 0.004), y0 - 0.02 * bump
    hand = _hand(stage, x, y + (size + 0.6 * HAND_SIZE) * stage.ay, "bottom", 0,
                 stage.num_frames - 1)
    return Motion([_track(a, stage, x, y, size=size)], [hand])


TOUCH_PARTS = ("the top", "the left side", "the right side")


def touch(stage: Stage, bodies: list[Body]) -> Motion:
    """Touching (without moving) a part of a resting object; the part fills "[part]"."""
    (a,) = bodies
    part = TOUCH_PARTS[int(stage.rng.integers(len(TOUCH_PARTS)))]
    x, y = stage.uniform(0.3, 0.7), stage.rest_y(a)
    if part == "the top":
        hand = _hand(stage, x, y - _top_gap(stage, a), "top", stage.t0, stage.t1)
    else:
        side = -1.0 if part == "the left side" else 1.0
        hand = _hand(stage, x + side * _side_gap(stage, a), y,
                     "left" if side < 0 else "right", stage.t0, stage.t1)
    return Motion([_track(a, stage, x, y)], [hand], part=part)


def poke_lightly(stage: Stage, bodies: list[Body]) -> Motion:
    """A quick poke from the side; the object shifts by at most half a percent of the frame."""
    (a,) = bodies
    x0, y = stage.uniform(0.3, 0.7), stage.rest_y(a)
    side = stage.sign()
    hit = (stage.t0 + stage.t1) // 2
    x = x0 - side * stage.uniform(0.0, 0.005) * stage.ease(hit, hit + 2)
    hand = _hand(stage, x + side * _side_gap(stage, a), y, "right" if side > 0 else "left",
                 hit - 1, hit + 1)
    return Motion([_track(a, stage, x, y)], [hand])
