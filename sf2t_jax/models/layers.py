"""Building blocks shared by the vision tower and the LLM: linear layers with logical axis
names, norms with Hugging Face numerics, and float32-accumulating matmuls (attention is in
`attention.py`).

Every parameter carries `logical_axes` metadata (e.g. `('embed', 'mlp')`); the rules table in
`sf2t_jax/parallel/rules.py` maps those names onto mesh axes (`sf2t_jax.parallel.sharding`), so no
model code mentions a mesh.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from sf2t_jax.models.options import ATTENTION_IMPLEMENTATIONS, DTYPE_NAMES, PRECISION_NAMES, REMAT_POLICY_NAMES

Dtype = Any
Precision = Any
# Names of `models/attention.py`'s implementations and of the remat policies live in
# models/options.py (importable without JAX, for config validation).
# Rematerialisation policies by name: what the backward pass may keep instead of recomputing.
REMAT_POLICIES = {name: None if attr is None else getattr(jax.checkpoint_policies, attr)
                  for name, attr in REMAT_POLICY_NAMES.items()}
# Dtypes and matmul precisions by the names configs use (the one name -> JAX object table; the
# names themselves are models/options.py's, which validation checks configs against).
DTYPES = {name: getattr(jnp, name) for name in DTYPE_NAMES}
PRECISIONS = {name: None if member is None else jax.lax.Precision[member] for name, member in PRECISION_NAMES.items()}


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
    # Attention implementation (`models/attention.py`): auto | xla | splash | cudnn; 'auto' is
    # resolved when the model is traced, for the platform it is traced for.
    attention: str = "auto"

    def __post_init__(self):
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat policy {self.remat!r} is not known; known: {', '.join(REMAT_POLICIES)}")
        if self.attention not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attention implementation {self.attention!r} is not known; known: "
                             f"{', '.join(ATTENTION_IMPLEMENTATIONS)}")


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


def run_layers(layers, forward, x, *args, numerics: Numerics, per_layer: tuple = ()):
    """Applies `forward(layer, x, *args, *layer_args) -> x` through every layer, scanned when
    stacked. `per_layer` holds arrays with a leading layer axis; layer i gets their i-th
    entries as `layer_args` (numpy scalars when unscanned, traced when scanned), e.g.
    Qwen2.5-VL's "this block attends over the whole slice" flags."""
    forward = maybe_remat(forward, numerics)
    if numerics.scan_layers:
        body = nnx.scan(forward, in_axes=(0, nnx.Carry) + (None,) * len(args) + (0,) * len(per_layer),
                        out_axes=nnx.Carry)
        return body(layers, x, *args, *per_layer)
    for i, layer in enumerate(layers):
        x = forward(layer, x, *args, *(p[i] for p in per_layer))
    return x


def maybe_remat(fn, numerics: Numerics):
    """`fn(module, *arrays)` wrapped in `nnx.remat` under the numerics' policy ('none': as is)."""
    if numerics.remat == "none":
        return fn
    return nnx.remat(fn, policy=REMAT_POLICIES[numerics.remat])


# ----------------------------------------------------------------------------------------
# Matmuls: float32 accumulation, low-precision operands in both passes
# ----------------------------------------------------------------------------------------
# With bfloat16 compute, every matmul takes bfloat16 operands and accumulates in float32 (what
# a TPU's MXU does for a bfloat16 dot). Written as `dot(..., preferred_element_type=float32)`
# and a cast, so XLA:CPU runs it as a native bfloat16 kernel too: a bfloat16-output dot is
# upcast there (both operands converted to float32 and multiplied in float32, at half the
# speed, plus the converts: for the tied LM head a float32 copy of the 151,936 x D embedding
# every step). Autodiff of such a dot would give the backward products a float32 cotangent
# and so the same slow path; `einsum`'s custom VJP rounds the cotangent to the compute dtype
# first (as FlashAttention does with dS), so the backward products are bfloat16 dots with
# float32 accumulation as well. A float32 operand (a master weight) is cast to the compute
# dtype inside (no bfloat16 copy of it is kept around); its gradient is the float32 sum rounded
# to the compute dtype, as with autodiff of cast-then-multiply. In float32 this is exactly
# `jnp.einsum`.
LOW_PRECISION = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def einsum(spec: str, a: jax.Array, b: jax.Array, *, precision: Precision = None, out_dtype=None) -> jax.Array:
    """`jnp.einsum(spec, a, b)` accumulated in float32 and cast to `out_dtype` (default: the
    compute dtype). The compute dtype is the low-precision one when an operand is bfloat16 or
    float16 and the other float32 or the same; otherwise this is `jnp.einsum`. Two operands,
    explicit letters, each letter in at least two of the three terms (no operand-only sums),
    as in every matmul of these models."""
    compute = _compute_dtype(a.dtype, b.dtype)
    if compute is None:
        out_dtype = jnp.dtype(out_dtype or jnp.result_type(a, b))
        return jnp.einsum(spec, a, b, precision=precision, preferred_element_type=jnp.float32).astype(out_dtype)
    _check_spec(spec)
    return _low_precision_einsum(spec, precision, compute, jnp.dtype(out_dtype or compute), a, b)


