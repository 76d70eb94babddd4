"""Decode video with PyAV: count frames, decode each clip once, keep only the frames asked for.

`decode_video(source, select)` opens a path or encoded bytes (tfds stores videos as bytes),
learns the frame count, lets `select` pick source-frame indices from it (a sampler from
`sampling.py`, or an explicit index array), and returns just those frames as uint8 RGB.

How the frame count is learned decides how the clip is decoded:
  * The container states it (mp4/mov, avi): decode sequentially, convert to RGB only the
    selected frames, stop after the last one. One partial pass.
  * It does not (webm/mkv report `frames == 0`): decode every frame once, keeping the decoded
    YUV frames (about 1.5 bytes per pixel, not converted), then convert the selected ones.
    One full pass. If the buffered frames would exceed `buffer_bytes`, buffering stops, the
    pass only counts, and a second pass extracts the selected frames.
Only selected frames are converted to RGB, all through one `VideoReformatter` per clip:
`frame.to_ndarray()` builds a swscale context per frame (0.3-2 ms each, more than decoding a
textured 224x224 frame, ~0.5 ms), a shared reformatter ~50 us.

Seeking is not used. PyAV's `container.seek(ts, backward=True)` lands on the previous keyframe,
so exact frame access needs pts->index arithmetic that variable-frame-rate files break, and
short clips (SSv2: 2-6 s) often hold one or two keyframes. `benchmarks/input_decode.py` measures
both: seeking won only for short GOPs on long clips (2x) and lost 2-10x otherwise.

Truncated files: mp4/avi cut short usually fail to open (the index is at the end) or decode
fewer frames than the header declares; webm/mkv cut short decode silently, so the decoded span
is checked against the declared duration. Both are reported as 'corrupt' beyond a small
tolerance (`_count_tolerance`, `_check_not_truncated`).

Every failure is a `VideoDecodeError` with a machine-readable `reason` (see `REASONS`), so the
input pipeline can skip the file and count it.
"""
from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable, Sequence
from typing import Union

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from sf2t_jax.video.sampling import NotEnoughFrames

REASONS = (
    "missing",  # no such file
    "unreadable",  # the file exists but cannot be read (permissions, I/O error)
    "empty_file",  # zero bytes
    "not_a_video",  # no known container format (text, random bytes, an image file)
    "no_video_stream",  # a container without a video stream (e.g. audio only)
    "unsupported_codec",  # the video codec has no decoder in this FFmpeg build
    "corrupt",  # a video container that fails to open or decode, or is truncated
    "too_short",  # fewer frames than the caller needs
)

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]
# None (every frame), explicit source-frame indices, or `num_frames -> indices`.
FrameSelector = Union[None, Sequence[int], np.ndarray, Callable[[int], np.ndarray]]

DEFAULT_BUFFER_BYTES = 512 * 2**20  # decoded YUV frames kept when the count is unknown

# Leading bytes of container formats FFmpeg reads. An open failure on one of these is a
# corrupt video; on anything else the file was never a video.
_ISO_BMFF_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")
_IMAGE_DEMUXERS = ("image2", "image2pipe")


