"""Small video corpora for tests and benchmarks: moving clips, and every kind of broken file.

`moving_clip` is textured noise scrolling sideways with a white block crossing it: every frame
differs visibly from its neighbours (the order tasks never call it near static) and it is
cheap to encode. `write_broken_files` writes one file per way a video can be unusable and
returns the skip reason the pipeline must report for each.
"""
from __future__ import annotations

import os

import numpy as np

from sf2t_jax.video import encode_video


def moving_clip(num_frames: int = 16, height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8: a scrolling texture plus a moving block; consecutive frames differ."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    texture = np.pad(texture, ((0, height - texture.shape[0]), (0, width - texture.shape[1]), (0, 0)))
    side = max(4, height // 4)
    frames = []
    for t in range(num_frames):
        frame = np.roll(texture, 2 * t, axis=1)
        x = (t * max(1, (width - side) // max(1, num_frames - 1))) % max(1, width - side)
        frame[height // 4: height // 4 + side, x: x + side] = 255
        frames.append(frame)
    return np.stack(frames)


def write_clips(root: str | os.PathLike, count: int, *, num_frames: int = 16, height: int = 64, width: int = 64,
                container: str = "mp4", prefix: str = "good", seed: int = 0) -> list[str]:
    """Writes `count` moving clips as `{prefix}_{i:03d}.{ext}`; returns their paths."""
    os.makedirs(root, exist_ok=True)
    ext = {"mkv": "mkv", "webm": "webm", "avi": "avi"}.get(container, "mp4")
    paths = []
    for i in range(count):
        path = os.path.join(os.fspath(root), f"{prefix}_{i:03d}.{ext}")
        encode_video(moving_clip(num_frames, height, width, seed=seed + i), path, container=container)
        paths.append(path)
    return paths


def write_broken_files(root: str | os.PathLike, *, height: int = 64, width: int = 64) -> dict[str, str]:
    """One unusable file per failure; returns {path: the skip reason the pipeline must give}.

    'too_short' and 'near_static' are valid videos that the order tasks (disorder, rearrange)
    must refuse: a single frame, and a clip whose frames are all the same.
    """
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    good = encode_video(moving_clip(16, height, width, seed=99), container="mp4")
    avi = encode_video(moving_clip(8, height, width, seed=98), container="avi")
    files = {
        "zero_length.mp4": (b"", "empty_file"),
        "random_bytes.webm": (np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes(),
                              "not_a_video"),
        "notes_renamed.mp4": (b"this is a text file, not a video\n" * 64, "not_a_video"),
        "truncated.mp4": (good[: len(good) // 2], "corrupt"),
        "unknown_codec.avi": (avi.replace(b"FMP4", b"ZQZQ"), "unsupported_codec"),  # a fourcc FFmpeg lacks
        "one_frame.mp4": (encode_video(moving_clip(1, height, width, seed=97), container="mp4"), "too_short"),
        "static.mp4": (encode_video(np.repeat(moving_clip(1, height, width, seed=96), 16, axis=0), container="mp4"),
                       "near_static"),
    }
    out = {}
    for name, (data, reason) in files.items():
        path = os.path.join(root, name)
        with open(path, "wb") as f:
            f.write(data)
        out[path] = reason
    return out


def damage_late(mp4: bytes, at: float = 0.7, size: int = 256) -> bytes:
    """An mp4 whose header and first frames are intact but whose stream is garbage from `at`
    (a fraction of the media data) on: bit rot that opening the file and decoding its first
    frame do not see. The header still declares every frame.

    Raises:
      ValueError: `mp4` has no media data box.
    """
    offset = 0
    while offset + 8 <= len(mp4):  # top-level ISO BMFF boxes: 4-byte size, 4-byte type
        box_size, kind = int.from_bytes(mp4[offset:offset + 4], "big"), mp4[offset + 4:offset + 8]
        if kind == b"mdat":
            start = offset + 8 + int((box_size - 8) * at)
            garbage = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
            end = min(start + size, offset + box_size)
            return mp4[:start] + garbage[: end - start] + mp4[end:]
        if box_size < 8:
            break
        offset += box_size
    raise ValueError("not an mp4 with a media data (mdat) box")
