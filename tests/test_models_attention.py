"""Fused attention: splash (Pallas, interpret mode on CPU) equals the XLA path, forward and
backward, alone, per shard on a mesh, and inside the whole model against transformers; 'auto'
picks the kernel by platform and dtype; a bad choice is refused by name."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qwen_reference import hf_logits, hf_model, other_tiny, patches, video_tokens
from sf2t_jax.convert import from_hf
from sf2t_jax.models.attention import AttentionMask, attend, resolve
from sf2t_jax.models.layers import Numerics
from sf2t_jax.parallel.activations import activation_sharding
from sf2t_jax.parallel.mesh import make_mesh
from sf2t_jax.parallel.sharding import named_rules
from tolerances import eps, reorder_atol

# Not a multiple of splash's 128-token tiles, so the kernel's own sequence padding is exercised.
B, L, H, D = 4, 200, 4, 32
# Rows: whole, right-padded, one real token, left- and right-padded.
LENGTHS = np.array([200, 130, 1, 170])


def _inputs(kv_heads: int, dtype=jnp.float32, seed: int = 0):
    rng = np.random.default_rng(seed)
    # Logits spanning several units: small ones would hide a wrong scale or mask.
    q = jnp.asarray(2 * rng.standard_normal((B, L, H, D)), dtype)
    k = jnp.asarray(2 * rng.standard_normal((B, L, kv_heads, D)), dtype)
    v = jnp.asarray(rng.standard_normal((B, L, kv_heads, D)), dtype)
    valid = np.arange(L)[None] < LENGTHS[:, None]
    valid[3, :10] = False
    return q, k, v, jnp.asarray(valid)


def _runs_splash(q, k, v, mask) -> bool:
    """Whether `attend(..., 'splash')` traces to a Pallas kernel (and not the XLA fallback)."""
    return "pallas_call" in str(jax.make_jaxpr(lambda q, k, v: attend(q, k, v, mask, implementation="splash"))(q, k, v))


def _attention_atol(reference, dtype=jnp.float32):
    """Splash sums the D-term logits and the L-term weighted values blockwise with online-softmax
    rescaling: two reductions in another order (tests/tolerances.py), each doubled for the
    rescaling's extra rounding per term."""
    return reorder_atol(reference, L + D, dtype, depth=4)


def _loss_and_grads(implementation, q, k, v, mask, mesh=None):
    """sum over real queries of out**2, and its gradients with respect to q, k, v."""

    def loss(q, k, v):
        if mesh is None:
            out = attend(q, k, v, mask, implementation=implementation, precision="highest")
        else:
            with activation_sharding(mesh, named_rules("default")):
                out = attend(q, k, v, mask, implementation=implementation, precision="highest")
        return jnp.sum(jnp.where(mask.valid[:, :, None, None], out.astype(jnp.float32), 0) ** 2), out

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(q, k, v)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_splash_equals_xla_forward_and_backward(causal, kv_heads):
    q, k, v, valid = _inputs(kv_heads)
    mask = AttentionMask(valid=valid, causal=causal)
    assert _runs_splash(q, k, v, mask)
    (_, want), want_grads = _loss_and_grads("xla", q, k, v, mask)
    (_, got), got_grads = _loss_and_grads("splash", q, k, v, mask)
    real = np.asarray(valid)
    np.testing.assert_allclose(np.asarray(got)[real], np.asarray(want)[real], rtol=0, atol=_attention_atol(want))
    for name, g, w in zip("qkv", got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=0, atol=_attention_atol(w), err_msg=f"d{name}")


def test_splash_without_padding_equals_xla():
    """The vision tower's case: every token real, no mask at all."""
    q, k, v, _ = _inputs(H)
    assert _runs_splash(q, k, v, AttentionMask())
    want = attend(q, k, v, AttentionMask(), implementation="xla", precision="highest")
    got = attend(q, k, v, AttentionMask(), implementation="splash")
    np.testing.assert_allclose(got, want, rtol=0, atol=_attention_atol(want))


@pytest.mark.parametrize("kv_heads", [2, 1], ids=["kv_heads_split", "kv_heads_repeated"])
def test_splash_per_shard_on_a_mesh_equals_xla_and_gathers_no_activation(kv_heads):
    """Batch over data x fsdp, heads over tensor; one KV head cannot split over tensor=2 and is
    repeated per query head. The kernel runs per shard: no all-gather in the program."""
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    q, k, v, valid = _inputs(kv_heads)
    mask = AttentionMask(valid=valid, causal=True)
    (_, want), want_grads = _loss_and_grads("xla", q, k, v, mask)
    (_, got), got_grads = _loss_and_grads("splash", q, k, v, mask, mesh)
    real = np.asarray(valid)
    np.testing.assert_allclose(np.asarray(got)[real], np.asarray(want)[real], rtol=0, atol=_attention_atol(want))
    for name, g, w in zip("qkv", got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=0, atol=_attention_atol(w), err_msg=f"d{name}")

    def program(q, k, v):
        with activation_sharding(mesh, named_rules("default")):
            return attend(q, k, v, mask, implementation="splash")

    assert "all-gather" not in jax.jit(program).lower(q, k, v).compile().as_text()


