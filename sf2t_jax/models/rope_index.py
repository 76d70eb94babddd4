"""M-RoPE position ids and ViT patch positions of Qwen2-VL and Qwen2.5-VL, computed on the host
in numpy.

Kept free of jax so that input-pipeline worker processes can compute positions without
importing it. Matches transformers' `Qwen2VLModel.get_rope_index` (specs/qwen2_vl.md §1.6) and,
given `tokens_per_second`, 4.49's `Qwen2_5_VLForConditionalGeneration.get_rope_index` (§1.8).
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class VideoTime:
    """Qwen2.5-VL's absolute-time axis for videos (`get_rope_index`'s time arguments).

    tokens_per_second: temporal M-RoPE positions per second (`vision_config.tokens_per_second`).
    seconds_per_slice: seconds one temporal slice spans, `temporal_patch_size / fps` of the
      sampled frames (transformers' `second_per_grid_ts`), the same for every video here.
    A family without an absolute time axis (Qwen2-VL) has no VideoTime (None).
    """

    tokens_per_second: float
    seconds_per_slice: float

    def rope_kwargs(self, num_videos: int) -> dict:
        """`get_rope_index` keyword arguments for a sequence (or batch) holding `num_videos`."""
        return dict(tokens_per_second=self.tokens_per_second,
                    second_per_grid_ts=np.full((num_videos,), self.seconds_per_slice, np.float32))


def rope_time_kwargs(video_time: VideoTime | None, num_videos: int) -> dict:
    """`video_time.rope_kwargs(num_videos)`, or {} (Qwen2-VL's slice-counting positions)."""
    return {} if video_time is None else video_time.rope_kwargs(num_videos)


def text_positions(attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1D positions of a left-padded batch as transformers' generate makes them
    (`cumsum(mask) - 1`, padding 1), on all three rows of the batch contract.
    Returns (position_ids (3, B, L) int32, rope_deltas (B,) int32 = max + 1 - L)."""
    mask = np.asarray(attention_mask).astype(np.int64)
    pos = np.cumsum(mask, axis=-1) - 1
    pos[mask == 0] = 1
    deltas = pos.max(axis=-1) + 1 - mask.shape[-1]
    return np.broadcast_to(pos[None], (3,) + pos.shape).astype(np.int32), deltas.astype(np.int32)


def get_rope_index(
    input_ids: np.ndarray,
    image_grid_thw: np.ndarray | None = None,
    video_grid_thw: np.ndarray | None = None,
    attention_mask: np.ndarray | None = None,
    *,
    image_token_id: int,
    video_token_id: int,
    vision_start_token_id: int,
    spatial_merge_size: int = 2,
    tokens_per_second: float | None = None,
    second_per_grid_ts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """M-RoPE position ids, exactly as transformers' `Qwen2VLModel.get_rope_index`.

    Qwen2.5-VL (`tokens_per_second` given) puts video slices on an absolute time axis: slice t
    of video i has temporal position `floor(t * second_per_grid_ts[i] * tokens_per_second)`
    (seconds per temporal slice, default 1.0), images 0. The product is taken in float32, as
    transformers 4.49 takes it for the processor's float32 tensor, and floored after, so
    fractional intervals (e.g. 0.5 s at 4 fps) give fractional-rate positions. (transformers
    4.53+ casts the interval to an integer first and gets 0 there: specs/qwen2_vl.md §1.8; we
    follow 4.49, the paper-era version our parity tests pin.)

    Args:
      input_ids: (B, L) int token ids.
      image_grid_thw / video_grid_thw: (N, 3) grids in patch units, rows consumed in order of
        appearance across the whole batch.
      attention_mask: (B, L) 1 for real tokens, 0 for padding (either side).
      tokens_per_second: Qwen2.5-VL's `vision_config.tokens_per_second`; None for Qwen2-VL.
      second_per_grid_ts: (num_videos,) seconds per temporal slice of each video
        (`temporal_patch_size / fps`), Qwen2.5-VL only.
    Returns:
      position_ids: (3, B, L) int32; padded slots hold 1, as in transformers.
      rope_deltas: (B,) int32, `max(position) + 1 - L`, used for decoding with a KV cache.
    """
    input_ids = np.asarray(input_ids)
    batch, length = input_ids.shape
    if attention_mask is None:
        attention_mask = np.ones_like(input_ids)
    attention_mask = np.asarray(attention_mask)
    image_rows = iter(np.zeros((0, 3), np.int64) if image_grid_thw is None else np.asarray(image_grid_thw))
    video_rows = iter(np.zeros((0, 3), np.int64) if video_grid_thw is None else np.asarray(video_grid_thw))
    if second_per_grid_ts is not None and tokens_per_second is None:
        raise ValueError("get_rope_index: second_per_grid_ts needs tokens_per_second (Qwen2.5-VL)")
    seconds = None if second_per_grid_ts is None else np.asarray(second_per_grid_ts, np.float32).reshape(-1)
    videos_seen = 0

    position_ids = np.ones((3, batch, length), np.int64)
    deltas = np.zeros((batch,), np.int64)
    for b in range(batch):
        valid = attention_mask[b] == 1
        ids = input_ids[b][valid]
        after_start = ids[1:][ids[:-1] == vision_start_token_id]
        n_vision = int(np.sum(after_start == image_token_id) + np.sum(after_start == video_token_id))
        pieces: list[np.ndarray] = []
        next_pos = 0
        start = 0
        for _ in range(n_vision):
            ed = _next_vision_token(ids, start, image_token_id, video_token_id)
            rows = image_rows if ids[ed] == image_token_id else video_rows
            try:
                t, h, w = (int(v) for v in next(rows))
            except StopIteration:
                kind = "image_grid_thw" if ids[ed] == image_token_id else "video_grid_thw"
                raise ValueError(f"get_rope_index: row {b} has more vision blocks than {kind} has rows") from None
            gt, gh, gw = t, h // spatial_merge_size, w // spatial_merge_size
            n_text = ed - start
            pieces.append(np.broadcast_to(np.arange(n_text) + next_pos, (3, n_text)))
            base = next_pos + n_text
            slice_pos = np.arange(gt)
            if tokens_per_second is not None:
                if ids[ed] == image_token_id:
                    slice_pos = np.zeros(gt, np.int64)
                else:
                    slice_pos = _absolute_time(gt, _seconds_of(seconds, videos_seen), tokens_per_second)
            if ids[ed] == video_token_id:
                videos_seen += 1
            t_idx = np.repeat(slice_pos, gh * gw)
            h_idx = np.tile(np.repeat(np.arange(gh), gw), gt)
            w_idx = np.tile(np.arange(gw), gt * gh)
            block = np.stack([t_idx, h_idx, w_idx]) + base
            pieces.append(block)
            next_pos = int(block.max()) + 1
            start = ed + gt * gh * gw
        n_tail = len(ids) - start
        pieces.append(np.broadcast_to(np.arange(n_tail) + next_pos, (3, n_tail)))
        positions = np.concatenate(pieces, axis=1)
        position_ids[:, b, valid] = positions
        deltas[b] = (int(positions.max()) + 1 if positions.size else 0) - length
    return position_ids.astype(np.int32), deltas.astype(np.int32)


def _seconds_of(seconds: np.ndarray | None, video: int) -> np.float32:
    if seconds is None:
        return np.float32(1.0)
    if video >= len(seconds):
        raise ValueError(f"get_rope_index: second_per_grid_ts has {len(seconds)} entries, fewer than the videos")
    return seconds[video]


def _absolute_time(slices: int, seconds_per_slice: np.float32, tokens_per_second: float) -> np.ndarray:
    """(slices,) int64 temporal positions `trunc(t * seconds * tokens_per_second)` in float32."""
    time = np.arange(slices, dtype=np.float32) * np.float32(seconds_per_slice) * np.float32(tokens_per_second)
    return time.astype(np.int64)


def _next_vision_token(ids: np.ndarray, start: int, image_token_id: int, video_token_id: int) -> int:
    hits = np.nonzero((ids[start:] == image_token_id) | (ids[start:] == video_token_id))[0]
    if hits.size == 0:
        raise ValueError("get_rope_index: a <|vision_start|> is not followed by image or video pad tokens")
    return start + int(hits[0])


def vision_rope_positions(grid_h: int, grid_w: int, merge: int = 2) -> np.ndarray:
    """(row, col) patch positions of one temporal slice, in the processor's patch order.

    Rows are ordered (bh, bw, mh, mw) — 2x2 merge windows kept contiguous — so that row
    `((bh*(gw/m)+bw)*m+mh)*m+mw` has position `(bh*m+mh, bw*m+mw)`.
    Returns (grid_h*grid_w, 2) int32.
    """
    if grid_h % merge or grid_w % merge:
        raise ValueError(f"vision grid ({grid_h}, {grid_w}) is not divisible by spatial_merge_size={merge}")
    bh, bw, mh, mw = np.meshgrid(
        np.arange(grid_h // merge), np.arange(grid_w // merge), np.arange(merge), np.arange(merge), indexing="ij"
    )
    rows = (bh * merge + mh).reshape(-1)
    cols = (bw * merge + mw).reshape(-1)
    return np.stack([rows, cols], axis=-1).astype(np.int32)
