"""Rematerialisation switches change memory, never values."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from qwen_reference import patches, video_tokens
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.models.layers import Numerics
from sf2t_jax.models.qwen2_vl import Qwen2VL, prepare_hf_inputs

CONFIG = qwen2vl_tiny()


def _loss_and_grads(remat: str):
    model = Qwen2VL(CONFIG, Numerics(precision="highest", remat=remat), rngs=nnx.Rngs(0))
    grid = (2, 4, 4)
    ids = np.array([[3, 4] + video_tokens(CONFIG, grid) + [5, 6, 7]])
    inputs = prepare_hf_inputs(CONFIG, ids, pixel_values_videos=patches(CONFIG, [grid], 0), video_grid_thw=np.array([grid]))
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(params):
        m = nnx.merge(graphdef, params)
        logits, _ = m(inputs["input_ids"], inputs["position_ids"], inputs["attention_mask"], inputs["vision"],
                      inputs["vision_index"])
        return jax.nn.logsumexp(logits, axis=-1).mean()

    jaxpr = str(jax.make_jaxpr(jax.grad(loss))(params))
    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    return value, grads, jaxpr


@pytest.mark.parametrize("policy", ["full", "dots_with_no_batch_dims"])
def test_remat_gives_the_same_loss_and_gradients(policy):
    base_value, base_grads, base_jaxpr = _loss_and_grads("none")
    value, grads, jaxpr = _loss_and_grads(policy)
    assert "remat" in jaxpr and "remat" not in base_jaxpr
    np.testing.assert_allclose(value, base_value, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(base_grads)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_unknown_remat_policy_is_refused():
    with pytest.raises(ValueError, match="remat policy 'some' is not known; known: none, full"):
        Numerics(remat="some")
