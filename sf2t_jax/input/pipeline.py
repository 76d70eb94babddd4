"""The grain pipeline, assembled: source -> shuffle -> sample -> static batches -> global arrays.

    records   MapDataset.source(source).shuffle(seed).repeat(num_epochs)   (reshuffled per epoch)
              joint SFT+SF²T: MapDataset.mix([those, video_sft records], [1 - w, w])
    samples   .map_with_index(ExampleMaker)   g = position in the global stream seeds sample g
    host      [process_index::process_count]  each host its own disjoint share
    workers   .to_iter_dataset().mp_prefetch(workers)   decode + task + tokenize in processes
              (which exit when this process dies, even by SIGKILL: workers.py)
    batches   InputIterator (main process): count skip markers, collate B rows, make global arrays

Batching happens after the workers, and every sample, usable or skipped, is exactly one
element, so the stream of samples and hence every batch is the same for any number of
workers (grain's mp_prefetch interleaves its workers round-robin). The iterator's state is
therefore just the host's position in that stream plus the counts: `get_state()`/`set_state()`
and orbax's `grain.checkpoint.CheckpointSave/Restore` resume exactly, even with a different
number of workers (restoring rebuilds the stream from the position).

With finite `num_epochs` on several hosts, hosts may run out a batch apart (their shares
skip different numbers of files); a trainer that needs lockstep runs a fixed number of steps
over `num_epochs=0`.

    pipeline = InputPipeline(InputConfig(source=..., tokenizer=...))
    it = pipeline.iterator(mesh)          # global jax.Arrays; mesh=None: numpy host batches
    batch = next(it)                      # the batch contract: sf2t_jax/batch.py
    pipeline.prepare(g)                   # sample g alone (previews, debugging)
"""
from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np

from sf2t_jax import batch as batch_lib
from sf2t_jax.batch import META_KEYS
from sf2t_jax.input.batching import BatchSpec, collate
from sf2t_jax.input.clip_cache import ClipCache, process_cache
from sf2t_jax.input.config import InputConfig, InputConfigError
from sf2t_jax.input.examples import SFT_RECORD, ExampleMaker, Prepared, Skipped
from sf2t_jax.input.scene import SCENE_FIELDS
from sf2t_jax.input.skips import NoUsableVideoError, SkipCounter
from sf2t_jax.input.sources import FileSource, InputSourceError, RecordSource, open_source
from sf2t_jax.input.workers import die_with_parent_init
from sf2t_jax.models.rope_index import VideoTime
from sf2t_jax.models.rows import QWEN2_VL_ROWS, QwenRows, RowFormat
from sf2t_jax.parallel.rules import DEFAULT_RULES, Rules
from sf2t_jax.text import Tokenizer

log = logging.getLogger(__name__)


def load_tokenizer(spec: str) -> Tokenizer:
    """'path/to/tokenizer.json' or a checkpoint folder, or 'tiny:V' (the built-in test tokenizer)."""
    if not spec:
        raise InputConfigError("input.tokenizer is not set: give a tokenizer.json (or the model checkpoint folder), "
                         "or 'tiny:V' for the built-in test tokenizer")
    if spec.startswith("tiny:"):
        from sf2t_jax.text import build_tiny_tokenizer

        return Tokenizer(build_tiny_tokenizer(int(spec[len("tiny:"):])), source=spec)
    return Tokenizer.from_file(spec)


