"""Qwen2.5-VL model shapes, read from and written to Hugging Face `config.json`.

The LLM section is Qwen2-VL's (`models/config.py` reads it, in both layouts seen in the wild:
flat 4.x fields, or 5.x `text_config` with `rope_parameters`). The vision section differs
(specs/qwen2_vl.md §1.8): `hidden_size` is the ViT width (Qwen2-VL calls it `embed_dim`),
`intermediate_size` the gated MLP width, `out_hidden_size` the merger's output, plus the window
attention and absolute-time M-RoPE fields. Released Hub configs write every vision field that
differs between sizes, so only `in_channels` (Hub files say `in_chans`), `patch_size`,
`temporal_patch_size` and `spatial_merge_size` have defaults; a missing one of the others is an
error naming it.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from sf2t_jax.models.config import (ConfigError, TextConfig, _json_object, check_text_config, check_vision_heads, need,
                                    qwen_slice_layout, read_config_json, read_text_config, read_token_ids, text_to_hf_dict,
                                    token_ids_to_hf_dict, typed)
from sf2t_jax.models.rope_index import VideoTime

MODEL_TYPE = "qwen2_5_vl"

# The frame rate transformers' Qwen2_5_VLProcessor assumes when it is given none (4.49:
# `videos_kwargs.pop("fps", 2.0)`), so `second_per_grid_ts = temporal_patch_size / 2.0`. The
# training pipeline passes each clip's sampled rate instead (`video.sampled_fps` of the stream
# rate, the clip's frame count and the frames shown; `input/examples.py`); this default serves
# clips whose container states no rate, synthetic batches, and callers that give no fps.
PROCESSOR_DEFAULT_FPS = 2.0


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """The Qwen2.5-VL ViT (RMSNorm, gated SiLU MLP with biases, window attention) and merger."""

    depth: int  # number of ViT blocks
    embed_dim: int  # ViT width (HF `vision_config.hidden_size`)
    num_heads: int
    intermediate_size: int  # gate/up width of each block's MLP
    out_hidden_size: int  # merger output width (= LLM hidden size)
    window_size: int = 112  # window side in pixels: 112 / patch 14 / merge 2 = 4x4 merged tokens
    fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)  # blocks attending over the whole slice
    tokens_per_second: float = 2.0  # temporal M-RoPE positions per second of video
    in_channels: int = 3
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-6  # fixed in transformers' Qwen2.5-VL vision code, not in config.json

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_weights(self) -> int:
        """Matrix weights of one block's gated MLP (gate, up, down), for FLOP counts."""
        return 3 * self.embed_dim * self.intermediate_size

    @property
    def patch_dim(self) -> int:
        """Width of one flattened patch row: C * temporal_patch * patch * patch (1176)."""
        return self.in_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def merged_dim(self) -> int:
        return self.embed_dim * self.spatial_merge_size**2

    @property
    def window_merged(self) -> int:
        """Window side in merged tokens (transformers' `vit_merger_window_size`)."""
        return self.window_size // self.spatial_merge_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class Qwen25VLConfig:
    """A whole Qwen2.5-VL model: vision tower, Qwen2 LLM, and the special token ids."""

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
        check_vision_heads(v.embed_dim, v.num_heads, "vision hidden_size")
        if v.out_hidden_size != t.hidden_size:
            raise ConfigError(f"vision_config.out_hidden_size {v.out_hidden_size} must equal the LLM hidden_size "
                              f"{t.hidden_size}")
        if v.window_merged < 1:
            raise ConfigError(f"vision_config.window_size {v.window_size} is smaller than one merged token "
                              f"({v.patch_size * v.spatial_merge_size} pixels)")
        bad = [i for i in v.fullatt_block_indexes if not 0 <= i < v.depth]
        if bad:
            raise ConfigError(f"vision_config.fullatt_block_indexes {list(v.fullatt_block_indexes)}: {bad[0]} is not a "
                              f"block index (depth {v.depth})")
        if v.hidden_act != "silu":
            raise ConfigError(f"vision_config.hidden_act {v.hidden_act!r} is not supported (Qwen2.5-VL uses 'silu')")
        if t.hidden_act != "silu":
            raise ConfigError(f"hidden_act {t.hidden_act!r} is not supported (Qwen2.5-VL uses 'silu')")

    @property
    def slice_layout(self):
        return qwen_slice_layout(self.vision)

    # ------------------------------------------------------------------------------------
    # Hugging Face config.json
    # ------------------------------------------------------------------------------------
    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], source: str = "config.json") -> "Qwen25VLConfig":
        if d.get("model_type") != MODEL_TYPE:
            raise ConfigError(f"{source}: model_type {d.get('model_type')!r} is not {MODEL_TYPE!r}")
        text = read_text_config(d, source)
        vd = need(d, "vision_config", source)
        if not isinstance(vd, dict):
            raise ConfigError(f"{source}: field 'vision_config' is {vd!r}; expected a JSON object")
        where = f"{source} vision_config"

        def field(key, kind, default=None):
            value = vd.get(key, default)
            if value is None:
                raise ConfigError(f"{where}: missing required field {key!r}")
            return typed(key, value, kind, where)

        full = need(vd, "fullatt_block_indexes", where)
        if not isinstance(full, list):
            raise ConfigError(f"{where}: field 'fullatt_block_indexes' is {full!r}; expected a list of integers")
        vision = VisionConfig(
            depth=field("depth", int), embed_dim=field("hidden_size", int), num_heads=field("num_heads", int),
            intermediate_size=field("intermediate_size", int), out_hidden_size=field("out_hidden_size", int),
            window_size=field("window_size", int),
            fullatt_block_indexes=tuple(typed("fullatt_block_indexes", i, int, where) for i in full),
            tokens_per_second=field("tokens_per_second", float),
            in_channels=field("in_channels", int, vd.get("in_chans", 3)),
            patch_size=field("patch_size", int, 14), temporal_patch_size=field("temporal_patch_size", int, 2),
            spatial_merge_size=field("spatial_merge_size", int, 2), hidden_act=vd.get("hidden_act", "silu"),
        )
        return cls(vision=vision, text=text, **read_token_ids(d, source))

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "Qwen25VLConfig":
        """Reads `path` (a config.json, or a directory holding one)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        return cls.from_hf_dict(read_config_json(path), source=path)

    @classmethod
    def from_json_text(cls, text: str, source: str = "config.json") -> "Qwen25VLConfig":
        return cls.from_hf_dict(_json_object(text, source), source=source)

    def to_hf_dict(self) -> dict[str, Any]:
        """The flat transformers 4.x layout of the Hub's Qwen2.5-VL configs."""
        v = self.vision
        tps = v.tokens_per_second
        return {
            "architectures": ["Qwen2_5_VLForConditionalGeneration"],
            "model_type": MODEL_TYPE,
            **text_to_hf_dict(self.text),
            **token_ids_to_hf_dict(self),
            "vision_config": {
                "depth": v.depth,
                "hidden_size": v.embed_dim,
                "hidden_act": v.hidden_act,
                "intermediate_size": v.intermediate_size,
                "num_heads": v.num_heads,
                "in_channels": v.in_channels,
                "in_chans": v.in_channels,
                "out_hidden_size": v.out_hidden_size,
                "patch_size": v.patch_size,
                "spatial_merge_size": v.spatial_merge_size,
                "spatial_patch_size": v.patch_size,
                "temporal_patch_size": v.temporal_patch_size,
                "window_size": v.window_size,
                "fullatt_block_indexes": list(v.fullatt_block_indexes),
                "tokens_per_second": int(tps) if float(tps).is_integer() else tps,
            },
        }


