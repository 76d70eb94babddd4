"""Hugging Face conversion: round trip, strictness, configs, sharded loading, parameter counts."""
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file
from transformers import Qwen2VLForConditionalGeneration

from configs.sharding import DEFAULT_RULES
from qwen_reference import hf_logits, hf_model, patches, video_tokens
from sf2t_jax.convert import abstract_model, from_hf, to_hf
from sf2t_jax.convert.safetensors_io import CheckpointError
from sf2t_jax.models.config import ConfigError, Qwen2VLConfig, qwen2vl_2b, qwen2vl_7b, qwen2vl_72b, qwen2vl_tiny
from sf2t_jax.models.layers import Numerics
from sf2t_jax.parallel.mesh import make_mesh
from tolerances import assert_reordered_close

CONFIG = qwen2vl_tiny(tie_word_embeddings=False)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf")
    hf_model(CONFIG, seed=3).save_pretrained(path)
    return path


def _video_inputs(config, batch=1):
    grid = (2, 4, 4)
    ids = np.array([[5, 6] + video_tokens(config, grid) + [7, 8]] * batch)
    return dict(input_ids=ids, pixel_values_videos=patches(config, [grid] * batch, 0),
                video_grid_thw=np.array([grid] * batch))


def _hub_keys(path):
    keys = set()
    for name in os.listdir(path):
        if name.endswith(".safetensors"):
            keys |= set(load_file(os.path.join(path, name)))
    return keys


@pytest.mark.parametrize("max_shard_bytes", [None, 200_000])
def test_round_trip_through_transformers(hf_dir, tmp_path, max_shard_bytes):
    model = from_hf(hf_dir, numerics=Numerics(precision="highest"))
    out = tmp_path / "out"
    kwargs = {} if max_shard_bytes is None else {"max_shard_bytes": max_shard_bytes}
    written = to_hf(model, out, **kwargs)
    if max_shard_bytes is not None:
        assert "model.safetensors.index.json" in written and len(written) > 3
    assert _hub_keys(out) == _hub_keys(hf_dir)
    reloaded = Qwen2VLForConditionalGeneration.from_pretrained(out, attn_implementation="eager").eval()
    original = Qwen2VLForConditionalGeneration.from_pretrained(hf_dir, attn_implementation="eager").eval()
    inputs = _video_inputs(CONFIG)
    np.testing.assert_allclose(hf_logits(reloaded, **inputs), hf_logits(original, **inputs), atol=1e-5)


def test_to_hf_refuses_to_overwrite_and_leaves_nothing_half_written(hf_dir, tmp_path):
    model = from_hf(hf_dir)
    out = tmp_path / "out"
    to_hf(model, out)
    with pytest.raises(FileExistsError, match="not empty"):
        to_hf(model, out)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_nested_5x_config_layout_reads_the_same(hf_dir):
    flat = json.loads((hf_dir / "config.json").read_text())
    text_keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "rms_norm_eps", "max_position_embeddings", "hidden_act"]
    nested = {k: v for k, v in flat.items() if k not in text_keys + ["rope_scaling", "rope_theta"]}
    nested["text_config"] = {k: flat[k] for k in text_keys}
    nested["text_config"]["rope_parameters"] = {"rope_type": "default", "rope_theta": flat["rope_theta"],
                                                "mrope_section": flat["rope_scaling"]["mrope_section"]}
    assert Qwen2VLConfig.from_hf_dict(nested) == Qwen2VLConfig.from_hf_dict(flat) == CONFIG


def test_rope_scaling_default_type_reads_the_same():
    d = CONFIG.to_hf_dict()
    d["rope_scaling"] = {"type": "default", "rope_type": "default", "mrope_section": [2, 3, 3]}
    assert Qwen2VLConfig.from_hf_dict(d) == CONFIG


# ---- bad input ------------------------------------------------------------------------
def _copy(src, dst):
    dst.mkdir()
    for name in os.listdir(src):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_missing_config_json(hf_dir, tmp_path):
    d = _copy(hf_dir, tmp_path / "c")
    os.remove(d / "config.json")
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_hf(d)


