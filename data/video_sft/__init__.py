"""The labelled SFT set: captions and scene QA per training video."""
from data.video_sft.video_sft_dataset_builder import Builder

__all__ = ["Builder"]