def video_time(config: Qwen25VLConfig, fps: float = PROCESSOR_DEFAULT_FPS) -> VideoTime:
    """Video positions on the absolute time axis, for frames sampled at `fps` per second:
    `second_per_grid_ts = temporal_patch_size / fps`, as Qwen2_5_VLProcessor computes it."""
    if not fps > 0:
        raise ValueError(f"video fps must be positive, got {fps!r}")
    return VideoTime(tokens_per_second=config.vision.tokens_per_second,
                     seconds_per_slice=config.vision.temporal_patch_size / fps)


def video_time_at(config: Qwen25VLConfig, fps: float | None) -> VideoTime:
    """`video_time` at `fps`, or at the processor's default rate when fps is None."""
    return video_time(config, PROCESSOR_DEFAULT_FPS if fps is None else fps)


# ----------------------------------------------------------------------------------------
# Presets (values from the Hub config.json files; see specs/qwen2_vl.md §1.8). Checked offline
# against copies of the Hub config.json files in public code found by the project's code
# search: 3B and 7B in full (LLM and vision fields, tokens_per_second 2, window 112, full
# attention in blocks 7/15/23/31). 72B could not be checked offline: its LLM widths are
# Qwen2.5-72B's, and its vision MLP width 3456 (not 3420) is what the 32B's config also says.
# ----------------------------------------------------------------------------------------
def _vision(out_hidden_size: int, intermediate_size: int = 3420) -> VisionConfig:
    return VisionConfig(depth=32, embed_dim=1280, num_heads=16, intermediate_size=intermediate_size,
                        out_hidden_size=out_hidden_size)


