"""Parity of the Flax LLaVA-NeXT-Video port with transformers 4.49 (float32, precision='highest'):
the CLIP tower at the selected layer, video pooling, the projector, anyres token counts and order,
full logits (text, portrait and landscape images, video, a left-padded mixed batch), greedy
decoding, the processors' numpy output, conversion both ways, config layouts and the 7B count."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file
from transformers import LlavaNextImageProcessor, LlavaNextVideoConfig as HFConfig
from transformers import LlavaNextVideoForConditionalGeneration, LlavaNextVideoImageProcessor, LlavaNextVideoProcessor

from sf2t_jax.convert import abstract_model, from_hf, to_hf
from sf2t_jax.convert.native import load_native
from sf2t_jax.models import family
from sf2t_jax.models.config import ConfigError
from sf2t_jax.models.generate import greedy_generate
from sf2t_jax.models.layers import Numerics
from sf2t_jax.models.llava_next_video import anyres
from sf2t_jax.models.llava_next_video.config import LlavaNextVideoConfig, llava_next_video_7b, llava_next_video_tiny
from sf2t_jax.models.llava_next_video.model import LlavaNextVideo, prepare_hf_inputs, text_positions
from sf2t_jax.models.llava_next_video.vision import pool_frames
from sf2t_jax.models.vision import VisionPatches

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HIGHEST = Numerics(precision="highest")
CONFIG = llava_next_video_tiny()
# (height, width) of test images: portrait (3 tiles high), landscape (2 wide), square-ish.
PORTRAIT, LANDSCAPE, SQUARE = (200, 60), (40, 97), (90, 80)


def hf_llava_model(config: LlavaNextVideoConfig, seed: int = 0, weight_scale: float = 8.0, tower_scale: float = 4.0):
    """A random transformers LLaVA-NeXT-Video of `config`, eager, float32, eval. Norms, biases,
    the class token and image_newline are randomised (a swapped scale or bias cannot pass);
    weight matrices are scaled x`weight_scale` so logits span several units, the CLIP tower's
    x`tower_scale`: at x8 its residual stream reaches ~150 after two layers, where float32
    sums in another order already differ by ~1e-5 of the value; x4 keeps it near 40 and the
    features still far from zero."""
    torch.manual_seed(seed)
    hf_config = HFConfig(**config.to_hf_dict())
    hf_config._attn_implementation = "eager"
    hf_config.text_config._attn_implementation = "eager"
    hf_config.vision_config._attn_implementation = "eager"
    model = LlavaNextVideoForConditionalGeneration(hf_config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".bias") or p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
            elif p.ndim >= 2:
                p.mul_(tower_scale if name.startswith("vision_tower.") else weight_scale)
    return model


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(transformers model, its save_pretrained directory, our model loaded from it)."""
    ref = hf_llava_model(CONFIG, seed=1)
    path = tmp_path_factory.mktemp("llava")
    ref.save_pretrained(path)
    return ref, path, from_hf(path, numerics=HIGHEST)


def _text(n, seed):
    return list(np.random.default_rng(seed).integers(1, 200, n))


def _image(hw, seed):
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


def _images(sizes, seed):
    """Processor-style (num_images, max_tiles, C, s, s) zero-padded tiles and (num_images, 2) sizes."""
    tiles = [anyres.anyres_tiles(_image(hw, seed + i), CONFIG) for i, hw in enumerate(sizes)]
    most = max(len(t) for t in tiles)
    padded = np.stack([np.concatenate([t, np.zeros((most - len(t),) + t.shape[1:], t.dtype)]) for t in tiles])
    return padded, np.array(sizes, np.int64)


def _video(frames, seed):
    s = CONFIG.vision.image_size
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, frames, 3, s, s)).astype(np.float32)


def image_tokens(hw):
    return [CONFIG.image_token_id] * anyres.image_token_count(CONFIG, hw)


def video_tokens(frames):
    return [CONFIG.video_token_id] * (frames * CONFIG.tokens_per_frame)


