"""The input pipeline: any folder of videos (or a tfds corpus) -> static-shape fragment batches.

Modules, in the order data flows through them:
  config.py         InputConfig (frozen; `from_dict` reads an experiment's `input` section),
                    the static geometry it implies
  sources.py        random-access records: FileSource (folder, manifest, file), RecordSource
                    (tfds or any indexable source of {id, video bytes})
  examples.py       ExampleMaker: decode -> resize -> fragment task -> patchify -> tokenize ->
                    pad one row; Skipped markers for samples that cannot be made
  skips.py          SkipCounter: exact counts by reason across workers; NoUsableVideoError
  batching.py       BatchSpec (one host's rows of the batch contract, sf2t_jax/batch.py), collate
  pipeline.py       InputPipeline (grain: shuffle, map, host share, worker processes) and
                    InputIterator (batches; saveable state)
  workers.py        worker processes exit with their parent (SIGKILL included)
  contact_sheet.py  a sample drawn as the model sees it (for `launch.py preview`)
"""
from sf2t_jax.batch import BATCH_KEYS, META_KEYS
from sf2t_jax.input.batching import BatchSpec, collate
from sf2t_jax.input.config import Geometry, InputConfig, InputConfigError, default_section, task_max_frames
from sf2t_jax.input.examples import TOO_LONG, ExampleMaker, Prepared, Skipped
from sf2t_jax.input.pipeline import InputIterator, InputPipeline, load_tokenizer
from sf2t_jax.input.skips import NoUsableVideoError, SkipCounter
from sf2t_jax.input.sources import (
    MANIFEST_EXTENSIONS,
    VIDEO_EXTENSIONS,
    FileSource,
    InputSourceError,
    RecordSource,
    open_source,
)

__all__ = [
    "BATCH_KEYS", "META_KEYS", "MANIFEST_EXTENSIONS", "TOO_LONG", "VIDEO_EXTENSIONS",
    "BatchSpec", "ExampleMaker", "FileSource", "Geometry", "InputConfig", "InputConfigError",
    "InputIterator", "InputPipeline", "InputSourceError", "NoUsableVideoError", "Prepared", "RecordSource",
    "SkipCounter", "Skipped", "collate", "default_section", "load_tokenizer", "open_source",
    "task_max_frames",
]
