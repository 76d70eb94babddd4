"""sf2t_corpus: the videos SF²T fine-tunes on, as encoded bytes with their ids.

No labels, on purpose: SF²T's five fragment tasks make their own targets from the frames, so
the corpus must not carry (or tempt anyone to use) the SSv2 annotations.
"""
import tensorflow_datasets as tfds

from sf2t_jax.datasets import features
from sf2t_jax.datasets.builder import PlanBuilder


class Builder(PlanBuilder):
    """Unlabelled training videos for SF²T (splits: train, and validation for held-out loss).

    Features: id (Text), video (encoded file bytes), format (Text: "webm" | "mp4").
    Never holds a video of FineVidBench.
    """

    def _features(self) -> tfds.features.FeaturesDict:
        return features.video_features()
