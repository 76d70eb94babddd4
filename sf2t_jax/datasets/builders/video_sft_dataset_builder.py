"""video_sft: labelled captions and scene QA (action, effect, speed) for the SFT baseline."""
import tensorflow_datasets as tfds

from sf2t_jax.datasets import features
from sf2t_jax.datasets.builder import PlanBuilder


class Builder(PlanBuilder):
    """One record per training video: the video, its caption (the filled SSv2 template) and
    its scene-level multiple-choice QA at several playback speeds (splits: train, validation).

    Features: see ``sf2t_jax.datasets.features`` (id, video, format, caption, template,
    category, qa{task, speed, speed_factor, question, options[4], answer, answer_text}).
    Never holds a video of FineVidBench.
    """

    def _features(self) -> tfds.features.FeaturesDict:
        return features.sft_features()
