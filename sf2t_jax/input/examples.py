"""One record -> one model-ready example: decode, fragment task, resize, patchify, tokenize, pad.

`ExampleMaker(index, record)` is the pipeline's map function (`map_with_index`, run in grain
workers): `index` is the sample's position g in the global stream, which seeds its fragment
task (`make_sample(frames, seed, g)`), so any sample can be regenerated alone from (config, g).

Steps, for a clip:
  1. decode up to `source_frames` evenly spaced frames (PyAV), keeping the stream's frame rate
     and frame count;
  2. resize every frame to the resolution bucket, so the task's pixel guarantees (identical
     pairs, visible edits, sprite spans) hold on exactly the pixels the model sees (steps 1-2
     are kept per clip between epochs when `clip_cache` is set: `input.clip_cache_mb`);
  3. `make_sample`: the task's frames, question and answer;
  4. patchify by the model family's `RowFormat` (`models.rows`; Qwen-VL 'video': one clip of
     ceil(N/2) two-frame slices, 'images': N images of one slice each; LLaVA-NeXT-Video: N
     one-frame slices), kept as uint8 rows (a quarter of float32's bytes between processes;
     normalized when batched); the sample's frames run at `video.shown_fps` (a fragment's: stream
     rate x frames shown / clip frames; a scene sample's replay: the stream's rate), which places
     Qwen2.5-VL's video slices on its time axis;
  5. the family's chat template: user turn = vision item(s) + question, assistant turn =
     answer; loss on the answer and its end-of-turn token (<|im_end|> / </s>);
  6. pad to the static row: L tokens, P slices.

A clip that cannot serve (unreadable, corrupt, too short, near static, too long for L) becomes
a `Skipped` marker instead of an exception, so it flows through worker processes to the
consumer, which counts it exactly (`skips.SkipCounter`).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sf2t_jax.fragments import TASK_NAMES, FragmentsConfig, make_sample
from sf2t_jax.input.clip_cache import ClipCache
from sf2t_jax.input.scene import SceneConfig, make_scene_sample
from sf2t_jax.models.rope_index import VideoTime
from sf2t_jax.models.rows import QWEN2_VL_ROWS, QwenRows, RowFormat
from sf2t_jax.sample import Sample, SampleSkip
from sf2t_jax.text import Tokenizer
from sf2t_jax.video import VideoDecodeError, decode_video, resize_frames
from sf2t_jax.video.decode import VideoInfo
from sf2t_jax.video.sampling import shown_fps, uniform_indices

TOO_LONG = "too_long"  # the sample's tokens exceed max_length (counted like a skip)
SFT_RECORD = "sft"  # a record key: True on the video_sft records a joint SFT+SF²T stream mixes in

# Per-example arrays (shapes for one row; see batching.BatchSpec for the batch).
EXAMPLE_FIELDS = {
    "input_ids": "(L,) int32, padded with the pad id",
    "attention_mask": "(L,) int32, 1 real token",
    "position_ids": "(3, L) int32 M-RoPE positions (1D families: three equal rows), padding 1",
    "loss_mask": "(L,) int32, 1 at answer tokens and the answer's end-of-turn token",
    "patches": "(P, S, patch_dim) uint8 patch rows, unused slices zero",
    "num_slices": "int, slices used",
    "vision_index": "(P*T,) int32 row position of each vision token (T tokens per slice), L = padding",
    "task_id": "int, index into TASK_NAMES",
    "sample_index": "int, g: position in the global stream",
    "record_index": "int, the source record",
}


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A sample that could not be made; the consumer counts it by `reason` and logs `path` once.

    reason: a `VideoDecodeError` reason (decode), a `SampleSkip` reason (task), or 'too_long'.
    task: the fragment task for task and length skips, None for decode skips.
    tokens: too_long skips: the sample's token count (what max_length would have to hold).
    """

    index: int
    record_index: int
    path: str
    reason: str
    task: str | None = None
    detail: str = ""
    tokens: int | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Prepared:
    """A sample as the model will see it, for previews and tests.

    sample: the fragment, its frames already resized to the bucket (uint8 (N, h, w, 3)).
    example: the padded per-row arrays (`EXAMPLE_FIELDS`).
    num_tokens: the unpadded sequence length.
    """

    index: int
    record_index: int
    id: str
    sample: Sample
    example: dict[str, Any]
    num_tokens: int


