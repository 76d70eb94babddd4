"""finevidbench: the benchmark of specs/sf2t.md §3, in two configs read side by side.

  finevidbench/items   one record per item (scene level: action, effect and speed at several
                       speeds, with categories; fragment level: conversations of step-by-step
                       turns), the JSON-lines schema plus ``speed_factor`` and ``video_index``
  finevidbench/videos  one record per benchmark video (id, video, format); an item's video is
                       record ``video_index`` of the same split, so bytes are stored once
                       rather than once per question (about 25 per video)

The single split is "test"; the same items are exported as ``finevidbench_test.jsonl``.
"""
import tensorflow_datasets as tfds

from sf2t_jax.datasets import features
from sf2t_jax.datasets.builder import PlanBuilder


class Builder(PlanBuilder):
    """FineVidBench items ("items") and their videos ("videos"), split "test"."""

    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="items", description="one record per benchmark item"),
        tfds.core.BuilderConfig(name="videos", description="one record per benchmark video"),
    ]

    def _features(self) -> tfds.features.FeaturesDict:
        if self.builder_config.name == "items":
            return features.item_features()
        return features.video_features()
