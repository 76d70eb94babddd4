"""Golden shardings of the tiny model under the default rules on a 2x4 (fsdp x tensor) mesh:
every parameter, the LoRA adapters, Adam's moments, and the batch."""
import dataclasses

import jax
import numpy as np
import pytest
from flax import traverse_util
from jax.sharding import PartitionSpec as P

from sf2t_jax.configuration import load_config
from sf2t_jax.experiment import from_config
from sf2t_jax.parallel.mesh import make_mesh
from sf2t_jax.parallel.sharding import named_rules
from sf2t_jax.train import data as data_lib
from sf2t_jax.train import model as model_lib
from sf2t_jax.train import optimizer as optimizer_lib
from sf2t_jax.train import state as state_lib

# configs/sf2t.py defaults (method=lora): adapters on the LLM projections + the merger train;
# the ViT and every base LLM weight are frozen. Trained parameters are fully sharded: each
# adapter's rank dimension takes the mesh axis its other dimension leaves free.
GOLDEN = {
    "model.layers.0.mlp.down_proj.lora_a": ('tensor', 'fsdp'),
    "model.layers.0.mlp.down_proj.lora_b": ('tensor', 'fsdp'),
    "model.layers.0.mlp.gate_proj.lora_a": ('fsdp', 'tensor'),
    "model.layers.0.mlp.gate_proj.lora_b": ('fsdp', 'tensor'),
    "model.layers.0.mlp.up_proj.lora_a": ('fsdp', 'tensor'),
    "model.layers.0.mlp.up_proj.lora_b": ('fsdp', 'tensor'),
    "model.layers.0.self_attn.k_proj.lora_a": ('fsdp', 'tensor'),
    "model.layers.0.self_attn.k_proj.lora_b": ('fsdp', 'tensor'),
    "model.layers.0.self_attn.o_proj.lora_a": ('tensor', 'fsdp'),
    "model.layers.0.self_attn.o_proj.lora_b": ('tensor', 'fsdp'),
    "model.layers.0.self_attn.q_proj.lora_a": ('fsdp', 'tensor'),
    "model.layers.0.self_attn.q_proj.lora_b": ('fsdp', 'tensor'),
    "model.layers.0.self_attn.v_proj.lora_a": ('fsdp', 'tensor'),
    "model.layers.0.self_attn.v_proj.lora_b": ('fsdp', 'tensor'),
    "model.layers.1.mlp.down_proj.lora_a": ('tensor', 'fsdp'),
    "model.layers.1.mlp.down_proj.lora_b": ('tensor', 'fsdp'),
    "model.layers.1.mlp.gate_proj.lora_a": ('fsdp', 'tensor'),
    "model.layers.1.mlp.gate_proj.lora_b": ('fsdp', 'tensor'),
    "model.layers.1.mlp.up_proj.lora_a": ('fsdp', 'tensor'),
    "model.layers.1.mlp.up_proj.lora_b": ('fsdp', 'tensor'),
    "model.layers.1.self_attn.k_proj.lora_a": ('fsdp', 'tensor'),
    "model.layers.1.self_attn.k_proj.lora_b": ('fsdp', 'tensor'),
    "model.layers.1.self_attn.o_proj.lora_a": ('tensor', 'fsdp'),
    "model.layers.1.self_attn.o_proj.lora_b": ('tensor', 'fsdp'),
    "model.layers.1.self_attn.q_proj.lora_a": ('fsdp', 'tensor'),
    "model.layers.1.self_attn.q_proj.lora_b": ('fsdp', 'tensor'),
    "model.layers.1.self_attn.v_proj.lora_a": ('fsdp', 'tensor'),
    "model.layers.1.self_attn.v_proj.lora_b": ('fsdp', 'tensor'),
    "visual.merger.fc1.bias": ('tensor',),
    "visual.merger.fc1.kernel": ('fsdp', 'tensor'),
    "visual.merger.fc2.bias": ('fsdp',),
    "visual.merger.fc2.kernel": ('tensor', 'fsdp'),
    "visual.merger.ln_q.bias": ('fsdp',),
    "visual.merger.ln_q.scale": ('fsdp',),
}
GOLDEN_FROZEN = {
    "model.embed_tokens.embedding": ('tensor', 'fsdp'),
    "model.layers.0.input_layernorm.scale": (None,),
    "model.layers.0.mlp.down_proj.kernel": ('tensor', 'fsdp'),
    "model.layers.0.mlp.gate_proj.kernel": ('fsdp', 'tensor'),
    "model.layers.0.mlp.up_proj.kernel": ('fsdp', 'tensor'),
    "model.layers.0.post_attention_layernorm.scale": (None,),
    "model.layers.0.self_attn.k_proj.bias": ('tensor',),
    "model.layers.0.self_attn.k_proj.kernel": ('fsdp', 'tensor'),
    "model.layers.0.self_attn.o_proj.kernel": ('tensor', 'fsdp'),
    "model.layers.0.self_attn.q_proj.bias": ('tensor',),
    "model.layers.0.self_attn.q_proj.kernel": ('fsdp', 'tensor'),
    "model.layers.0.self_attn.v_proj.bias": ('tensor',),
    "model.layers.0.self_attn.v_proj.kernel": ('fsdp', 'tensor'),
    "model.layers.1.input_layernorm.scale": (None,),
    "model.layers.1.mlp.down_proj.kernel": ('tensor', 'fsdp'),
    "model.layers.1.mlp.gate_proj.kernel": ('fsdp', 'tensor'),
    "model.layers.1.mlp.up_proj.kernel": ('fsdp', 'tensor'),
    "model.layers.1.post_attention_layernorm.scale": (None,),
    "model.layers.1.self_attn.k_proj.bias": ('tensor',),
    "model.layers.1.self_attn.k_proj.kernel": ('fsdp', 'tensor'),
    "model.layers.1.self_attn.o_proj.kernel": ('tensor', 'fsdp'),
    "model.layers.1.self_attn.q_proj.bias": ('tensor',),
    "model.layers.1.self_attn.q_proj.kernel": ('fsdp', 'tensor'),
    "model.layers.1.self_attn.v_proj.bias": ('tensor',),
    "model.layers.1.self_attn.v_proj.kernel": ('fsdp', 'tensor'),
    "model.norm.scale": (None,),
    "visual.blocks.0.attn.proj.bias": ('fsdp',),
    "visual.blocks.0.attn.proj.kernel": ('tensor', 'fsdp'),
    "visual.blocks.0.attn.qkv.bias": ('tensor',),
    "visual.blocks.0.attn.qkv.kernel": ('fsdp', 'tensor'),
    "visual.blocks.0.mlp.fc1.bias": ('tensor',),
    "visual.blocks.0.mlp.fc1.kernel": ('fsdp', 'tensor'),
    "visual.blocks.0.mlp.fc2.bias": ('fsdp',),
    "visual.blocks.0.mlp.fc2.kernel": ('tensor', 'fsdp'),
    "visual.blocks.0.norm1.bias": ('fsdp',),
    "visual.blocks.0.norm1.scale": ('fsdp',),
    "visual.blocks.0.norm2.bias": ('fsdp',),
    "visual.blocks.0.norm2.scale": ('fsdp',),
    "visual.blocks.1.attn.proj.bias": ('fsdp',),
    "visual.blocks.1.attn.proj.kernel": ('tensor', 'fsdp'),
    "visual.blocks.1.attn.qkv.bias": ('tensor',),
    "visual.blocks.1.attn.qkv.kernel": ('fsdp', 'tensor'),
    "visual.blocks.1.mlp.fc1.bias": ('tensor',),
    "visual.blocks.1.mlp.fc1.kernel": ('fsdp', 'tensor'),
    "visual.blocks.1.mlp.fc2.bias": ('fsdp',),
    "visual.blocks.1.mlp.fc2.kernel": ('tensor', 'fsdp'),
    "visual.blocks.1.norm1.bias": ('fsdp',),
    "visual.blocks.1.norm1.scale": ('fsdp',),
    "visual.blocks.1.norm2.bias": ('fsdp',),
    "visual.blocks.1.norm2.scale": ('fsdp',),
    "visual.patch_embed.kernel": (None, 'fsdp'),
}


