"""Encode uint8 RGB frames into a video file with PyAV (the synthetic world, tests, previews).

Container presets (all ship with PyAV's FFmpeg):
  "mp4"  H.264 in MP4 (the header states the frame count)
  "webm" VP9 in WebM, like Something-Something-v2 (frame count unknown until decoded)
  "mkv"  H.264 in Matroska
  "avi"  MPEG-4 Part 2 in AVI
"""
from __future__ import annotations

import io
import os

import av
import numpy as np

# name -> (FFmpeg muxer, encoder, encoder options)
PRESETS: dict[str, tuple[str, str, dict[str, str]]] = {
    "mp4": ("mp4", "h264", {"crf": "18"}),
    "webm": ("webm", "libvpx-vp9", {"crf": "20", "b": "0"}),
    "mkv": ("matroska", "h264", {"crf": "18"}),
    "avi": ("avi", "mpeg4", {"b": "4M"}),
}


def encode_video(
    frames: np.ndarray,
    path: str | os.PathLike | None = None,
    *,
    container: str = "mp4",
    fps: int = 12,
    options: dict[str, str] | None = None,
) -> bytes:
    """Encodes (T, H, W, 3) uint8 RGB frames; H and W must be even (yuv420p).

    Args:
      frames: the clip.
      path: where to write the file; None keeps it in memory only.
      container: a key of `PRESETS`.
      fps: frame rate written to the container.
      options: encoder options overriding the preset's (e.g. {"crf": "0"}).
    Returns:
      The encoded file's bytes.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"encode_video expects uint8 (T, H, W, 3) RGB with T >= 1, got {frames.dtype} {frames.shape}")
    if container not in PRESETS:
        raise ValueError(f"unknown container preset {container!r}; known: {', '.join(PRESETS)}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even frame sizes, got {height}x{width}")
    fmt, codec, preset_options = PRESETS[container]
    buffer = io.BytesIO()
    # bitexact: the WebM muxer otherwise writes a random segment UID, so equal frames would
    # give different bytes on every call.
    with av.open(buffer, mode="w", format=fmt, options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=fps, options={**preset_options, **(options or {})})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode(None))  # flush the encoder
    data = buffer.getvalue()
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data
