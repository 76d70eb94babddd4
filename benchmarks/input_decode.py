"""Decode cost of one training sample: sequential decode vs seeking, and where the time goes.

Usage: python benchmarks/input_decode.py [--frames 300] [--size 224] [--num 16]

Encodes a textured, moving clip (like real video, unlike flat synthetic frames that decode for
free) as mp4/H.264 with keyframes every 12 and every 250 frames, and as webm/VP9, then compares
for `--num` uniformly sampled frames:
  full      decode every frame and convert every frame to RGB (the naive loader)
  ours      sf2t_jax.video.decode_video: one pass, RGB only for the selected frames
  seek      per selected frame: container.seek(pts, backward=True) to the previous keyframe,
            decode forward to the frame (what "decode only what is needed" would do)
and checks that the seek path returns the same pixels.

Measured on the 2-core dev VM, shared with other jobs (load ~2.8, so +-30%; min of 3), 224x224,
16 uniformly sampled frames; all three paths return identical pixels:
  300 frames (10 s)   full ms   ours ms   seek ms
    mp4 gop 12          414       182        90
    mp4 gop 250         481       131       331
    webm vp9            318       168       501
  48 frames (1.6 s, SSv2-like)
    mp4 gop 12          389        30       111
    mp4 gop 250         172        31       207
    webm vp9             98        40       330
Converting YUV->RGB with `frame.to_ndarray()` creates a swscale context per frame; one
`VideoReformatter` per clip is 10-40x cheaper per frame, most of the gap between full and ours.
Seeking wins only with short GOPs on long clips (2x at gop 12, 10 s), needs constant-frame-rate
pts arithmetic to find frame i, and loses 2-10x with long GOPs, VP9, or short clips (each seek
re-decodes from a keyframe): `decode_video` does not seek. Rerun this script to refresh.
"""
from __future__ import annotations

import argparse
import functools
import io
import time

import av
import numpy as np

from sf2t_jax.video import decode_video, encode_video, sampling


def textured_clip(num: int, size: int, seed: int = 0) -> np.ndarray:
    """A noise texture panning across the frame plus a moving bright square."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (size * 2, size * 2, 3), dtype=np.uint8)
    texture = (texture.astype(np.float32) * 0.5 + np.linspace(0, 127, size * 2)[:, None, None]).astype(np.uint8)
    frames = np.empty((num, size, size, 3), np.uint8)
    for i in range(num):
        off = (i * 3) % size
        frames[i] = texture[off:off + size, off // 2:off // 2 + size]
        y = (i * 5) % (size - 32)
        frames[i, y:y + 32, y:y + 32] = 255
    return frames


def full_decode(data: bytes, indices: np.ndarray) -> np.ndarray:
    with av.open(io.BytesIO(data)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return np.stack([frames[i] for i in indices])


def seek_decode(data: bytes, indices: np.ndarray) -> np.ndarray:
    out = {}
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        start = stream.start_time or 0
        ticks_per_frame = 1 / (float(stream.average_rate) * float(stream.time_base))
        reformatter = av.video.reformatter.VideoReformatter()
        for i in np.unique(indices):
            target = start + int(round(int(i) * ticks_per_frame))
            c.seek(target, stream=stream, backward=True, any_frame=False)
            for frame in c.decode(stream):
                if frame.pts is not None and frame.pts >= target:
                    out[int(i)] = reformatter.reformat(frame, format="rgb24").to_ndarray()
                    break
    return np.stack([out[int(i)] for i in indices])


def best_ms(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--num", type=int, default=16)
    args = parser.parse_args()
    clip = textured_clip(args.frames, args.size)
    indices = sampling.uniform_indices(args.frames, args.num)
    variants = {
        "mp4 gop 12": encode_video(clip, container="mp4", fps=30, options={"g": "12"}),
        "mp4 gop 250": encode_video(clip, container="mp4", fps=30, options={"g": "250"}),
        "webm vp9": encode_video(clip, container="webm", fps=30),
    }
    print(f"{args.frames} frames of {args.size}x{args.size} at 30 fps, {args.num} uniformly sampled frames")
    for name, data in variants.items():
        ours = decode_video(data, functools.partial(sampling.uniform_indices, num=args.num))
        full = full_decode(data, indices)
        seek = seek_decode(data, indices)
        assert np.array_equal(ours.frames, full), name
        exact = "exact" if np.array_equal(seek, full) else f"WRONG ({int((seek != full).any(axis=(1, 2, 3)).sum())} frames)"
        t_full = best_ms(lambda: full_decode(data, indices))
        t_ours = best_ms(lambda: decode_video(data, functools.partial(sampling.uniform_indices, num=args.num)))
        t_seek = best_ms(lambda: seek_decode(data, indices))
        print(f"  {name:12s} {len(data) / 1e3:7.0f} kB  full {t_full:6.1f} ms  ours {t_ours:6.1f} ms  "
              f"seek {t_seek:6.1f} ms ({exact})  ours: {args.frames / t_ours * 1e3:6.0f} source frames/s")


if __name__ == "__main__":
    main()
