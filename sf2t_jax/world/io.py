"""Encoding the world's clips with PyAV (files are written by ``sf2t_jax.fileio``)."""
from __future__ import annotations

import io
import os

import av
import numpy as np

from sf2t_jax.world.config import CODECS


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
