"""LLaVA-NeXT-Video model shapes, read from and written to Hugging Face `config.json`.

Two layouts exist in the wild and both are read:
  * the Hub's (transformers 4.x): `image_token_index` / `video_token_index`, and sub-configs
    that list only the fields that differ from their class defaults: `text_config` relies on
    `LlamaConfig`'s (hidden_size 4096, 32 layers, ...) and `vision_config` on
    `CLIPVisionConfig`'s; RoPE in `rope_theta` + `rope_scaling`;
  * transformers 5.x: `image_token_id` / `video_token_id`, RoPE in `rope_parameters`.
Absent fields take exactly the defaults transformers 4.49 applies (`LLAMA_DEFAULTS`,
`CLIP_VISION_DEFAULTS`, and LLaVA-NeXT-Video's own CLIP-L/14-336 tower when `vision_config`
is absent), since the Hub files rely on them. `to_hf_dict` writes every field explicitly.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from sf2t_jax.models.config import ConfigError, TextConfig, check_text_config, check_vision_heads, typed
from sf2t_jax.models.slices import SliceLayout

MODEL_TYPE = "llava_next_video"

# transformers 4.49 class defaults of the sub-configs (LlamaConfig, CLIPVisionConfig.__init__).
LLAMA_DEFAULTS = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=None, hidden_act="silu",
                      max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=None,
                      attention_bias=False, mlp_bias=False, head_dim=None, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=2, pad_token_id=None)
CLIP_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu",
                            layer_norm_eps=1e-5)
# LlavaNextVideoConfig's tower when config.json has no vision_config at all (CLIP ViT-L/14-336).
DEFAULT_VISION_CONFIG = dict(CLIP_VISION_DEFAULTS, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                             num_attention_heads=16, image_size=336, patch_size=14)
DEFAULT_GRID_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """The CLIP vision transformer: class token, learned position embeddings, pre-layernorm,
    pre-norm blocks with a quick-GELU MLP."""

    depth: int  # CLIP num_hidden_layers
    embed_dim: int  # CLIP hidden_size
    num_heads: int
    intermediate_size: int
    image_size: int  # input side in pixels (square)
    patch_size: int = 14
    in_channels: int = 3
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def grid(self) -> int:
        """Patches per side of one image or tile."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid**2

    @property
    def patch_dim(self) -> int:
        """Width of one flattened patch row: C * patch * patch (a Conv2d's receptive field)."""
        return self.in_channels * self.patch_size**2

    @property
    def mlp_weights(self) -> int:
        """Matrix weights of one block's MLP (fc1, fc2), for FLOP counts."""
        return 2 * self.embed_dim * self.intermediate_size


