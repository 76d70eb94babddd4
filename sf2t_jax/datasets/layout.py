"""Where `prepare` puts things under the data dir (``config.data.dir``), and dataset names.

    {dir}/world/                         the rendered SSv2-format folder (absent with --source)
    {dir}/tfds/sf2t_corpus/1.0.0/        array_record datasets, one folder per dataset
    {dir}/tfds/video_sft/1.0.0/
    {dir}/tfds/finevidbench/items/1.0.0/
    {dir}/tfds/finevidbench/videos/1.0.0/
    {dir}/finevidbench/finevidbench_test.jsonl   the benchmark as JSON lines (schema:
                                                 ``sf2t_jax.finevidbench.schema``)
    {dir}/finevidbench/finevidbench_stats.json   its statistics and the skipped records
    {dir}/prepare.json                   summary of the last finished prepare (written last)
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

VERSION = "1.0.0"
"""Version of every dataset here; bump it when a feature changes meaning."""

CORPUS = "sf2t_corpus"
SFT = "video_sft"
BENCH_ITEMS = "finevidbench/items"
BENCH_VIDEOS = "finevidbench/videos"
DATASETS = (CORPUS, SFT, BENCH_ITEMS, BENCH_VIDEOS)

BENCH_SPLIT = "test"
"""The benchmark's only split. It is called "test" whichever label split its videos come from
(real SSv2: validation); every item records its source split in its ``split`` field."""


@dataclasses.dataclass(frozen=True)
class DataPaths:
    root: Path

    @classmethod
    def from_dir(cls, data_dir: str | os.PathLike) -> "DataPaths":
        """``~`` is expanded, so configs can hold ``~/...``."""
        return cls(Path(os.path.expanduser(os.fspath(data_dir))))

    @property
    def world(self) -> Path:
        return self.root / "world"

    @property
    def tfds(self) -> Path:
        """The TFDS ``data_dir``: pass it to ``tfds.data_source(name, data_dir=...)``."""
        return self.root / "tfds"

    def dataset(self, name: str) -> Path:
        """The finished folder of a dataset (TFDS renames it into place when complete)."""
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}: expected one of {DATASETS}")
        return self.tfds / name / VERSION

    @property
    def benchmark(self) -> Path:
        return self.root / "finevidbench"

    @property
    def jsonl(self) -> Path:
        return self.benchmark / f"finevidbench_{BENCH_SPLIT}.jsonl"

    @property
    def stats(self) -> Path:
        return self.benchmark / "finevidbench_stats.json"

    @property
    def summary(self) -> Path:
        return self.root / "prepare.json"