@pytest.fixture(scope="module")
def setup():
    config = from_config(load_config("configs/sf2t.py"))
    mesh = make_mesh(fsdp=2, tensor=4)
    rules = named_rules("default")
    parts = model_lib.split_model(config, model_lib.model_config(config), mesh, rules)
    return config, mesh, rules, parts


def _specs(tree):
    return {".".join(map(str, k)): tuple(s.spec) for k, s in traverse_util.flatten_dict(tree).items()}


def test_every_parameter_has_its_golden_sharding(setup):
    _, mesh, _, parts = setup
    assert _specs(parts.shardings["trainable"]) == GOLDEN
    assert _specs(parts.shardings["frozen"]) == GOLDEN_FROZEN
    assert all(s.mesh == mesh for s in jax.tree.leaves(parts.shardings["frozen"]))


def test_adam_moments_follow_their_parameters_and_frozen_ones_have_none(setup):
    config, mesh, _, parts = setup
    tx, _ = optimizer_lib.make_optimizer(dataclasses.replace(config.train, steps=10))
    shardings = state_lib.train_state_shardings(parts, tx, mesh)
    abstract = state_lib.abstract_state(parts, tx)
    params = traverse_util.flatten_dict(parts.shardings["trainable"])
    moments = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(shardings.opt_state)[0]:
        names = [getattr(k, "name", getattr(k, "key", None)) for k in path]
        if "mu" in names or "nu" in names:
            key = tuple(n for n in names[names.index("mu" if "mu" in names else "nu") + 1:])
            assert leaf.spec == params[key].spec, key
            moments += 1
        else:
            assert leaf.spec == P(), names  # counts: replicated
    assert moments == 2 * len(params)
    # Optimizer state is sized by the trainable parameters only.
    opt_numel = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.opt_state))
    n_train = model_lib.count(parts.abstract["trainable"])
    assert 2 * n_train <= opt_numel <= 2 * n_train + 8
    assert model_lib.count(parts.abstract["frozen"]) > 3 * n_train