@dataclasses.dataclass(frozen=True)
class LlavaNextVideoConfig:
    """A whole LLaVA-NeXT-Video model: CLIP tower, video pooling, projector, Llama decoder."""

    vision: VisionConfig
    text: TextConfig  # a Llama decoder: qkv_bias False, one RoPE section (1D positions)
    image_grid_pinpoints: tuple[tuple[int, int], ...] = DEFAULT_GRID_PINPOINTS  # anyres (height, width)
    vision_feature_layer: int = -2  # hidden state fed to the projector (transformers' indexing)
    vision_feature_select_strategy: str = "default"  # 'default' drops the class token
    spatial_pool_mode: str = "average"  # video frames: 'average' or 'max' pooling
    spatial_pool_stride: int = 2
    projector_hidden_act: str = "gelu"
    multimodal_projector_bias: bool = True
    image_token_id: int = 32001
    video_token_id: int = 32000
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0

    def __post_init__(self):
        t, v = self.text, self.vision
        check_text_config(t)
        check_vision_heads(v.embed_dim, v.num_heads, "vision_config.hidden_size")
        if t.mrope_section != (t.head_dim // 2,) or t.qkv_bias or t.tie_word_embeddings:
            raise ConfigError("LLaVA-NeXT-Video's decoder is Llama's: one RoPE section of head_dim/2, no q/k/v "
                              "biases, untied embeddings")
        if v.image_size % v.patch_size:
            raise ConfigError(f"vision_config.image_size {v.image_size} is not a multiple of patch_size {v.patch_size}")
        if not 0 <= self.feature_layer_count <= v.depth:
            raise ConfigError(f"vision_feature_layer {self.vision_feature_layer} is not a hidden state of a "
                              f"{v.depth}-layer vision tower (expected {-v.depth - 1} to {v.depth})")
        if self.vision_feature_select_strategy != "default":
            raise ConfigError(f"vision_feature_select_strategy {self.vision_feature_select_strategy!r} is not "
                              "supported (supported: 'default', which drops the class token)")
        if self.spatial_pool_mode not in ("average", "max"):
            raise ConfigError(f"spatial_pool_mode {self.spatial_pool_mode!r} is not supported (supported: "
                              "'average', 'max')")
        if not 1 <= self.spatial_pool_stride <= v.grid:
            raise ConfigError(f"spatial_pool_stride {self.spatial_pool_stride} must be between 1 and the patch grid "
                              f"side {v.grid}")
        bad = [p for p in self.image_grid_pinpoints if p[0] % v.image_size or p[1] % v.image_size or min(p) <= 0]
        if bad or not self.image_grid_pinpoints:
            raise ConfigError(f"image_grid_pinpoints {[list(p) for p in self.image_grid_pinpoints]}: every "
                              f"resolution must be a positive multiple of image_size {v.image_size}")
        if v.hidden_act != "quick_gelu":
            raise ConfigError(f"vision_config.hidden_act {v.hidden_act!r} is not supported (CLIP uses 'quick_gelu')")
        if self.projector_hidden_act != "gelu":
            raise ConfigError(f"projector_hidden_act {self.projector_hidden_act!r} is not supported (expected 'gelu')")
        if t.hidden_act != "silu":
            raise ConfigError(f"text_config.hidden_act {t.hidden_act!r} is not supported (Llama uses 'silu')")

    @property
    def feature_layer_count(self) -> int:
        """CLIP layers run to reach `vision_feature_layer` (hidden state i follows layer i)."""
        layer = self.vision_feature_layer
        return layer if layer >= 0 else self.vision.depth + 1 + layer

    @property
    def pooled_grid(self) -> int:
        """Tokens per side of one pooled video frame (floor, as torch's pooling)."""
        return self.vision.grid // self.spatial_pool_stride

    @property
    def tokens_per_frame(self) -> int:
        return self.pooled_grid**2

    @property
    def slice_layout(self) -> SliceLayout:
        """One frame per slice at exactly image_size, pooled tokens, 1D positions."""
        v = self.vision
        return SliceLayout(patch_size=v.patch_size, patch_dim=v.patch_dim, frames_per_slice=1,
                           token_pool=self.spatial_pool_stride, fixed_resolution=(v.image_size, v.image_size),
                           mrope=False, images_as_slices=False)

    # ------------------------------------------------------------------------------------
    # Hugging Face config.json
    # ------------------------------------------------------------------------------------
    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], source: str = "config.json") -> "LlavaNextVideoConfig":
        if d.get("model_type") != MODEL_TYPE:
            raise ConfigError(f"{source}: model_type {d.get('model_type')!r} is not {MODEL_TYPE!r}")
        text_d = _sub_config(d, "text_config", LLAMA_DEFAULTS, LLAMA_DEFAULTS, source)
        vision_d = _sub_config(d, "vision_config", CLIP_VISION_DEFAULTS, DEFAULT_VISION_CONFIG, source)
        where = f"{source} text_config"
        text = _read_llama(text_d, where)
        vw = f"{source} vision_config"
        vision = VisionConfig(
            depth=typed("num_hidden_layers", vision_d["num_hidden_layers"], int, vw),
            embed_dim=typed("hidden_size", vision_d["hidden_size"], int, vw),
            num_heads=typed("num_attention_heads", vision_d["num_attention_heads"], int, vw),
            intermediate_size=typed("intermediate_size", vision_d["intermediate_size"], int, vw),
            image_size=typed("image_size", vision_d["image_size"], int, vw),
            patch_size=typed("patch_size", vision_d["patch_size"], int, vw),
            in_channels=typed("num_channels", vision_d["num_channels"], int, vw),
            layer_norm_eps=typed("layer_norm_eps", vision_d["layer_norm_eps"], float, vw),
            hidden_act=vision_d["hidden_act"],
        )
        if any(bool(x.get("tie_word_embeddings", False)) for x in (d, text_d)):
            raise ConfigError(f"{source}: tie_word_embeddings is true; LLaVA-NeXT-Video has a separate lm_head")
        pinpoints = d.get("image_grid_pinpoints", DEFAULT_GRID_PINPOINTS)
        if not isinstance(pinpoints, (list, tuple)) or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 for p in pinpoints):
            raise ConfigError(f"{source}: field 'image_grid_pinpoints' is {pinpoints!r}; expected a list of "
                              "[height, width] pairs")
        layer = d.get("vision_feature_layer", -2)
        if isinstance(layer, list):
            raise ConfigError(f"{source}: vision_feature_layer {layer} (several layers) is not supported; expected "
                              "one layer index")
        ids = {}
        for ours, names, default in (("image_token_id", ("image_token_id", "image_token_index"), 32001),
                                     ("video_token_id", ("video_token_id", "video_token_index"), 32000)):
            value = next((d[n] for n in names if d.get(n) is not None), default)
            ids[ours] = typed(names[1], value, int, source)
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = text_d.get(name) if text_d.get(name) is not None else d.get(name)
            if value is not None:
                ids[name] = typed(name, value, int, where)
        return cls(
            vision=vision, text=text,
            image_grid_pinpoints=tuple((typed("image_grid_pinpoints", h, int, source),
                                        typed("image_grid_pinpoints", w, int, source)) for h, w in pinpoints),
            vision_feature_layer=typed("vision_feature_layer", layer, int, source),
            vision_feature_select_strategy=d.get("vision_feature_select_strategy", "default"),
            spatial_pool_mode=d.get("spatial_pool_mode", "average"),
            spatial_pool_stride=typed("spatial_pool_stride", d.get("spatial_pool_stride", 2), int, source),
            projector_hidden_act=d.get("projector_hidden_act", "gelu"),
            multimodal_projector_bias=bool(d.get("multimodal_projector_bias", True)),
            **ids,
        )

    def to_hf_dict(self) -> dict[str, Any]:
        """The transformers 4.x layout (token ids as `*_token_index`), every field explicit."""
        t, v = self.text, self.vision
        scaling = None
        if t.rope_scaling_factor != 1.0:
            scaling = {"type": "linear", "rope_type": "linear", "factor": t.rope_scaling_factor}
        return {
            "architectures": ["LlavaNextVideoForConditionalGeneration"],
            "model_type": MODEL_TYPE,
            "image_token_index": self.image_token_id,
            "video_token_index": self.video_token_id,
            "image_grid_pinpoints": [list(p) for p in self.image_grid_pinpoints],
            "vision_feature_layer": self.vision_feature_layer,
            "vision_feature_select_strategy": self.vision_feature_select_strategy,
            "spatial_pool_mode": self.spatial_pool_mode,
            "spatial_pool_stride": self.spatial_pool_stride,
            "projector_hidden_act": self.projector_hidden_act,
            "multimodal_projector_bias": self.multimodal_projector_bias,
            "tie_word_embeddings": False,
            "pad_token_id": self.pad_token_id,
            "text_config": {
                "model_type": "llama",
                "architectures": ["LlamaForCausalLM"],
                "vocab_size": t.vocab_size,
                "hidden_size": t.hidden_size,
                "intermediate_size": t.intermediate_size,
                "num_hidden_layers": t.num_hidden_layers,
                "num_attention_heads": t.num_attention_heads,
                "num_key_value_heads": t.num_key_value_heads,
                "head_dim": t.head_dim,
                "hidden_act": t.hidden_act,
                "max_position_embeddings": t.max_position_embeddings,
                "rms_norm_eps": t.rms_norm_eps,
                "rope_theta": t.rope_theta,
                "rope_scaling": scaling,
                "attention_bias": False,
                "mlp_bias": False,
                "tie_word_embeddings": False,
                "bos_token_id": self.bos_token_id,
                "eos_token_id": self.eos_token_id,
                "pad_token_id": self.pad_token_id,
                "torch_dtype": "float32",
            },
            "vision_config": {
                "model_type": "clip_vision_model",
                "hidden_size": v.embed_dim,
                "intermediate_size": v.intermediate_size,
                "num_hidden_layers": v.depth,
                "num_attention_heads": v.num_heads,
                "num_channels": v.in_channels,
                "image_size": v.image_size,
                "patch_size": v.patch_size,
                "hidden_act": v.hidden_act,
                "layer_norm_eps": v.layer_norm_eps,
            },
        }


