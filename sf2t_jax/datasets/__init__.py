"""Our TFDS datasets (array_record, no TensorFlow): how they are planned, built and read.

Datasets (builders in ``builders/``; features documented exactly in ``features``):
  sf2t_corpus          {id, video, format}: unlabelled training videos for SF²T
  video_sft            per training video: caption and scene QA, for the SFT baseline
  finevidbench/items   the benchmark, one item per record (JSON-lines schema + video_index)
  finevidbench/videos  the benchmark's videos, stored once

Reading (what the input pipeline and the evaluator use; ``data_dir`` is config.data.dir):
  ``corpus_source(data_dir, split)``   random-access source of sf2t_corpus
  ``sft_source(data_dir, split)``      random-access source of video_sft
  ``benchmark_source(data_dir)``       FineVidBench items joined with their video bytes
  ``benchmark_items(data_dir)``        the benchmark as ``Item``s (from the JSON lines)
  ``item_from_example(record)``        a finevidbench/items record -> ``Item``

Building: modules ``inventory`` (roles, checks, fingerprints), ``plans`` (content), ``build``
(resumable TFDS builds); ``sf2t_jax.prepare.prepare(config)`` (what ``launch.py prepare`` runs)
renders the world or takes an SSv2 folder and runs them.
"""
from sf2t_jax.datasets.features import item_from_example, text
from sf2t_jax.datasets.layout import BENCH_SPLIT, DATASETS, DataPaths
from sf2t_jax.datasets.read import (BenchmarkSource, benchmark_items, benchmark_source,
                                    corpus_source, data_source, metadata, sft_source)

__all__ = ["item_from_example", "text", "BENCH_SPLIT", "DATASETS", "DataPaths",
           "BenchmarkSource", "benchmark_items", "benchmark_source", "corpus_source",
           "data_source", "metadata", "sft_source"]
