"""Scale knobs of the synthetic SSv2-format world."""
from __future__ import annotations

import dataclasses
from typing import Any

from sf2t_jax.errors import InputError

# codec name -> (container preset of ``sf2t_jax.video.encode_video``, file extension, encoder
# options over the preset's). VP9 in WebM is what real SSv2 ships; the options favour speed:
# the clips are tiny and the demo must render hundreds of them on two cores.
CODECS: dict[str, tuple[str, str, dict[str, str]]] = {
    "vp9": ("webm", "webm", {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0", "threads": "1"}),
    "h264": ("mp4", "mp4", {"preset": "veryfast", "crf": "18", "threads": "1"}),
}

SPLITS = ("train", "validation", "test")

# Clip ids are SSv2-style decimal strings, unique across splits: split s owns the block
# [ID_BASE[s], ID_BASE[s] + MAX_CLIPS_PER_SPLIT). Clip i of a split keeps its id when the
# split grows, so a re-run with more clips reuses every finished file.
MAX_CLIPS_PER_SPLIT = 1_000_000
ID_BASE = {"train": 1, "validation": 1_000_001, "test": 2_000_001}


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """How many clips to render and how they look. Defaults are the demo scale."""

    train_clips: int = 480
    """Clips in ``labels/train.json``."""
    validation_clips: int = 60
    """Clips in ``labels/validation.json``."""
    test_clips: int = 60
    """Clips in ``labels/test.json`` (labelled: unlike the public SSv2 file, the benchmark
    needs them)."""
    height: int = 112
    """Frame height in pixels (even: yuv420p needs it)."""
    width: int = 112
    """Frame width in pixels (even)."""
    num_frames: int = 24
    """Frames per clip."""
    fps: int = 12
    """Frames per second written into the container (SSv2 is 12 fps)."""
    seed: int = 0
    """Root seed; clip i of split s depends only on (seed, s, i)."""
    codec: str = "vp9"
    """One of ``CODECS``: "vp9" (``videos/{id}.webm``, as SSv2) or "h264" (``.mp4``)."""
    max_objects: int = 3
    """Most shapes in a scene (1 to 3): the template's actors plus static distractors."""

    def __post_init__(self):
        for name in ("train_clips", "validation_clips", "test_clips"):
            n = getattr(self, name)
            if not 0 <= n < MAX_CLIPS_PER_SPLIT:
                raise InputError(f"WorldConfig.{name}={n}: expected 0 <= n < "
                                 f"{MAX_CLIPS_PER_SPLIT}")
        for name in ("height", "width"):
            v = getattr(self, name)
            if v < 32 or v % 2:
                raise InputError(f"WorldConfig.{name}={v}: expected an even number >= 32")
        if self.num_frames < 8:
            raise InputError(f"WorldConfig.num_frames={self.num_frames}: expected >= 8 (the "
                             "action needs room before, during and after)")
        if self.fps < 1:
            raise InputError(f"WorldConfig.fps={self.fps}: expected >= 1")
        if self.codec not in CODECS:
            raise InputError(f"WorldConfig.codec={self.codec!r}: expected one of {sorted(CODECS)}")
        if not 1 <= self.max_objects <= 3:
            raise InputError(f"WorldConfig.max_objects={self.max_objects}: expected 1 to 3")

    def clips(self, split: str) -> int:
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}: expected one of {SPLITS}")
        return getattr(self, f"{split}_clips")

    @property
    def extension(self) -> str:
        return CODECS[self.codec][1]

    def render_fields(self) -> dict[str, Any]:
        """The fields that decide what a clip looks like (everything but the clip counts).

        A folder written with other render fields cannot be extended: its finished clips would
        not match the config.
        """
        d = dataclasses.asdict(self)
        for split in SPLITS:
            d.pop(f"{split}_clips")
        return d