def _compute_dtype(x, y):
    x, y = jnp.dtype(x), jnp.dtype(y)
    if x in LOW_PRECISION and y in (x, jnp.dtype(jnp.float32)):
        return x
    if y in LOW_PRECISION and x == jnp.dtype(jnp.float32):
        return y
    return None


@functools.lru_cache(maxsize=None)
def _check_spec(spec: str) -> None:
    ins, out = spec.split("->")
    sa, sb = ins.split(",")
    terms = (("first operand", sa, sb + out), ("second operand", sb, sa + out), ("output", out, sa + sb))
    for name, term, others in terms:
        if "." in term or len(set(term)) != len(term) or not set(term) <= set(others):
            raise ValueError(f"einsum {spec!r}: every letter of the {name} must appear in another term, once")


def _einsum_f32(spec, x, y, precision, dtype):
    return jnp.einsum(spec, x, y, precision=precision, preferred_element_type=jnp.float32).astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _low_precision_einsum(spec, precision, compute, out_dtype, a, b):
    return _einsum_f32(spec, a.astype(compute), b.astype(compute), precision, out_dtype)


def _low_precision_einsum_fwd(spec, precision, compute, out_dtype, a, b):
    return _low_precision_einsum(spec, precision, compute, out_dtype, a, b), (a, b)


def _low_precision_einsum_bwd(spec, precision, compute, out_dtype, residuals, g):
    a, b = residuals
    ins, out = spec.split("->")
    sa, sb = ins.split(",")
    g, ac, bc = g.astype(compute), a.astype(compute), b.astype(compute)
    # Each gradient is rounded to the compute dtype, as autodiff of the cast-then-multiply does
    # (the float32 sum is formed first, across devices too, so layouts agree to that rounding).
    return (_einsum_f32(f"{out},{sb}->{sa}", g, bc, precision, compute).astype(a.dtype),
            _einsum_f32(f"{sa},{out}->{sb}", ac, g, precision, compute).astype(b.dtype))


_low_precision_einsum.defvjp(_low_precision_einsum_fwd, _low_precision_einsum_bwd)


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, out_sharding=None):
    """`jax.lax.dot_general` for `nnx.Linear` and the LoRA adapters: their (..., in) x (in, out)
    product goes through `einsum` (float32 accumulation, low-precision backward, a float32
    weight cast inside); anything else is `lax.dot_general` on operands of the input's dtype."""
    (lc, rc), (lb, rb) = dimension_numbers
    if (preferred_element_type is not None or out_sharding is not None or lb or rb or rhs.ndim != 2
            or tuple(lc) != (lhs.ndim - 1,) or tuple(rc) != (0,) or lhs.dtype not in LOW_PRECISION
            or _compute_dtype(lhs.dtype, rhs.dtype) is None):
        return jax.lax.dot_general(lhs, rhs.astype(lhs.dtype), dimension_numbers, precision=precision,
                                   preferred_element_type=preferred_element_type, out_sharding=out_sharding)
    lead = "ABCDEFGH"[:lhs.ndim - 1]
    return einsum(f"{lead}i,io->{lead}o", lhs, rhs, precision=precision)


def promote_keep_kernel(args, /, *, dtype=None, inexact=True):
    """`nnx.Linear`'s promote_dtype: inputs and bias to `dtype`, the kernel left as stored (a
    float32 master kernel is cast to `dtype` inside `dot_general`)."""
    inputs, kernel, bias = args
    if dtype is None or jnp.dtype(dtype) not in LOW_PRECISION:
        return nnx.nn.dtypes.promote_dtype(args, dtype=dtype, inexact=inexact)
    inputs, bias = nnx.nn.dtypes.promote_dtype((inputs, bias), dtype=dtype, inexact=inexact)
    return inputs, kernel, bias


def linear(in_features: int, out_features: int, axes: tuple[str, str], *, bias: bool, numerics: Numerics,
           rngs: nnx.Rngs, init_std: float = 0.02) -> nnx.Linear:
    """A dense layer whose kernel (in, out) and bias (out,) carry logical axis names; its
    matmul accumulates in float32 (`dot_general`)."""
    return nnx.Linear(
        in_features, out_features, use_bias=bias, dot_general=dot_general, promote_dtype=promote_keep_kernel,
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