def _left_padded(rows):
    length = max(map(len, rows))
    ids = np.array([[0] * (length - len(r)) + r for r in rows])
    mask = np.array([[0] * (length - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def _cases():
    pixel_values, sizes = _images([PORTRAIT], 3)
    landscape, landscape_sizes = _images([LANDSCAPE], 4)
    batch_ids, batch_mask = _left_padded([
        _text(2, 10) + image_tokens(SQUARE) + _text(3, 11),
        _text(3, 12) + video_tokens(3) + _text(2, 13),
        _text(7, 14),  # text only
    ])
    batch_pixels, batch_sizes = _images([SQUARE], 5)
    return {
        "text_only": dict(input_ids=np.array([_text(12, 0)])),
        "portrait_image": dict(input_ids=np.array([_text(3, 1) + image_tokens(PORTRAIT) + _text(4, 2)]),
                               pixel_values=pixel_values, image_sizes=sizes),
        "landscape_image": dict(input_ids=np.array([_text(2, 6) + image_tokens(LANDSCAPE) + _text(3, 7)]),
                                pixel_values=landscape, image_sizes=landscape_sizes),
        "video": dict(input_ids=np.array([_text(3, 8) + video_tokens(4) + _text(5, 9)]),
                      pixel_values_videos=_video(4, 1)),
        "left_padded_image_video_text_batch": dict(input_ids=batch_ids, attention_mask=batch_mask,
                                                   pixel_values=batch_pixels, image_sizes=batch_sizes,
                                                   pixel_values_videos=_video(3, 2)),
    }


def _torch(inputs):
    return {k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items() if v is not None}


def _reference_logits(ref, inputs):
    """transformers' logits with the positions its generate would use (a forward without
    `position_ids` counts padding)."""
    mask = inputs.get("attention_mask", np.ones(np.asarray(inputs["input_ids"]).shape, np.int64))
    position_ids = text_positions(mask)[0][0].astype(np.int64)
    with torch.no_grad():
        return ref(**_torch(inputs), position_ids=torch.from_numpy(position_ids)).logits.numpy()


# ---- components, each within 1e-5 of the output's scale -------------------------------------
def assert_close(got, expected):
    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-5 * max(1.0, np.abs(expected).max()))


def _frames(n, seed):
    pixels = _video(n, seed)[0]
    return pixels, VisionPatches(patches=anyres.pixels_to_patches(pixels, CONFIG.vision.patch_size),
                                 grid_hw=(CONFIG.vision.grid,) * 2)


def test_tower_returns_the_selected_hidden_state_without_the_class_token(pair):
    ref, _, ours = pair
    pixels, frames = _frames(3, 20)
    with torch.no_grad():
        hidden = ref.vision_tower(torch.from_numpy(pixels), output_hidden_states=True).hidden_states
    expected = hidden[CONFIG.vision_feature_layer][:, 1:].numpy()
    assert np.abs(expected).max() > 1.0
    assert_close(ours.vision_tower(frames), expected)
    # the embeddings (class token, patches, positions) and pre-layernorm alone: hidden state 0
    assert_close(ours.vision_tower.pre_layrnorm(ours.vision_tower.embeddings(frames)), hidden[0].numpy())


def test_one_clip_layer(pair):
    ref, _, ours = pair
    x = np.random.default_rng(21).standard_normal((2, CONFIG.vision.num_patches + 1, CONFIG.vision.embed_dim))
    x = x.astype(np.float32)
    with torch.no_grad():
        expected = ref.vision_tower.vision_model.encoder.layers[1](torch.from_numpy(x), None, None)[0].numpy()
    assert_close(ours.vision_tower.layers[1](x), expected)


def test_video_pooling_and_projector(pair):
    ref, _, ours = pair
    feats = np.random.default_rng(22).standard_normal((3, CONFIG.vision.num_patches, CONFIG.vision.embed_dim))
    feats = feats.astype(np.float32)
    with torch.no_grad():
        pooled = ref.vision_resampler(torch.from_numpy(feats)).numpy()
        projected = ref.multi_modal_projector(torch.from_numpy(feats)).numpy()
    got = pool_frames(feats, CONFIG.vision.grid, CONFIG.spatial_pool_stride, CONFIG.spatial_pool_mode)
    assert got.shape == pooled.shape == (3, CONFIG.tokens_per_frame, CONFIG.vision.embed_dim)
    assert_close(got, pooled)
    assert_close(ours.multi_modal_projector(feats), projected)


def test_video_features(pair):
    ref, _, ours = pair
    pixels, frames = _frames(4, 23)
    with torch.no_grad():
        expected = ref.get_video_features(torch.from_numpy(pixels[None]), CONFIG.vision_feature_layer,
                                          CONFIG.vision_feature_select_strategy)[0].numpy()
    assert_close(ours.video_features(frames), expected)


# ---- anyres ---------------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [PORTRAIT, LANDSCAPE, SQUARE, (84, 84), (30, 200), (300, 31), (85, 169), (168, 83)])
def test_anyres_token_count_and_order_equal_pack_image_features(hw):
    """Each tile feature is its own index; transformers' packing of them, read back, is our
    layout (newline as -1); the processor's token count is its length."""
    hf_config = HFConfig(**CONFIG.to_hf_dict())
    tiles = anyres.num_tiles(CONFIG, hw)
    s = CONFIG.vision.num_patches
    index = torch.arange(tiles * s, dtype=torch.float64).reshape(tiles, s, 1)
    owner = SimpleNamespace(config=hf_config)
    packed, lens = LlavaNextVideoForConditionalGeneration.pack_image_features(
        owner, [index], torch.tensor([hw]), "default", image_newline=torch.tensor([-1.0], dtype=torch.float64))
    expected = packed[:, 0].numpy().astype(np.int64)
    np.testing.assert_array_equal(anyres.image_feature_layout(CONFIG, hw), expected)
    processor = SimpleNamespace(image_processor=SimpleNamespace(image_grid_pinpoints=[list(p) for p in
                                                                                     CONFIG.image_grid_pinpoints]),
                                patch_size=CONFIG.vision.patch_size, num_additional_image_tokens=0)
    s_px = CONFIG.vision.image_size
    count = LlavaNextVideoProcessor._get_number_of_features(
        SimpleNamespace(**vars(processor), _get_unpadded_features=lambda *a: LlavaNextVideoProcessor.
                        _get_unpadded_features(None, *a)), hw[0], hw[1], s_px, s_px)
    assert anyres.image_token_count(CONFIG, hw) == count == int(lens[0])


def test_portrait_and_landscape_take_different_tile_grids():
    assert anyres.tile_grid(CONFIG, PORTRAIT) == (3, 1) and anyres.tile_grid(CONFIG, LANDSCAPE) == (1, 2)


# ---- the whole model ---------------------------------------------------------------------
@pytest.mark.parametrize("case", ["text_only", "portrait_image", "landscape_image", "video",
                                  "left_padded_image_video_text_batch"])
def test_full_logits_match_transformers(pair, case):
    ref, _, ours = pair
    inputs = _cases()[case]
    expected = _reference_logits(ref, inputs)
    got = ours.hf_logits(**inputs)
    valid = inputs.get("attention_mask", np.ones(inputs["input_ids"].shape)).astype(bool)
    assert got.shape == expected.shape
    assert np.ptp(expected[valid]) > 5.0  # logits span several units
    err = np.abs(got - expected)[valid].max()
    assert err < 1e-4, f"{case}: max |logit diff| {err}"


def test_scanned_and_rematerialised_layers_match_transformers(pair):
    """Scanned layers run only the first `vision_feature_layer` CLIP layers of the stack."""
    ref, path, _ = pair
    inputs = _cases()["left_padded_image_video_text_batch"]
    got = from_hf(path, numerics=Numerics(precision="highest", scan_layers=True, remat="full")).hf_logits(**inputs)
    valid = inputs["attention_mask"].astype(bool)
    assert np.abs(got - _reference_logits(ref, inputs))[valid].max() < 1e-4


def test_greedy_decoding_of_12_tokens_equals_generate(pair):
    ref, _, ours = pair
    ids, mask = _left_padded([_text(3, 30) + video_tokens(2) + _text(2, 31),
                              _text(1, 32) + image_tokens(LANDSCAPE) + _text(5, 33)])
    pixel_values, sizes = _images([LANDSCAPE], 34)
    inputs = dict(input_ids=ids, attention_mask=mask, pixel_values=pixel_values, image_sizes=sizes,
                  pixel_values_videos=_video(2, 35))
    with torch.no_grad():
        expected = ref.generate(**_torch(inputs), max_new_tokens=12, do_sample=False,
                                eos_token_id=CONFIG.eos_token_id, pad_token_id=0)[:, ids.shape[1]:].numpy()
    got = greedy_generate(ours, prepare_hf_inputs(CONFIG, **inputs), max_new_tokens=12,
                          eos_token_ids=[CONFIG.eos_token_id], pad_token_id=0)
    assert expected.shape == (2, 12)
    np.testing.assert_array_equal(got, expected)
    assert len(set(got.reshape(-1).tolist())) > 2  # not one repeated token


def test_processor_numpy_output_goes_straight_into_hf_logits(pair):
    """transformers' image and video processors (numpy output) -> our hf_logits == transformers';
    our host-side tiling makes the processor's pixels exactly."""
    ref, _, ours = pair
    s = CONFIG.vision.image_size
    pinpoints = [list(p) for p in CONFIG.image_grid_pinpoints]
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s},
                                              image_grid_pinpoints=pinpoints)
    video_processor = LlavaNextVideoImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s})
    images = [_image(PORTRAIT, 40), _image(LANDSCAPE, 41)]
    image_out = image_processor(images, return_tensors="np")
    video = np.random.default_rng(42).integers(0, 256, (3, 70, 64, 3), dtype=np.uint8)
    video_out = video_processor([video], return_tensors="np")
    for i, image in enumerate(images):
        tiles = anyres.anyres_tiles(image, CONFIG)
        np.testing.assert_array_equal(image_out["pixel_values"][i, :len(tiles)], tiles)
    ids = np.array([_text(2, 43) + image_tokens(PORTRAIT) + _text(1, 44) + image_tokens(LANDSCAPE) + _text(2, 45)
                    + video_tokens(3) + _text(3, 46)])
    inputs = dict(input_ids=ids, pixel_values=image_out["pixel_values"], image_sizes=image_out["image_sizes"],
                  pixel_values_videos=video_out["pixel_values_videos"])
    expected = _reference_logits(ref, inputs)
    assert np.abs(ours.hf_logits(**inputs) - expected).max() < 1e-4


