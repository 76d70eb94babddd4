"""Building blocks shared by the vision tower and the LLM: linear layers with logical axis
names, norms with Hugging Face numerics, and grouped-query attention.

Every parameter carries `logical_axes` metadata (e.g. `('embed', 'mlp')`); the rules table in
`configs/sharding.py` maps those names onto mesh axes (`sf2t_jax.parallel.sharding`), so no
model code mentions a mesh.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Dtype = Any
Precision = Any


# Rematerialisation policies by name: what the backward pass may keep instead of recomputing.
REMAT_POLICIES = {
    "none": None,  # no remat: keep every activation (fastest, most memory)
    "full": jax.checkpoint_policies.nothing_saveable,  # recompute each layer entirely
    "dots": jax.checkpoint_policies.dots_saveable,  # keep matmul outputs
    "dots_with_no_batch_dims": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # keep weight matmuls
}


@dataclasses.dataclass(frozen=True)
class Numerics:
    """How a model computes: activation dtype, parameter dtype, matmul precision, and the
    rematerialisation policy of its transformer layers (a name in `REMAT_POLICIES`).

    Parity tests use float32 with precision='highest'; training uses bfloat16 compute over
    float32 master weights.
    """

    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Precision = None
    remat: str = "none"
    # Stack the layers' parameters on a leading 'layers' axis and run them with `nnx.scan`:
    # one layer is compiled instead of all of them (compile time flat in depth).
    scan_layers: bool = False

    def __post_init__(self):
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat policy {self.remat!r} is not known; known: {', '.join(REMAT_POLICIES)}")


def stacked_layers(make, count: int, rngs: nnx.Rngs) -> nnx.Module:
    """`count` layers built by `make(rngs)`, parameters stacked on a leading axis named 'layers'."""

    @nnx.split_rngs(splits=count)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def create(rngs):
        return make(rngs)

    module = create(rngs)
    for _, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Variable) and "logical_axes" in node.get_metadata():
            node.set_metadata(logical_axes=("layers",) + tuple(node.get_metadata()["logical_axes"]))
    return module


def layer_at(stacked: nnx.Module, index: int) -> nnx.Module:
    """Layer `index` of a stacked module (a view for per-layer work such as KV-cache decoding)."""
    graphdef, state = nnx.split(stacked)
    return nnx.merge(graphdef, jax.tree.map(lambda a: a[index], state))


def run_layers(layers, forward, x, *args, numerics: Numerics):
    """Applies `forward(layer, x, *args) -> x` through every layer, scanned when stacked."""
    forward = maybe_remat(forward, numerics)
    if numerics.scan_layers:
        body = nnx.scan(forward, in_axes=(0, nnx.Carry) + (None,) * len(args), out_axes=nnx.Carry)
        return body(layers, x, *args)
    for layer in layers:
        x = forward(layer, x, *args)
    return x


def maybe_remat(fn, numerics: Numerics):
    """`fn(module, *arrays)` wrapped in `nnx.remat` under the numerics' policy ('none': as is)."""
    if numerics.remat == "none":
        return fn
    return nnx.remat(fn, policy=REMAT_POLICIES[numerics.remat])


def linear(in_features: int, out_features: int, axes: tuple[str, str], *, bias: bool, numerics: Numerics,
           rngs: nnx.Rngs, init_std: float = 0.02) -> nnx.Linear:
    """A dense layer whose kernel (in, out) and bias (out,) carry logical axis names."""
    return nnx.Linear(
        in_features, out_features, use_bias=bias,
        dtype=numerics.dtype, param_dtype=numerics.param_dtype, precision=numerics.precision,
        kernel_init=nnx.with_metadata(nnx.initializers.normal(init_std), logical_axes=axes),
        bias_init=nnx.with_metadata(nnx.initializers.zeros_init(), logical_axes=axes[1:]),
        rngs=rngs,
    )


def layer_norm(features: int, axis_name: str, *, eps: float, numerics: Numerics, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """torch.nn.LayerNorm equivalent (biased variance, affine) with logical axis names."""
    return nnx.LayerNorm(
        features, epsilon=eps, dtype=numerics.dtype, param_dtype=numerics.param_dtype,
        scale_init=nnx.with_metadata(nnx.initializers.ones_init(), logical_axes=(axis_name,)),
        bias_init=nnx.with_metadata(nnx.initializers.zeros_init(), logical_axes=(axis_name,)),
        rngs=rngs,
    )


class RMSNorm(nnx.Module):
    """Qwen2RMSNorm: normalise in float32, cast back to the input dtype, then scale.

    Written out (instead of `nnx.RMSNorm`) because the cast-before-scale order is what
    transformers does, and bfloat16 results depend on it.
    """

    def __init__(self, features: int, *, eps: float, numerics: Numerics, axis_name: str = "norm"):
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((features,), numerics.param_dtype), logical_axes=(axis_name,))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        return normed.astype(x.dtype) * self.scale[...].astype(x.dtype)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None, *,
              precision: Precision = None) -> jax.Array:
    """Softmax attention with grouped-query heads; logits and softmax in float32.

    Args:
      q: (B, Lq, H, D) queries.
      k, v: (B, Lk, Hkv, D) keys and values; H must be a multiple of Hkv.
      mask: (B, Lq, Lk) bool, True where a query may attend to a key; None attends to all.
        A query row with no allowed key gets uniform weights (transformers' min-value fill),
        never NaN; such rows are padding and their outputs are ignored.
    Returns:
      (B, Lq, H, D) in q's dtype.
    """
    b, lq, h, d = q.shape
    hkv = k.shape[2]
    q = q.reshape(b, lq, hkv, h // hkv, d)
    logits = jnp.einsum("bqkgd,bskd->bkgqs", q, k, precision=precision,
                        preferred_element_type=jnp.float32) * (d ** -0.5)
    if mask is not None:
        logits = jnp.where(mask[:, None, None, :, :], logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgqs,bskd->bqkgd", weights, v, precision=precision)
    return out.reshape(b, lq, h, d)
