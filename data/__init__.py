"""TFDS dataset builders (array_record, no TensorFlow), one folder each.

  sf2t_corpus    encoded videos and ids, no labels: what SF²T trains on
  video_sft      videos with captions and scene QA: the supervised baseline
  finevidbench   the benchmark items (``items``) and their videos stored once (``videos``)

The builders live in the package (``sf2t_jax/datasets/builders/``, so an installed sf2t_jax
has them); each folder here re-exports its ``Builder``. They only declare features;
``launch.py prepare`` builds them from an SSv2-format folder (``sf2t_jax.datasets``). Read them with ``sf2t_jax.datasets.read``, or with
``tfds.data_source(name, split=..., data_dir=DataPaths(...).tfds)``.
"""
