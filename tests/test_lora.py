"""LoRA: which layers it wraps, that a fresh adapter changes nothing, dropout, merging into
the base weights, and that a merged model exports to Hugging Face with the same logits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sf2t_jax.models import lora
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.models.layers import Numerics, linear
from sf2t_jax.models.qwen2_vl import Qwen2VL

F32 = Numerics(precision="highest")


def _abstract(numerics=Numerics(), **kw):
    def build():
        model = Qwen2VL(qwen2vl_tiny(), numerics, rngs=nnx.Rngs(0))
        lora.apply_lora(model, rngs=nnx.Rngs(1), **kw)
        return model
    return nnx.eval_shape(build)


def test_default_targets_are_the_llm_attention_and_mlp_projections():
    paths = lora.lora_paths(_abstract())
    projections = ["mlp.down_proj", "mlp.gate_proj", "mlp.up_proj", "self_attn.k_proj", "self_attn.o_proj",
                   "self_attn.q_proj", "self_attn.v_proj"]
    assert sorted(paths) == [f"model.layers.{i}.{p}" for i in (0, 1) for p in projections]
    # Base weights keep their paths; adapters sit next to them, sharded like the kernel's in/out axes.
    q = _abstract(rank=4).model.layers[0].self_attn.q_proj
    assert q.kernel.shape == (64, 64) and q.lora_a.shape == (64, 4) and q.lora_b.shape == (4, 64)
    assert q.lora_a.get_metadata()["logical_axes"] == ("embed", None)
    assert q.lora_b.get_metadata()["logical_axes"] == (None, "q_heads")


def test_scanned_layers_get_stacked_adapters():
    model = _abstract(Numerics(scan_layers=True), rank=4, dropout=0.1)
    assert sorted(lora.lora_paths(model))[0] == "model.layers.mlp.down_proj"
    up = model.model.layers.mlp.up_proj
    assert up.kernel.shape == (2, 64, 128) and up.lora_a.shape == (2, 64, 4) and up.lora_b.shape == (2, 4, 128)
    assert up.lora_a.get_metadata()["logical_axes"] == ("layers", "embed", None)
    assert up.lora_rng.key.shape == (2,)  # one dropout stream per layer


def test_a_regex_that_matches_nothing_is_refused():
    with pytest.raises(lora.LoRATargetError, match=r"match no linear layer; linear layers look like: model.layers.0.mlp"):
        _abstract(targets=r"^model\.layers\.\d+\.attn\.q$")
    with pytest.raises(lora.LoRATargetError, match="not a valid regex"):
        _abstract(targets="(")


class _Holder(nnx.Module):
    def __init__(self, layer):
        self.layer = layer


def test_fresh_adapter_is_exact_and_merge_is_base_plus_scaled_product():
    base = linear(16, 24, ("embed", "mlp"), bias=True, numerics=F32, rngs=nnx.Rngs(3))
    base.bias[...] = jax.random.normal(jax.random.key(4), (24,))
    x = jax.random.normal(jax.random.key(5), (2, 3, 16))
    y_base = base(x)
    holder = _Holder(lora.LoRALinear(base, rank=4, alpha=8.0, rngs=nnx.Rngs(6)))
    layer = holder.layer
    np.testing.assert_array_equal(layer(x), y_base)  # B = 0: bit for bit the base layer

    layer.lora_b[...] = jax.random.normal(jax.random.key(7), (4, 24))
    w = np.asarray(layer.kernel[...], np.float64)
    a, b = np.asarray(layer.lora_a[...], np.float64), np.asarray(layer.lora_b[...], np.float64)
    expected_w = w + (8.0 / 4) * a @ b
    np.testing.assert_allclose(layer(x), np.asarray(x, np.float64) @ expected_w + np.asarray(layer.bias[...]),
                               rtol=1e-5, atol=1e-5)
    y_lora = layer(x)
    lora.merge_lora(holder)
    assert type(holder.layer) is nnx.Linear and not lora.lora_paths(holder)
    np.testing.assert_allclose(holder.layer.kernel[...], expected_w, rtol=1e-6, atol=1e-6)
    assert holder.layer.kernel.get_metadata()["logical_axes"] == ("embed", "mlp")
    np.testing.assert_allclose(holder.layer(x), y_lora, rtol=1e-5, atol=1e-5)


def test_dropout_is_a_function_of_the_key():
    base = linear(16, 8, ("embed", "mlp"), bias=False, numerics=F32, rngs=nnx.Rngs(0))
    holder = _Holder(lora.LoRALinear(base, rank=4, alpha=4.0, dropout=0.5, rngs=nnx.Rngs(params=1, dropout=2)))
    holder.layer.lora_b[...] = jnp.ones((4, 8))
    x = jnp.ones((4, 16))

    def run(seed):
        nnx.reseed(holder, dropout=seed, policy="match_shape")
        return np.asarray(holder.layer(x))

    np.testing.assert_array_equal(run(0), run(0))
    assert not np.array_equal(run(0), run(1))


def test_merged_model_exports_to_hugging_face_with_the_same_logits(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import Qwen2VLForConditionalGeneration

    from sf2t_jax.convert import to_hf

    config = qwen2vl_tiny()
    model = Qwen2VL(config, F32, rngs=nnx.Rngs(0))
    lora.apply_lora(model, rank=4, alpha=8.0, rngs=nnx.Rngs(1))
    for i, (_, var) in enumerate(nnx.to_flat_state(nnx.state(model, nnx.LoRAParam))):
        var[...] = 0.05 * jax.random.normal(jax.random.key(i), var.shape)  # adapters that matter
    ids = np.random.default_rng(0).integers(0, 900, (2, 12)).astype(np.int32)
    positions = np.broadcast_to(np.arange(12, dtype=np.int32), (3, 2, 12))

    @jax.jit
    def logits(state):
        return nnx.merge(graphdef, state)(ids, positions)[0]

    graphdef, state = nnx.split(model)
    with_adapters = np.asarray(logits(state))
    lora.merge_lora(model)
    to_hf(model, tmp_path / "hf")
    hf = Qwen2VLForConditionalGeneration.from_pretrained(tmp_path / "hf", attn_implementation="eager").eval()
    with torch.no_grad():
        theirs = hf(input_ids=torch.from_numpy(ids.astype(np.int64))).logits.numpy()
    np.testing.assert_allclose(theirs, with_adapters, rtol=1e-4, atol=1e-4)
