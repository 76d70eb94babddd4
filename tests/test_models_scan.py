"""Scanned layers (stacked parameters) compute exactly what unscanned layers do, and convert
to and from Hugging Face checkpoints the same way."""
import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

from configs.sharding import DEFAULT_RULES
from qwen_reference import hf_model, patches, video_tokens
from sf2t_jax.convert import from_hf, to_hf
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.models.generate import greedy_generate
from sf2t_jax.models.layers import Numerics
from sf2t_jax.models.qwen2_vl import prepare_hf_inputs
from sf2t_jax.parallel.mesh import make_mesh

CONFIG = qwen2vl_tiny(tie_word_embeddings=False)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf")
    hf_model(CONFIG, seed=8).save_pretrained(path)
    return path


def _inputs():
    grid = (2, 4, 4)
    ids = np.array([[3, 4] + video_tokens(CONFIG, grid) + [5, 6, 7]])
    return dict(input_ids=ids, pixel_values_videos=patches(CONFIG, [grid], 0), video_grid_thw=np.array([grid]))


def test_scanned_model_equals_unscanned(hf_dir):
    plain = from_hf(hf_dir, numerics=Numerics(precision="highest"))
    scanned = from_hf(hf_dir, numerics=Numerics(precision="highest", scan_layers=True, remat="full"))
    assert scanned.model.layers.mlp.up_proj.kernel.shape == (2, 64, 128)
    np.testing.assert_allclose(scanned.hf_logits(**_inputs()), plain.hf_logits(**_inputs()), atol=1e-5)
    inputs = prepare_hf_inputs(CONFIG, **_inputs())
    kwargs = dict(max_new_tokens=5, eos_token_ids=[CONFIG.eos_token_id], pad_token_id=0)
    np.testing.assert_array_equal(greedy_generate(scanned, inputs, **kwargs), greedy_generate(plain, inputs, **kwargs))


def test_scanned_model_exports_the_same_checkpoint(hf_dir, tmp_path):
    scanned = from_hf(hf_dir, numerics=Numerics(scan_layers=True))
    to_hf(scanned, tmp_path / "out")
    original, exported = load_file(hf_dir / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert original.keys() == exported.keys()
    for key in original:
        np.testing.assert_array_equal(exported[key], original[key], err_msg=key)


def test_scanned_parameters_shard_with_a_replicated_layer_axis(hf_dir):
    scanned = from_hf(hf_dir, numerics=Numerics(scan_layers=True), mesh=make_mesh(fsdp=2, tensor=4), rules=DEFAULT_RULES)
    kernel = scanned.model.layers.self_attn.q_proj.kernel[...]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    assert kernel.addressable_shards[0].data.shape == (2, 32, 16)