class VideoDecodeError(Exception):
    """A video that cannot be used.

    Attributes:
      reason: one of `REASONS`, for counting skips.
      path: the file path, or the `name` given for in-memory bytes.
      detail: a human-readable explanation.
    """

    def __init__(self, reason: str, path: str, detail: str):
        if reason not in REASONS:
            raise ValueError(f"unknown VideoDecodeError reason {reason!r}; known: {', '.join(REASONS)}")
        super().__init__(f"{path}: {reason}: {detail}")
        self.reason = reason
        self.path = path
        self.detail = detail

    def __reduce__(self):  # picklable across grain worker processes
        return (VideoDecodeError, (self.reason, self.path, self.detail))


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What is known about a clip after opening (and possibly counting) it."""

    num_frames: int  # decodable frames
    height: int
    width: int
    fps: float | None  # the stream's average frame rate, if the container states one
    codec: str  # e.g. "h264", "vp9"
    container: str  # FFmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    counted_by: str  # "container" (header) or "decode" (every frame decoded)


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
    """Selected frames of one clip.

    frames: (T, H, W, 3) uint8 RGB, in the order of `indices` (repeats allowed).
    indices: (T,) int64 source-frame index of each returned frame.
    """

    frames: np.ndarray
    indices: np.ndarray
    info: VideoInfo


# ----------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------
def decode_video(
    source: Source,
    select: FrameSelector = None,
    *,
    name: str | None = None,
    min_frames: int = 1,
    buffer_bytes: int = DEFAULT_BUFFER_BYTES,
) -> DecodedVideo:
    """Decodes the frames `select` picks from a clip.

    Args:
      source: a file path, or the encoded file as bytes.
      select: None for every frame; an index array (values in [0, num_frames)); or a callable
        `num_frames -> indices` (e.g. `functools.partial(sampling.uniform_indices, num=16)`),
        called with the frame count (a second time, with the decoded count, in the rare case
        that a header overstates it; give seeded samplers a fresh rng per call, e.g. from
        (seed, index), so that both calls agree). Indices may repeat and need not be sorted;
        each distinct frame is decoded and converted once.
      name: what errors call the clip when `source` is bytes (e.g. the dataset key).
      min_frames: clips with fewer frames raise `VideoDecodeError('too_short')`.
      buffer_bytes: memory allowed for decoded frames while counting an unknown-length clip.
    Returns:
      `DecodedVideo` with (T, H, W, 3) uint8 RGB frames.
    Raises:
      VideoDecodeError: with `reason` in `REASONS`.
    """
    container, label = _open(source, name)
    with container:
        stream = _video_stream(container, label)
        declared = int(stream.frames or 0)
        if declared > 0:
            indices = _resolve(select, declared, min_frames, label)
            kept, seen, size = _decode_selected(container, stream, indices, label)
            if len(kept) == np.unique(indices).size:
                return _assemble(kept, indices, _info(container, stream, size, declared, "container"))
            if seen < declared - _count_tolerance(declared):
                raise VideoDecodeError(
                    "corrupt", label, f"truncated: the container declares {declared} frames but only {seen} decode")
        else:
            buffered, info = _count_by_decoding(container, stream, label, buffer_bytes)
    if declared > 0:
        # The header overstated the count slightly (e.g. edit lists): count by decoding instead.
        container, label = _open(source, name)
        with container:
            buffered, info = _count_by_decoding(container, _video_stream(container, label), label, buffer_bytes)
    indices = _resolve(select, info.num_frames, min_frames, label)
    size = (info.width, info.height)
    if buffered is not None:
        reformatter = VideoReformatter()
        kept = {int(i): _frame_rgb(buffered[int(i)], size, reformatter) for i in np.unique(indices)}
        return _assemble(kept, indices, info)
    # Too big to buffer: a second pass extracts the selected frames.
    container, label = _open(source, name)
    with container:
        kept, _, _ = _decode_selected(container, _video_stream(container, label), indices, label)
    return _assemble(kept, indices, info)


def probe_video(source: Source, *, name: str | None = None) -> VideoInfo:
    """Opens a clip and counts its frames (decoding them all when the container does not say)."""
    container, label = _open(source, name)
    with container:
        stream = _video_stream(container, label)
        declared = int(stream.frames or 0)
        if declared > 0:
            _, _, size = _decode_selected(container, stream, np.zeros((1,), np.int64), label)
            return _info(container, stream, size, declared, "container")
        return _count_by_decoding(container, stream, label, buffer_bytes=0)[1]


def verify_video(source: Source, *, name: str | None = None) -> VideoInfo:
    """Decodes every frame once (none converted to RGB) to find damage anywhere in the stream.

    `probe_video` trusts an mp4/avi header after the first frame, so a clip with bit rot later
    in its stream passes it and then fails every time the pipeline samples a late frame. This
    pass fails instead: a decoder error at any frame, or fewer frames than the header declares,
    is `corrupt`.

    Raises:
      VideoDecodeError: with `reason` in `REASONS`.
    """
    container, label = _open(source, name)
    with container:
        stream = _video_stream(container, label)
        declared = int(stream.frames or 0)
        _, info = _count_by_decoding(container, stream, label, buffer_bytes=0)
    if declared and info.num_frames < declared - _count_tolerance(declared):
        raise VideoDecodeError("corrupt", label, f"truncated: the container declares {declared} frames but only "
                               f"{info.num_frames} decode")
    return info


def _count_by_decoding(container, stream, label: str, buffer_bytes: int):
    """Decodes every frame: returns (the decoded frames, or None if over budget; VideoInfo)."""
    buffered, count, times, size = _decode_all(container, stream, label, buffer_bytes)
    info = _info(container, stream, size, count, "decode")
    _check_not_truncated(container, stream, count, times, info.fps, label)
    return buffered, info


# ----------------------------------------------------------------------------------------
# Opening and classification
# ----------------------------------------------------------------------------------------
def _open(source: Source, name: str | None):
    """Returns (an open av container, the label errors use)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or f"<{len(data)} bytes>"
        if not data:
            raise VideoDecodeError("empty_file", label, "zero bytes")
        head, target = data[:16], io.BytesIO(data)
    elif "://" in os.fspath(source):  # gs://...: read whole (clips are small), decode from memory
        return _open(_read_remote(os.fspath(source)), name or os.fspath(source))
    else:
        path = os.fspath(source)
        label = name or path
        if not os.path.exists(path):
            raise VideoDecodeError("missing", label, "no such file")
        if os.path.isdir(path):
            raise VideoDecodeError("not_a_video", label, "is a directory")
        try:
            if os.path.getsize(path) == 0:
                raise VideoDecodeError("empty_file", label, "zero bytes")
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as e:
            raise VideoDecodeError("unreadable", label, str(e)) from None
        target = path
    try:
        return av.open(target, mode="r", metadata_errors="ignore"), label
    except FileNotFoundError as e:  # removed between the check and the open
        raise VideoDecodeError("missing", label, str(e)) from None
    except PermissionError as e:
        raise VideoDecodeError("unreadable", label, str(e)) from None
    except (av.error.FFmpegError, OSError, ValueError) as e:
        if _is_video_container(head):
            raise VideoDecodeError("corrupt", label, f"a video container that FFmpeg cannot open: {e}") from None
        raise VideoDecodeError("not_a_video", label, f"no video container format recognised: {e}") from None


