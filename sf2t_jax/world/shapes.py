"""Shape and colour vocabulary of the world, and shape outlines as polygons.

Colours are saturated and far apart in RGB (every pair differs by > 100 in at least one
channel), and backgrounds are desaturated, so an object can be found in a decoded frame by a
colour mask even after lossy yuv420p encoding.
"""
from __future__ import annotations

import functools

import numpy as np

WORLD_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 170, 55),
    "blue": (35, 70, 215),
    "yellow": (240, 215, 30),
    "purple": (145, 50, 185),
    "orange": (250, 135, 20),
}
SKIN = (225, 175, 140)  # hands (palm); far from every object colour
ARM = (200, 150, 120)  # the arm behind a hand, a shade darker than the palm

WORLD_SHAPES = ("circle", "square", "triangle", "star", "pentagon", "diamond")
# Shapes whose half-turn is visible (odd symmetry order): rotation templates use only these.
ROTATION_SHAPES = ("triangle", "star", "pentagon")
# Shapes that can cover another object (their inscribed circle is >= 0.7 of the radius).
COVER_SHAPES = ("circle", "square")

_CIRCLE_VERTICES = 32


@functools.cache
def unit_outline(shape: str) -> np.ndarray:
    """Outline of a shape of circumradius 1 at angle 0, centred on the origin.

    Returns:
      float64 array (K, 2) of (x, y) vertices, y pointing down (image convention); a triangle
      at angle 0 points up.
    """
    def ring(n: int, phase: float, radii=(1.0,)) -> np.ndarray:
        k = np.arange(n * len(radii))
        theta = phase + 2 * np.pi * k / (n * len(radii))
        r = np.asarray(radii)[k % len(radii)]
        return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1)

    up = -np.pi / 2  # first vertex straight up
    if shape == "circle":
        return ring(_CIRCLE_VERTICES, 0.0)
    if shape == "square":
        return ring(4, np.pi / 4)
    if shape == "triangle":
        return ring(3, up)
    if shape == "star":
        return ring(5, up, radii=(1.0, 0.45))
    if shape == "pentagon":
        return ring(5, up)
    if shape == "diamond":
        return np.array([[0.0, -1.0], [0.65, 0.0], [0.0, 1.0], [-0.65, 0.0]])
    if shape == "palm":  # a hand seen from above: an ellipse, wider than tall
        return ring(_CIRCLE_VERTICES, 0.0) * np.array([1.0, 0.8])
    raise ValueError(f"unknown shape {shape!r}: expected one of {WORLD_SHAPES + ('palm',)}")


def outline(shape: str, cx: float, cy: float, radius: float, angle_deg: float) -> np.ndarray:
    """Outline in pixels: (K, 2) float64, rotated clockwise on screen by ``angle_deg``."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    return unit_outline(shape) @ rot * radius + np.array([cx, cy])