@dataclasses.dataclass(frozen=True)
class ExampleMaker:
    """The map function `(g, record) -> example dict | Skipped`. Picklable for grain workers."""

    tokenizer: Tokenizer
    fragments: FragmentsConfig
    seed: int
    resolution: tuple[int, int]
    slices: int
    max_length: int
    source_frames: int = 32
    scene: SceneConfig | None = None  # labelled scene samples (captions / scene QA) instead of fragments
    task_names: tuple[str, ...] = TASK_NAMES  # task_id indexes this
    # Joint SFT+SF²T: records marked `SFT_RECORD` (the mixed-in video_sft stream) become scene
    # QA samples by this config; every other record a fragment sample.
    sft: SceneConfig | None = None
    # Qwen-VL only: the video time axis (`models.family.video_time`); None: Qwen2-VL's positions.
    video_time: VideoTime | None = None
    # The model family's rows (`models.family.row_format`); None: Qwen-VL's with `video_time`.
    rows: RowFormat | None = None
    # Decoded, resized clips kept between epochs (`input.clip_cache_mb`); None: decode every time.
    # Keys start with the record's source (`cache_scope`, `sft_cache_scope` for SFT_RECORD records):
    # the cache is the process's, shared with other pipelines.
    clip_cache: ClipCache | None = None
    cache_scope: tuple = ()
    sft_cache_scope: tuple = ()

    @property
    def row_format(self) -> RowFormat:
        if self.rows is not None:
            return self.rows
        return QWEN2_VL_ROWS if self.video_time is None else QwenRows(QWEN2_VL_ROWS.layout, self.video_time)

    def __call__(self, index: int, record: dict[str, Any]) -> dict[str, Any] | Skipped:
        out = self.prepare(index, record)
        return out if isinstance(out, Skipped) else out.example

    def prepare(self, index: int, record: dict[str, Any]) -> Prepared | Skipped:
        """The whole sample (frames, text, arrays), or why it was skipped.

        Bad input is a `Skipped`; anything else is a bug and raises, naming the sample and file.
        """
        label = record.get("path") or record["id"]
        try:
            return self._prepare(index, record, label)
        except Exception as e:
            e.add_note(f"while making sample {index} from {label}")
            raise

    def _prepare(self, index: int, record: dict[str, Any], label: str) -> Prepared | Skipped:
        rec = int(record["record_index"])
        scene = self._scene_of(record)
        try:
            clip, info = self._clip(record, label, scene)
        except VideoDecodeError as e:
            return Skipped(index, rec, e.path, e.reason, None, e.detail)
        try:
            if scene is None:
                sample = make_sample(clip, self.seed, index, self.fragments)
            else:
                sample = make_scene_sample(clip, record, self.seed, index, scene)
        except SampleSkip as e:
            return Skipped(index, rec, label, e.reason, e.task, e.detail)
        fps = shown_fps(info.fps, info.num_frames, len(sample.frames), replayed=scene is not None)
        example, num_tokens = self._encode(sample, fps)
        if example is None:
            return Skipped(index, rec, label, TOO_LONG, sample.task,
                           f"{num_tokens} tokens > max_length {self.max_length}", num_tokens)
        example["sample_index"] = int(index)
        example["record_index"] = rec
        return Prepared(index, rec, record["id"], sample, example, num_tokens)

    # ------------------------------------------------------------------------------------
    def _scene_of(self, record: dict[str, Any]) -> SceneConfig | None:
        """The scene sampler's config for `record`, or None for a fragment sample."""
        if self.scene is not None:
            return self.scene
        return self.sft if record.get(SFT_RECORD) else None

    def _clip(self, record: dict[str, Any], label: str, scene: SceneConfig | None) -> tuple[np.ndarray, VideoInfo]:
        """The clip's frames at the bucket resolution ((T, H, W, 3) uint8: up to `source_frames`
        evenly spaced frames; every frame for scene samples, whose speed plans index the whole
        clip) and the stream's info (rate, frame count), from the cache when it holds them."""
        cap = 0 if scene is not None else self.source_frames
        scope = self.sft_cache_scope if record.get(SFT_RECORD) else self.cache_scope
        key = (*scope, label, cap, self.resolution)
        cached = self.clip_cache.get(key) if self.clip_cache is not None else None
        if cached is not None:
            return cached
        select = None if cap == 0 else (lambda n: uniform_indices(n, min(n, cap)))
        source = record["path"] if "path" in record else record["video"]
        decoded = decode_video(source, select, name=label)
        clip = resize_frames(decoded.frames, self.resolution)
        if self.clip_cache is not None:
            clip = self.clip_cache.put(key, clip, decoded.info)
        return clip, decoded.info

    def _encode(self, sample: Sample, fps: float | None = None) -> tuple[dict[str, Any] | None, int]:
        """Patchify + chat template + padding. `fps`: the rate of the sample's frames (None: the
        processor's default). Returns (None, length) when the text does not fit."""
        rows = self.row_format
        frames = sample.frames
        if sample.present == "video":
            slices, vision = rows.video_slices(frames, fps)
            items = [{"type": "video"}]
        else:
            slices, vision = rows.image_slices(frames)
            items = [{"type": "image"}] * len(frames)
        messages = [
            {"role": "user", "content": items + [{"type": "text", "text": sample.question}]},
            {"role": "assistant", "content": sample.answer},
        ]
        chat = rows.encode(self.tokenizer, messages, loss_on="assistant", **vision)
        n = len(chat.input_ids)
        if n > self.max_length:
            return None, n
        used, s = slices.shape[0], slices.shape[1]
        if used > self.slices:  # InputConfig.geometry rules this out; a task broke its own range
            raise ValueError(f"{sample.task}: {len(frames)} frames need {used} slices, more than the {self.slices} "
                             "reserved per row")
        length = self.max_length
        per_slice = rows.layout.tokens_per_slice(_grid_of(s, self.resolution, rows.layout.patch_size))
        vision_ids = rows.vision_token_ids(self.tokenizer)
        vision = np.nonzero(np.isin(chat.input_ids, vision_ids))[0]
        if vision.size != used * per_slice:  # the template and the patch grid disagree: a bug, not bad data
            raise ValueError(f"{sample.task}: {vision.size} vision tokens for {used} slices of {per_slice} tokens")
        patches = np.zeros((self.slices, s, rows.layout.patch_dim), np.uint8)
        patches[:used] = slices
        example = {
            "input_ids": _pad(chat.input_ids, length, rows.pad_id(self.tokenizer)),
            "attention_mask": _pad(np.ones(n, np.int32), length, 0),
            "position_ids": np.pad(chat.position_ids.astype(np.int32), ((0, 0), (0, length - n)), constant_values=1),
            "loss_mask": _pad(chat.loss_mask.astype(np.int32), length, 0),
            "patches": patches,
            "num_slices": int(used),
            "vision_index": _pad(vision.astype(np.int32), self.slices * per_slice, length),
            "task_id": self.task_names.index(sample.task),
        }
        return example, n


def _grid_of(patches: int, resolution: tuple[int, int], patch_size: int) -> tuple[int, int]:
    """(gh, gw) of a slice of `patches` rows at `resolution`."""
    grid = (resolution[0] // patch_size, resolution[1] // patch_size)
    assert grid[0] * grid[1] == patches, (grid, patches)
    return grid


def _pad(x: np.ndarray, length: int, value: int) -> np.ndarray:
    out = np.full((length,), value, np.int32)
    out[: len(x)] = x
    return out
