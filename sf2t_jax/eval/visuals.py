"""The frames an item shows, decoded once per video and patchified to one static grid.

Scene items: the clip replayed at the item's speed to a fixed budget of `scene_frames`
(`video.sampling.speed_indices`: x0.5 repeats frames, x2/x4 skip, static repeats one), over
the span centred in the clip, so every speed shows the middle of the action.
Fragment items: `frames` index the clip sampled uniformly to `frames_per_clip`
(finevidbench/schema.py), shown in the order given, as one video or one image per frame.
A control run shows the same frame plan another way (`apply_view`): "static" holds the
first shown frame for as many frames, "blind" shows blank frames; the clip is still decoded,
so a control skips exactly the items the real run skips.
Every frame is resized to `size`, so every item has the same spatial grid: the batch has one
`VisionPatches` group and static shapes. The scored model family's `RowFormat` (`models.rows`,
the input pipeline's) cuts the frames into slices and says how the chat template describes them,
so a benchmark item reaches each family exactly as a training sample does. A clip that is missing or does not decode raises
`VideoDecodeError` for each of its items; the runner skips them and counts them by reason.
"""
from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import numpy as np

from sf2t_jax.errors import InputError
from sf2t_jax.eval.config import VIEWS, EvalSettings
from sf2t_jax.finevidbench.schema import Item
from sf2t_jax.finevidbench.source import VIDEO_EXTENSIONS
from sf2t_jax.models.rows import QWEN2_VL_ROWS, RowFormat
from sf2t_jax.video import (VideoDecodeError, centered_speed_indices, decode_video, normalize_patches, resize_frames,
                            speed_span, uniform_indices)
from sf2t_jax.video.decode import DecodedVideo
from sf2t_jax.video.sampling import shown_fps


class ShortClip(InputError):
    """A clip too short for the item's speed at the configured frame budget (an error when
    `video.on_short_clip` is 'error'; otherwise the runner skips the item)."""


@dataclasses.dataclass(frozen=True)
class Visual:
    """What one item shows the model.

    slices: (S, gh*gw, patch_dim) float32 normalized slices, in the order their tokens appear
      (`RowFormat.video_slices` / `image_slices`).
    kind: "video" (one video item) or "image" (one image item per frame).
    items: how many chat content items of `kind` show them.
    vision: the keyword arguments that describe the slices to the family's chat encoder
      (`RowFormat.encode`: Qwen's `video_grid_thw` / `image_grid_thw`, LLaVA's `video_frames`).
    grid_hw: (gh, gw) of every slice, in patches.
    key: (video_id, source frame indices shown, kind, view): equal keys, equal pixels.
    """

    slices: np.ndarray
    kind: str
    items: int
    vision: dict
    grid_hw: tuple[int, int]
    key: tuple = ()

    @property
    def content(self) -> list[dict]:
        """The chat content items for these frames."""
        return [{"type": self.kind} for _ in range(self.items)]


class _LRU(collections.OrderedDict):
    """Least recently used out first, once it holds more than `size` entries and more than
    `max_bytes` (each entry's `nbytes(value)`): the first bound is what a batch window needs,
    the second what memory allows beyond it."""

    def __init__(self, size: int, max_bytes: int = 0, nbytes=lambda value: 0):
        super().__init__()
        self.size, self.max_bytes, self.nbytes = size, max_bytes, nbytes
        self.bytes = 0

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        self.bytes += self.nbytes(value)
        while len(self) > self.size and self.bytes > self.max_bytes:
            _, old = self.popitem(last=False)
            self.bytes -= self.nbytes(old)
        return value


def apply_view(frames: np.ndarray, view: str) -> np.ndarray:
    """What a run shows instead of an item's frames.

    frames: (N, H, W, 3) uint8, the item's frames in the order shown.
    view: "real" (unchanged), "static" (the first frame N times: the scene without motion) or
      "blind" (N black frames: the vision tokens of a blank frame, no video information).
    Returns (N, H, W, 3) uint8.
    """
    if view == "real":
        return frames
    if view == "static":
        return np.repeat(frames[:1], len(frames), axis=0)
    if view == "blind":
        return np.zeros_like(frames)
    raise ValueError(f"eval: view {view!r}, expected one of {VIEWS}")


