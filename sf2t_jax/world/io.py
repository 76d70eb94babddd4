"""Encoding clips with PyAV, and atomic file writes.

Every file is written under a hidden temporary name in its final folder and renamed into
place (``os.replace`` is atomic on POSIX), so a run killed at any point leaves either the
whole file or no file under the final name; stale temporaries are removed on the next run.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import av
import numpy as np

from sf2t_jax.world.config import CODECS

_TMP_SUFFIX = ".partial"


def encode_video(frames: np.ndarray, fps: int, codec: str) -> bytes:
    """Encodes RGB frames into a complete video file in memory.

    Args:
      frames: uint8 (T, H, W, 3), H and W even.
      fps: frames per second of the stream.
      codec: a ``config.CODECS`` key ("vp9" -> WebM, "h264" -> MP4).
    Returns:
      The container bytes, the same for the same frames; decoding them yields T frames of
      (H, W, 3).
    """
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected uint8 (T, H, W, 3), got {frames.dtype} "
                         f"{frames.shape}")
    container_format, _, encoder, options = CODECS[codec]
    buf = io.BytesIO()
    # bitexact: without it the WebM muxer writes a random segment UID, so the same frames
    # would give other bytes on every render (and rebuilt datasets would differ from the
    # first build byte for byte)
    with av.open(buf, mode="w", format=container_format,
                 options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(encoder, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = dict(options)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush
    return buf.getvalue()


def decode_video(data: bytes | str | os.PathLike) -> np.ndarray:
    """Decodes every frame: uint8 (T, H, W, 3) RGB. For tests and inspection."""
    src = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    with av.open(src) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}{_TMP_SUFFIX}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=indent, ensure_ascii=False).encode("utf-8"))


def remove_partials(folder: str | os.PathLike) -> int:
    """Deletes temporaries left by an interrupted run in ``folder``; returns how many."""
    n = 0
    for p in Path(folder).glob(f".*{_TMP_SUFFIX}"):
        p.unlink(missing_ok=True)
        n += 1
    return n
