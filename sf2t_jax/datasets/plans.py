"""What each dataset will contain: its splits' example generators and its fingerprint.

A ``Plan`` is all a builder in ``builders/`` needs: the builders stay thin and the content is
defined (and tested) here. Split use, by role (see ``inventory``):

  sf2t_corpus          train <- train role, validation <- heldout role   (no labels)
  video_sft            train <- train role, validation <- heldout role
  finevidbench/items   test  <- benchmark role
  finevidbench/videos  test  <- benchmark role

The fingerprint covers every input of a dataset: the labels and video files of the roles it
reads (the SFT set and the benchmark also read the others' templates: distractors come from
the source's whole vocabulary), its config, and the dataset version.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sf2t_jax.datasets import features, layout
from sf2t_jax.datasets.facts import SceneFacts, read_scene_facts
from sf2t_jax.datasets.inventory import ROLES, Inventory
from sf2t_jax.datasets.sft import SftConfig, sft_examples
from sf2t_jax.finevidbench.build import BenchConfig, build_items
from sf2t_jax.finevidbench.schema import Item
from sf2t_jax.ssv2 import TemplateTables, template_tables

Examples = Iterator[tuple[str, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Plan:
    name: str  # a layout.DATASETS entry, e.g. "finevidbench/items"
    fingerprint: str
    splits: Mapping[str, Callable[[], Examples]]  # split -> fresh (key, example) iterator
    metadata: Mapping[str, Any]  # stored in the dataset's metadata.json


class Planner:
    """The plans of all datasets for one inventory and config."""

    def __init__(self, inventory: Inventory, bench: BenchConfig = BenchConfig(),
                 sft: SftConfig = SftConfig(), *, check_videos: bool = True):
        self.inventory = inventory
        self.bench = bench
        self.sft = sft
        self._check = check_videos

    # ---- content -------------------------------------------------------------------------
    @functools.cached_property
    def tables(self) -> TemplateTables:
        """Tables over every template of the source, so distractors are actions it contains."""
        return template_tables(self.inventory.source.templates)

    @functools.cached_property
    def scene_facts(self) -> SceneFacts | None:
        """The synthetic world's object facts (its tracks/) over the training splits' videos,
        for the SFT set's fact questions; None for a source without tracks."""
        ids = [r.id for role in self._training_splits().values() for r in self.inventory.records(role)]
        return read_scene_facts(self.inventory.root / "tracks", ids) if self.sft.facts else None

    @functools.cached_property
    def items(self) -> list[Item]:
        """The benchmark: every item of the benchmark role's videos."""
        return build_items(self.inventory.source, self.inventory.roles.benchmark, self.bench,
                           self.tables)

    @functools.cached_property
    def bench_video_ids(self) -> list[str]:
        """Benchmark videos in the order their items first appear (= id order)."""
        return list(dict.fromkeys(it.video_id for it in self.items))

    def _training_splits(self) -> dict[str, str]:
        """tfds split -> role, for the corpus and the SFT set."""
        splits = {"train": "train"}
        if self.inventory.roles.heldout is not None:
            splits["validation"] = "heldout"
        return splits

    # ---- fingerprints --------------------------------------------------------------------
    def fingerprint(self, name: str) -> str:
        if name == layout.CORPUS:
            roles, config = ("train", "heldout"), {}
        elif name == layout.SFT:
            roles, config = ROLES, dataclasses.asdict(self.sft)
        elif name in (layout.BENCH_ITEMS, layout.BENCH_VIDEOS):
            # one fingerprint for both halves: video_index ties them together
            name, roles, config = "finevidbench", ROLES, dataclasses.asdict(self.bench)
        else:
            raise ValueError(f"unknown dataset {name!r}: expected one of {layout.DATASETS}")
        return self.inventory.fingerprint(roles, dataset=name, version=layout.VERSION,
                                          check_videos=self._check, **config)

    # ---- plans ---------------------------------------------------------------------------
    def plan(self, name: str) -> Plan:
        inv = self.inventory
        if name == layout.CORPUS:
            splits = {s: _videos(inv.records(role)) for s, role in self._training_splits().items()}
            counts = {s: len(inv.records(role)) for s, role in self._training_splits().items()}
        elif name == layout.SFT:
            splits = {s: functools.partial(sft_examples, inv.records(role), self.tables,
                                           self.sft, s, self.scene_facts)
                      for s, role in self._training_splits().items()}
            counts = {s: len(inv.records(role)) for s, role in self._training_splits().items()}
        elif name == layout.BENCH_VIDEOS:
            by_id = {r.id: r for r in inv.records("benchmark")}
            splits = {layout.BENCH_SPLIT: _videos([by_id[i] for i in self.bench_video_ids])}
            counts = {layout.BENCH_SPLIT: len(self.bench_video_ids)}
        elif name == layout.BENCH_ITEMS:
            splits = {layout.BENCH_SPLIT: self._item_examples}
            counts = {layout.BENCH_SPLIT: len(self.items)}
        else:
            raise ValueError(f"unknown dataset {name!r}: expected one of {layout.DATASETS}")
        roles = dataclasses.asdict(inv.roles)
        metadata = {"fingerprint": self.fingerprint(name), "source": str(inv.root),
                    "roles": roles, "examples": counts,
                    "skipped": {k: len(v) for k, v in inv.problems().items()}}
        return Plan(name, metadata["fingerprint"], splits, metadata)

    def _item_examples(self) -> Examples:
        index = {vid: i for i, vid in enumerate(self.bench_video_ids)}
        for item in self.items:
            yield item.item_id, features.item_example(item, index[item.video_id])


def _videos(records) -> Callable[[], Examples]:
    def generate() -> Examples:
        for r in records:
            yield r.id, features.video_example(r)
    return generate
