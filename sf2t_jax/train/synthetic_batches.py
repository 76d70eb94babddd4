"""Synthetic fragment batches with the exact shapes of the real input pipeline, through grain.

For smoke runs, tests and benchmarks without videos: every batch follows the batch contract
(`sf2t_jax/batch.py`), the geometry comes from the same `input` config fields (batch size,
max_length, resolution bucket, frame budget, presentation, task weights), and the sequence has
the real layout (a chat with one video, or one image per frame, then a question and a short
answer) in the model family's slice layout (`models/slices.py`): Qwen's 2-frame slices with
M-RoPE positions from `rope.get_rope_index`, or LLaVA-NeXT-Video's one-frame slices with 1D
positions.

The data are learnable, so training can be checked to learn: each sample has a class c (one
of `NUM_CLASSES`) shown by its patches (a fixed random pattern per class plus noise), and the
answer is a class-specific token, then <|im_end|>-like end token. Predicting the answer needs
the vision tower, the merger and the LLM.

Sample g of the stream is a pure function of (seed, g): grain shuffles indices, each host
takes a contiguous block of every global batch, and the iterator state saves and restores.
"""
from __future__ import annotations


import grain
import numpy as np

from sf2t_jax.input.workers import die_with_parent_init
from sf2t_jax.models import rope
from sf2t_jax.models.family import ModelConfig, video_time
from sf2t_jax.models.rope_index import rope_time_kwargs, text_positions
from sf2t_jax.train.errors import TrainConfigError

TASK_NAMES = ("count", "consistency", "localize", "disorder", "rearrange")
SFT_TASK = len(TASK_NAMES)  # task id of supervised (SFT) question-answer samples
NUM_TASK_IDS = len(TASK_NAMES) + 1
NUM_CLASSES = 4
QUESTION_TOKENS = 6
SYSTEM_TOKENS = 5


class Geometry:
    """Static shapes of a synthetic row, from the `input` section.

    frames: N, frames per sample (the frame budget); slices: P per row ('video': N frames in
    the family's slices, e.g. ceil(N/2) for Qwen; 'images': N); grid_hw: (gh, gw); patches:
    S = gh*gw; tokens_per_slice: S/4 for Qwen, the pooled frame for LLaVA; patch_dim: one
    patch row's width; wrap: tokens around each vision item (Qwen's start/end, LLaVA none).
    """

    def __init__(self, input_config, model: ModelConfig):
        layout = model.slice_layout
        h, w = layout.check_resolution(input_config.resolution)
        self.images = input_config.present == "images"
        if self.images and not layout.images_as_slices:
            raise ValueError("input.present='images': this model tiles images (anyres) instead of taking one slice "
                             "per image; present the frames as 'video'")
        self.frames = int(input_config.frame_budget)
        self.grid_hw = (h // layout.patch_size, w // layout.patch_size)
        self.patches = self.grid_hw[0] * self.grid_hw[1]
        self.tokens_per_slice = layout.tokens_per_slice(self.grid_hw)
        self.patch_dim = layout.patch_dim
        self.mrope = layout.mrope
        self.wrap = 2 if layout.mrope else 0
        self.used_slices = self.frames if self.images else layout.slices(self.frames)
        need = self.used_slices
        self.slices = int(input_config.slices) or need
        if self.slices < need:
            raise TrainConfigError(f"input.slices={self.slices}: {self.frames} frames need {need} slices")
        self.length = int(input_config.max_length)
        items = need if self.images else 1
        text = SYSTEM_TOKENS + QUESTION_TOKENS + 2 + 2  # + answer, end, and a spare
        self.vision_tokens = need * self.tokens_per_slice + self.wrap * items
        if self.vision_tokens + text > self.length:
            raise TrainConfigError(f"input.max_length={self.length} cannot hold a sample: {self.vision_tokens} vision tokens "
                             f"({self.frames} frames at {tuple(input_config.resolution)}) + {text} text tokens")


class SyntheticSamples:
    """Random-access source: index g -> one row of the batch contract (numpy)."""

    def __init__(self, geometry: Geometry, model: ModelConfig, *, seed: int, weights: dict[str, float],
                 sft_weight: float = 0.0, noise: float = 0.5):
        self.g, self.m, self.seed, self.noise = geometry, model, seed, noise
        w = np.array([float(weights.get(t, 0.0)) for t in TASK_NAMES], np.float64)
        if w.sum() <= 0 and sft_weight <= 0:
            raise TrainConfigError("input.weights: every task has weight 0 (and data.sft_weight is 0): nothing to train on")
        w = w / w.sum() * (1.0 - sft_weight) if w.sum() > 0 else w
        self.task_p = np.append(w, sft_weight)
        self.task_p = self.task_p / self.task_p.sum()
        # Fixed per-class patch patterns and per-task question / answer tokens, from a fixed seed
        # (the same in every process and worker).
        fixed = np.random.default_rng(1234)
        self.patterns = fixed.normal(0.0, 1.0, (NUM_CLASSES, geometry.patch_dim)).astype(np.float32)
        vocab = min(model.text.vocab_size, 32000) - 16  # ordinary tokens, clear of the special ids
        self.vocab = vocab
        self.questions = fixed.integers(8, vocab, (NUM_TASK_IDS, QUESTION_TOKENS))
        self.answers = fixed.integers(8, vocab, (NUM_TASK_IDS, NUM_CLASSES))
        self.end_id = model.eos_token_id
        self.pad_id = getattr(model, "pad_token_id", model.bos_token_id)  # Qwen2-VL pads with <|endoftext|>
        self.video_time = video_time(model)  # the family's video positions (None: Qwen2-VL's)

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        g, m = self.g, self.m
        rng = np.random.default_rng([self.seed, int(index)])
        task = int(rng.choice(NUM_TASK_IDS, p=self.task_p))
        label = int(rng.integers(NUM_CLASSES))
        used = g.used_slices
        patches = np.zeros((g.slices, g.patches, g.patch_dim), np.float32)
        patches[:used] = self.patterns[label] + self.noise * rng.standard_normal((used, g.patches, g.patch_dim),
                                                                                 dtype=np.float32)
        pad_token = m.image_token_id if g.images else m.video_token_id
        items = used if g.images else 1
        per_item = g.tokens_per_slice * (1 if g.images else used)
        ids = list(rng.integers(8, self.vocab, SYSTEM_TOKENS))
        for _ in range(items):
            item = [pad_token] * per_item
            ids += [m.vision_start_token_id] + item + [m.vision_end_token_id] if g.mrope else item
        ids += list(self.questions[task])
        answer_start = len(ids)
        ids += [int(self.answers[task, label]), self.end_id]
        n = len(ids)
        input_ids = np.full((g.length,), self.pad_id, np.int32)
        input_ids[:n] = ids
        attention_mask = np.zeros((g.length,), np.int32)
        attention_mask[:n] = 1
        loss_mask = np.zeros((g.length,), np.int32)
        loss_mask[answer_start:n] = 1
        grid = np.array([[1, *g.grid_hw]] * items if g.images else [[used, *g.grid_hw]], np.int64)
        if g.mrope:
            position_ids, _ = rope.get_rope_index(
                input_ids[None], grid if g.images else None, None if g.images else grid, attention_mask[None],
                image_token_id=m.image_token_id, video_token_id=m.video_token_id,
                vision_start_token_id=m.vision_start_token_id, spatial_merge_size=m.vision.spatial_merge_size,
                **rope_time_kwargs(None if g.images else self.video_time, 1))
        else:
            position_ids, _ = text_positions(attention_mask[None])
        vision_index = np.full((g.slices * g.tokens_per_slice,), g.length, np.int32)
        where = np.nonzero(input_ids == pad_token)[0]
        vision_index[:where.size] = where
        return dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids[:, 0],
                    loss_mask=loss_mask, vision_patches=patches, vision_index=vision_index,
                    task_id=np.int32(task), valid=np.int32(1))


