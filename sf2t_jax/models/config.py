"""Qwen2-VL model shapes as frozen dataclasses, read from and written to Hugging Face `config.json`.

Two layouts exist in the wild and both are read:
  * flat (transformers 4.x): LLM fields at the top level, `rope_scaling={"type": "mrope",
    "mrope_section": [...]}` (newer 4.x saves: `"type": "default"`), `vision_config` nested;
  * nested (transformers 5.x): LLM fields under `text_config`, RoPE under `rope_parameters`.
`to_hf_dict` writes the flat 4.x layout, which every transformers version since 4.45 loads.
Values never fall back to the transformers class defaults (they describe the 72B model): a
field the file lacks is an error naming it, except for vision fields whose Hub configs omit
them and whose defaults are the same for every released Qwen2-VL size.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from sf2t_jax.errors import InputError
from sf2t_jax.models.slices import SliceLayout

MODEL_TYPE = "qwen2_vl"
SUPPORTED_MODEL_TYPES = (MODEL_TYPE,)

# Vision fields that released Hub configs omit; these values are the same for 2B, 7B and 72B.
_VISION_DEFAULTS = dict(
    depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, in_channels=3, patch_size=14,
    spatial_merge_size=2, temporal_patch_size=2, hidden_act="quick_gelu",
)


class ConfigError(InputError):
    """A config.json that cannot describe a Qwen2-VL model."""


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """The Qwen2-VL ViT and patch merger."""

    depth: int  # number of ViT blocks
    embed_dim: int  # ViT width
    num_heads: int
    mlp_ratio: float  # fc1 width = embed_dim * mlp_ratio
    hidden_size: int  # merger output width (= LLM hidden size)
    in_channels: int = 3
    patch_size: int = 14
    temporal_patch_size: int = 2  # frames per temporal slice
    spatial_merge_size: int = 2  # merger groups merge x merge patches into one LLM token
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def mlp_weights(self) -> int:
        """Matrix weights of one block's MLP (fc1, fc2), for FLOP counts."""
        return 2 * self.embed_dim * self.mlp_dim

    @property
    def patch_dim(self) -> int:
        """Width of one flattened patch row: C * temporal_patch * patch * patch (1176)."""
        return self.in_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def merged_dim(self) -> int:
        return self.embed_dim * self.spatial_merge_size**2


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """The Qwen2 decoder."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int  # SwiGLU width
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int  # GQA: kv heads shared by num_attention_heads // num_key_value_heads
    rms_norm_eps: float
    rope_theta: float
    mrope_section: tuple[int, ...]  # frequencies per (t, h, w) row; sums to head_dim / 2
    tie_word_embeddings: bool
    max_position_embeddings: int = 32768
    hidden_act: str = "silu"
    # Biases on the q/k/v projections: Qwen2's decoder has them, Llama's (LLaVA-NeXT-Video) not.
    qkv_bias: bool = True
    # Linear RoPE scaling (transformers' rope_type "linear"): positions divided by this factor.
    rope_scaling_factor: float = 1.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def check_text_config(t: TextConfig) -> None:
    """The LLM shape checks every family shares: heads divide the width, KV heads the heads,
    and the M-RoPE sections cover half a head. Raises ConfigError naming the fields."""
    if t.hidden_size % t.num_attention_heads:
        raise ConfigError(f"hidden_size {t.hidden_size} is not divisible by num_attention_heads {t.num_attention_heads}")
    if t.num_attention_heads % t.num_key_value_heads:
        raise ConfigError(
            f"num_attention_heads {t.num_attention_heads} is not divisible by num_key_value_heads {t.num_key_value_heads}"
        )
    if sum(t.mrope_section) * 2 != t.head_dim:
        raise ConfigError(f"mrope_section {list(t.mrope_section)} must sum to head_dim/2 = {t.head_dim // 2}")


def qwen_slice_layout(v) -> SliceLayout:
    """Qwen-VL slices: `temporal_patch_size` frames, 2x2-merged tokens, M-RoPE."""
    return SliceLayout(patch_size=v.patch_size, patch_dim=v.patch_dim, frames_per_slice=v.temporal_patch_size,
                       token_pool=v.spatial_merge_size, fixed_resolution=None, mrope=True)


def check_vision_heads(width: int, heads: int, name: str) -> None:
    """The ViT's 2D rotary embedding needs a head dimension that is a multiple of 4."""
    if width % heads or (width // heads) % 4:
        raise ConfigError(f"{name} {width} / num_heads {heads} must be a multiple of 4")


@dataclasses.dataclass(frozen=True)
class Qwen2VLConfig:
    """A whole Qwen2-VL model: vision tower, LLM, and the special token ids that join them."""

    vision: VisionConfig
    text: TextConfig
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    vision_token_id: int = 151654
    bos_token_id: int = 151643
    eos_token_id: int = 151645

    def __post_init__(self):
        t, v = self.text, self.vision
        check_text_config(t)
        check_vision_heads(v.embed_dim, v.num_heads, "vision embed_dim")
        if v.hidden_size != t.hidden_size:
            raise ConfigError(f"vision_config.hidden_size {v.hidden_size} must equal the LLM hidden_size {t.hidden_size}")
        if v.hidden_act != "quick_gelu":
            raise ConfigError(f"vision_config.hidden_act {v.hidden_act!r} is not supported (Qwen2-VL uses 'quick_gelu')")
        if t.hidden_act != "silu":
            raise ConfigError(f"hidden_act {t.hidden_act!r} is not supported (Qwen2-VL uses 'silu')")

    @property
    def slice_layout(self) -> SliceLayout:
        return qwen_slice_layout(self.vision)

    # ------------------------------------------------------------------------------------
    # Hugging Face config.json
    # ------------------------------------------------------------------------------------
    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], source: str = "config.json") -> "Qwen2VLConfig":
        model_type = d.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(
                f"{source}: model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        text = read_text_config(d, source)
        vision_d = need(d, "vision_config", source)
        if not isinstance(vision_d, dict):
            raise ConfigError(f"{source}: field 'vision_config' is {vision_d!r}; expected a JSON object")
        vd = {**_VISION_DEFAULTS, **vision_d}
        vd.setdefault("hidden_size", text.hidden_size)
        known = {f.name for f in dataclasses.fields(VisionConfig)}
        vision = VisionConfig(**{k: v for k, v in vd.items() if k in known})
        ids = read_token_ids(d, source)
        return cls(vision=vision, text=text, **ids)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "Qwen2VLConfig":
        """Reads `path` (a config.json, or a directory holding one)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        return cls.from_hf_dict(read_config_json(path), source=path)

    @classmethod
    def from_json_text(cls, text: str, source: str = "config.json") -> "Qwen2VLConfig":
        return cls.from_hf_dict(_json_object(text, source), source=source)

    def to_hf_dict(self) -> dict[str, Any]:
        """The flat transformers 4.x layout (also loaded by 5.x and vLLM)."""
        t, v = self.text, self.vision
        return {
            "architectures": ["Qwen2VLForConditionalGeneration"],
            "model_type": "qwen2_vl",
            **text_to_hf_dict(t),
            **token_ids_to_hf_dict(self),
            "vision_config": {
                "depth": v.depth,
                "embed_dim": v.embed_dim,
                "hidden_size": v.hidden_size,
                "hidden_act": v.hidden_act,
                "mlp_ratio": v.mlp_ratio,
                "num_heads": v.num_heads,
                "in_channels": v.in_channels,
                "in_chans": v.in_channels,
                "patch_size": v.patch_size,
                "spatial_merge_size": v.spatial_merge_size,
                "spatial_patch_size": v.patch_size,
                "temporal_patch_size": v.temporal_patch_size,
            },
        }


# ----------------------------------------------------------------------------------------
# Readers shared by the Qwen families (Qwen2.5-VL's config has the same LLM section)
# ----------------------------------------------------------------------------------------
TOKEN_ID_FIELDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id",
                   "vision_token_id", "bos_token_id", "eos_token_id")


def need(d: dict[str, Any], key: str, source: str):
    """`d[key]`, or a ConfigError naming the field when it is absent or null."""
    if key not in d or d[key] is None:
        raise ConfigError(f"{source}: missing required field {key!r}")
    return d[key]


def typed(key: str, value, kind, source: str):
    """`kind(value)`, or a ConfigError naming the field (a string where a number belongs)."""
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise TypeError
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: field {key!r} is {value!r}; expected "
                          f"{'an integer' if kind is int else 'a number'}") from None


def read_text_config(d: dict[str, Any], source: str) -> TextConfig:
    """The Qwen2 decoder's fields of a config.json in either layout: flat (4.x) or nested
    under `text_config` with RoPE under `rope_parameters` (5.x)."""
    text_d = dict(d)
    if isinstance(d.get("text_config"), dict):  # transformers 5.x nests the LLM fields
        text_d = {**d, **d["text_config"]}
    rope = text_d.get("rope_parameters") or text_d.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise ConfigError(f"{source}: field 'rope_scaling' is {rope!r}; expected a JSON object with mrope_section")
    if "mrope_section" not in rope:
        raise ConfigError(f"{source}: no mrope_section in rope_scaling / rope_parameters")
    theta = rope.get("rope_theta", text_d.get("rope_theta"))
    if theta is None:
        raise ConfigError(f"{source}: missing required field 'rope_theta'")
    ints = {k: typed(k, need(text_d, k, source), int, source)
            for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                      "num_key_value_heads")}
    section = rope["mrope_section"]
    if not isinstance(section, list):
        raise ConfigError(f"{source}: field 'mrope_section' is {section!r}; expected a list of integers")
    return TextConfig(
        **ints,
        rms_norm_eps=typed("rms_norm_eps", need(text_d, "rms_norm_eps", source), float, source),
        rope_theta=typed("rope_theta", theta, float, source),
        mrope_section=tuple(typed("mrope_section", s, int, source) for s in section),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", text_d.get("tie_word_embeddings", False))),
        max_position_embeddings=typed("max_position_embeddings", text_d.get("max_position_embeddings", 32768), int,
                                      source),
        hidden_act=text_d.get("hidden_act", "silu"),
    )


def read_token_ids(d: dict[str, Any], source: str) -> dict[str, int]:
    """The special token ids a config.json sets (absent ones keep the dataclass defaults)."""
    return {f: typed(f, d[f], int, source) for f in TOKEN_ID_FIELDS if d.get(f) is not None}


def text_to_hf_dict(t: TextConfig) -> dict[str, Any]:
    """The flat transformers 4.x LLM fields of a Qwen2 decoder."""
    return {
        "vocab_size": t.vocab_size,
        "hidden_size": t.hidden_size,
        "intermediate_size": t.intermediate_size,
        "num_hidden_layers": t.num_hidden_layers,
        "num_attention_heads": t.num_attention_heads,
        "num_key_value_heads": t.num_key_value_heads,
        "hidden_act": t.hidden_act,
        "max_position_embeddings": t.max_position_embeddings,
        "rms_norm_eps": t.rms_norm_eps,
        "rope_theta": t.rope_theta,
        "rope_scaling": {"type": "mrope", "mrope_section": list(t.mrope_section)},
        "tie_word_embeddings": t.tie_word_embeddings,
        "use_sliding_window": False,
        "sliding_window": t.max_position_embeddings,
        "max_window_layers": t.num_hidden_layers,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def token_ids_to_hf_dict(config) -> dict[str, int]:
    return {f: getattr(config, f) for f in TOKEN_ID_FIELDS}


# ----------------------------------------------------------------------------------------
# Presets (values from the Hub config.json files; see specs/qwen2_vl.md §1.1).
# ----------------------------------------------------------------------------------------
def qwen2vl_2b() -> Qwen2VLConfig:
    """Qwen2-VL-2B-Instruct: 2,208,985,600 parameters, tied embeddings."""
    return Qwen2VLConfig(
        vision=VisionConfig(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, hidden_size=1536),
        text=TextConfig(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                        num_attention_heads=12, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
                        mrope_section=(16, 24, 24), tie_word_embeddings=True),
    )


def qwen2vl_7b() -> Qwen2VLConfig:
    """Qwen2-VL-7B-Instruct: 8,291,375,616 parameters, separate lm_head."""
    return Qwen2VLConfig(
        vision=VisionConfig(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, hidden_size=3584),
        text=TextConfig(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                        num_attention_heads=28, num_key_value_heads=4, rms_norm_eps=1e-6, rope_theta=1e6,
                        mrope_section=(16, 24, 24), tie_word_embeddings=False),
    )


def qwen2vl_72b() -> Qwen2VLConfig:
    """Qwen2-VL-72B-Instruct: the 7B's vision tower merged into an 80-layer, 8192-wide LLM with
    64 query and 8 KV heads, separate lm_head."""
    return Qwen2VLConfig(
        vision=VisionConfig(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, hidden_size=8192),
        text=TextConfig(vocab_size=152064, hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
                        num_attention_heads=64, num_key_value_heads=8, rms_norm_eps=1e-6, rope_theta=1e6,
                        mrope_section=(16, 24, 24), tie_word_embeddings=False),
    )


def qwen2vl_tiny(vocab_size: int = 1000, tie_word_embeddings: bool = True) -> Qwen2VLConfig:
    """A Qwen2-VL-architecture model small enough for unit tests (milliseconds per forward).

    Special token ids sit at the top of the vocabulary, as in the real model.
    """
    return Qwen2VLConfig(
        vision=VisionConfig(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2, hidden_size=64),
        text=TextConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
                        mrope_section=(2, 3, 3), tie_word_embeddings=tie_word_embeddings),
        image_token_id=vocab_size - 5, video_token_id=vocab_size - 4, vision_start_token_id=vocab_size - 3,
        vision_end_token_id=vocab_size - 2, vision_token_id=vocab_size - 6,
        bos_token_id=vocab_size - 7, eos_token_id=vocab_size - 1,
    )


def qwen2vl_small() -> Qwen2VLConfig:
    """A 4-layer, 512-wide Qwen2-VL-architecture model (ViT 4 x 256, 32,000-token vocabulary,
    separate lm_head; ~36M parameters): wide enough that activations, not weights, dominate a
    step's memory, so sharding and scaling checks on CPU devices mean what they would on TPU."""
    vocab = 32000
    return Qwen2VLConfig(
        vision=VisionConfig(depth=4, embed_dim=256, num_heads=4, mlp_ratio=4, hidden_size=512),
        text=TextConfig(vocab_size=vocab, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                        num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
                        mrope_section=(8, 12, 12), tie_word_embeddings=False),
        image_token_id=vocab - 5, video_token_id=vocab - 4, vision_start_token_id=vocab - 3,
        vision_end_token_id=vocab - 2, vision_token_id=vocab - 6, bos_token_id=vocab - 7, eos_token_id=vocab - 1,
    )


PRESETS = {"qwen2vl_2b": qwen2vl_2b, "qwen2vl_7b": qwen2vl_7b, "qwen2vl_72b": qwen2vl_72b, "qwen2vl_small": qwen2vl_small,
           "qwen2vl_tiny": qwen2vl_tiny}


def preset(name: str) -> Qwen2VLConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()


def read_config_json(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's config.json as a dict, or one `ConfigError` naming the file (unreadable,
    not UTF-8, not JSON, not a JSON object); FileNotFoundError when there is none."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no config.json at {path}: expected a Hugging Face checkpoint directory "
                                "(Qwen2-VL, Qwen2.5-VL or LLaVA-NeXT-Video)")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); expected the "
                          "model's JSON config") from None
    return _json_object(text, path)


def _json_object(text: str, source: str) -> dict[str, Any]:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a JSON object of model fields, got a {type(d).__name__}")
    return d
