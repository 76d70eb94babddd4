"""Static-shape batches: per-row examples -> the batch contract, identical shapes every step.

The contract (field names, shapes, dtypes, logical axes) is `sf2t_jax/batch.py`; here are the
input pipeline's per-host spec of it (`BatchSpec`: B rows per host, the pad id) and `collate`,
which stacks examples into one host batch of it plus the host-only metadata `META_KEYS`
(`sample_index`, `record_index` (B,) int64, -1 on padding rows).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from sf2t_jax.batch import FIELDS, QWEN_PATCH_DIM, BatchShape
from sf2t_jax.video.patchify import normalize

# (3, 256) float32: the normalized value of every uint8 level per channel, from the same
# normalization `patchify` uses (bit-identical to transformers').
_LEVELS = np.ascontiguousarray(normalize(np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)).T)


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    """The static shapes of every batch.

    batch_size: B, rows per host; the global batch is `batch_size * num_processes`.
    max_length: L.
    slices: P, temporal slices per row.
    grid_hw: (gh, gw), the patch grid of the resolution bucket (static for the ViT).
    pad_id: the padding id (Qwen-VL: the tokenizer's <|endoftext|>; LLaVA: config.pad_token_id).
    patch_dim: D, values per patch row (the family's `SliceLayout.patch_dim`).
    tokens_per_slice: T, LLM tokens one slice makes (None: S/4, Qwen-VL's 2x2 merge).
    """

    batch_size: int
    num_processes: int
    max_length: int
    slices: int
    grid_hw: tuple[int, int]
    pad_id: int
    patch_dim: int = QWEN_PATCH_DIM
    tokens_per_slice: int | None = None

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.num_processes

    @property
    def patches_per_slice(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1]

    def batch_shape(self, global_shapes: bool = True) -> BatchShape:
        """The contract's sizes of the global batch (or of one host's rows)."""
        return BatchShape(batch_size=self.global_batch_size if global_shapes else self.batch_size,
                          length=self.max_length, slices=self.slices, grid_hw=tuple(self.grid_hw),
                          patch_dim=self.patch_dim, tokens_per_slice=self.tokens_per_slice or 0)

    @property
    def vision_tokens(self) -> int:
        """P*T: vision tokens per row, padding included."""
        return self.batch_shape().vision_tokens

    def shapes(self, global_shapes: bool = True) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """{key: (shape, dtype)} of `BATCH_KEYS`, for the global batch (or one host's)."""
        return {k: (shape, FIELDS[k].dtype) for k, shape in self.batch_shape(global_shapes).shapes().items()}


def collate(examples: Sequence[dict[str, Any]], spec: BatchSpec) -> dict[str, np.ndarray]:
    """Stacks up to B examples into one batch; missing rows are padding (valid = 0).

    Patch rows arrive as uint8 and are normalized here, straight into the batch buffer's
    used slices; unused slices stay exactly zero.
    """
    b, l = spec.batch_size, spec.max_length
    n = len(examples)
    if not 0 < n <= b:
        raise ValueError(f"collate: expected 1..{b} examples, got {n}")
    shapes = spec.shapes(global_shapes=False)
    out = {k: np.zeros(shape, dtype) for k, (shape, dtype) in shapes.items()}
    out["input_ids"][:] = spec.pad_id
    out["position_ids"][:] = 1
    out["vision_index"][:] = l
    out["sample_index"] = np.full((b,), -1, np.int64)
    out["record_index"] = np.full((b,), -1, np.int64)
    for i, ex in enumerate(examples):
        for key in ("input_ids", "attention_mask", "loss_mask", "vision_index"):
            out[key][i] = ex[key]
        out["position_ids"][:, i] = ex["position_ids"]
        used = int(ex["num_slices"])
        _normalize_into(out["vision_patches"][i, :used], np.asarray(ex["patches"][:used]))
        out["task_id"][i] = ex["task_id"]
        out["valid"][i] = 1
        out["sample_index"][i] = ex["sample_index"]
        out["record_index"][i] = ex["record_index"]
    return out


def _normalize_into(out: np.ndarray, rows: np.ndarray) -> None:
    """uint8 patch rows -> float32 `(x/255 - mean) / std` written straight into `out` (same shape).

    One table lookup per channel into the batch buffer: half the time of normalizing into a
    temporary and copying it (the batch is tens of MB, so this is memory-bound).
    """
    per_channel = rows.shape[-1] // 3  # patch columns are channel-major: (c, [t,] y, x) in both families
    src = rows.reshape(-1, 3, per_channel)
    dst = out.reshape(-1, 3, per_channel)
    for c in range(3):
        np.take(_LEVELS[c], src[:, c, :], out=dst[:, c, :], mode="wrap")  # uint8 indices are always in range