def _collate(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    out = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    out["position_ids"] = np.ascontiguousarray(out["position_ids"].transpose(1, 0, 2))  # (3, B, L)
    return out


class _HostRows:
    """A global batch of sample indices -> this host's contiguous block of rows, made and collated.

    The contiguous block (not a stride) keeps the global batch, row for row, the same for any
    number of hosts, so a run on 2 hosts sees the batch a run on 1 host sees.
    """

    def __init__(self, samples: SyntheticSamples, process_index: int, local_batch: int):
        self.samples, self.start, self.size = samples, process_index * local_batch, local_batch

    def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return _collate([self.samples(int(i)) for i in indices[self.start:self.start + self.size]])


def synthetic_dataset(input_config, data_config, model: ModelConfig, *, process_index: int,
                      process_count: int) -> tuple[grain.IterDataset, Geometry]:
    """This host's batches (numpy, the batch contract) as a grain dataset; one epoch is
    `data.synthetic_examples` samples, reshuffled per epoch, `input.num_epochs` epochs (0 =
    forever). Partial final batches are dropped (static shapes). `input.threads` > 0 makes
    batches on that many threads, two ahead; `input.workers` > 0 in worker processes."""
    geometry = Geometry(input_config, model)
    batch = int(input_config.batch_size)
    if batch % process_count:
        raise TrainConfigError(f"input.batch_size={batch} does not split over {process_count} processes")
    samples = SyntheticSamples(geometry, model, seed=int(input_config.seed), weights=dict(input_config.fragments.weights),
                               sft_weight=float(data_config.sft_weight))
    n = int(data_config.synthetic_examples)
    if n < batch:
        raise TrainConfigError(f"data.synthetic_examples={n} is smaller than one batch (input.batch_size={batch})")
    ds = grain.MapDataset.range(n)
    if input_config.shuffle:
        ds = ds.shuffle(seed=int(input_config.seed))
    epochs = int(input_config.num_epochs) or None
    ds = ds.repeat(epochs).batch(batch, drop_remainder=True)  # global batches of indices: cheap ints
    ds = ds.map(_HostRows(samples, process_index, batch // process_count))
    # Elements are whole batches: a couple in flight overlap host work with the device step
    # (grain's default, 500 elements on 16 threads, would hold gigabytes of patches).
    threads = int(input_config.threads)
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 if threads else 0))
    if int(input_config.workers):
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(input_config.workers)),
                            worker_init_fn=die_with_parent_init())  # even when we are SIGKILLed
    return ds, geometry
