"""Parity of the Flax Qwen2-VL port with transformers 4.49 (float32, precision='highest')."""
import numpy as np
import pytest
import torch

from qwen_reference import hf_logits, hf_model, image_tokens, other_tiny, patches, video_tokens
from sf2t_jax.convert import from_hf
from sf2t_jax.models import rope
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.models.attention import AttentionMask
from sf2t_jax.models.layers import Numerics
from sf2t_jax.models.qwen2_vl import _jitted_logits

HIGHEST = Numerics(precision="highest")
CONFIGS = {
    "tiny_tied": qwen2vl_tiny(tie_word_embeddings=True),
    "tiny_untied": qwen2vl_tiny(tie_word_embeddings=False),
    "other_untied": other_tiny(tie=False),
    "other_tied": other_tiny(tie=True),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    """(config, transformers model, our model loaded from its save_pretrained directory)."""
    config = CONFIGS[request.param]
    ref = hf_model(config, seed=len(request.param))
    path = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(path)
    return config, ref, from_hf(path, numerics=HIGHEST)


def _text(n, seed=0, vocab=200):
    return list(np.random.default_rng(seed).integers(1, vocab, n))


def _cases(config):
    """name -> HF-processor-style inputs."""
    img, vid_a, vid_b = (1, 4, 6), (3, 4, 4), (2, 6, 4)
    cases = {
        "text_only": dict(input_ids=np.array([_text(12)])),
        "one_image": dict(input_ids=np.array([_text(3) + image_tokens(config, img) + _text(4, 1)]),
                          pixel_values=patches(config, [img], 0), image_grid_thw=np.array([img])),
        "one_video": dict(input_ids=np.array([_text(3) + video_tokens(config, vid_a) + _text(5, 2)]),
                          pixel_values_videos=patches(config, [vid_a], 1), video_grid_thw=np.array([vid_a])),
        "two_videos_of_different_grids": dict(
            input_ids=np.array([_text(2) + video_tokens(config, vid_a) + _text(3, 3) + video_tokens(config, vid_b) + _text(2, 4)]),
            pixel_values_videos=patches(config, [vid_a, vid_b], 2), video_grid_thw=np.array([vid_a, vid_b])),
        "image_and_video": dict(
            input_ids=np.array([_text(2) + image_tokens(config, img) + _text(2, 5) + video_tokens(config, vid_a) + _text(3, 6)]),
            pixel_values=patches(config, [img], 3), image_grid_thw=np.array([img]),
            pixel_values_videos=patches(config, [vid_a], 4), video_grid_thw=np.array([vid_a])),
    }
    # A batch of two with padding: row 0 left-padded, row 1 right-padded, each with a video.
    pad = 0
    core0 = _text(2, 7) + video_tokens(config, vid_b) + _text(3, 8)
    core1 = _text(3, 9) + video_tokens(config, vid_a) + _text(2, 10)
    length = max(len(core0), len(core1)) + 3
    row0, mask0 = [pad] * (length - len(core0)) + core0, [0] * (length - len(core0)) + [1] * len(core0)
    row1, mask1 = core1 + [pad] * (length - len(core1)), [1] * len(core1) + [0] * (length - len(core1))
    cases["batch_of_two_with_padding"] = dict(
        input_ids=np.array([row0, row1]), attention_mask=np.array([mask0, mask1]),
        pixel_values_videos=patches(config, [vid_b, vid_a], 5), video_grid_thw=np.array([vid_b, vid_a]))
    return cases


CASE_NAMES = ["text_only", "one_image", "one_video", "two_videos_of_different_grids", "image_and_video",
              "batch_of_two_with_padding"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_full_logits_match_transformers(pair, case):
    config, ref, ours = pair
    inputs = _cases(config)[case]
    expected = hf_logits(ref, **inputs)
    got = ours.hf_logits(**inputs)
    mask = inputs.get("attention_mask", np.ones(inputs["input_ids"].shape))
    assert got.shape == expected.shape
    err = np.abs(got - expected)[mask.astype(bool)].max()
    assert err < 1e-4, f"{case}: max |logit diff| {err}"


@pytest.mark.parametrize("case", CASE_NAMES)
def test_rope_index_matches_transformers(case):
    config = CONFIGS["tiny_tied"]
    ref = hf_model(config)
    inputs = _cases(config)[case]
    t = lambda k: None if inputs.get(k) is None else torch.from_numpy(np.asarray(inputs[k]))
    exp_pos, exp_delta = ref.get_rope_index(t("input_ids"), t("image_grid_thw"), t("video_grid_thw"), t("attention_mask"))
    pos, delta = rope.get_rope_index(
        inputs["input_ids"], inputs.get("image_grid_thw"), inputs.get("video_grid_thw"), inputs.get("attention_mask"),
        image_token_id=config.image_token_id, video_token_id=config.video_token_id,
        vision_start_token_id=config.vision_start_token_id)
    np.testing.assert_array_equal(pos, exp_pos.numpy())
    np.testing.assert_array_equal(delta, exp_delta.numpy().reshape(-1))


def test_rope_index_worked_example_from_spec():
    """specs/qwen2_vl.md §1.6: [t t t <vs> <vp>x12 <ve> t t], grid (2, 4, 6)."""
    vs, vp, ve = 7, 8, 9
    ids = np.array([[1, 1, 1, vs] + [vp] * 12 + [ve, 1, 1]])
    pos, delta = rope.get_rope_index(ids, None, np.array([[2, 4, 6]]), None,
                                     image_token_id=6, video_token_id=vp, vision_start_token_id=vs)
    np.testing.assert_array_equal(pos[0, 0], [0, 1, 2, 3] + [4] * 6 + [5] * 6 + [7, 8, 9])
    np.testing.assert_array_equal(pos[1, 0], [0, 1, 2, 3] + [4, 4, 4, 5, 5, 5] * 2 + [7, 8, 9])
    np.testing.assert_array_equal(pos[2, 0], [0, 1, 2, 3] + [4, 5, 6] * 4 + [7, 8, 9])
    assert delta.tolist() == [-9]


def test_repeated_calls_do_not_recompile(pair):
    config, _, ours = pair
    inputs = _cases(config)["one_video"]
    ours.hf_logits(**inputs)
    before = _jitted_logits._cache_size()
    ours.hf_logits(**inputs)
    ours.hf_logits(**{**inputs, "pixel_values_videos": inputs["pixel_values_videos"] + 1.0})
    assert _jitted_logits._cache_size() == before


# ---- components, each within 1e-5 ------------------------------------------------------
def _t(x):
    return torch.from_numpy(np.asarray(x))


def test_patch_embed(pair):
    config, ref, ours = pair
    x = patches(config, [(2, 4, 4)], 11)
    with torch.no_grad():
        expected = ref.visual.patch_embed(_t(x)).numpy()
    np.testing.assert_allclose(np.asarray(ours.visual.patch_embed(x)), expected, atol=1e-5)


def test_vision_block(pair):
    config, ref, ours = pair
    grid = (2, 4, 6)
    s = grid[1] * grid[2]
    x = np.random.default_rng(12).standard_normal((grid[0] * s, config.vision.embed_dim)).astype(np.float32)
    rot = ref.visual.rot_pos_emb(_t([grid]))
    emb = torch.cat([rot, rot], dim=-1)
    cu = torch.tensor([0, s, 2 * s], dtype=torch.int32)
    with torch.no_grad():
        expected = ref.visual.blocks[0](_t(x), cu_seqlens=cu, position_embeddings=(emb.cos(), emb.sin())).numpy()
    cos, sin = rope.vision_cos_sin(rope.vision_rope_positions(grid[1], grid[2]), config.vision.head_dim)
    got = ours.visual.blocks[0](x.reshape(grid[0], s, -1), cos, sin)
    np.testing.assert_allclose(np.asarray(got).reshape(expected.shape), expected, atol=1e-5)


def test_patch_merger(pair):
    config, ref, ours = pair
    x = np.random.default_rng(13).standard_normal((2 * 16, config.vision.embed_dim)).astype(np.float32)
    with torch.no_grad():
        expected = ref.visual.merger(_t(x)).numpy()
    got = ours.visual.merger(x.reshape(2, 16, -1))
    np.testing.assert_allclose(np.asarray(got).reshape(expected.shape), expected, atol=1e-5)


def test_decoder_layer(pair):
    config, ref, ours = pair
    b, l, d = 2, 9, config.text.hidden_size
    x = np.random.default_rng(14).standard_normal((b, l, d)).astype(np.float32)
    valid = np.ones((b, l), bool)
    valid[1, :3] = False  # left padding in row 1
    positions = np.random.default_rng(15).integers(0, 20, (3, b, l))
    causal = np.tril(np.ones((l, l), bool))[None] & valid[:, None, :]
    additive = np.where(causal, 0.0, np.finfo(np.float32).min).astype(np.float32)[:, None]
    with torch.no_grad():
        cos_sin = ref.model.rotary_emb(_t(x), _t(positions))
        expected = ref.model.layers[0](_t(x), attention_mask=_t(additive), position_embeddings=cos_sin)[0].numpy()
    cos, sin = rope.mrope_cos_sin(positions, config.text.head_dim, config.text.rope_theta, config.text.mrope_section)
    got, _ = ours.model.layers[0](x, cos, sin, AttentionMask(valid=valid, causal=True))
    rows = valid  # padded query rows are never read
    np.testing.assert_allclose(np.asarray(got)[rows], expected[rows], atol=1e-5)


def test_per_row_vision_index_equals_flat_layout():
    """The training layout (one grid, per-row destinations, padded slices) gives the same
    logits as the flat layout used for Hugging Face inputs."""
    import jax.numpy as jnp
    from flax import nnx
    from sf2t_jax.models.qwen2_vl import Qwen2VL, prepare_hf_inputs
    from sf2t_jax.models.vision import VisionPatches

    config = CONFIGS["tiny_untied"]
    model = Qwen2VL(config, HIGHEST, rngs=nnx.Rngs(0))
    grid_a, grid_b = (2, 4, 4), (1, 4, 4)  # row 1 has one slice fewer: it is padded
    rows = [[3] + video_tokens(config, grid_a) + [4, 5], [6, 7] + video_tokens(config, grid_b) + [8] * 5]
    ids = np.array(rows)
    px = patches(config, [grid_a, grid_b], 21)
    flat = prepare_hf_inputs(config, ids, pixel_values_videos=px, video_grid_thw=np.array([grid_a, grid_b]))
    expected, _ = model(flat["input_ids"], flat["position_ids"], flat["attention_mask"], flat["vision"], flat["vision_index"])

    slices = np.zeros((2, 2, 16, config.vision.patch_dim), np.float32)
    slices[0] = px[:32].reshape(2, 16, -1)
    slices[1, 0] = px[32:]
    index = np.full((2, 8), ids.shape[1], np.int32)
    index[0] = np.nonzero(ids[0] == config.video_token_id)[0]
    index[1, :4] = np.nonzero(ids[1] == config.video_token_id)[0]
    got, _ = model(flat["input_ids"], flat["position_ids"], flat["attention_mask"],
                   (VisionPatches(patches=jnp.asarray(slices.reshape(4, 16, -1)), grid_hw=(4, 4)),), index)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)
