"""Ground truth of a clip: per-frame object state ("tracks") and its JSON form.

Coordinates are normalised: ``x`` in units of the frame width, ``y`` of the frame height
(origin top left, y down), ``size`` (circumradius) in units of ``min(height, width)``,
``angle`` in degrees clockwise on screen. They are *screen* coordinates: camera motion is
already applied. ``present`` says the object is drawn in that frame (a hand before it enters
is not); ``visible_fraction`` is the share of its pixels that are actually seen, after
occlusion and cropping by the frame border (1.0 fully visible, 0.0 hidden or absent). An
object's colour and shape do not change during a clip, so they are stored once per object.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

ROLES = ("actor", "distractor", "hand")
ARMS = ("top", "bottom", "left", "right")


@dataclasses.dataclass
class Track:
    """One object through a clip. Arrays are float32 (T,) unless noted."""

    name: str  # what a placeholder calls it, e.g. "red circle"; "hand" for hands
    shape: str  # a shapes.WORLD_SHAPES entry, or "palm" for hands
    colour: str  # a shapes.WORLD_COLOURS key, or "skin"
    role: str  # "actor" (named by the template), "distractor" (static), or "hand"
    x: np.ndarray
    y: np.ndarray
    size: np.ndarray
    angle: np.ndarray
    present: np.ndarray  # bool (T,)
    arm: str | None = None  # hands only: the frame edge the arm comes from
    visible_fraction: np.ndarray | None = None  # filled in by the renderer

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"track {self.name!r}: role {self.role!r} not in {ROLES}")
        if (self.role == "hand") != (self.arm is not None):
            raise ValueError(f"track {self.name!r}: hands need an arm in {ARMS}, others none")
        n = len(self.x)
        for f in ("x", "y", "size", "angle"):
            setattr(self, f, np.asarray(getattr(self, f), np.float32))
        self.present = np.asarray(self.present, bool)
        if any(len(getattr(self, f)) != n for f in ("y", "size", "angle", "present")):
            raise ValueError(f"track {self.name!r}: arrays differ in length")

    def to_json(self, decimals: int = 4) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "shape": self.shape, "colour": self.colour,
                             "role": self.role}
        if self.arm is not None:
            d["arm"] = self.arm
        for f in ("x", "y", "size", "angle"):
            d[f] = np.round(getattr(self, f).astype(np.float64), decimals).tolist()
        d["present"] = self.present.tolist()
        if self.visible_fraction is not None:
            d["visible_fraction"] = np.round(
                self.visible_fraction.astype(np.float64), 3).tolist()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Track":
        vf = d.get("visible_fraction")
        return cls(name=d["name"], shape=d["shape"], colour=d["colour"], role=d["role"],
                   x=d["x"], y=d["y"], size=d["size"], angle=d["angle"],
                   present=d["present"], arm=d.get("arm"),
                   visible_fraction=None if vf is None else np.asarray(vf, np.float32))


@dataclasses.dataclass
class Scene:
    """Everything needed to render one clip, and its ground truth."""

    template: str
    placeholders: list[str]
    tracks: list[Track]  # in drawing order: first is drawn first (furthest back)
    zoom: np.ndarray  # float32 (T,): camera zoom, 1 = the reference view
    zoom_centre: tuple[float, float]  # normalised point the camera zooms towards
    background_seed: int
    action_span: tuple[int, int]  # first and last frame of the action (inclusive)

    @property
    def num_frames(self) -> int:
        return len(self.zoom)

    def track(self, name: str) -> Track:
        for t in self.tracks:
            if t.name == name:
                return t
        raise KeyError(f"no track named {name!r}; have {[t.name for t in self.tracks]}")

    def to_json(self, clip_id: str, fps: int, height: int, width: int) -> dict[str, Any]:
        """The ``tracks/{id}.json`` record."""
        return {
            "id": clip_id, "template": self.template, "placeholders": list(self.placeholders),
            "num_frames": self.num_frames, "fps": fps, "height": height, "width": width,
            "action_span": list(self.action_span),
            "camera": {"zoom": np.round(self.zoom.astype(np.float64), 4).tolist(),
                       "centre": [round(float(c), 4) for c in self.zoom_centre]},
            "objects": [t.to_json() for t in self.tracks],
        }
