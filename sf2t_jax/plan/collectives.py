"""Collectives in a compiled program that move whole activations.

    found = activation_collectives(compiled.as_text(), batch=(16, 128), length=(512, 511, 64, 16))
    found = step_activation_collectives(compiled.as_text(), geometry)   # sizes from a BatchGeometry

A sharded train step may all-gather weights (FSDP) and all-reduce gradients and scalars, but an
all-gather or all-reduce whose result carries the *global* batch and a full sequence dimension
means some device holds an activation for every row: the memory per device then stops falling
as devices are added. This reads XLA's HLO text and lists such collectives.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

# "%name = f32[16,511,32000]{2,1,0} all-reduce(...)", tuple results "(f32[..], bf16[..]) all-gather-start(".
_OP = re.compile(r"=\s*(\(.*?\)|\S+)\s+(all-gather|all-reduce|reduce-scatter|all-to-all)(?:-start)?\(")
_SHAPE = re.compile(r"\b(pred|[subf]\d+|bf16|f8\w*)\[([0-9,]*)\]")


@dataclasses.dataclass(frozen=True)
class Collective:
    op: str  # all-gather | all-reduce | reduce-scatter | all-to-all
    shapes: tuple[tuple[int, ...], ...]  # result shapes (several for a combined collective)
    dtypes: tuple[str, ...]  # their element types: f32, bf16, s32, pred, ...
    line: str


def collectives(hlo_text: str) -> list[Collective]:
    """Every all-gather / all-reduce / reduce-scatter / all-to-all (sync or async start) in the HLO."""
    out = []
    for line in hlo_text.splitlines():
        m = _OP.search(line)
        if m:
            found = _SHAPE.findall(m.group(1))
            shapes = tuple(tuple(int(d) for d in dims.split(",") if d) for _, dims in found)
            out.append(Collective(m.group(2), shapes, tuple(t for t, _ in found), line.strip()))
    return out


def activation_collectives(hlo_text: str, batch: Iterable[int], length: Iterable[int],
                           ops: tuple[str, ...] = ("all-gather", "all-reduce")) -> list[Collective]:
    """Collectives among `ops` with an activation-shaped result: at least 3 dimensions, a
    global-batch dimension (a size in `batch`: rows, or vision slices) directly followed by a
    sequence dimension (a size in `length`: tokens, targets, patches per slice, merged tokens),
    as in (B, L, D), (B, L, V) or (3, B, L), and a floating-point type. Weights ((in, out), or
    (layers, in, out) when stacked) do not have that form; integer index arrays (token ids
    gathered for an embedding lookup: 4 bytes a token) are not activations."""
    batch, length = set(batch), set(length)
    return [c for c in collectives(hlo_text) if c.op in ops and any(
        (dtype.startswith(("f", "bf"))) and len(shape) >= 3
        and any(a in batch and b in length for a, b in zip(shape, shape[1:]))
        for shape, dtype in zip(c.shapes, c.dtypes))]


def step_activation_collectives(hlo_text: str, geometry) -> list[Collective]:
    """`activation_collectives` of a train step over batches of `geometry` (train/data.py
    BatchGeometry): rows or vision slices, by tokens, targets, patches or merged tokens."""
    g = geometry
    batch = (g.batch_size, g.batch_size * g.slices)
    length = (g.length, g.length - 1, g.patches, g.patches // 4, g.slices * g.patches // 4)
    return activation_collectives(hlo_text, batch, length)