def test_token_count_mismatch_is_one_clear_error():
    inputs = dict(_cases()["video"])
    inputs["input_ids"] = inputs["input_ids"][:, :-7]  # cuts two video tokens
    with pytest.raises(ValueError, match=r"Video features and video tokens do not match: tokens: 34, features 36"):
        prepare_hf_inputs(CONFIG, **inputs)


# ---- conversion ----------------------------------------------------------------------------
def _hub_keys(path):
    names = [n for n in os.listdir(path) if n.endswith(".safetensors")]
    return set().union(*(load_file(os.path.join(path, n)).keys() for n in names))


def test_round_trip_through_transformers(tmp_path):
    hf_dir, out = tmp_path / "hf", tmp_path / "out"
    hf_llava_model(CONFIG, seed=2).save_pretrained(hf_dir)
    model = from_hf(hf_dir, numerics=HIGHEST)
    assert type(model) is LlavaNextVideo and model.config == CONFIG
    to_hf(model, out)
    assert _hub_keys(out) == _hub_keys(hf_dir)
    inputs = _cases()["left_padded_image_video_text_batch"]
    load = lambda d: LlavaNextVideoForConditionalGeneration.from_pretrained(d, attn_implementation="eager").eval()
    expected, got = (_reference_logits(load(d), inputs) for d in (hf_dir, out))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_launch_convert_both_ways_is_lossless(tmp_path):
    hf_dir, native, back = tmp_path / "hf", tmp_path / "native", tmp_path / "back"
    hf_llava_model(CONFIG, seed=3).save_pretrained(hf_dir)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    for args in (["--from-hf", str(hf_dir), "--out", str(native)], ["--to-hf", str(native), "--out", str(back)]):
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), "convert", *args], capture_output=True,
                              text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert type(load_native(str(native))) is LlavaNextVideo
    original, exported = load_file(hf_dir / "model.safetensors"), load_file(back / "model.safetensors")
    assert original.keys() == exported.keys()
    for key in original:
        np.testing.assert_array_equal(exported[key], original[key], err_msg=key)
    assert json.loads((back / "config.json").read_text())["model_type"] == "llava_next_video"


