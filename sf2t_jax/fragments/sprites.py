"""Flat-coloured sprites (shape x colour) drawn with PIL, for the localization task.

Sprites are drawn without anti-aliasing: every sprite pixel is exactly its named colour, so
the sprite reads as one clean colour at small sizes and its pixels can be found exactly. A
1-pixel dark outline separates it from a background of the same hue.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# Saturated colours that are easy to name; none is grey, so none occurs in greyscale content.
SPRITE_COLORS = {
    "red": (230, 25, 25),
    "green": (20, 190, 40),
    "blue": (30, 60, 235),
    "yellow": (250, 220, 10),
    "purple": (150, 40, 200),
    "orange": (250, 130, 0),
    "cyan": (0, 210, 230),
    "pink": (250, 100, 190),
}
OUTLINE = (16, 16, 16)
SPRITE_SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross", "ring", "heart",
          "hexagon", "arrow", "crescent")


def _polygon(points: list[tuple[float, float]], size: int) -> list[tuple[float, float]]:
    """Unit-square points -> pixel coordinates of a size x size canvas."""
    s = size - 1
    return [(x * s, y * s) for x, y in points]


def _regular(n: int, r_outer: float, r_inner: float | None = None, phase: float = -np.pi / 2):
    """Points of a regular polygon (or a star when r_inner is set), centred in the unit square."""
    pts, k = [], 2 * n if r_inner is not None else n
    for j in range(k):
        r = r_outer if r_inner is None or j % 2 == 0 else r_inner
        a = phase + 2 * np.pi * j / k
        pts.append((0.5 + r * np.cos(a), 0.5 + r * np.sin(a)))
    return pts


def shape_mask(shape: str, size: int) -> np.ndarray:
    """bool (size, size): the pixels of `shape` drawn to fill a size x size box."""
    if shape not in SPRITE_SHAPES:
        raise ValueError(f"shape: expected one of {SPRITE_SHAPES}, got {shape!r}")
    img = Image.new("L", (size, size), 0)
    d, s = ImageDraw.Draw(img), size - 1
    if shape == "circle":
        d.ellipse((0, 0, s, s), fill=255)
    elif shape == "square":
        d.rectangle((round(0.1 * s), round(0.1 * s), round(0.9 * s), round(0.9 * s)), fill=255)
    elif shape == "triangle":
        d.polygon(_polygon([(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)], size), fill=255)
    elif shape == "star":
        d.polygon(_polygon(_regular(5, 0.5, 0.22), size), fill=255)
    elif shape == "diamond":
        d.polygon(_polygon([(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)], size), fill=255)
    elif shape == "cross":
        a, b = round(s / 3), round(2 * s / 3)
        d.rectangle((a, 0, b, s), fill=255)
        d.rectangle((0, a, s, b), fill=255)
    elif shape == "ring":
        d.ellipse((0, 0, s, s), fill=255)
        m = round(0.28 * s)
        d.ellipse((m, m, s - m, s - m), fill=0)
    elif shape == "heart":
        h = s / 2
        d.ellipse((0, 0, h + 1, h + 1), fill=255)
        d.ellipse((h - 1, 0, s, h + 1), fill=255)
        d.polygon(_polygon([(0.02, 0.38), (0.98, 0.38), (0.5, 1.0)], size), fill=255)
    elif shape == "hexagon":
        d.polygon(_polygon(_regular(6, 0.5, phase=0.0), size), fill=255)
    elif shape == "arrow":
        d.polygon(_polygon([(0.0, 0.35), (0.55, 0.35), (0.55, 0.05), (1.0, 0.5),
                            (0.55, 0.95), (0.55, 0.65), (0.0, 0.65)], size), fill=255)
    else:  # crescent
        d.ellipse((0, 0, s, s), fill=255)
        o = round(0.35 * s)
        d.ellipse((o, -round(0.1 * s), s + o, s - round(0.1 * s)), fill=0)
    return np.asarray(img) > 0


def render_sprite(shape: str, color: str, size: int,
                  outline: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 (S, S, 3), alpha bool (S, S)); S = size, plus 2 with the outline."""
    if color not in SPRITE_COLORS:
        raise ValueError(f"color: expected one of {tuple(SPRITE_COLORS)}, got {color!r}")
    body = shape_mask(shape, size)
    if outline:
        body = np.pad(body, 1)
        grown = body.copy()  # 8-neighbour dilation by one pixel
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                grown |= np.roll(np.roll(body, dy, 0), dx, 1)
        alpha = grown
    else:
        alpha = body
    rgb = np.zeros(alpha.shape + (3,), np.uint8)
    rgb[alpha] = OUTLINE
    rgb[body] = SPRITE_COLORS[color]
    return rgb, alpha


def paste(frame: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, y: int, x: int) -> np.ndarray:
    """A copy of uint8 (H, W, 3) `frame` with the sprite's opaque pixels at top-left (y, x)."""
    out = frame.copy()
    h, w = alpha.shape
    out[y:y + h, x:x + w][alpha] = rgb[alpha]
    return out
