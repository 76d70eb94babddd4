"""Building one dataset from its plan: skip when current, redo cleanly when stale or partial.

TFDS writes a dataset into ``{name}/incomplete.XXXXXX_{version}/`` and renames it to
``{name}/{version}/`` only when every split and its metadata are written; on an exception it
deletes the temporary folder. A killed process leaves the temporary folder behind: we delete
such leftovers before building, and readers never see them (they look for ``{version}/``).
"""
from __future__ import annotations

import importlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import tensorflow_datasets as tfds

from sf2t_jax.datasets import layout
from sf2t_jax.datasets.plans import Plan

# dataset name -> module defining its `Builder` (imported when first built: TFDS registers it)
BUILDER_MODULES = {layout.CORPUS: "sf2t_jax.datasets.builders.sf2t_corpus_dataset_builder",
                   layout.SFT: "sf2t_jax.datasets.builders.video_sft_dataset_builder",
                   layout.BENCH_ITEMS: "sf2t_jax.datasets.builders.finevidbench_dataset_builder",
                   layout.BENCH_VIDEOS: "sf2t_jax.datasets.builders.finevidbench_dataset_builder"}


def builder_class(name: str):
    return importlib.import_module(BUILDER_MODULES[name]).Builder


def stored_fingerprint(paths: layout.DataPaths, name: str) -> str | None:
    """The fingerprint a finished dataset was built with; None if there is none."""
    path = paths.dataset(name) / "metadata.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("fingerprint")
    except ValueError:
        return None


def is_current(paths: layout.DataPaths, plan: Plan) -> bool:
    return stored_fingerprint(paths, plan.name) == plan.fingerprint


def remove_incomplete(paths: layout.DataPaths, name: str) -> list[Path]:
    """Deletes the temporary folders an interrupted build of ``name`` left behind."""
    parent = paths.dataset(name).parent
    stale = sorted(parent.glob(f"incomplete.*_{layout.VERSION}")) if parent.is_dir() else []
    for folder in stale:
        logging.warning("removing %s: left by an interrupted build", folder)
        shutil.rmtree(folder)
    return stale


def build(paths: layout.DataPaths, plan: Plan, *, progress: bool = True) -> float:
    """Builds ``plan.name`` under ``paths.tfds`` (replacing a stale copy); returns seconds."""
    start = time.perf_counter()
    tfds.display_progress_bar(progress)  # TFDS's own bars: examples written per split
    remove_incomplete(paths, plan.name)
    target = paths.dataset(plan.name)
    if target.exists():
        logging.warning("%s: built from other inputs (fingerprint %s, now %s): rebuilding",
                        target, stored_fingerprint(paths, plan.name), plan.fingerprint)
        shutil.rmtree(target)
    config = plan.name.partition("/")[2] or None
    builder = builder_class(plan.name)(data_dir=paths.tfds, config=config, plan=plan)
    with tempfile.TemporaryDirectory(prefix="sf2t_tfds_") as downloads:  # nothing to download
        builder.download_and_prepare(download_dir=downloads)
    return time.perf_counter() - start