def _text(**fields) -> TextConfig:
    return TextConfig(rms_norm_eps=1e-6, rope_theta=1e6, mrope_section=(16, 24, 24), max_position_embeddings=128000,
                      **fields)


def qwen25vl_3b() -> Qwen25VLConfig:
    """Qwen2.5-VL-3B-Instruct: 36-layer 2048-wide LLM, tied embeddings."""
    return Qwen25VLConfig(vision=_vision(2048), text=_text(
        vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
        num_key_value_heads=2, tie_word_embeddings=True))


def qwen25vl_7b() -> Qwen25VLConfig:
    """Qwen2.5-VL-7B-Instruct: 28-layer 3584-wide LLM, separate lm_head."""
    return Qwen25VLConfig(vision=_vision(3584), text=_text(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, tie_word_embeddings=False))


def qwen25vl_72b() -> Qwen25VLConfig:
    """Qwen2.5-VL-72B-Instruct: 80-layer 8192-wide LLM, vision MLP width 3456, separate lm_head."""
    return Qwen25VLConfig(vision=_vision(8192, intermediate_size=3456), text=_text(
        vocab_size=152064, hidden_size=8192, intermediate_size=29568, num_hidden_layers=80, num_attention_heads=64,
        num_key_value_heads=8, tie_word_embeddings=False))


def qwen25vl_tiny(vocab_size: int = 1000, tie_word_embeddings: bool = True) -> Qwen25VLConfig:
    """A Qwen2.5-VL-architecture model small enough for unit tests (milliseconds per forward).

    Three ViT blocks, the middle one with full attention, and a 2x2-merged-token window
    (window_size 56 pixels), so grids of a few patches already have several windows, some partial.
    Special token ids sit at the top of the vocabulary, as in the real model.
    """
    return Qwen25VLConfig(
        vision=VisionConfig(depth=3, embed_dim=32, num_heads=2, intermediate_size=48, out_hidden_size=64,
                            window_size=56, fullatt_block_indexes=(1,), tokens_per_second=2.0),
        text=TextConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
                        mrope_section=(2, 3, 3), tie_word_embeddings=tie_word_embeddings),
        image_token_id=vocab_size - 5, video_token_id=vocab_size - 4, vision_start_token_id=vocab_size - 3,
        vision_end_token_id=vocab_size - 2, vision_token_id=vocab_size - 6,
        bos_token_id=vocab_size - 7, eos_token_id=vocab_size - 1,
    )


PRESETS = {"qwen25vl_3b": qwen25vl_3b, "qwen25vl_7b": qwen25vl_7b, "qwen25vl_72b": qwen25vl_72b,
           "qwen25vl_tiny": qwen25vl_tiny}