def _read_remote(path: str) -> bytes:
    """The bytes of a remote file (etils epath: gs:// through gcsfs), or a VideoDecodeError."""
    from etils import epath

    try:
        return epath.Path(path).read_bytes()
    except FileNotFoundError:
        raise VideoDecodeError("missing", path, "no such file") from None
    except OSError as e:
        raise VideoDecodeError("unreadable", path, str(e)) from None


def _is_video_container(head: bytes) -> bool:
    """Recognises mp4/mov, mkv/webm, avi, flv, asf/wmv and MPEG-PS by their first bytes."""
    return (
        head[4:8] in _ISO_BMFF_BOXES
        or head.startswith(b"\x1a\x45\xdf\xa3")  # EBML: matroska / webm
        or (head.startswith(b"RIFF") and head[8:12] == b"AVI ")
        or head.startswith(b"FLV")
        or head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11")  # ASF / wmv
        or head.startswith(b"\x00\x00\x01\xba")  # MPEG program stream
    )


def _video_stream(container, label: str):
    fmt = container.format.name
    if fmt in _IMAGE_DEMUXERS or fmt.endswith("_pipe"):
        raise VideoDecodeError("not_a_video", label, f"an image file (FFmpeg demuxer {fmt!r}), not a video")
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        if not {"audio", "subtitle"} & set(kinds):
            # Nothing but unidentified data streams: a header cut short (e.g. inside an mp4 trak).
            raise VideoDecodeError("corrupt", label, f"a {fmt} container without audio or video streams "
                                   f"(streams: {', '.join(kinds) or 'none'}); truncated header?")
        raise VideoDecodeError("no_video_stream", label, f"no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        if not stream.frames and stream.average_rate is None:
            # Neither codec nor timing survived: the header itself is cut short (e.g. a
            # truncated mp4 moov box), not a codec this FFmpeg lacks.
            raise VideoDecodeError("corrupt", label, "the video stream header is incomplete (truncated file?)")
        raise VideoDecodeError("unsupported_codec", label, "FFmpeg has no decoder for the video codec")
    return stream


def _frames(container, stream, label: str):
    """Yields decoded av.VideoFrames, turning FFmpeg errors into VideoDecodeError."""
    try:
        yield from container.decode(stream)
    except av.error.DecoderNotFoundError as e:
        raise VideoDecodeError("unsupported_codec", label, str(e)) from None
    except (av.error.FFmpegError, ValueError) as e:
        raise VideoDecodeError("corrupt", label, f"decoding failed: {e}") from None


# ----------------------------------------------------------------------------------------
# Decoding passes
# ----------------------------------------------------------------------------------------
def _decode_selected(container, stream, indices: np.ndarray, label: str, reformatter: VideoReformatter | None = None):
    """Sequential pass converting only `indices` to RGB; stops after the last one.

    Returns ({source index: (H, W, 3) uint8}, frames decoded, (width, height) of frame 0).
    """
    wanted = set(int(i) for i in np.unique(indices))
    last = max(wanted) if wanted else 0
    kept: dict[int, np.ndarray] = {}
    seen, size = 0, None
    reformatter = reformatter or VideoReformatter()
    for i, frame in enumerate(_frames(container, stream, label)):
        seen = i + 1
        size = size or (frame.width, frame.height)
        if i in wanted:
            kept[i] = _frame_rgb(frame, size, reformatter)
        if i >= last:
            break
    if size is None:
        raise VideoDecodeError("corrupt", label, "the video stream has no decodable frames")
    return kept, seen, size


def _decode_all(container, stream, label: str, buffer_bytes: int):
    """Full pass that counts frames, keeping decoded (YUV) frames within `buffer_bytes`.

    Returns (the frames, or None once over budget; count; (first, last) frame times in
    seconds; (width, height) of frame 0).
    """
    buffered: list | None = []
    used, count = 0, 0
    first_time = last_time = size = None
    for frame in _frames(container, stream, label):
        if count == 0:
            first_time, size = frame.time, (frame.width, frame.height)
        last_time = frame.time
        if buffered is not None:
            used += sum(p.buffer_size for p in frame.planes)
            if used <= buffer_bytes:
                buffered.append(frame)
            else:
                buffered = None  # over budget: only count from here on
        count += 1
    if count == 0:
        raise VideoDecodeError("corrupt", label, "the video stream has no decodable frames")
    return buffered, count, (first_time, last_time), size


def _frame_rgb(frame, size: tuple[int, int], reformatter: VideoReformatter) -> np.ndarray:
    """(H, W, 3) uint8 RGB at the clip's first-frame size (streams may change size midway).

    One `VideoReformatter` per clip keeps FFmpeg's swscale context: `frame.to_ndarray()` builds
    a new one per frame, measured 10-40x slower (0.3-4 ms against ~40-70 us per frame).
    """
    width, height = size
    return reformatter.reformat(frame, width=width, height=height, format="rgb24").to_ndarray()


def _assemble(kept: dict[int, np.ndarray], indices: np.ndarray, info: VideoInfo) -> DecodedVideo:
    if indices.size == 0:
        frames = np.zeros((0, info.height, info.width, 3), np.uint8)
    else:
        frames = np.stack([kept[int(i)] for i in indices])
    return DecodedVideo(frames=frames, indices=indices, info=info)


# ----------------------------------------------------------------------------------------
# Counting, selection and sanity checks
# ----------------------------------------------------------------------------------------
def _resolve(select: FrameSelector, num_frames: int, min_frames: int, label: str) -> np.ndarray:
    if num_frames < min_frames:
        raise VideoDecodeError("too_short", label, f"{num_frames} frames, at least {min_frames} needed")
    try:
        if select is None:
            indices = np.arange(num_frames)
        elif callable(select):
            indices = select(num_frames)
        else:
            indices = select
    except NotEnoughFrames as e:
        raise VideoDecodeError("too_short", label, f"{num_frames} frames: {e}") from None
    indices = np.asarray(indices)
    if indices.ndim != 1 or not (indices.size == 0 or np.issubdtype(indices.dtype, np.integer)):
        raise TypeError(f"{label}: frame indices must be a 1-D integer array, got {indices.dtype} {indices.shape}")
    indices = indices.astype(np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= num_frames):
        if indices.min() < 0:
            raise ValueError(f"{label}: negative frame index {int(indices.min())}")
        raise VideoDecodeError(
            "too_short", label, f"{num_frames} frames, but frame index {int(indices.max())} was requested")
    return indices


def _count_tolerance(declared: int) -> int:
    """Frames a header count may overstate without the file being called truncated."""
    return max(1, declared // 20)


def _info(container, stream, size: tuple[int, int], count: int, counted_by: str) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(
        num_frames=count, height=int(size[1]), width=int(size[0]), fps=float(rate) if rate else None,
        codec=stream.codec_context.name, container=container.format.name, counted_by=counted_by,
    )


def _declared_duration(container, stream) -> float | None:
    """Seconds the container says the video stream lasts, if it says."""
    tag = (stream.metadata or {}).get("DURATION")  # matroska per-track tag, e.g. 00:00:02.666000000
    if tag:
        try:
            h, m, s = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)
        except ValueError:
            pass
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _check_not_truncated(container, stream, count, times, fps, label) -> None:
    """Webm/mkv cut short still decode (fewer frames, no error); the declared duration tells."""
    declared = _declared_duration(container, stream)
    first, last = times
    if declared is None or first is None or last is None or not fps:
        return
    covered = last - first + 1.0 / fps
    if declared - covered > max(1.5 / fps, 0.05 * declared):
        raise VideoDecodeError(
            "corrupt", label,
            f"truncated: {count} frames cover {covered:.2f} s of the {declared:.2f} s the container declares")
