"""The analytic FLOP count agrees with XLA's own count of the compiled forward pass."""
import dataclasses

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from sf2t_jax.models.config import TextConfig, VisionConfig, qwen2vl_tiny
from sf2t_jax.models.qwen2_vl import Qwen2VL
from sf2t_jax.models.vision import VisionPatches
from sf2t_jax.plan.flops import Workload, forward_flops, train_step_flops

# Wide enough that matmuls dominate, as in real models (XLA also counts element-wise ops).
CONFIG = dataclasses.replace(
    qwen2vl_tiny(vocab_size=2048),
    vision=VisionConfig(depth=2, embed_dim=256, num_heads=4, mlp_ratio=4, hidden_size=512),
    text=TextConfig(vocab_size=2048, hidden_size=512, intermediate_size=1536, num_hidden_layers=2,
                    num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
                    mrope_section=(8, 12, 12), tie_word_embeddings=False),
)


def test_forward_flops_match_xla_cost_analysis():
    b, l, p, s = 2, 256, 4, 64
    graphdef, state = nnx.split(Qwen2VL(CONFIG, rngs=nnx.Rngs(0)))

    def forward(state, ids, pos, mask, px, idx):
        model = nnx.merge(graphdef, state)
        return model(ids, pos, mask, (VisionPatches(patches=px, grid_hw=(8, 8)),), idx)[0]

    args = (state, jnp.zeros((b, l), jnp.int32), jnp.zeros((3, b, l), jnp.int32), jnp.ones((b, l), jnp.int32),
            jnp.zeros((b * p, s, 1176)), jnp.zeros((b, p * s // 4), jnp.int32))
    cost = jax.jit(forward).lower(*args).compile().cost_analysis()
    xla = (cost[0] if isinstance(cost, list) else cost)["flops"]
    ours = sum(forward_flops(CONFIG, Workload(b, l, p, s)).values())
    assert 0.97 * xla <= ours <= xla, (ours, xla)


def test_train_step_multipliers():
    w = Workload(batch=1, seq_len=128, slices=2, patches_per_slice=64)
    fwd = forward_flops(CONFIG, w)
    full = train_step_flops(CONFIG, w, method="full")
    assert full["total"] == pytest.approx(3 * sum(fwd.values()))
    lora = train_step_flops(CONFIG, w, method="lora", lora_rank=8)
    assert lora["vision"] == fwd["vision"] and lora["llm"] == 2 * fwd["llm"] and lora["merger"] == 2 * fwd["merger"]
    assert 0 < lora["lora"] < 0.1 * lora["llm"]