# ---- config.json ---------------------------------------------------------------------------
# llava-hf/LLaVA-NeXT-Video-7B-hf's config.json as the Hub writes it: sub-configs list only what
# differs from LlamaConfig's and CLIPVisionConfig's defaults. The values agree with a public dump
# of `AutoConfig.from_pretrained` of the checkpoint (see `llava_next_video_7b`'s docstring); the
# sparse layout itself is as the Hub's 4.42-era files write it, not checked offline.
HUB_7B = {
    "architectures": ["LlavaNextVideoForConditionalGeneration"], "ignore_index": -100,
    "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
    "image_token_index": 32001, "model_type": "llava_next_video", "projector_hidden_act": "gelu",
    "spatial_pool_mode": "average", "spatial_pool_stride": 2,
    "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"],
                    "max_position_embeddings": 4096, "model_type": "llama", "pad_token_id": 0, "rms_norm_eps": 1e-05,
                    "rope_scaling": {"factor": 2.5, "type": "linear"}, "torch_dtype": "float16", "vocab_size": 32064},
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.42.0.dev0",
    "use_image_newline_parameter": True, "video_token_index": 32000,
    "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                      "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
                      "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
    "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": 32064,
}


def test_hub_config_and_5x_layout_read_as_the_preset():
    v5 = json.loads(json.dumps(HUB_7B))
    v5["image_token_id"], v5["video_token_id"] = v5.pop("image_token_index"), v5.pop("video_token_index")
    text = v5["text_config"]
    del text["rope_scaling"]
    text.update(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=32, head_dim=128,
                rope_parameters={"rope_type": "linear", "factor": 2.5, "rope_theta": 10000.0})
    assert family.config_from_hf_dict(HUB_7B) == family.config_from_hf_dict(v5) == llava_next_video_7b()
    assert LlavaNextVideoConfig.from_hf_dict(llava_next_video_7b().to_hf_dict()) == llava_next_video_7b()
    assert LlavaNextVideoConfig.from_hf_dict(CONFIG.to_hf_dict()) == CONFIG
    # transformers reads our file as the same shapes
    hf = HFConfig(**CONFIG.to_hf_dict())
    assert (hf.text_config.rope_scaling["factor"], hf.vision_config.hidden_size) == (2.5, CONFIG.vision.embed_dim)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(vision_feature_select_strategy="full"), r"vision_feature_select_strategy 'full' is not supp"),
    (lambda d: d.update(spatial_pool_mode="conv"), r"spatial_pool_mode 'conv' is not supported"),
    (lambda d: d.update(vision_feature_layer=[-2, -5]), r"vision_feature_layer \[-2, -5\] \(several layers\)"),
    (lambda d: d.update(vision_feature_layer=-30), r"vision_feature_layer -30 is not a hidden state of a 24-layer"),
    (lambda d: d["text_config"].update(rope_scaling={"type": "dynamic", "factor": 2.0}), r"rope type 'dynamic'"),
    (lambda d: d["text_config"].update(attention_bias=True), r"text_config: attention_bias is true"),
    (lambda d: d.update(image_grid_pinpoints=[[336, 600]]), r"multiple of image_size 336"),
])
def test_config_errors_name_the_field(edit, message):
    bad = json.loads(json.dumps(HUB_7B))
    edit(bad)
    with pytest.raises(ConfigError, match=message):
        family.config_from_hf_dict(bad)


def test_7b_parameter_count_equals_transformers():
    """Counted by transformers on the meta device (no memory), for the same config; ours from
    the scanned layout with `jax.eval_shape`."""
    config = llava_next_video_7b()
    with torch.device("meta"):
        theirs = sum(p.numel() for p in LlavaNextVideoForConditionalGeneration(HFConfig(**config.to_hf_dict()))
                     .parameters())
    state = nnx.state(abstract_model(config, Numerics(scan_layers=True)), nnx.Param)
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state)) == theirs
    assert family.preset("llava_next_video_7b") == config
