"""FineVidBench, rebuilt from any SSv2-format source (spec §3).

Entry points:
  ``load_source(root, splits)``                      read and check an SSv2-format folder
  ``build_items(source, split, config)``             the benchmark items of one split
  ``write_benchmark(source, out_dir, splits, config)`` JSON lines + statistics files
  ``benchmark_stats(items)``                         counts to print and check
The item schema is documented in ``schema``.
"""
from sf2t_jax.finevidbench.build import (BenchConfig, benchmark_stats, build_items,
                                         write_benchmark)
from sf2t_jax.finevidbench.schema import Item, read_jsonl, write_jsonl
from sf2t_jax.finevidbench.source import Problems, Record, Source, SSv2FolderError, load_source

__all__ = ["BenchConfig", "benchmark_stats", "build_items", "write_benchmark", "Item",
           "read_jsonl", "write_jsonl", "Problems", "Record", "Source", "SSv2FolderError",
           "load_source"]