def _sub_config(d: dict, key: str, defaults: dict, absent: dict, source: str) -> dict:
    """config.json's `key` object over the class defaults (`absent` when there is none)."""
    sub = d.get(key)
    if sub is None:
        return dict(absent)
    if not isinstance(sub, dict):
        raise ConfigError(f"{source}: field {key!r} is {sub!r}; expected a JSON object")
    return {**defaults, **{k: v for k, v in sub.items() if v is not None or k in ("rope_scaling", "head_dim")}}


def _read_llama(t: dict, where: str) -> TextConfig:
    """A Llama text_config (defaults applied) -> TextConfig with 1D RoPE."""
    ints = {k: typed(k, t[k], int, where) for k in ("vocab_size", "hidden_size", "intermediate_size",
                                                    "num_hidden_layers", "num_attention_heads")}
    kv = t.get("num_key_value_heads")
    ints["num_key_value_heads"] = ints["num_attention_heads"] if kv is None else typed("num_key_value_heads", kv, int,
                                                                                       where)
    head_dim = ints["hidden_size"] // max(ints["num_attention_heads"], 1)
    if t.get("head_dim") is not None and typed("head_dim", t["head_dim"], int, where) != head_dim:
        raise ConfigError(f"{where}: head_dim {t['head_dim']} differs from hidden_size / num_attention_heads "
                          f"= {head_dim}; not supported")
    for flag in ("attention_bias", "mlp_bias"):
        if t.get(flag):
            raise ConfigError(f"{where}: {flag} is true; not supported (LLaVA-NeXT-Video's Llama has none)")
    rope = t.get("rope_parameters") or t.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise ConfigError(f"{where}: field 'rope_scaling' is {rope!r}; expected a JSON object or null")
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", "linear"):
        raise ConfigError(f"{where}: rope type {kind!r} is not supported (supported: default, linear)")
    factor = typed("factor", rope.get("factor", 1.0), float, where) if kind == "linear" else 1.0
    theta = rope.get("rope_theta", t.get("rope_theta"))
    return TextConfig(
        **ints,
        rms_norm_eps=typed("rms_norm_eps", t["rms_norm_eps"], float, where),
        rope_theta=typed("rope_theta", theta, float, where),
        mrope_section=(head_dim // 2,),
        tie_word_embeddings=False,
        max_position_embeddings=typed("max_position_embeddings", t["max_position_embeddings"], int, where),
        hidden_act=t.get("hidden_act", "silu"),
        qkv_bias=False,
        rope_scaling_factor=factor,
    )


# ----------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------
def llava_next_video_7b() -> LlavaNextVideoConfig:
    """llava-hf/LLaVA-NeXT-Video-7B-hf: CLIP ViT-L/14-336 (24 layers, features from layer 23),
    2x2 average pooling (144 tokens per frame), Vicuna-7B-v1.5 (32 layers, 4096 wide, 32,064
    tokens), linear RoPE scaling 2.5 as its config.json's text_config says.

    Checked offline against a public dump of `AutoConfig.from_pretrained` of that checkpoint
    (transformers 4.57.3, in a third-party script found by the project's code search): every
    field here agrees (image_grid_pinpoints, image/video token 32001/32000, spatial_pool_mode
    'average', stride 2, vision_feature_layer -2, 'default' selection, gelu projector with
    biases; text vocab 32064, rms_norm_eps 1e-5, max_position_embeddings 4096, rope_theta 1e4,
    rope_scaling linear 2.5, pad 0; the CLIP tower 1024/4096/24 layers/16 heads/336/14). BOS 1
    and EOS 2 are LlamaConfig's defaults, which that dump omits. transformers'
    convert_llava_next_video_weights_to_hf.py explains the vocabulary (Vicuna's 32,000 plus
    <video>, <image>, <pad>, padded to a multiple of 64) but writes RoPE factor 2.0: the Hub
    config was changed to 2.5 after conversion, and 2.5 is what the Hub file says.
    """
    return LlavaNextVideoConfig(
        vision=VisionConfig(**_vision_fields(DEFAULT_VISION_CONFIG)),
        text=TextConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=32, rms_norm_eps=1e-5, rope_theta=10000.0,
                        mrope_section=(64,), tie_word_embeddings=False, max_position_embeddings=4096,
                        qkv_bias=False, rope_scaling_factor=2.5),
    )


