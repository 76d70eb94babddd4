"""Fingerprints of arrays: per row of the global batch (inside the jitted step), and per
checkpointed array (train/checkpoint.py verifies what it reads back).

    digests = batch_digest(batch)      # (B,) uint32, row b of every field hashed together
    digests = tree_digests(leaves)     # [() uint32] one per array

It checks what data-parallel training must keep exact whatever the process count or mesh: which
rows make up each global batch, in which order, with which bytes. It runs on the assembled
global arrays (after `make_array_from_process_local_data`), so a process whose share is
missing, duplicated or misplaced changes the digests of exactly the rows concerned.

Every element is turned into its raw bits, mixed with its position and field, and summed in
uint32. Integer addition wraps but is associative, so the sum is the same bit for bit in any
reduction order, on any sharding: unlike a float checksum, it can be compared with `==`.
"""
from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp

_GOLDEN = 0x9E3779B1  # odd multipliers (golden-ratio and murmur3 constants) spread the bits
_MIX = 0x85EBCA6B


def _bits(x: jax.Array) -> jax.Array:
    """The element's bit pattern as uint32 (floats are bitcast, not converted)."""
    if jnp.issubdtype(x.dtype, jnp.floating) or x.dtype.itemsize == 4:
        unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize]
        x = jax.lax.bitcast_convert_type(x, unsigned)
    return x.astype(jnp.uint32)


def _mix(h: jax.Array) -> jax.Array:
    """murmur3's finaliser: every input bit moves about half the output bits."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(_MIX)
    h = h ^ (h >> 13)
    return h


def row_digest(x: jax.Array, batch_dim: int, salt: int) -> jax.Array:
    """(..., B, ...) any dtype -> (B,) uint32: one field's rows, position-dependent."""
    x = jnp.moveaxis(_bits(x), batch_dim, 0)
    flat = x.reshape(x.shape[0], -1)
    position = jnp.arange(flat.shape[1], dtype=jnp.uint32)
    keyed = _mix(flat ^ (position * jnp.uint32(_GOLDEN) + jnp.uint32(salt)))
    return jnp.sum(keyed, axis=1, dtype=jnp.uint32)


def batch_digest(batch: dict[str, jax.Array], batch_dims: dict[str, int]) -> jax.Array:
    """{field: array} -> (B,) uint32 over every field (field names salt their hashes).

    batch_dims: the batch dimension of each field (e.g. 1 for position_ids (3, B, L))."""
    total = None
    for key in sorted(batch):
        digest = row_digest(batch[key], batch_dims[key], salt=zlib.crc32(key.encode()))
        total = digest if total is None else _mix(total * jnp.uint32(31) + digest)
    return total


def array_digest(x: jax.Array) -> jax.Array:
    """Any shape and dtype -> () uint32 over every element's bits and position: what a
    checkpoint's arrays must read back as (a flipped byte that the storage format does not
    detect changes it)."""
    flat = _bits(x).reshape(-1)
    position = jnp.arange(flat.shape[0], dtype=jnp.uint32)
    return jnp.sum(_mix(flat ^ (position * jnp.uint32(_GOLDEN))), dtype=jnp.uint32)


@jax.jit
def tree_digests(leaves: list[jax.Array]) -> list[jax.Array]:
    """Each leaf's `array_digest`, in one program (sharded leaves reduce where they lie)."""
    return [array_digest(x) for x in leaves]