def test_batch_is_sharded_over_data_and_fsdp_and_must_divide(setup):
    _, mesh, rules, _ = setup
    geometry = data_lib.BatchGeometry(batch_size=8, length=16, slices=2, grid_hw=(4, 4), steps_per_epoch=1,
                                      num_tasks=6, task_names=())
    shardings = data_lib.batch_shardings(geometry, mesh, rules)
    assert shardings["input_ids"].spec == P(("data", "fsdp"), None)
    assert shardings["position_ids"].spec == P(None, ("data", "fsdp"), None)
    assert shardings["vision_patches"].spec == P(("data", "fsdp"), None, None, None)
    odd = data_lib.BatchGeometry(batch_size=3, length=16, slices=2, grid_hw=(4, 4), steps_per_epoch=1, num_tasks=6,
                                 task_names=())
    with pytest.raises(ValueError, match=r"input.batch_size=3 does not divide"):
        data_lib.batch_shardings(odd, mesh, rules)


def test_trained_state_is_split_over_every_state_axis_of_an_fsdp_mesh():
    """On an FSDP-only mesh the 'tensor' rules replicate nothing trained: every trained
    parameter with a dimension that 8 divides is split 8 ways (and its Adam moments with it)."""
    config = from_config(load_config("configs/sf2t.py"))
    mesh = make_mesh(fsdp=8)
    parts = model_lib.split_model(config, model_lib.model_config(config), mesh, named_rules("default"))
    shapes = traverse_util.flatten_dict(parts.abstract["trainable"])
    for key, sharding in traverse_util.flatten_dict(parts.shardings["trainable"]).items():
        if any(d % 8 == 0 for d in shapes[key].shape):
            assert "fsdp" in jax.tree.leaves(tuple(sharding.spec)), (key, sharding.spec)
