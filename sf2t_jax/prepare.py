"""`prepare`: render the world (or take an SSv2 folder), build the three datasets, export the
benchmark, and report what was built and skipped.

It joins the synthetic world to the datasets it feeds, so it lives above both: ``datasets``
and ``finevidbench`` read any SSv2-format folder and never the world's code.

Every step can be re-run, and an interrupted run can be re-run to finish cleanly:
  1. the world writes each clip atomically and skips finished ones (``sf2t_jax.world``);
  2. the label files are read and fingerprinted (no video opened);
  3. a dataset whose stored fingerprint matches is skipped; otherwise the videos are checked
     (each opened once) and the stale datasets are built by TFDS into a temporary folder that
     is renamed into place when complete (``build``);
  4. the JSON-lines export and its statistics are written atomically;
  5. ``prepare.json`` is written last: when it matches, nothing is left to do.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from sf2t_jax.datasets import build, layout, report
from sf2t_jax.datasets.inventory import Roles, check_videos, resolve_roles, take_inventory
from sf2t_jax.datasets.plans import Planner
from sf2t_jax.datasets.sft import SftConfig
from sf2t_jax.fileio import atomic_write_json
from sf2t_jax.finevidbench.build import BenchConfig, benchmark_stats
from sf2t_jax.finevidbench.schema import write_jsonl
from sf2t_jax.finevidbench.source import SSv2FolderError
from sf2t_jax.world import WorldConfig, WorldSummary, write_world

SUMMARY_FORMAT = "sf2t-prepare/1"


@dataclasses.dataclass(frozen=True)
class PrepareResult:
    paths: layout.DataPaths
    source: Path  # the SSv2-format folder the datasets were built from
    roles: Roles
    world: WorldSummary | None  # None with --source
    datasets: dict[str, str]  # name -> "built" | "up to date"
    examples: dict[str, dict[str, int]]  # name -> split -> records
    problems: dict[str, list[tuple[str, str, str]]]  # skipped records by reason
    benchmark: dict[str, Any]  # finevidbench.benchmark_stats of the benchmark
    seconds: dict[str, float]  # step -> wall time

    def report(self) -> str:
        lines = []
        if self.world is not None:
            w = self.world
            lines.append(f"world: {sum(w.clips.values())} clips ({w.rendered} rendered, "
                         f"{w.skipped} already there) in {self.source}")
        else:
            lines.append(f"source: {self.source}")
        lines.append(f"splits: train <- {self.roles.train}, validation <- "
                     f"{self.roles.heldout or '(none)'}, benchmark <- {self.roles.benchmark}")
        for name in layout.DATASETS:
            counts = ", ".join(f"{s} {n}" for s, n in self.examples[name].items())
            lines.append(f"  {name:20s} {self.datasets[name]:10s} {counts}")
        lines.append(f"datasets under {self.paths.tfds}; benchmark JSON lines {self.paths.jsonl}")
        lines.append(report.format_problems(self.problems))
        lines.append(report.format_benchmark_stats(self.benchmark))
        lines.append("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class PrepareSettings:
    """What ``prepare`` builds: the ``world`` and ``data`` sections of a configs/demo.py-shaped
    config, typed and checked (``validation.check_prepare`` makes it from the config)."""

    data_dir: str  # world/, tfds/, finevidbench/, prepare.json go here
    world: WorldConfig
    bench: BenchConfig  # FineVidBench construction
    sft: SftConfig  # the SFT baseline's questions per training video
    source: str = ""  # an SSv2-format folder to build from instead of rendering the world ("" = render)
    # label split per role; "auto": see datasets.inventory.resolve_roles
    train_split: str = "train"
    heldout_split: str = "auto"
    benchmark_split: str = "auto"
    check_videos: bool = True  # open every video once; skip and list those that do not decode
    workers: int = 0  # processes rendering the world (0 = one per CPU)

    @property
    def videos_root(self) -> Path:
        """The SSv2-format folder the datasets are built from (and the benchmark's videos are
        read from): `source`, or the world rendered under `data_dir`."""
        return Path(self.source).expanduser() if self.source else layout.DataPaths.from_dir(self.data_dir).world


def prepare(settings: PrepareSettings, *, progress: bool = True) -> PrepareResult:
    """Runs every step for ``settings``.

    Raises:
      SSv2FolderError: the source cannot give a usable dataset (a label file missing or broken,
        a split left empty); skipped records are reported instead.
    """
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    paths = layout.DataPaths.from_dir(settings.data_dir)
    root = settings.videos_root
    world = None
    if not settings.source:
        world = write_world(root, settings.world, progress=progress, workers=settings.workers)
        seconds["world"] = world.seconds
    else:
        if not root.is_dir():
            raise SSv2FolderError(f"--source {root}: not a folder (expected an SSv2-format folder "
                              "with videos/ and labels/)")

    roles = resolve_roles(root, settings.train_split, settings.heldout_split, settings.benchmark_split)
    inventory = take_inventory(root, roles)
    bench, sft = settings.bench, settings.sft
    checking = settings.check_videos
    planner = Planner(inventory, bench, sft, check_videos=checking)
    fingerprints = {name: planner.fingerprint(name) for name in layout.DATASETS}
    summary = _read_summary(paths)
    stale = [n for n in layout.DATASETS if build.stored_fingerprint(paths, n) != fingerprints[n]]

    exported = paths.jsonl.is_file() and paths.stats.is_file()
    if not stale and summary.get("fingerprints") == fingerprints and exported:
        logging.info("every dataset under %s is up to date", paths.tfds)
        datasets = {n: "up to date" for n in layout.DATASETS}
        examples, benchmark = summary["examples"], summary["benchmark"]
        problems = {k: [tuple(r) for r in v] for k, v in summary["problems"].items()}
    else:
        if checking:
            t = time.perf_counter()
            inventory = check_videos(inventory, progress=progress)
            seconds["check videos"] = time.perf_counter() - t
        planner = Planner(inventory, bench, sft, check_videos=checking)
        _check_disjoint(planner)
        datasets, examples = {}, {}
        for name in layout.DATASETS:
            plan = planner.plan(name)
            if name in stale:
                seconds[name] = build.build(paths, plan, progress=progress)
            datasets[name] = "built" if name in stale else "up to date"
            examples[name] = dict(plan.metadata["examples"])
        problems = inventory.problems()
        benchmark = benchmark_stats(planner.items)
        paths.benchmark.mkdir(parents=True, exist_ok=True)
        write_jsonl(paths.jsonl, planner.items)
        atomic_write_json(paths.stats, {
            "fingerprint": fingerprints[layout.BENCH_ITEMS], "source_split": roles.benchmark,
            layout.BENCH_SPLIT: benchmark, "skipped": {k: len(v) for k, v in problems.items()}},
            indent=1)
        atomic_write_json(paths.summary, {
            "format": SUMMARY_FORMAT, "fingerprints": fingerprints, "source": str(root),
            "roles": dataclasses.asdict(roles), "examples": examples, "benchmark": benchmark,
            "problems": {k: [list(r) for r in v] for k, v in problems.items()}}, indent=1)
    seconds["total"] = time.perf_counter() - start
    return PrepareResult(paths, root, roles, world, datasets, examples, problems, benchmark,
                         seconds)


def _read_summary(paths: layout.DataPaths) -> dict[str, Any]:
    try:
        summary = json.loads(paths.summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if summary.get("format") == SUMMARY_FORMAT else {}


def _check_disjoint(planner: Planner) -> None:
    """No benchmark video may be trained on: the roles use different label splits and the
    source keeps a repeated id in one split only, so this never fires unless that breaks."""
    inv = planner.inventory
    training = {r.id for role in ("train", "heldout") for r in inv.records(role)}
    shared = training & {r.id for r in inv.records("benchmark")}
    if shared:
        raise RuntimeError(f"benchmark videos also in the training splits: {sorted(shared)[:10]}")