class InputPipeline:
    """Builds this host's share of the fragment stream and iterators over it.

    Args:
      config: the pipeline config.
      tokenizer: overrides `config.tokenizer` (e.g. the model's, already loaded).
      source: overrides `config.source` (any random-access source of records, see sources.py).
      process_index, process_count: this host's place (default: jax's).
      video_time: the model family's video time axis for M-RoPE positions
        (`models.family.video_time`; None: Qwen2-VL's slice-counting positions).
      rows: the model family's rows (`models.family.row_format`: slices, chat template,
        positions); None: Qwen-VL's with `video_time`.
    """

    def __init__(self, config: InputConfig, *, tokenizer: Tokenizer | None = None,
                 source: FileSource | RecordSource | None = None,
                 process_index: int | None = None, process_count: int | None = None,
                 video_time: VideoTime | None = None, rows: RowFormat | None = None):
        if process_index is None or process_count is None:
            import jax

            process_index, process_count = jax.process_index(), jax.process_count()
        if config.batch_size % process_count:
            raise InputConfigError(f"input.batch_size={config.batch_size} does not split over {process_count} "
                                   "processes")
        self.config = config
        self.process_index, self.process_count = process_index, process_count
        self.tokenizer = tokenizer or load_tokenizer(config.tokenizer)
        extra = SCENE_FIELDS if config.mode != "fragments" else ()
        self.source = source if source is not None else open_source(config.source, split=config.split,
                                                                    data_dir=config.data_dir, extra_fields=extra)
        if not len(self.source):
            raise InputSourceError(f"{self.source!r} has no records")
        if rows is None:
            rows = QWEN2_VL_ROWS if video_time is None else QwenRows(QWEN2_VL_ROWS.layout, video_time)
        self.rows = rows
        rows.check_tokenizer(self.tokenizer)  # at start, naming the tokenizer file, not in a worker later
        geometry = config.geometry_of(rows)
        self.spec = BatchSpec(batch_size=config.batch_size // process_count, num_processes=process_count,
                              max_length=config.max_length, slices=geometry.slices, grid_hw=geometry.grid_hw,
                              pad_id=rows.pad_id(self.tokenizer), patch_dim=rows.layout.patch_dim,
                              tokens_per_slice=geometry.tokens_per_slice)
        self.maker = ExampleMaker(tokenizer=self.tokenizer, fragments=config.task_config(), seed=config.seed,
                                  resolution=config.resolution, slices=geometry.slices,
                                  max_length=config.max_length, source_frames=config.source_frames,
                                  scene=config.scene_config(), task_names=config.task_names,
                                  sft=config.sft_scene_config(), rows=rows,
                                  clip_cache=self._clip_cache(config, shared=source is None),
                                  cache_scope=(config.source, config.split, config.data_dir),
                                  sft_cache_scope=(config.sft_source, config.split, config.data_dir))
        self.sft_source = None
        if config.mixes_sft:  # joint SFT+SF²T: labelled video_sft records mixed into the fragment stream
            self.sft_source = open_source(config.sft_source, split=config.split, data_dir=config.data_dir,
                                          extra_fields=SCENE_FIELDS)
            if not len(self.sft_source):
                raise InputSourceError(f"data.sft_source: {self.sft_source!r} has no records")
        self.records = self._stream_records(config.num_epochs)
        self._epoch_length = len(self._stream_records(1))
        log.info("input: %r, %d records; host %d/%d; batch %d x %d tokens, %d slices of %s patches; %s",
                 self.source, len(self.source), process_index, process_count, self.spec.batch_size,
                 self.spec.max_length, self.spec.slices, self.spec.grid_hw,
                 config.mode if config.mode != "fragments" else
                 ", ".join(f"{t} {w:g}" for t, w in config.fragments.weights if w))
        if self.sft_source is not None:
            log.info("input: joint SFT+SF²T: %.3g of the samples are scene QA from %r", config.sft_weight,
                     self.sft_source)

    @staticmethod
    def _clip_cache(config: InputConfig, *, shared: bool) -> ClipCache | None:
        """The process's clip cache when the records come from `config.source` (its keys name
        that source); a cache of this pipeline's own for a source object passed in."""
        if not config.clip_cache_mb:
            return None
        return process_cache(config.clip_cache_mb << 20) if shared else ClipCache(config.clip_cache_mb << 20)

    def _stream_records(self, num_epochs: int) -> grain.MapDataset:
        """Record g of the stream: the source shuffled (reshuffled every epoch), repeated
        `num_epochs` times (0 = forever). With a joint SFT+SF²T mix, grain's weighted interleave
        (`MapDataset.mix`: exact shares, in a fixed pattern) of that fragment stream and the
        video_sft records (shuffled with their own seed, repeated forever, marked `SFT_RECORD`),
        so an epoch is one pass over the fragment source; `sft_weight=1` keeps the video_sft
        stream alone, repeated `num_epochs` times."""
        config, epochs = self.config, num_epochs or None  # None: forever
        fragments = _shuffled(self.source, config).repeat(epochs)
        if self.sft_source is None:
            return fragments
        sft = _shuffled(self.sft_source, config, seed_offset=1).map(_mark_sft)
        if config.sft_weight >= 1:
            return sft.repeat(epochs)
        return grain.MapDataset.mix([fragments, sft.repeat(None)], [1.0 - config.sft_weight, config.sft_weight])

    @property
    def records_per_epoch(self) -> int:
        """Records this host reads per epoch (its share of the stream's epoch: the source, and
        with a joint SFT+SF²T mix the video_sft records mixed into one pass over it)."""
        return math.ceil((self._epoch_length - self.process_index) / self.process_count)

    def prepare(self, index: int) -> Prepared | Skipped:
        """Sample `index` (a global stream position) alone: the same as the pipeline produces."""
        return self.maker.prepare(index, self.records[index])

    def check_usable(self) -> int | None:
        """Makes this host's samples in order until one is usable; returns its stream position g
        (None when this host's share is empty: its iterator simply ends).

        A source with no usable video is refused here, in the main process, before a trainer
        builds its model or writes to its workdir. A healthy source pays for one sample.

        Raises:
          NoUsableVideoError: as many samples in a row as the iterator allows (two epochs of
            this host's share, or the whole finite stream) were all skipped.
        """
        skips = SkipCounter()
        share = range(self.process_index, len(self.records), self.process_count)  # this host's stream positions
        for g in share[:max(1, 2 * self.records_per_epoch)]:
            out = self.prepare(g)
            if isinstance(out, Prepared):
                return g
            skips.add(out)
        if not skips.total:
            return None
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(skips.by_reason.items()))
        raise NoUsableVideoError(f"no usable video in {self.source!r}: the first {skips.total} samples of this "
                                 f"host's share were all skipped ({reasons}); check the source (the first file of "
                                 "each kind is logged above)")

    def dataset(self, start: int = 0) -> grain.IterDataset:
        """This host's samples (example dicts and `Skipped` markers) from its `start`-th on,
        prefetched by workers."""
        ds = self.records.map_with_index(self.maker)[self.process_index::self.process_count]
        if start:
            ds = ds[start:]
        threads = self.config.threads
        ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                  prefetch_buffer_size=self.config.prefetch if threads else 0))
        if self.config.workers:
            _absl_flags_parsed()
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.config.workers,
                                                             per_worker_buffer_size=self.config.prefetch),
                                worker_init_fn=die_with_parent_init())  # even when we are SIGKILLed
        return ds

    def iterator(self, mesh=None, rules: Rules | None = None) -> "InputIterator":
        """Batches: global `jax.Array`s over `mesh`, sharded by the logical-axis `rules` (default
        `parallel.rules.DEFAULT_RULES`: rows over ('data', 'fsdp')), or numpy host batches when
        `mesh` is None."""
        return InputIterator(lambda start: iter(self.dataset(start)), self.spec,
                             records_per_epoch=self.records_per_epoch,
                             source_name=repr(self.source), drop_remainder=self.config.drop_remainder,
                             mesh=mesh, rules=rules, task_names=self.config.task_names)

    __iter__ = iterator


