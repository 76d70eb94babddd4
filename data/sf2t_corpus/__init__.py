"""The SF²T fragment corpus: unlabelled training videos."""
from data.sf2t_corpus.sf2t_corpus_dataset_builder import Builder

__all__ = ["Builder"]