class VisualLoader:
    """Decodes, samples and patchifies the frames of benchmark items, shown as `view` (`apply_view`),
    in the slices of the scored family's `rows` (default: Qwen2-VL's).

    Decoded clips are kept for the batch window (`clips`) and, beyond it, while they fit half of
    `settings.cache_mb`, so a video is decoded once per evaluation even when the inquiry comes
    back to it round after round; items that show the same frames (Action and Effect at one
    speed, every turn of a conversation) share one patchified result, kept the same way.
    """

    def __init__(self, video_root: str | Path, settings: EvalSettings, *, rows: RowFormat = QWEN2_VL_ROWS,
                 clips: int = 4, visuals: int = 16, view: str = "real"):
        if view not in VIEWS:
            raise ValueError(f"eval: view {view!r}, expected one of {VIEWS}")
        check_presentation(rows, settings)
        self.root = Path(video_root)
        self.settings = settings
        self.rows = rows
        self.view = view
        half = (settings.cache_mb << 20) // 2
        # a clip, or the VideoDecodeError a video gave (remembered too, at no cost)
        self._clips = _LRU(clips, half, lambda clip: clip.frames.nbytes if isinstance(clip, DecodedVideo) else 0)
        self._visuals = _LRU(visuals, half, lambda visual: visual.slices.nbytes)

    def video_path(self, video_id: str) -> Path:
        """The clip's file; a `VideoDecodeError('missing')` when there is none."""
        for ext in VIDEO_EXTENSIONS:
            path = self.root / "videos" / f"{video_id}.{ext}"
            if path.is_file():
                return path
        raise VideoDecodeError("missing", str(self.root / "videos" / f"{video_id}.{{{','.join(VIDEO_EXTENSIONS)}}}"),
                               f"no such file (video {video_id}; eval config field 'videos')")

    def clip(self, video_id: str) -> DecodedVideo:
        """Every frame of the clip ((T, H, W, 3) uint8 `frames`) and its stream's rate.

        Raises:
          VideoDecodeError: the clip is missing or cannot be decoded (remembered like a clip,
            so the video's other items do not decode it again).
        """
        clip = self._clips.get_or(video_id, lambda: _decode_or_error(self, video_id))
        if isinstance(clip, VideoDecodeError):
            raise clip.with_traceback(None)  # the same error for each of the video's items, no growing traceback
        return clip

    def frame_plan(self, item: Item, num_frames: int) -> np.ndarray:
        """Indices into the decoded clip of `num_frames` frames, in the order shown."""
        if item.frames is not None:
            return uniform_indices(num_frames, item.frames_per_clip)[list(item.frames)]
        n = self.settings.scene_frames
        span = speed_span(n, item.speed)
        if span > num_frames:
            raise ShortClip(f"item {item.item_id}: speed {item.speed} over {n} frames spans {span} source "
                            f"frames but video {item.video_id} has {num_frames}; lower eval "
                            "video.scene_frames or set video.on_short_clip=skip")
        return centered_speed_indices(num_frames, n, item.speed)

    def visual(self, item: Item) -> Visual:
        clip = self.clip(item.video_id)
        num_frames = len(clip.frames)
        plan = self.frame_plan(item, num_frames)
        kind = "image" if item.frames is not None and self.settings.present == "images" else "video"
        key = (item.video_id, tuple(int(i) for i in plan), kind, self.view)
        # Scene items replay the clip at its own rate; fragment frames are a sample of it.
        fps = shown_fps(clip.info.fps, num_frames, len(plan), replayed=item.frames is None)
        return self._visuals.get_or(key, lambda: self._patchify(apply_view(clip.frames[plan], self.view), kind,
                                                                key, fps))

    def _patchify(self, frames: np.ndarray, kind: str, key: tuple, fps: float | None) -> Visual:
        frames = resize_frames(frames, self.settings.size)
        if kind == "video":
            slices, vision = self.rows.video_slices(frames, fps)
        else:
            slices, vision = self.rows.image_slices(frames)
        n, s, d = slices.shape
        grid_hw = tuple(v // self.rows.layout.patch_size for v in self.settings.size)
        items = 1 if kind == "video" else len(frames)
        return Visual(normalize_patches(slices.reshape(n * s, d)).reshape(n, s, d), kind, items, vision, grid_hw, key)


def check_presentation(rows: RowFormat, settings: EvalSettings) -> None:
    """InputError naming the eval field when the family cannot show frames as `settings` asks."""
    rows.layout.check_resolution(settings.size, field="eval video.size")
    if settings.present == "images" and not rows.layout.images_as_slices:
        raise InputError("eval video.present='images': this model family shows images as anyres tiles, which "
                         "the benchmark does not make; present fragment frames as a video (video.present='video')")


def _decode_or_error(loader: VisualLoader, video_id: str) -> DecodedVideo | VideoDecodeError:
    try:
        return decode_video(str(loader.video_path(video_id)))
    except VideoDecodeError as e:
        return e


def shown_key(item: Item, settings: EvalSettings) -> tuple:
    """What an item shows, from the item alone (no decoding): items with one key show the same
    frames the same way (the frame plan is a function of the speed or of the fragment frames)."""
    kind = "image" if item.frames is not None and settings.present == "images" else "video"
    what = item.speed if item.frames is None else (tuple(item.frames), item.frames_per_clip)
    return item.video_id, kind, what
