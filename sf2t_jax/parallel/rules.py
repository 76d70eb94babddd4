"""Logical axis name -> mesh axis rules (MaxText-style `logical_axis_rules`), by name.

Parameters and activations carry logical names (see `sf2t_jax/models/layers.py` and
`sf2t_jax/parallel/activations.py`); this table is the only place that decides how they map
onto the mesh axes ('data', 'fsdp', 'tensor'), so changing a sharding strategy never touches
model code. A name mapped to None is replicated; a tuple shards one array dimension over
several mesh axes. An experiment picks a table by name (`mesh.rules`, a key of RULES).

Default: FSDP shards the model dimension of every weight within a slice; 'tensor' shards the
head / MLP / vocab dimension (Megatron-style) when the mesh gives it devices; 'data' replicates
weights across slices (data parallel).

This module imports no JAX: `sf2t_jax.validation` checks `mesh.rules` against RULES at start-up.
"""
from __future__ import annotations

from collections.abc import Sequence

from sf2t_jax.errors import InputError

Rules = Sequence[tuple[str, str | tuple[str, ...] | None]]

DEFAULT_RULES = (
    # ---- input batches (the logical axes of sf2t_jax/batch.py FIELDS) ------------------------
    ("batch", ("data", "fsdp")),
    ("length", None),
    # ---- activations (sf2t_jax/parallel/activations.py): rows stay on the devices that hold
    # them through every layer; heads, MLP and vocabulary split over 'tensor' (Megatron), the
    # residual stream is whole on each device of a 'tensor' group.
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv_heads", "tensor"),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
    # ---- LLM weights --------------------------------------------------------------------
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("norm", None),
    ("layers", None),  # the stacked axis of scanned layers: every device holds every layer's shard
    # ---- vision tower weights -----------------------------------------------------------
    ("vision_patch", None),
    ("vision_embed", "fsdp"),
    ("vision_qkv", "tensor"),
    ("vision_heads", "tensor"),
    ("vision_mlp", "tensor"),
    ("vision_merged", "fsdp"),
    ("vision_merged_mlp", "tensor"),
    ("vision_positions", None),  # CLIP's learned position embeddings: one row per patch
)

# Everything replicated: single-device runs and parity checks.
REPLICATED_RULES = tuple((name, None) for name, _ in DEFAULT_RULES)

# The tables an experiment's `mesh.rules` can name.
RULES = {"default": DEFAULT_RULES, "replicated": REPLICATED_RULES}


def named_rules(name: str) -> Rules:
    """The rules table `name` (a key of RULES), e.g. 'default'."""
    if name not in RULES:
        raise InputError(f"mesh.rules={name!r}: expected one of {sorted(RULES)} (sf2t_jax.parallel.rules)")
    return RULES[name]
