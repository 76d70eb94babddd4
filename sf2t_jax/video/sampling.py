"""Frame index samplers and speed variants, as int64 index arrays.

Every function returns source-frame indices into a clip of `num_frames` frames, so one plan
serves any decoded array (`frames[indices]`) and can be handed to `decode.decode_video` before
decoding. Plans compose: `base[speed_indices(len(base), ...)]` applies a speed variant to a
clip that was first subsampled.

Samplers that cannot fit in the clip raise `NotEnoughFrames` (a ValueError), which
`decode_video` reports as `VideoDecodeError(reason='too_short')`.
"""
from __future__ import annotations

import math

import numpy as np

# Speed variants of FineVidBench's Speed task (specs/sf2t.md §3): source frames advanced per
# shown frame. 0 is "static": one frame repeated.
SPEEDS: dict[str, float] = {"x0.5": 0.5, "x1": 1.0, "x2": 2.0, "x4": 4.0, "static": 0.0}


class NotEnoughFrames(ValueError):
    """The clip is too short for the requested plan."""


def uniform_indices(num_frames: int, num: int) -> np.ndarray:
    """`num` evenly spaced frames, exactly as qwen-vl-utils samples a video.

    qwen-vl-utils (0.0.8, decord and torchvision backends) computes
    `torch.linspace(0, num_frames - 1, num).round().long()`. torch's linspace works in float32
    and, for the second half of the points, counts back from the end:
        step = f32(num_frames - 1) / f32(num - 1)
        x[i] = step * i                          for i <  num // 2
        x[i] = f32(num_frames - 1) - step * (num - 1 - i)   for i >= num // 2
    then rounds half to even. We reproduce that in float32. `np.linspace` (float64) gives a
    different index at a .5 tie for about 1.6% of (num_frames, num) pairs with
    num_frames <= 1000, num <= 64 (e.g. (16, 23)); this version agreed with torch on all
    156,288 pairs tried (num_frames < 20000, num <= 128).

    Args:
      num_frames: frames in the clip (>= 1).
      num: frames to return (>= 1); may exceed num_frames (frames then repeat).
    Returns:
      (num,) int64, sorted, first 0 and last num_frames-1 (for num >= 2).
    """
    _check(num_frames, num)
    if num == 1:
        return np.zeros((1,), np.int64)
    end = np.float32(num_frames - 1)
    step = end / np.float32(num - 1)
    i = np.arange(num)
    front = step * i.astype(np.float32)
    back = end - step * (num - 1 - i).astype(np.float32)
    x = np.where(i < num // 2, front, back).astype(np.float32)
    return np.round(x).astype(np.int64)


def qwen_num_frames(
    total_frames: int,
    video_fps: float,
    *,
    nframes: int | None = None,
    fps: float = 2.0,
    min_frames: int = 4,
    max_frames: int = 768,
) -> int:
    """How many frames qwen-vl-utils 0.0.8 `smart_nframes` samples (specs/qwen2_vl.md §1.3).

    `nframes` given: rounded to a multiple of 2. Otherwise `total_frames / video_fps * fps`,
    clamped to [ceil2(min_frames), floor2(min(max_frames, total_frames))], rounded to a
    multiple of 2 (ceil2/floor2/round2: to a multiple of 2). Raises NotEnoughFrames unless the
    result is in [2, total_frames].
    """
    if nframes is not None:
        n = round(nframes / 2) * 2
    else:
        lo = math.ceil(min_frames / 2) * 2
        hi = math.floor(min(max_frames, total_frames) / 2) * 2
        n = round(min(max(total_frames / video_fps * fps, lo), hi) / 2) * 2
    if not 2 <= n <= total_frames:
        raise NotEnoughFrames(f"qwen-vl-utils needs 2 <= nframes <= {total_frames} frames, got {n}")
    return int(n)


def sampled_fps(stream_fps: float | None, num_frames: int, num_sampled: int) -> float | None:
    """The frame rate of `num_sampled` frames taken from a `num_frames`-frame clip whose stream
    runs at `stream_fps`: `stream_fps * num_sampled / num_frames`, the rate qwen-vl-utils hands
    Qwen2.5-VL's processor (`sample_fps = nframes / total_frames * video_fps`), which makes
    `second_per_grid_ts = temporal_patch_size / sample_fps`. It assumes the frames cover the
    whole clip, as uniform sampling does. None when the container states no rate (the caller
    then uses the processor's default). `models.family.video_time(config, fps)` turns it into a
    model's video time axis.
    """
    if stream_fps is None:
        return None
    if not (stream_fps > 0 and num_frames >= 1 and num_sampled >= 1):
        raise ValueError(f"sampled_fps: expected a positive stream rate and frame counts, got stream_fps="
                         f"{stream_fps!r}, num_frames={num_frames!r}, num_sampled={num_sampled!r}")
    return float(stream_fps) * num_sampled / num_frames


def shown_fps(stream_fps: float | None, num_frames: int, num_shown: int, *, replayed: bool) -> float | None:
    """The frame rate a model is told for `num_shown` frames of a `num_frames`-frame clip.

    replayed: the frames are the clip replayed at a speed (`centered_speed_indices`: a scene
      sample or item), a new video at the stream's own rate, so x2 looks twice as fast;
      otherwise they are a sample spread over the clip (`sampled_fps`).
    None when the container states no rate.
    """
    if replayed:
        return None if stream_fps is None else float(stream_fps)
    return sampled_fps(stream_fps, num_frames, num_shown)


def random_sorted_indices(num_frames: int, num: int, rng: np.random.Generator) -> np.ndarray:
    """`num` distinct frames drawn uniformly without replacement, in temporal order.

    Returns (num,) int64, strictly increasing. Needs num <= num_frames.
    """
    _check(num_frames, num)
    if num > num_frames:
        raise NotEnoughFrames(f"{num} distinct frames requested from a clip of {num_frames}")
    return np.sort(rng.choice(num_frames, size=num, replace=False)).astype(np.int64)


def window_indices(num_frames: int, num: int, start: int) -> np.ndarray:
    """`num` consecutive frames from `start`: (num,) int64 `start + arange(num)`."""
    _check(num_frames, num)
    if not 0 <= start <= num_frames - num:
        raise NotEnoughFrames(f"window [{start}, {start + num}) does not fit in a clip of {num_frames} frames")
    return start + np.arange(num, dtype=np.int64)


def random_window_indices(num_frames: int, num: int, rng: np.random.Generator) -> np.ndarray:
    """`num` consecutive frames at a start drawn uniformly from every start that fits."""
    _check(num_frames, num)
    if num > num_frames:
        raise NotEnoughFrames(f"a window of {num} frames does not fit in a clip of {num_frames}")
    return window_indices(num_frames, num, int(rng.integers(0, num_frames - num + 1)))


def speed_span(num: int, speed: float | str) -> int:
    """Source frames a speed variant of `num` shown frames covers: floor((num-1)*speed) + 1."""
    s = _speed(speed)
    return int(np.floor((num - 1) * s)) + 1


def speed_indices(num_frames: int, num: int, speed: float | str, start: int = 0) -> np.ndarray:
    """A clip replayed at `speed`, to a fixed budget of `num` shown frames.

    Shown frame j is source frame `start + floor(j * speed)`:
      * x1 (1.0): consecutive frames, `start, start+1, ...` (normal speed);
      * x0.5: every frame shown twice, `s, s, s+1, s+1, ...` (slow motion, frames repeated);
      * x2 / x4: every 2nd / 4th frame, `s, s+2, s+4, ...` (fast, frames skipped);
      * static (0.0): frame `start` repeated `num` times (no motion).
    Every variant shows `num` frames; they differ in the source span they cover
    (`speed_span`), so the clip must hold `start + speed_span(num, speed)` frames.

    Args:
      num_frames: frames in the clip (apply to a subsampled clip to change the base rate).
      num: frame budget, the same for every speed.
      speed: a factor >= 0, or a key of `SPEEDS` ('x0.5', 'x1', 'x2', 'x4', 'static').
      start: first source frame.
    Returns:
      (num,) int64, non-decreasing.
    """
    _check(num_frames, num)
    s = _speed(speed)
    span = speed_span(num, s)
    if start < 0 or start + span > num_frames:
        raise NotEnoughFrames(
            f"speed {speed} over {num} frames spans {span} source frames from {start}; the clip has {num_frames}")
    return start + np.floor(np.arange(num) * s).astype(np.int64)


def random_speed_indices(num_frames: int, num: int, speed: float | str, rng: np.random.Generator) -> np.ndarray:
    """`speed_indices` at a start drawn uniformly from every start where the span fits."""
    span = speed_span(num, speed)
    if span > num_frames:
        raise NotEnoughFrames(f"speed {speed} over {num} frames spans {span} source frames; the clip has {num_frames}")
    return speed_indices(num_frames, num, speed, int(rng.integers(0, num_frames - span + 1)))


def _speed(speed: float | str) -> float:
    if isinstance(speed, str):
        if speed not in SPEEDS:
            raise ValueError(f"unknown speed {speed!r}; known: {', '.join(SPEEDS)}")
        return SPEEDS[speed]
    if speed < 0:
        raise ValueError(f"speed must be >= 0, got {speed}")
    return float(speed)


def _check(num_frames: int, num: int) -> None:
    if num_frames < 1:
        raise NotEnoughFrames(f"the clip has {num_frames} frames")
    if num < 1:
        raise ValueError(f"the number of frames to sample must be >= 1, got {num}")


def centered_speed_indices(num_frames: int, num: int, speed: float | str) -> np.ndarray:
    """`speed_indices` over the span centred in the clip, so every speed shows the middle of
    the action (the benchmark's scene items and the SFT set use this one plan).

    Raises NotEnoughFrames when the clip is shorter than the speed's span.
    """
    span = speed_span(num, speed)
    return speed_indices(num_frames, num, speed, max(num_frames - span, 0) // 2)
