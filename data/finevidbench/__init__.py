"""FineVidBench: benchmark items, and their videos stored once."""
from data.finevidbench.finevidbench_dataset_builder import Builder

__all__ = ["Builder"]
