"""What the tower stage learns from: frame pairs of the world's clips with per-patch object labels.

Every Video-LLM the paper fine-tunes starts from a pretrained image tower; the demo cannot
download one, so it pretrains its own on what the world knows about every frame: which object
(colour and shape) covers each patch. The labels come from the clips' ground truth
(`tracks/{id}.json`, rasterised as `world.render` draws it), never from motion or the template.

A *pair* is two frames of one clip, `gap` frames apart (0 = one frame held), shown as one
temporal slice the way videos reach the tower (`video.patchify`: frames 2t and 2t+1 share a
patch row). Its labels are per patch and per frame of the pair:

    colour: 0 = nothing, 1.. = the world's colours, then "skin" (hands)
    shape:  0 = nothing, 1.. = the world's shapes, then "palm" (hands)

A patch (and, for probes, a 2x2 merge window) is labelled with the object that covers most of
it, when that object covers at least `min_cover` of a patch's area; otherwise 0.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from sf2t_jax.video.decode import decode_video
from sf2t_jax.video.patchify import MERGE_SIZE, PATCH_SIZE, patchify, patchify_video
from sf2t_jax.video.resize import resize_frames
from sf2t_jax.world import load_tracks
from sf2t_jax.world.render import owner_map
from sf2t_jax.world.shapes import WORLD_COLOURS, WORLD_SHAPES
from sf2t_jax.world.tracks import Track

COLOUR_CLASSES = ("none",) + tuple(WORLD_COLOURS) + ("skin",)
SHAPE_CLASSES = ("none",) + tuple(WORLD_SHAPES) + ("palm",)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FramePairs:
    """N frame pairs of a split at one size.

    rows: uint8 (N, gh*gw, 1176) patch rows (`patchify_video` order, not normalised).
    colour, shape: int32 (N, 2, gh*gw) class per patch and per frame of the pair, rows' order.
    window_colour, window_shape: int32 (N, 2, gh*gw/4) the same per 2x2 merge window (the
      tokens the LLM sees), labelled by the object covering most of the window.
    clip: int32 (N,) which clip (index into `ids`) each pair comes from.
    grid_hw: (gh, gw) in patches.
    """

    rows: np.ndarray
    colour: np.ndarray
    shape: np.ndarray
    window_colour: np.ndarray
    window_shape: np.ndarray
    clip: np.ndarray
    ids: tuple[str, ...]
    grid_hw: tuple[int, int]

    def __len__(self) -> int:
        return len(self.rows)


def cell_owner(owner: np.ndarray, cell: int, min_pixels: float) -> np.ndarray:
    """The object covering most of each `cell` x `cell` square of an owner map.

    Args:
      owner: int (H, W), object index per pixel, -1 background (`world.render.owner_map`).
    Returns:
      int (H/cell, W/cell): that object's index, or -1 where no object covers `min_pixels`
      pixels of the square (ties go to the lower index).
    """
    h, w = owner.shape
    objects = int(owner.max()) + 1
    if objects == 0:
        return np.full((h // cell, w // cell), -1, np.int64)
    onehot = owner[..., None] == np.arange(objects)
    counts = onehot.reshape(h // cell, cell, w // cell, cell, objects).sum(axis=(1, 3))
    best = counts.argmax(axis=-1)
    covered = np.take_along_axis(counts, best[..., None], axis=-1)[..., 0] >= min_pixels
    return np.where(covered, best, -1)


def in_patch_order(grid: np.ndarray) -> np.ndarray:
    """A (gh, gw) per-patch array -> (gh*gw,) in the tower's row order (2x2 merge windows
    contiguous), by the same `patchify` that orders the pixels."""
    rows, _ = patchify(grid[None, :, :, None], patch_size=1, temporal_patch_size=1, merge_size=MERGE_SIZE)
    return rows[:, 0]


def object_classes(tracks) -> tuple[np.ndarray, np.ndarray]:
    """(colour class, shape class) per track, as int arrays with one extra trailing entry (0, 0)
    so that index -1 (background) maps to class 0."""
    colour = [COLOUR_CLASSES.index("skin" if t.role == "hand" else t.colour) for t in tracks] + [0]
    shape = [SHAPE_CLASSES.index("palm" if t.role == "hand" else t.shape) for t in tracks] + [0]
    return np.asarray(colour, np.int32), np.asarray(shape, np.int32)


def frame_labels(tracks, t: int, size: tuple[int, int], min_cover: float) -> dict[str, np.ndarray]:
    """Per-patch and per-window colour/shape classes of frame t at `size`, in row order."""
    owner = owner_map(tracks, t, *size)
    colour, shape = object_classes(tracks)
    min_pixels = min_cover * PATCH_SIZE**2  # windows too: the world's objects are smaller than a window
    patch = in_patch_order(cell_owner(owner, PATCH_SIZE, min_pixels))
    window = cell_owner(owner, PATCH_SIZE * MERGE_SIZE, min_pixels).reshape(-1)  # merged tokens: raster order
    return {"patch_colour": colour[patch], "patch_shape": shape[patch],
            "window_colour": colour[window], "window_shape": shape[window]}


def load_pairs(world_root: str | Path, split: str, size: tuple[int, int], *, pairs_per_clip: int,
               gaps: tuple[int, ...], min_cover: float, seed: int, max_clips: int = 0) -> FramePairs:
    """Decodes the split's clips and draws `pairs_per_clip` pairs from each.

    Args:
      world_root: the world folder (labels/, videos/, tracks/).
      size: (height, width) the frames are resized to (the model's resolution).
      gaps: frame distances a pair is drawn with (uniformly).
      max_clips: use the split's first clips only (0 = all).
    Raises:
      FileNotFoundError / ValueError naming the file when a label, video or tracks file is
      missing or unreadable: the tower stage needs the world's ground truth.
    """
    root = Path(world_root)
    label_file = root / "labels" / f"{split}.json"
    if not label_file.is_file():
        raise FileNotFoundError(f"tower stage: {label_file} does not exist; the tower stage needs the synthetic "
                                "world (labels/, videos/, tracks/), not an external --source")
    ids = tuple(str(r["id"]) for r in json.loads(label_file.read_text()))
    if max_clips:
        ids = ids[:max_clips]
    rows, labels, clip = [], {k: [] for k in ("patch_colour", "patch_shape", "window_colour", "window_shape")}, []
    start, last = time.perf_counter(), 0.0
    for c, clip_id in enumerate(ids):
        videos = list((root / "videos").glob(f"{clip_id}.*"))
        if not videos:
            raise FileNotFoundError(f"tower stage: no video for clip {clip_id} in {root / 'videos'}")
        frames = resize_frames(decode_video(str(videos[0])).frames, size)
        tracks = [Track.from_json(o) for o in load_tracks(root, clip_id)["objects"]]
        if len(frames) != len(tracks[0].x):
            raise ValueError(f"tower stage: {videos[0]} has {len(frames)} frames but {root}/tracks/{clip_id}.json "
                             f"describes {len(tracks[0].x)}")
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(c,)))
        cache: dict[int, dict[str, np.ndarray]] = {}
        for _ in range(pairs_per_clip):
            gap = int(gaps[int(rng.integers(len(gaps)))])
            first = int(rng.integers(len(frames) - gap))
            pair = (first, first + gap)
            pixel_rows, _ = patchify_video(frames[list(pair)], normalized=False)
            rows.append(pixel_rows)
            for t in pair:
                if t not in cache:
                    cache[t] = frame_labels(tracks, t, size, min_cover)
            for k in labels:
                labels[k].append(np.stack([cache[t][k] for t in pair]))
            clip.append(c)
        now = time.perf_counter()
        if now - last > 10 or c + 1 == len(ids):
            rate = (c + 1) / max(now - start, 1e-9)
            log.info("tower data (%s): %d/%d clips, %.1f clips/s, ETA %.0f s", split, c + 1, len(ids), rate,
                     (len(ids) - c - 1) / rate)
            last = now
    gh, gw = size[0] // PATCH_SIZE, size[1] // PATCH_SIZE
    return FramePairs(rows=np.stack(rows), colour=np.stack(labels["patch_colour"]).astype(np.int32),
                      shape=np.stack(labels["patch_shape"]).astype(np.int32),
                      window_colour=np.stack(labels["window_colour"]).astype(np.int32),
                      window_shape=np.stack(labels["window_shape"]).astype(np.int32),
                      clip=np.asarray(clip, np.int32), ids=ids, grid_hw=(gh, gw))
