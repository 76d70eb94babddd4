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

import concurrent.futures
import dataclasses
import functools
import json
import logging
import os
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
               gaps: tuple[int, ...], min_cover: float, seed: int, max_clips: int = 0,
               threads: int = 0) -> FramePairs:
    """Decodes the split's clips and draws `pairs_per_clip` pairs from each.

    Args:
      world_root: the world folder (labels/, videos/, tracks/).
      size: (height, width) the frames are resized to (the model's resolution).
      gaps: frame distances a pair is drawn with (uniformly).
      max_clips: use the split's first clips only (0 = all).
      threads: clips decoded at once (0 = one per CPU). A clip's pairs are drawn from its own
        seed, so the pairs are the same whatever the count.
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
    if not ids:
        raise ValueError(f"tower stage: {label_file} lists no clips")
    videos = {}  # clip id -> its video file; one listing, not a glob per clip
    if (root / "videos").is_dir():
        for path in sorted((root / "videos").iterdir()):
            videos.setdefault(path.name.split(".", 1)[0], path)
    draw = functools.partial(_clip_pairs, root, size=size, pairs_per_clip=pairs_per_clip, gaps=gaps,
                             min_cover=min_cover, seed=seed)
    per_clip = []
    start, last = time.perf_counter(), 0.0
    # Decoding (PyAV) and resizing (PIL) release the GIL, so threads overlap them.
    with concurrent.futures.ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        for c, pairs in enumerate(pool.map(draw, range(len(ids)), ids, [videos.get(i) for i in ids])):
            per_clip.append(pairs)
            now = time.perf_counter()
            if now - last > 10 or c + 1 == len(ids):
                rate = (c + 1) / max(now - start, 1e-9)
                log.info("tower data (%s): %d/%d clips, %.1f clips/s, ETA %.0f s", split, c + 1, len(ids), rate,
                         (len(ids) - c - 1) / rate)
                last = now
    gh, gw = size[0] // PATCH_SIZE, size[1] // PATCH_SIZE
    stacked = {k: np.concatenate([p[k] for p in per_clip]) for k in per_clip[0]}
    return FramePairs(rows=stacked["rows"], colour=stacked["patch_colour"].astype(np.int32),
                      shape=stacked["patch_shape"].astype(np.int32),
                      window_colour=stacked["window_colour"].astype(np.int32),
                      window_shape=stacked["window_shape"].astype(np.int32),
                      clip=np.repeat(np.arange(len(ids), dtype=np.int32), pairs_per_clip), ids=ids, grid_hw=(gh, gw))


def _clip_pairs(root: Path, c: int, clip_id: str, video: Path | None, *, size: tuple[int, int], pairs_per_clip: int,
                gaps: tuple[int, ...], min_cover: float, seed: int) -> dict[str, np.ndarray]:
    """The `pairs_per_clip` pairs of clip `c`: patch rows (P, gh*gw, 1176) and per-frame labels
    (P, 2, ...), drawn from the clip's own seed (`c`)."""
    if video is None:
        raise FileNotFoundError(f"tower stage: no video for clip {clip_id} in {root / 'videos'}")
    frames = decode_video(str(video)).frames
    tracks = [Track.from_json(o) for o in load_tracks(root, clip_id)["objects"]]
    if len(frames) != len(tracks[0].x):
        raise ValueError(f"tower stage: {video} has {len(frames)} frames but {root}/tracks/{clip_id}.json "
                         f"describes {len(tracks[0].x)}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(c,)))
    pairs = []
    for _ in range(pairs_per_clip):
        gap = int(gaps[int(rng.integers(len(gaps)))])
        first = int(rng.integers(len(frames) - gap))
        pairs.append((first, first + gap))
    shown = sorted({t for pair in pairs for t in pair})
    resized = dict(zip(shown, resize_frames(frames[shown], size)))  # only the frames a pair shows
    labels = {t: frame_labels(tracks, t, size, min_cover) for t in shown}
    out = {"rows": np.stack([patchify_video(np.stack([resized[t] for t in pair]), normalized=False)[0]
                             for pair in pairs])}
    for k in ("patch_colour", "patch_shape", "window_colour", "window_shape"):
        out[k] = np.stack([np.stack([labels[t][k] for t in pair]) for pair in pairs])
    return out
