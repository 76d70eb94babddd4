"""Matmuls under bfloat16 compute (`models/layers.einsum`): float32 accumulation in the forward
and the backward pass, bfloat16 operands in both (what keeps XLA:CPU on its native bfloat16
kernels), and exactly `jnp.einsum` in float32."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sf2t_jax.models.attention import xla_attention as attention
from sf2t_jax.models.layers import Numerics, einsum, linear

BF16 = Numerics(dtype=jnp.bfloat16)


def _dots(fn, *args):
    """(operand dtypes, preferred dtype) of every dot_general in the jaxpr of `fn`, nested included."""
    out = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                out.append((tuple(v.aval.dtype.name for v in eqn.invars), eqn.params["preferred_element_type"]))
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                    if hasattr(sub, "eqns"):
                        walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return out


def test_float32_is_exactly_jnp_einsum():
    a = jax.random.normal(jax.random.key(0), (3, 5, 7))
    b = jax.random.normal(jax.random.key(1), (7, 4))
    np.testing.assert_array_equal(einsum("xyi,io->xyo", a, b), jnp.einsum("xyi,io->xyo", a, b))
    g = jax.grad(lambda a, b: jnp.sum(jnp.sin(einsum("xyi,io->xyo", a, b))), argnums=(0, 1))(a, b)
    g_ref = jax.grad(lambda a, b: jnp.sum(jnp.sin(jnp.einsum("xyi,io->xyo", a, b))), argnums=(0, 1))(a, b)
    for x, y in zip(g, g_ref):
        np.testing.assert_array_equal(x, y)


def test_bfloat16_accumulates_in_float32_forward_and_backward():
    a = jax.random.normal(jax.random.key(0), (64, 256), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (256, 32), jnp.bfloat16)
    c = jax.random.normal(jax.random.key(2), (64, 32), jnp.float32)
    y = einsum("ni,io->no", a, b)
    assert y.dtype == jnp.bfloat16
    ulp = 2.0**-8  # bfloat16: one rounding of the float32 sum, at the end
    exact = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    np.testing.assert_allclose(np.asarray(y, np.float64), exact, rtol=ulp, atol=1e-6)

    def loss(a, b):
        return jnp.sum(einsum("ni,io->no", a, b).astype(jnp.float32) * c)

    ga, gb = jax.grad(loss, argnums=(0, 1))(a, b)
    assert ga.dtype == gb.dtype == jnp.bfloat16
    g = np.asarray(c.astype(jnp.bfloat16), np.float64)  # the cotangent, rounded to the operands' dtype
    np.testing.assert_allclose(np.asarray(ga, np.float64), g @ np.asarray(b, np.float64).T, rtol=ulp, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gb, np.float64), np.asarray(a, np.float64).T @ g, rtol=ulp, atol=1e-6)
    # Every product, forward and backward: bfloat16 operands, float32 accumulation.
    dots = _dots(jax.grad(loss, argnums=(0, 1)), a, b)
    assert len(dots) == 3 and set(dots) == {(("bfloat16", "bfloat16"), jnp.dtype(jnp.float32))}


def test_a_float32_master_weight_is_cast_inside_and_gets_a_float32_gradient():
    x = jax.random.normal(jax.random.key(0), (64, 256), jnp.bfloat16)
    w = jax.random.normal(jax.random.key(1), (256, 32), jnp.float32)
    c = jax.random.normal(jax.random.key(2), (64, 32), jnp.bfloat16)
    y = einsum("ni,io->no", x, w)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_array_equal(y, einsum("ni,io->no", x, w.astype(jnp.bfloat16)))
    gw = jax.grad(lambda w: jnp.sum(einsum("ni,io->no", x, w).astype(jnp.float32) * c.astype(jnp.float32)))(w)
    assert gw.dtype == jnp.float32
    exact = np.asarray(x, np.float64).T @ np.asarray(c, np.float64)
    # The float32 sum rounded to bfloat16 (as autodiff of cast-then-multiply), returned as float32.
    np.testing.assert_allclose(gw, exact, rtol=2.0**-8, atol=1e-5)
    np.testing.assert_array_equal(gw, gw.astype(jnp.bfloat16).astype(jnp.float32))
    layer = linear(256, 32, ("embed", "mlp"), bias=False, numerics=Numerics(dtype=jnp.bfloat16), rngs=nnx.Rngs(0))
    assert layer.kernel[...].dtype == jnp.float32 and layer(x).dtype == jnp.bfloat16
    assert set(_dots(lambda x: layer(x), x)) == {(("bfloat16", "bfloat16"), jnp.dtype(jnp.float32))}


def test_a_bfloat16_layer_and_attention_stay_on_bfloat16_operands():
    layer = linear(32, 48, ("embed", "mlp"), bias=True, numerics=BF16, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 32), jnp.bfloat16)
    mask = jnp.tril(jnp.ones((5, 5), bool))[None].repeat(2, 0)

    def loss(x):
        h = layer(x)  # (2, 5, 48): 4 heads of 12 (2 kv heads)
        q = h.reshape(2, 5, 4, 12)
        k, v = q[:, :, :2], q[:, :, 2:]
        return jnp.sum(attention(q, k, v, mask).astype(jnp.float32) ** 2)

    dots = _dots(jax.grad(loss), x)
    # The layer: forward, dx and dW (unused here, so XLA drops it); attention: 2 forward, 4 backward.
    assert len(dots) == 3 + 2 + 4
    assert all(types == ("bfloat16", "bfloat16") and pref == jnp.float32 for types, pref in dots), dots
    # ... and agree with float32 within bfloat16 rounding.
    g = jax.grad(loss)(x).astype(jnp.float32)
    f32 = nnx.clone(layer)
    f32.dtype = jnp.float32
    g32 = jax.grad(lambda x: jnp.sum(attention(*(lambda h: (h, h[:, :, :2], h[:, :, 2:]))(
        f32(x).reshape(2, 5, 4, 12)), mask) ** 2))(x.astype(jnp.float32))
    np.testing.assert_allclose(g, g32, rtol=0.05, atol=0.05 * float(jnp.max(jnp.abs(g32))))


def test_specs_with_an_operand_only_sum_are_refused():
    a = jnp.ones((3, 4), jnp.bfloat16)
    with pytest.raises(ValueError, match="first operand"):
        einsum("ij,jk->k", a, jnp.ones((4, 5), jnp.bfloat16))
