"""Rasterising a scene into RGB frames, and measuring how much of each object is seen."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from sf2t_jax.world import motion
from sf2t_jax.world.shapes import ARM, WORLD_COLOURS, SKIN, outline
from sf2t_jax.world.tracks import Scene, Track

# The background texture covers world coordinates [-1, 2] in x and y, so zooming out to 0.5
# about any point of the frame never runs off it.
_BG_LO, _BG_SPAN = -1.0, 3.0


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """HSV in [0, 1] -> RGB float64 (3,) in [0, 255]."""
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return 255.0 * np.asarray(rgb)


def background(seed: int, height: int, width: int) -> Image.Image:
    """A desaturated wall above the table line and a wood-grained table below.

    Returns an RGB image (3 * height, 3 * width) covering world [-1, 2] x [-1, 2]. Colours stay
    desaturated (HSV saturation <= 0.25) so that object colour masks stay clean.
    """
    rng = np.random.default_rng(seed)
    h, w = 3 * height, 3 * width
    wall = _hsv(rng.uniform(), rng.uniform(0.04, 0.18), rng.uniform(0.62, 0.85))
    table = _hsv(rng.uniform(0.05, 0.12), rng.uniform(0.12, 0.25), rng.uniform(0.42, 0.6))

    def smooth(cells: int) -> np.ndarray:
        small = Image.fromarray(rng.standard_normal((cells, cells)).astype(np.float32), mode="F")
        return np.asarray(small.resize((w, h), Image.BICUBIC), np.float64)

    yy, xx = np.mgrid[0:h, 0:w]
    wy = _BG_LO + _BG_SPAN * (yy + 0.5) / h  # world y of each texture row
    grain = np.sin(2 * np.pi * (xx / w * rng.uniform(8, 14) + 0.35 * smooth(5)))
    shade = np.where(wy < motion.FLOOR, 1.0 + 0.06 * smooth(9),
                     1.0 + 0.05 * smooth(7) + 0.06 * grain)
    base = np.where((wy < motion.FLOOR)[..., None], wall, table)
    img = base * shade[..., None] + rng.normal(0.0, 2.5, (h, w, 1))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="RGB")


def _background_frame(tex: Image.Image, zoom: float, centre: tuple[float, float],
                      height: int, width: int) -> np.ndarray:
    """The visible window of the texture at this zoom, resized to (height, width, 3) uint8."""
    cx, cy = centre
    wx0, wx1 = cx - cx / zoom, cx + (1 - cx) / zoom
    wy0, wy1 = cy - cy / zoom, cy + (1 - cy) / zoom
    tw, th = tex.size
    box = ((wx0 - _BG_LO) / _BG_SPAN * tw, (wy0 - _BG_LO) / _BG_SPAN * th,
           (wx1 - _BG_LO) / _BG_SPAN * tw, (wy1 - _BG_LO) / _BG_SPAN * th)
    return np.asarray(tex.resize((width, height), Image.BILINEAR, box=box))


def _mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Polygon (K, 2) in pixels -> bool mask (height, width)."""
    img = Image.new("L", (width, height), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in points], fill=1)
    return np.asarray(img, bool)


def _full_area(points: np.ndarray) -> int:
    """Pixels the polygon would cover on an unbounded canvas (same rasterisation)."""
    shift = np.floor(points.min(axis=0)) - 1.0  # integer shift keeps the rasterisation
    local = points - shift
    w, h = (int(np.ceil(v)) + 2 for v in local.max(axis=0))
    return int(_mask(local, h, w).sum())


def _arm(track: Track, px: tuple[float, float], r: float, height: int, width: int) -> np.ndarray:
    """The forearm behind a palm: a bar from the palm centre to beyond the ``arm`` edge."""
    x, y = px
    half = 0.55 * r
    far = {"top": (x, -r), "bottom": (x, height + r), "left": (-r, y),
           "right": (width + r, y)}[track.arm]
    if track.arm in ("top", "bottom"):
        return np.array([[x - half, y], [x + half, y], [x + half, far[1]], [x - half, far[1]]])
    return np.array([[x, y - half], [x, y + half], [far[0], y + half], [far[0], y - half]])


def render(scene: Scene, height: int, width: int) -> np.ndarray:
    """Draws every frame and fills each track's ``visible_fraction`` (float32 (T,)).

    Tracks are drawn in list order (later ones in front); a hand is its forearm plus palm and
    its visible fraction is that of the palm.

    Returns:
      uint8 array (T, height, width, 3), RGB.
    """
    n = scene.num_frames
    tex = background(scene.background_seed, height, width)
    static_bg = None
    frames = np.empty((n, height, width, 3), np.uint8)
    fractions = np.zeros((len(scene.tracks), n), np.float32)
    for t in range(n):
        zoom = float(scene.zoom[t])
        if zoom == 1.0:  # most templates: one resize for the whole clip
            if static_bg is None:
                static_bg = _background_frame(tex, 1.0, scene.zoom_centre, height, width)
            frame = static_bg.copy()
        else:
            frame = _background_frame(tex, zoom, scene.zoom_centre, height, width).copy()
        owner = np.full((height, width), -1, np.int16)
        palms: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for k, arm, mask, poly in _drawn(scene.tracks, t, height, width):
            if arm is not None:
                frame[arm], owner[arm] = ARM, k
            frame[mask] = SKIN if scene.tracks[k].role == "hand" else WORLD_COLOURS[scene.tracks[k].colour]
            owner[mask] = k
            palms[k] = (mask, poly)
        for k, (mask, poly) in palms.items():
            fractions[k, t] = min(1.0, float((owner[mask] == k).sum()) / max(_full_area(poly), 1))
        frames[t] = frame
    for k, track in enumerate(scene.tracks):
        track.visible_fraction = fractions[k]
    return frames


def _drawn(tracks: list[Track], t: int, height: int, width: int):
    """Yields (track index, arm mask or None, shape mask, outline polygon) of every object
    present in frame t, in drawing order (later ones in front); masks are bool (height, width)."""
    unit = min(height, width)
    for k, track in enumerate(tracks):
        if not track.present[t]:
            continue
        centre = (float(track.x[t]) * width, float(track.y[t]) * height)
        r = float(track.size[t]) * unit
        poly = outline(track.shape, *centre, r, float(track.angle[t]))
        arm = _mask(_arm(track, centre, r, height, width), height, width) if track.role == "hand" else None
        yield k, arm, _mask(poly, height, width), poly


def owner_map(tracks: list[Track], t: int, height: int, width: int) -> np.ndarray:
    """Which object each pixel of frame t shows, as `render` draws it at this size.

    Returns:
      int16 (height, width): the index into `tracks` of the front-most object at each pixel
      (a hand's arm belongs to its hand), -1 for the background.
    """
    owner = np.full((height, width), -1, np.int16)
    for k, arm, mask, _ in _drawn(tracks, t, height, width):
        if arm is not None:
            owner[arm] = k
        owner[mask] = k
    return owner
