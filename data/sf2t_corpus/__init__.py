"""The SF²T fragment corpus: unlabelled training videos."""
from sf2t_jax.datasets.builders.sf2t_corpus_dataset_builder import Builder

__all__ = ["Builder"]
