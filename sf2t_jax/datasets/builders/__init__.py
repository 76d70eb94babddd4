"""The TFDS builders, one module each (TFDS names a `Builder` after its `<name>_dataset_builder`
module): they only declare features; `launch.py prepare` builds them from plans
(`sf2t_jax.datasets.build`). Inside the package so that an installed sf2t_jax can prepare data;
the repository's `data/<name>/` folders re-export them.

  sf2t_corpus    encoded videos and ids, no labels: what SF²T trains on
  video_sft      videos with captions and scene QA: the supervised baseline
  finevidbench   the benchmark items (``items``) and their videos stored once (``videos``)
"""
