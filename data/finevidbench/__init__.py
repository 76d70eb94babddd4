"""FineVidBench: benchmark items, and their videos stored once."""
from sf2t_jax.datasets.builders.finevidbench_dataset_builder import Builder

__all__ = ["Builder"]