class InputIterator(grain.DatasetIterator):
    """Pulls samples, counts skip markers, and emits static batches. Runs in the main process.

    Args:
      open_stream: `start -> iterator` over this host's samples from its `start`-th element
        (`InputPipeline.dataset(start)`); reopened by `set_state`.
      task_names: what a sample's `task_id` indexes, to count good samples per task.

    Attributes:
      skips: the `SkipCounter` of everything consumed so far.
      samples, batches: good samples and batches emitted so far.
      last_meta: host-only facts about the last batch: `sample_index`, `record_index` (B,)
        int64, -1 on padding rows (kept on the host, not in the device batch).
    """

    def __init__(self, open_stream: Callable[[int], grain.DatasetIterator], spec: BatchSpec, *,
                 records_per_epoch: int, source_name: str, drop_remainder: bool = False, mesh=None,
                 rules: Rules | None = None, task_names: Sequence[str] = ()):
        super().__init__()
        self._task_names = tuple(task_names)
        self.spec = spec
        self._open_stream = open_stream
        self._stream = open_stream(0)  # workers start on the first next(), so set_state costs nothing
        self._position = 0  # elements (samples and skip markers) consumed from this host's stream
        self.skips = SkipCounter()
        self.samples = 0
        self.batches = 0
        self._run = 0  # skip markers in a row since the last good sample
        # A run this long covers at least one whole epoch of this host's share: nothing is usable.
        self._run_limit = max(1, 2 * records_per_epoch)
        self._source_name = source_name
        self._drop_remainder = drop_remainder
        self._done = False
        self.last_meta: dict[str, np.ndarray] = {}
        self._mesh = mesh
        if mesh is not None:
            import jax

            if spec.num_processes != jax.process_count():
                raise InputConfigError(f"the pipeline was built for {spec.num_processes} processes but jax runs "
                                       f"{jax.process_count()}")
            self._shardings = batch_lib.batch_shardings(spec.batch_shape(), mesh,
                                                        DEFAULT_RULES if rules is None else rules)

    def __next__(self) -> dict[str, Any]:
        if self._done:
            raise StopIteration
        rows = []
        while len(rows) < self.spec.batch_size:
            try:
                element = next(self._stream)
            except StopIteration:
                self._done = True
                break
            self._position += 1
            if isinstance(element, Skipped):
                self.skips.add(element)
                self._run += 1
                if self._run >= self._run_limit:
                    raise NoUsableVideoError(self._no_usable_message(f"{self._run} records in a row gave no sample"))
                continue
            self._run = 0
            if self._task_names:
                self.skips.add_sample(self._task_names[int(element["task_id"])])
            rows.append(element)
        if self._done and (not rows or self._drop_remainder):
            self._finish()
            raise StopIteration
        self.samples += len(rows)
        self.batches += 1
        batch = collate(rows, self.spec)
        self.last_meta = {k: batch.pop(k) for k in META_KEYS}
        if self._mesh is None:
            return batch
        return batch_lib.to_global(batch, self.spec.batch_shape(), self._shardings)

    def _finish(self) -> None:
        if self.samples == 0 and self.skips.total:
            raise NoUsableVideoError(self._no_usable_message(f"all {self.skips.total} records were skipped"))
        log.info("input: done: %d samples in %d batches; %s", self.samples, self.batches, self.skips.describe())

    def _no_usable_message(self, what: str) -> str:
        return (f"no usable video in {self._source_name}: {what} "
                f"({', '.join(f'{k} {v}' for k, v in sorted(self.skips.by_reason.items()))}); check the source "
                "(the first file of each kind is logged above)")

    def summary(self) -> dict[str, Any]:
        """Samples, batches and skips so far (JSON-serialisable)."""
        return {"samples": self.samples, "batches": self.batches, "skipped": self.skips.total, **self.skips.state(),
                "rates": self.skips.rates()}

    # ---- state: the stream position and the counts (independent of the worker count) -----
    def get_state(self) -> dict[str, Any]:
        return {"position": self._position, "skips": self.skips.state(), "samples": self.samples,
                "batches": self.batches, "run": self._run, "done": self._done}

    def set_state(self, state: dict[str, Any]) -> None:
        position = int(state["position"])
        if position != self._position:
            self._stream.close()
            self._stream = self._open_stream(position)
            self._position = position
        self.skips.set_state(state["skips"])
        self.samples, self.batches = int(state["samples"]), int(state["batches"])
        self._run, self._done = int(state["run"]), bool(state["done"])

    def start_prefetch(self) -> None:
        self._stream.start_prefetch()

    def close(self) -> None:
        self._stream.close()


def _shuffled(source, config: InputConfig, seed_offset: int = 0) -> grain.MapDataset:
    records = grain.MapDataset.source(source)
    return records.shuffle(seed=config.seed + seed_offset) if config.shuffle else records


def _mark_sft(record: dict[str, Any]) -> dict[str, Any]:
    """A video_sft record of the joint stream: the example maker makes a scene QA sample of it."""
    return {**record, SFT_RECORD: True}


def _absl_flags_parsed() -> None:
    """grain's worker processes read absl flags; a program that never parsed them (pytest, a
    notebook) would fail in the workers with UnparsedFlagAccessError. Parse none of our argv."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS(sys.argv[:1] or ["sf2t"], known_only=True)
