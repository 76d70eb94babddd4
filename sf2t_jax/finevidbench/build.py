"""Building FineVidBench from an SSv2-format source, its statistics, and its files."""
from __future__ import annotations

import collections
import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sf2t_jax.finevidbench import fragment, scene
from sf2t_jax.finevidbench.options import LetterBalancer, Vocabulary
from sf2t_jax.finevidbench.schema import SPEED_ANSWERS, SPEEDS, Item, write_jsonl
from sf2t_jax.finevidbench.source import Source
from sf2t_jax.fileio import atomic_write_json
from sf2t_jax.ssv2 import TemplateTables, template_tables


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """How many questions of which kind. Defaults give about 24 items per video (the paper
    has 22,718 QA over 910 videos): 4 action + 4 effect + 4 speed + 3 sets x 4 turns."""

    seed: int = 0
    """Every choice (frames, options, letters, shuffles) derives from it."""
    scene_speeds: tuple[str, ...] = ("x0.5", "x1", "x2", "x4")
    """Speeds at which Action and Effect are asked (static has no action to see)."""
    speed_speeds: tuple[str, ...] = SPEEDS
    """Speeds at which Speed is asked: x0.5 slow, x1 normal, x2/x4 fast, static. Each video
    is asked once per gold answer; speeds sharing one (x2 and x4) take turns over the videos,
    so every answer is gold equally often and a constant answer scores chance."""
    sets_per_video: int = 3
    """Fragment conversations per video."""
    frames_per_clip: int = 16
    """Fragment frame indices refer to the clip sampled uniformly to this many frames."""
    set_size: tuple[int, int] = (4, 8)
    """Frames per fragment set, inclusive range (>= 4: comparison names four frames)."""
    shuffled_fraction: float = 0.5
    """Share of fragment sets shown shuffled (exact, over a split)."""

    def __post_init__(self):
        bad = [s for s in (*self.scene_speeds, *self.speed_speeds) if s not in SPEEDS]
        if bad:
            raise ValueError(f"BenchConfig speeds {bad}: expected values in {SPEEDS}")
        if "static" in self.scene_speeds:
            raise ValueError("BenchConfig.scene_speeds: a static clip shows no action")
        lo, hi = self.set_size
        if not 4 <= lo <= hi <= self.frames_per_clip:
            raise ValueError(f"BenchConfig.set_size={self.set_size}: expected 4 <= lo <= hi "
                             f"<= frames_per_clip={self.frames_per_clip}")
        if not 0.0 <= self.shuffled_fraction <= 1.0:
            raise ValueError(f"BenchConfig.shuffled_fraction={self.shuffled_fraction}: "
                             "expected a value in [0, 1]")


def _video_rng(seed: int, video_id: str) -> np.random.Generator:
    """A generator for one video that depends on its id only, not on the other videos."""
    key = int.from_bytes(hashlib.sha256(video_id.encode()).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))


def speeds_asked(speeds: Sequence[str], video_index: int) -> list[str]:
    """The speeds Speed is asked at for the ``video_index``-th video: one per gold answer,
    in ``speeds`` order; a gold answer with several speeds (fast: x2, x4) uses the
    ``video_index % k``-th of its k speeds."""
    by_answer: dict[str, list[str]] = {}
    for s in speeds:
        by_answer.setdefault(SPEED_ANSWERS[s], []).append(s)
    chosen = {group[video_index % len(group)] for group in by_answer.values()}
    return [s for s in speeds if s in chosen]


def _sort_key(video_id: str) -> tuple[int, int | str]:
    return (0, int(video_id)) if video_id.isdigit() else (1, video_id)


def build_items(source: Source, split: str, config: BenchConfig = BenchConfig(),
                tables: TemplateTables | None = None) -> list[Item]:
    """All items of one split, videos in id order, each video's scene items then its
    conversations. Deterministic given (source, split, config).

    Args:
      tables: defaults to ``template_tables(source.templates)``, so distractors are
        templates the source contains.
    """
    records = sorted(source.records[split], key=lambda r: _sort_key(r.id))
    vocab = Vocabulary(tables if tables is not None else template_tables(source.templates))
    split_rng = np.random.default_rng(np.random.SeedSequence(
        config.seed, spawn_key=(int.from_bytes(split.encode()[:8], "little"),)))
    balancer = LetterBalancer(split_rng)
    n_sets = len(records) * config.sets_per_video
    shuffled = np.zeros(n_sets, bool)
    shuffled[split_rng.permutation(n_sets)[:round(n_sets * config.shuffled_fraction)]] = True

    items: list[Item] = []
    for v, record in enumerate(records):
        rng = _video_rng(config.seed, record.id)
        for speed in config.scene_speeds:
            items.append(scene.action_item(record, vocab, speed, rng, balancer))
        for speed in config.scene_speeds:
            items.append(scene.effect_item(record, vocab, speed, rng, balancer))
        for speed in speeds_asked(config.speed_speeds, v):
            items.append(scene.speed_item(record, vocab, speed, rng, balancer))
        for k in range(config.sets_per_video):
            frames = fragment.sample_frame_set(rng, config.frames_per_clip, config.set_size,
                                               bool(shuffled[v * config.sets_per_video + k]))
            items += fragment.conversation_items(record, vocab, k, frames,
                                                 config.frames_per_clip, rng, balancer, config.set_size)
    return items


def benchmark_stats(items: Sequence[Item]) -> dict[str, Any]:
    """Counts a reader should check: items per video and task, letters, categories, speeds."""
    videos = {it.video_id for it in items}
    letters = collections.Counter(it.answer for it in items if len(it.options) == 4)
    n4 = sum(letters.values())
    conversations = {it.conversation for it in items if it.level == "fragment"}
    shuffled = {it.conversation for it in items if it.task == "rearrangement"}
    return {
        "videos": len(videos),
        "items": len(items),
        "items_per_video": len(items) / max(len(videos), 1),
        "tasks": dict(sorted(collections.Counter(it.task for it in items).items())),
        "letters_4way": {k: letters[k] / max(n4, 1) for k in "ABCD"},
        "categories": dict(sorted(collections.Counter(
            it.category for it in items if it.task == "action").items())),
        "speeds": dict(sorted(collections.Counter(
            it.speed for it in items if it.task == "speed").items())),
        "conversations": len(conversations),
        "shuffled_fraction": len(shuffled) / max(len(conversations), 1),
    }


def write_benchmark(source: Source, out_dir: str | Path, splits: Sequence[str] = ("test",),
                    config: BenchConfig = BenchConfig()) -> dict[str, Any]:
    """Writes ``finevidbench_{split}.jsonl`` per split and ``finevidbench_stats.json``.

    Returns the statistics per split, plus the source's skipped-record counts.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = template_tables(source.templates)
    stats: dict[str, Any] = {"skipped": source.problems.counts()}
    for split in splits:
        items = build_items(source, split, config, tables)
        write_jsonl(out_dir / f"finevidbench_{split}.jsonl", items)
        stats[split] = benchmark_stats(items)
    atomic_write_json(out_dir / "finevidbench_stats.json", stats, indent=1)
    return stats