def test_unsupported_model_type_lists_supported(hf_dir, tmp_path):
    d = _copy(hf_dir, tmp_path / "c")
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "llava"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"'llava' is not supported; supported: qwen2_vl"):
        from_hf(d)


def test_missing_config_field_is_named():
    d = CONFIG.to_hf_dict()
    del d["num_key_value_heads"]
    with pytest.raises(ConfigError, match="num_key_value_heads"):
        Qwen2VLConfig.from_hf_dict(d)


def test_truncated_safetensors(hf_dir, tmp_path):
    d = _copy(hf_dir, tmp_path / "c")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        from_hf(d)


def _rewrite(d, edit):
    tensors = load_file(d / "model.safetensors")
    edit(tensors)
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})


def test_missing_key_is_named(hf_dir, tmp_path):
    d = _copy(hf_dir, tmp_path / "c")
    _rewrite(d, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing key 'model.layers.1.mlp.up_proj.weight'"):
        from_hf(d)


def test_extra_key_is_named(hf_dir, tmp_path):
    d = _copy(hf_dir, tmp_path / "c")
    _rewrite(d, lambda t: t.__setitem__("model.layers.7.mlp.up_proj.weight", np.zeros((2, 2), np.float32)))
    with pytest.raises(CheckpointError, match=r"unexpected key 'model.layers.7.mlp.up_proj.weight'"):
        from_hf(d)


def test_wrong_shape_names_key_and_both_shapes(hf_dir, tmp_path):
    d = _copy(hf_dir, tmp_path / "c")
    _rewrite(d, lambda t: t.__setitem__("model.norm.weight", np.zeros((65,), np.float32)))
    with pytest.raises(CheckpointError, match=r"'model.norm.weight' has shape \(65,\), expected \(64,\)"):
        from_hf(d)


# ---- sharding and sizes ---------------------------------------------------------------
def test_sharded_load_and_forward_equal_unsharded(hf_dir):
    mesh = make_mesh(data=1, fsdp=2, tensor=4)
    sharded = from_hf(hf_dir, numerics=Numerics(precision="highest"), mesh=mesh, rules=DEFAULT_RULES)
    plain = from_hf(hf_dir, numerics=Numerics(precision="highest"))
    q = sharded.model.layers[0].self_attn.q_proj.kernel[...]
    assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    assert q.addressable_shards[0].data.shape == (32, 16)
    inputs = _video_inputs(CONFIG, batch=2)
    # The same sums in another order (tolerances.py): the longest is the vocabulary's, through
    # every ViT block and decoder layer.
    assert_reordered_close(sharded.hf_logits(**inputs), plain.hf_logits(**inputs),
                           terms=max(CONFIG.text.vocab_size, CONFIG.text.intermediate_size),
                           depth=CONFIG.text.num_hidden_layers + CONFIG.vision.depth)


@pytest.mark.parametrize("make, expected", [(qwen2vl_2b, 2_208_985_600), (qwen2vl_7b, 8_291_375_616)])
def test_preset_parameter_counts(make, expected):
    state = nnx.state(abstract_model(make()), nnx.Param)
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state)) == expected


def test_72b_preset_has_transformers_parameter_count():
    """Counted by transformers itself on the meta device (no memory), for the same config."""
    import torch

    from transformers import Qwen2VLConfig as HFConfig

    config = qwen2vl_72b()
    with torch.device("meta"):
        theirs = sum(p.numel() for p in Qwen2VLForConditionalGeneration(HFConfig(**config.to_hf_dict())).parameters())
    state = nnx.state(abstract_model(config), nnx.Param)
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state)) == theirs > 72e9


def test_tied_checkpoint_with_a_copy_of_the_head_loads_but_a_different_head_is_refused(tmp_path):
    config = qwen2vl_tiny(tie_word_embeddings=True)
    d = tmp_path / "tied"
    hf_model(config, seed=4).save_pretrained(d)
    _rewrite(d, lambda t: t.__setitem__("lm_head.weight", t["model.embed_tokens.weight"].copy()))
    from_hf(d)
    _rewrite(d, lambda t: t.__setitem__("lm_head.weight", t["model.embed_tokens.weight"] + 1.0))
    with pytest.raises(CheckpointError, match="differs"):
        from_hf(d)
