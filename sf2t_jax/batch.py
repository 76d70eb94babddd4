"""The training batch contract: field names, shapes, dtypes and logical axes, and host rows ->
global arrays on the mesh.

Every producer of training batches (the input pipeline's `input/batching.collate`,
`train/synthetic_batches.py`) and every consumer (the train step, the held-out scorer, the
planner's abstract batch) reads the table below; nothing else restates it. A batch is a dict
of these fields, numpy on one host (its share of the rows) or global `jax.Array`s:

    input_ids      (B, L) int32        padded with the pad id (<|endoftext|> for Qwen-VL)
    attention_mask (B, L) int32        1 real token, 0 padding (right padding)
    position_ids   (3, B, L) int32     M-RoPE positions (1D families: three equal rows; padding 1)
    loss_mask      (B, L) int32        1 at target tokens (answer + its end-of-turn token)
    vision_patches (B, P, S, D) float32  normalized patch rows; unused slices zero
    vision_index   (B, P*T) int32      row position of each vision token; L = padding
    task_id        (B,) int32          index into the stream's task names
    valid          (B,) int32          1 real sample, 0 a padding row of a final partial batch

B: rows (the global batch, or one host's share of it); L: tokens per row; P: temporal slices
per row; S = gh * gw: patches per slice (the resolution bucket's patch grid); D: values per
patch row (the family's `SliceLayout.patch_dim`: 1176 Qwen-VL, 588 CLIP-14); T: LLM tokens per
slice (S/4 for Qwen-VL's 2x2 merge, the pooled frame for LLaVA). The model turns
`vision_patches` into its vision input with `models.vision.batch_vision`.

Host-only metadata rides along on the host (`META_KEYS`, never sent to devices):
sample_index, record_index (B,) int64, -1 on padding rows.

On the mesh, each field's logical axes (`FIELDS[k].axes`) go through the sharding rules
(`sf2t_jax/parallel/rules.py`): 'batch' -> ('data', 'fsdp') by default. The global batch is
the concatenation of every process's rows in process order
(`jax.make_array_from_process_local_data`), built without any host seeing another's rows.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from sf2t_jax.errors import InputError
from sf2t_jax.parallel.sharding import Rules, batch_sharding

QWEN_PATCH_DIM = 1176  # 3 channels * 2 frames * 14 * 14


class BatchContractError(InputError):
    """A batch (or a batch geometry) that breaks the contract; the message names the field."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One array of the batch.

    dims: its shape in the contract's symbols ('B', 'L', 'P', 'S', 'D', 'P*T') and literal sizes.
    dtype: its numpy dtype, the same on the host and on devices.
    axes: its logical axes, one per dimension (None: never sharded), for the sharding rules.
    """

    dims: tuple[str | int, ...]
    dtype: np.dtype
    axes: tuple[str | None, ...]

    @property
    def batch_dim(self) -> int:
        """The dimension that holds the rows (1 for position_ids, else 0)."""
        return self.dims.index("B")


_I32, _F32 = np.dtype(np.int32), np.dtype(np.float32)
FIELDS: dict[str, Field] = {
    "input_ids": Field(("B", "L"), _I32, ("batch", "length")),
    "attention_mask": Field(("B", "L"), _I32, ("batch", "length")),
    "position_ids": Field((3, "B", "L"), _I32, (None, "batch", "length")),
    "loss_mask": Field(("B", "L"), _I32, ("batch", "length")),
    "vision_patches": Field(("B", "P", "S", "D"), _F32, ("batch", None, None, None)),
    "vision_index": Field(("B", "P*T"), _I32, ("batch", None)),
    "task_id": Field(("B",), _I32, ("batch",)),
    "valid": Field(("B",), _I32, ("batch",)),
}
BATCH_KEYS = tuple(FIELDS)  # the device arrays, in this order
META_KEYS = ("sample_index", "record_index")  # host-only (B,) int64, -1 on padding rows


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchShape:
    """The static sizes of a batch: every field's shape follows from them.

    batch_size: B, rows; length: L; slices: P; grid_hw: (gh, gw), S = gh * gw;
    patch_dim: D; tokens_per_slice: T (0: S/4, Qwen-VL's 2x2 merge).
    """

    batch_size: int
    length: int
    slices: int
    grid_hw: tuple[int, int]
    patch_dim: int = QWEN_PATCH_DIM
    tokens_per_slice: int = 0

    @property
    def patches(self) -> int:
        """S = gh * gw."""
        return self.grid_hw[0] * self.grid_hw[1]

    @property
    def slice_tokens(self) -> int:
        """T, LLM tokens one slice makes."""
        return self.tokens_per_slice or self.patches // 4

    @property
    def vision_tokens(self) -> int:
        """P*T: vision tokens per row, padding included."""
        return self.slices * self.slice_tokens

    def sizes(self) -> dict[str, int]:
        """The contract's symbols -> sizes."""
        return {"B": self.batch_size, "L": self.length, "P": self.slices, "S": self.patches, "D": self.patch_dim,
                "P*T": self.vision_tokens}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """{field: shape} of `BATCH_KEYS`."""
        sizes = self.sizes()
        return {k: tuple(d if isinstance(d, int) else sizes[d] for d in f.dims) for k, f in FIELDS.items()}

    def abstract(self, shardings: Mapping[str, NamedSharding] | None = None) -> dict[str, jax.ShapeDtypeStruct]:
        """{field: ShapeDtypeStruct} (with its sharding, when given): for ahead-of-time lowering
        and planning."""
        return {k: jax.ShapeDtypeStruct(shape, FIELDS[k].dtype, sharding=None if shardings is None else shardings[k])
                for k, shape in self.shapes().items()}

    def per_process(self, process_count: int) -> "BatchShape":
        """One process's share: B / process_count rows, the rest unchanged."""
        if self.batch_size % process_count:
            raise BatchContractError(f"input.batch_size={self.batch_size} does not split over {process_count} "
                                     "processes")
        return BatchShape(batch_size=self.batch_size // process_count, length=self.length, slices=self.slices,
                          grid_hw=tuple(self.grid_hw), patch_dim=self.patch_dim,
                          tokens_per_slice=self.tokens_per_slice)

    def check(self, batch: Mapping[str, Any], what: str = "batch") -> None:
        """Raises BatchContractError naming the first field of `batch` (numpy or jax arrays) that is
        missing or has another shape or dtype than the contract's; extra keys (`META_KEYS`) are
        allowed."""
        _check_keys(batch, what)
        for key, shape in self.shapes().items():
            _check_field(key, batch[key], shape, what)


def _check_keys(batch: Mapping[str, Any], what: str) -> None:
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise BatchContractError(f"{what} lacks {missing}; the contract needs {list(BATCH_KEYS)}")


def _check_field(key: str, value, shape: tuple[int, ...], what: str) -> None:
    got_shape, got_dtype = tuple(np.shape(value)), np.dtype(value.dtype)
    if (got_shape, got_dtype) != (shape, FIELDS[key].dtype):
        raise BatchContractError(f"{what}[{key!r}]: expected {FIELDS[key].dims} = {shape} {FIELDS[key].dtype}, "
                                 f"got {got_shape} {got_dtype}")


def batch_axes(mesh: Mesh, rules: Rules) -> tuple[str, ...]:
    """The mesh axes the logical 'batch' axis maps to under `rules` (sf2t_jax/parallel/rules.py),
    those present in `mesh`: where rows are split."""
    target = dict(rules).get("batch")
    axes = () if target is None else (target,) if isinstance(target, str) else tuple(target)
    return tuple(a for a in axes if a in mesh.shape)


def batch_shardings(shape: BatchShape, mesh: Mesh, rules: Rules) -> dict[str, NamedSharding]:
    """{field: NamedSharding} of a global batch of `shape`, by each field's logical axes. A batch
    the mesh cannot split evenly is refused (never silently replicated: every device would
    compute the whole batch)."""
    shapes = shape.shapes()
    try:
        return {k: batch_sharding(f.axes, shapes[k], mesh, rules, what=k) for k, f in FIELDS.items()}
    except ValueError as e:
        raise BatchContractError(f"input.batch_size={shape.batch_size} does not divide over the mesh's batch axes: "
                                 f"{e}") from None


def to_global(batch: Mapping[str, Any], shape: BatchShape, shardings: Mapping[str, NamedSharding]
              ) -> dict[str, jax.Array]:
    """This process's rows -> global arrays of `shape` (the GLOBAL batch), one per `BATCH_KEYS`.

    Each process passes its own block of B / process_count rows (numpy); process i's rows sit
    at rows [i*B/n, (i+1)*B/n) of the global array. A field that is already a global
    `jax.Array` of the global shape is kept (re-placed when its sharding differs). Host rows
    of another shape or dtype than the contract's are refused, naming the field.
    """
    global_shapes = shape.shapes()
    host_shapes = shape.per_process(jax.process_count()).shapes()
    _check_keys(batch, "the input pipeline's batch")
    out = {}
    for key in BATCH_KEYS:
        value, sharding = batch[key], shardings[key]
        if isinstance(value, jax.Array) and value.shape == global_shapes[key]:
            _check_field(key, value, global_shapes[key], "the global batch")
            out[key] = value if value.sharding == sharding else jax.device_put(value, sharding)
        else:
            value = np.asarray(value)
            _check_field(key, value, host_shapes[key], "this process's batch")
            out[key] = jax.make_array_from_process_local_data(sharding, value, global_shapes[key])
    return out