def test_splash_in_bfloat16_is_within_bfloat16_rounding_of_xla():
    """bf16 operands, float32 logits in both. Both paths round the attention weights (or the
    unnormalised ones) and the output to bf16, and splash also rounds the scaled q: per output a
    few bf16 roundings of terms whose weights sum to 1, so within 4 bf16 eps of max |v|."""
    q, k, v, valid = _inputs(2, jnp.bfloat16)
    mask = AttentionMask(valid=valid, causal=True)
    want = np.asarray(attend(q, k, v, mask, implementation="xla").astype(jnp.float32))
    got = np.asarray(attend(q, k, v, mask, implementation="splash").astype(jnp.float32))
    real = np.asarray(valid)
    atol = 4 * eps(jnp.bfloat16) * float(jnp.max(jnp.abs(v.astype(jnp.float32))))
    np.testing.assert_allclose(got[real], want[real], rtol=0, atol=atol)


def test_model_with_splash_matches_transformers_on_a_padded_batch_with_video(tmp_path):
    """The whole model (MQA decoder, 4-head ViT), scanned with remat, splash in both the vision
    tower and the decoder: left- and right-padded rows with videos agree with transformers as
    closely as the XLA path does (test_models_parity.py)."""
    config = other_tiny()
    ref = hf_model(config, seed=3)
    ref.save_pretrained(tmp_path)
    ours = from_hf(tmp_path, numerics=Numerics(precision="highest", scan_layers=True, remat="full", attention="splash"))
    # Slices of 144 and 128 patches and rows of 150 tokens: splash in both towers.
    grid_a, grid_b = (2, 12, 12), (2, 8, 16)
    text = lambda n, s: list(np.random.default_rng(s).integers(1, 200, n))  # noqa: E731
    core0, core1 = text(40, 7) + video_tokens(config, grid_b) + text(30, 8), text(30, 9) + video_tokens(config, grid_a) + text(40, 10)
    length = max(len(core0), len(core1)) + 3
    mask = np.array([[0] * (length - len(core0)) + [1] * len(core0), [1] * len(core1) + [0] * (length - len(core1))])
    inputs = dict(input_ids=np.array([[0] * (length - len(core0)) + core0, core1 + [0] * (length - len(core1))]),
                  attention_mask=mask, pixel_values_videos=patches(config, [grid_b, grid_a], 5),
                  video_grid_thw=np.array([grid_b, grid_a]))
    assert mask.shape[1] >= 128
    err = np.abs(ours.hf_logits(**inputs) - hf_logits(ref, **inputs))[mask.astype(bool)].max()
    assert err < 1e-4, err


def test_auto_picks_the_kernel_of_the_platform_and_dtype():
    assert resolve("auto", jnp.bfloat16, "tpu") == "splash"
    assert resolve("auto", jnp.float32, "tpu") == "splash"
    assert resolve("auto", jnp.bfloat16, "gpu") == "cudnn"
    assert resolve("auto", jnp.float32, "gpu") == "xla"  # cuDNN's flash attention is bf16/f16 only
    assert resolve("auto", jnp.bfloat16, "cpu") == "xla"
    assert resolve("splash", jnp.float32, "cpu") == "splash"  # interpret mode: for tests
    with pytest.raises(ValueError, match="model.attention='cudnn' needs a GPU"):
        resolve("cudnn", jnp.bfloat16, "cpu")
    with pytest.raises(ValueError, match="model.attention='cudnn' needs .* bfloat16"):
        resolve("cudnn", jnp.float32, "gpu")
    with pytest.raises(ValueError, match="model.attention='flash'.*auto, xla, splash, cudnn"):
        resolve("flash", jnp.float32, "cpu")
    with pytest.raises(ValueError, match="'flash' is not known"):
        Numerics(attention="flash")


def test_sequences_shorter_than_a_splash_tile_take_the_xla_path():
    q, k, v, valid = (x[:, :100] for x in _inputs(2))
    mask = AttentionMask(valid=valid, causal=True)
    assert not _runs_splash(q, k, v, mask)
    np.testing.assert_array_equal(attend(q, k, v, mask, implementation="splash"),
                                  attend(q, k, v, mask, implementation="xla"))


def test_a_dense_mask_takes_the_xla_path():
    """KV-cache decoding and shared prefixes pass a dense mask, which no fused kernel takes."""
    q, k, v, valid = _inputs(2)
    dense = jnp.asarray(np.random.default_rng(1).random((B, L, L)) < 0.7) | jnp.eye(L, dtype=bool)[None]
    mask = AttentionMask(dense=dense)
    assert not _runs_splash(q, k, v, mask)
    want = attend(q, k, v, mask, implementation="xla", precision="highest")
    got = attend(q, k, v, mask, implementation="splash", precision="highest")
    np.testing.assert_array_equal(got, want)
