"""Activation sharding constraints by logical axis name (DESIGN.md decision 3).

Model code marks activations at every layer boundary, norm, projection and the logits:

    x = constrain(x, BATCH_LENGTH_EMBED)          # ('activation_batch', 'activation_length', ...)

and whoever traces a sharded step enters the context once:

    with activation_sharding(mesh, rules):        # sf2t_jax/parallel/rules.py maps the names
        loss = loss_fn(params, batch)

Without the constraints GSPMD copies weight shardings onto activations: an embedding table
sharded on its width over 'fsdp' makes the embedding output width-sharded, a scan carry keeps
that layout, and every layer all-gathers the residual stream over the whole batch, so memory
per device stops falling as devices are added. Outside any context `constrain` returns its
input unchanged, so single-device code (parity tests, `hf_logits`, generation) is untouched.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

import jax
from jax.sharding import Mesh, NamedSharding

from sf2t_jax.parallel.sharding import Rules, fit_to_shape, logical_to_spec

BATCH_LENGTH_EMBED = ("activation_batch", "activation_length", "activation_embed")
BATCH_LENGTH_MLP = ("activation_batch", "activation_length", "activation_mlp")
BATCH_LENGTH_HEADS = ("activation_batch", "activation_length", "activation_heads", None)
BATCH_LENGTH_KV_HEADS = ("activation_batch", "activation_length", "activation_kv_heads", None)
BATCH_LENGTH_VOCAB = ("activation_batch", "activation_length", "activation_vocab")

_context = threading.local()


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, rules: Rules):
    """Within this block (while a function is traced), `constrain` applies `rules` on `mesh`."""
    previous = getattr(_context, "value", None)
    _context.value = (mesh, tuple(rules))
    try:
        yield
    finally:
        _context.value = previous


def layout_context(layout: tuple[Mesh, Rules] | None):
    """`activation_sharding(*layout)`, or a no-op context for None: for jitted functions that
    take the (mesh, rules) pair as a static argument (so the jit cache keys on it)."""
    return activation_sharding(*layout) if layout is not None else contextlib.nullcontext()


def current() -> tuple[Mesh, Rules] | None:
    """The (mesh, rules) of the enclosing `activation_sharding` block, or None."""
    return getattr(_context, "value", None)


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
    """`x` constrained to the sharding its logical `axes` map to; the identity outside a context.

    A dimension the mesh axes do not divide (e.g. 2 KV heads over 4 'tensor' devices) stays
    replicated on those axes, as parameters do."""
    context = current()
    if context is None:
        return x
    mesh, rules = context
    if len(axes) != x.ndim:
        raise ValueError(f"constrain: logical axes {tuple(axes)} for an array of shape {x.shape}")
    spec = fit_to_shape(logical_to_spec(axes, rules), x.shape, mesh)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