def llava_next_video_tiny(vocab_size: int = 1000) -> LlavaNextVideoConfig:
    """A LLaVA-NeXT-Video-architecture model small enough for unit tests (milliseconds per forward).

    84-pixel frames of 6x6 patches, pooled 2x2 to 3x3 = 9 tokens per frame (a grid larger than
    one pooling window, so the window grouping matters); a 3-layer tower read at layer 2
    (`vision_feature_layer` -2, as the released model); anyres pinpoints of one to three tiles;
    the 7B's linear RoPE scaling. Special token ids at the top of the vocabulary.
    """
    return LlavaNextVideoConfig(
        vision=VisionConfig(depth=3, embed_dim=32, num_heads=2, intermediate_size=64, image_size=84, patch_size=14),
        text=TextConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0,
                        mrope_section=(8,), tie_word_embeddings=False, max_position_embeddings=4096, qkv_bias=False,
                        rope_scaling_factor=2.5),
        image_grid_pinpoints=((84, 168), (168, 84), (168, 168), (252, 84), (84, 252)),
        image_token_id=vocab_size - 2, video_token_id=vocab_size - 3, bos_token_id=vocab_size - 4,
        eos_token_id=vocab_size - 1, pad_token_id=0,
    )


def _vision_fields(d: dict) -> dict:
    return dict(depth=d["num_hidden_layers"], embed_dim=d["hidden_size"], num_heads=d["num_attention_heads"],
                intermediate_size=d["intermediate_size"], image_size=d["image_size"], patch_size=d["patch_size"],
                in_channels=d["num_channels"], layer_norm_eps=d["layer_norm_eps"], hidden_act=d["hidden_act"])


PRESETS = {"llava_next_video_7b": llava_next_video_7b, "llava_next_video_tiny": llava_next_video_tiny}
