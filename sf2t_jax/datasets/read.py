"""Reading the prepared datasets: random-access sources for grain, and benchmark items.

Every function takes the experiment's data dir (``config.data.dir``, what ``prepare`` wrote).
Sources are TFDS ``ArrayRecordDataSource``s: ``len(src)``, ``src[i]`` -> dict of the features
in ``features`` (Text as UTF-8 bytes), ``src.__getitems__(indices)``; picklable, so grain
worker processes can hold them. Nothing here needs the builders or TensorFlow.
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from typing import Any

import tensorflow_datasets as tfds

from sf2t_jax.datasets import features, layout
from sf2t_jax.finevidbench.schema import Item, read_jsonl


def data_source(data_dir: str | os.PathLike, name: str, split: str) -> Sequence[dict[str, Any]]:
    """The prepared dataset ``name`` (a ``layout.DATASETS`` entry), one split.

    Raises:
      FileNotFoundError: not prepared yet (the message says how), or no such split.
    """
    folder = layout.DataPaths.from_dir(data_dir).dataset(name)
    if not (folder / "dataset_info.json").is_file():
        raise FileNotFoundError(f"{folder}: dataset {name} is not prepared; run `python "
                                "launch.py prepare --config FILE` with this data dir")
    builder = tfds.builder_from_directory(folder)
    if split not in builder.info.splits:
        raise FileNotFoundError(f"{folder}: dataset {name} has no split {split!r}; it has "
                                f"{sorted(builder.info.splits)}")
    return builder.as_data_source(split=split)


def corpus_source(data_dir: str | os.PathLike, split: str = "train"):
    """``sf2t_corpus``: {id, video, format}; splits train, validation (when held out)."""
    return data_source(data_dir, layout.CORPUS, split)


def sft_source(data_dir: str | os.PathLike, split: str = "train"):
    """``video_sft``: one record per video with its caption and scene QA."""
    return data_source(data_dir, layout.SFT, split)


def metadata(data_dir: str | os.PathLike, name: str) -> dict[str, Any]:
    """What a dataset was built from: fingerprint, source, roles, example counts, skips."""
    path = layout.DataPaths.from_dir(data_dir).dataset(name) / "metadata.json"
    return json.loads(path.read_text(encoding="utf-8"))


class BenchmarkSource:
    """FineVidBench items joined with their videos: a random-access source for grain.

    ``src[i]`` is item record i (fields of ``features.item_features``) plus ``video`` (the
    encoded bytes) and ``format`` of its video; ``src.item(i)`` is the same item as an
    ``Item``. Items of one conversation are consecutive, turns in order, and records come in
    the order of ``finevidbench_test.jsonl``.
    """

    def __init__(self, data_dir: str | os.PathLike, split: str = layout.BENCH_SPLIT):
        self.items_source = data_source(data_dir, layout.BENCH_ITEMS, split)
        self.videos_source = data_source(data_dir, layout.BENCH_VIDEOS, split)

    def __len__(self) -> int:
        return len(self.items_source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = dict(self.items_source[index])
        video = self.videos_source[int(record["video_index"])]
        record["video"], record["format"] = video["video"], video["format"]
        return record

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [self[i] for i in indices]

    def item(self, index: int) -> Item:
        return features.item_from_example(self.items_source[index])

    def items(self) -> list[Item]:
        """Every item, in order (reads the small item records only, no video bytes)."""
        return [features.item_from_example(r)
                for r in self.items_source.__getitems__(list(range(len(self.items_source))))]

    @functools.cached_property
    def _video_index(self) -> dict[str, int]:
        return {features.text(self.videos_source[i]["id"]): i
                for i in range(len(self.videos_source))}

    def video(self, video_id: str) -> tuple[bytes, str]:
        """(encoded bytes, format) of a benchmark video by id."""
        record = self.videos_source[self._video_index[video_id]]
        return record["video"], features.text(record["format"])


def benchmark_source(data_dir: str | os.PathLike) -> BenchmarkSource:
    return BenchmarkSource(data_dir)


def benchmark_items(data_dir: str | os.PathLike) -> list[Item]:
    """The benchmark from its JSON-lines export (the same items as ``finevidbench/items``)."""
    return read_jsonl(layout.DataPaths.from_dir(data_dir).jsonl)
