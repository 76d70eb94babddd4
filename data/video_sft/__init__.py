"""The labelled SFT set: captions and scene QA per training video."""
from sf2t_jax.datasets.builders.video_sft_dataset_builder import Builder

__all__ = ["Builder"]
