"""Writing the world as an SSv2-format folder.

Layout (as SSv2, plus ground truth)::

    root/world.json               how the folder was made (render config), checked on re-runs
    root/videos/{id}.webm         one clip each (``.mp4`` with codec="h264")
    root/labels/train.json        [{"id", "label", "template", "placeholders"}, ...]
    root/labels/validation.json
    root/labels/test.json         labelled here (the public SSv2 test file has ids only):
                                  FineVidBench is built from it and needs the answers
    root/labels/labels.json       SSv2 class name -> class id, all 174 classes
    root/tracks/{id}.json         per-frame object state (see ``tracks``)

Clip i of split s depends only on (seed, s, i), so a re-run skips every clip whose video and
tracks files exist, and growing a split renders only the new clips. Label files are written
last, so a folder whose label files exist is complete.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sf2t_jax import fileio, ssv2
from sf2t_jax.errors import InputError
from sf2t_jax.video import encode_video
from sf2t_jax.world.config import CODECS, ID_BASE, SPLITS, WorldConfig
from sf2t_jax.world.render import render
from sf2t_jax.world.scene import sample_scene
from sf2t_jax.world.templates import spec, world_templates
from sf2t_jax.world.tracks import Scene

MANIFEST = "world.json"
FORMAT = "sf2t-world/1"
_TEMPLATE_STREAM, _SCENE_STREAM = 0, 1


@dataclasses.dataclass(frozen=True)
class WorldSummary:
    root: Path
    clips: dict[str, int]  # split -> number of clips
    rendered: int  # clips rendered by this run
    skipped: int  # clips found finished and left alone
    seconds: float

    @property
    def clips_per_second(self) -> float:
        return self.rendered / self.seconds if self.seconds > 0 and self.rendered else 0.0


def clip_id(split: str, index: int) -> str:
    return str(ID_BASE[split] + index)


def _rng(config: WorldConfig, split: str, stream: int, index: int) -> np.random.Generator:
    key = (SPLITS.index(split), stream, index)
    return np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=key))


def template_for(config: WorldConfig, split: str, index: int) -> str:
    """Templates come in shuffled rounds of all templates: every template is equally common,
    and clip i's template does not depend on how many clips the split has."""
    templates = world_templates()
    rnd, pos = divmod(index, len(templates))
    order = _rng(config, split, _TEMPLATE_STREAM, rnd).permutation(len(templates))
    return templates[int(order[pos])]


def scene_for(config: WorldConfig, split: str, index: int) -> Scene:
    """The ground truth of clip ``index`` of ``split`` (cheap: nothing is rendered)."""
    return sample_scene(spec(template_for(config, split, index)),
                        _rng(config, split, _SCENE_STREAM, index),
                        num_frames=config.num_frames, height=config.height,
                        width=config.width, max_objects=config.max_objects)


def label_record(cid: str, scene: Scene) -> dict[str, Any]:
    return {"id": cid, "label": ssv2.label(scene.template, scene.placeholders),
            "template": scene.template, "placeholders": list(scene.placeholders)}


def write_clip(config: WorldConfig, root: Path, cid: str, scene: Scene) -> None:
    """Renders, encodes and writes one clip and its tracks (video first, tracks last)."""
    frames = render(scene, config.height, config.width)
    fileio.atomic_write_bytes(root / "videos" / f"{cid}.{config.extension}",
                              encode_clip(frames, config.fps, config.codec))
    fileio.atomic_write_json(root / "tracks" / f"{cid}.json",
                             scene.to_json(cid, config.fps, config.height, config.width))


def encode_clip(frames: np.ndarray, fps: int, codec: str) -> bytes:
    """A clip's video file in memory: uint8 (T, H, W, 3) frames, H and W even, in the container
    and with the encoder settings of ``CODECS[codec]``. The same frames give the same bytes."""
    preset, _, options = CODECS[codec]
    return encode_video(frames, container=preset, fps=fps, options=options)


def _check_manifest(root: Path, config: WorldConfig) -> None:
    path = root / MANIFEST
    want = {"format": FORMAT, "render": config.render_fields()}
    if path.exists():
        have = json.loads(path.read_text(encoding="utf-8"))
        if have != want:
            diff = sorted(k for k in set(have.get("render", {})) | set(want["render"])
                          if have.get("render", {}).get(k) != want["render"].get(k))
            raise InputError(
                f"{path}: this folder was rendered with other settings (differs in "
                f"{diff or ['format']}: {have} vs {want}); its clips would not match. Use "
                "another folder or the same settings.")
    else:
        fileio.atomic_write_json(path, want, indent=2)


def write_world(root: str | Path, config: WorldConfig = WorldConfig(), *,
                progress: bool = True, workers: int = 0) -> WorldSummary:
    """Renders the world into ``root`` (created if needed) and writes its label files.

    Re-running with the same config skips finished clips; more clips per split extends it.
    ``workers`` processes render and encode clips (0 = one per CPU); a clip is a function of
    (config, split, index) and each is written atomically by one process, so the folder is the
    same byte for byte whatever the count. Raises ValueError if ``root`` was rendered with
    different render settings.
    """
    root = Path(root)
    for sub in ("videos", "labels", "tracks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        fileio.remove_partials(root / sub)
    _check_manifest(root, config)

    start = time.perf_counter()
    records: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    todo = []
    for split in SPLITS:
        for i in range(config.clips(split)):
            cid = clip_id(split, i)
            scene = scene_for(config, split, i)
            records[split].append(label_record(cid, scene))
            if not ((root / "videos" / f"{cid}.{config.extension}").exists()
                    and (root / "tracks" / f"{cid}.json").exists()):
                todo.append((cid, scene))
    total = sum(len(r) for r in records.values())
    workers = min(workers or os.cpu_count() or 1, max(len(todo), 1))
    with tqdm(total=total, initial=total - len(todo), desc="rendering world", unit="clip",
              disable=not progress) as bar:
        if workers == 1:
            for cid, scene in todo:
                write_clip(config, root, cid, scene)
                bar.update()
        else:  # spawned, not forked: the parent may hold JAX's threads
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                cids, scenes = zip(*todo)
                for _ in pool.map(write_clip, itertools.repeat(config), itertools.repeat(root), cids, scenes,
                                  chunksize=4):
                    bar.update()
    for split in SPLITS:
        fileio.atomic_write_json(root / "labels" / f"{split}.json", records[split])
    fileio.atomic_write_json(root / "labels" / "labels.json", ssv2.label_map(), indent=1)
    return WorldSummary(root=root, clips={s: config.clips(s) for s in SPLITS},
                        rendered=len(todo), skipped=total - len(todo),
                        seconds=time.perf_counter() - start)


def load_tracks(root: str | Path, cid: str) -> dict[str, Any]:
    """The ``tracks/{id}.json`` record of a clip."""
    path = Path(root) / "tracks" / f"{cid}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no tracks for clip {cid!r} (is this a world folder, "
                                "and has the clip been rendered?)")
    return json.loads(path.read_text(encoding="utf-8"))
