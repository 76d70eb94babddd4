"""Model families by Hugging Face `model_type`: what conversion and model loading need to know.

Each family names its config dataclass (reads and writes config.json), its NNX module, its
conversion rules (`sf2t_jax.convert.table`) and its presets. A checkpoint's `model_type`
picks the family; an unknown one is one `ConfigError` listing the supported types.

    qwen2_vl     Qwen2-VL     models/config.py, models/qwen2_vl.py
    qwen2_5_vl   Qwen2.5-VL   models/qwen2_5_vl/
    llava_next_video   LLaVA-NeXT-Video   models/llava_next_video/
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from sf2t_jax.convert.table import LLAVA_NEXT_VIDEO_RULES, QWEN2_5_VL_RULES, QWEN2_VL_RULES, Rule
from sf2t_jax.models import config as qwen2_vl_config
from sf2t_jax.models.config import ConfigError, Qwen2VLConfig, _json_object, read_config_json
from sf2t_jax.models.llava_next_video import config as llava_next_video_config
from sf2t_jax.models.llava_next_video.config import LlavaNextVideoConfig
from sf2t_jax.models.llava_next_video.model import LlavaNextVideo
from sf2t_jax.models.qwen2_5_vl import config as qwen2_5_vl_config
from sf2t_jax.models.qwen2_5_vl.config import Qwen25VLConfig
from sf2t_jax.models.qwen2_5_vl.model import Qwen25VL
from sf2t_jax.models.qwen2_vl import Qwen2VL
from sf2t_jax.models.rope_index import VideoTime
from sf2t_jax.models.rows import LlavaRows, QwenRows, RowFormat

ModelConfig = Qwen2VLConfig | Qwen25VLConfig | LlavaNextVideoConfig


def _conv3d_kernel(config) -> tuple[int, ...]:
    v = config.vision
    return (v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size)


def _conv2d_kernel(config) -> tuple[int, ...]:
    v = config.vision
    return (v.in_channels, v.patch_size, v.patch_size)


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family."""

    model_type: str  # config.json `model_type`
    name: str  # for messages
    config_class: type  # `from_hf_dict(d, source)`, `to_hf_dict()`
    model_class: type  # `model_class(config, numerics, rngs=...)` -> nnx.Module
    conversion_rules: tuple[Rule, ...]  # Hub key <-> parameter path
    presets: Mapping[str, Callable[[], Any]]  # name -> config
    # (config, fps of the sampled frames or None for the processor's default) -> the video time
    # axis of its M-RoPE positions (None: positions count slices, or 1D positions)
    video_time: Callable[[Any, float | None], VideoTime | None]
    # config -> the Hub patch-embedding kernel's shape after its output dimension: a Conv3d's
    # (C, t, p, p) for the Qwen families, a Conv2d's (C, p, p) for CLIP
    patch_kernel: Callable[[Any], tuple[int, ...]] = _conv3d_kernel
    # config -> how decoded frames and a conversation become one batch row (`models.rows`)
    row_format: Callable[[Any], RowFormat] = lambda config: QwenRows(config.slice_layout, None)
    # Parameter path prefixes of the vision tower (patch embedding and blocks) and of what maps
    # its features into the LLM (merger / projector): the planner's FLOP count asks which train.
    tower_prefixes: tuple[str, ...] = ("visual.patch_embed.", "visual.blocks.")
    projector_prefixes: tuple[str, ...] = ("visual.merger.",)


FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("qwen2_vl", "Qwen2-VL", Qwen2VLConfig, Qwen2VL, QWEN2_VL_RULES, qwen2_vl_config.PRESETS,
           video_time=lambda config, fps: None),
    Family("qwen2_5_vl", "Qwen2.5-VL", Qwen25VLConfig, Qwen25VL, QWEN2_5_VL_RULES, qwen2_5_vl_config.PRESETS,
           video_time=qwen2_5_vl_config.video_time_at,
           row_format=lambda config: QwenRows(config.slice_layout, qwen2_5_vl_config.video_time(config))),
    Family("llava_next_video", "LLaVA-NeXT-Video", LlavaNextVideoConfig, LlavaNextVideo, LLAVA_NEXT_VIDEO_RULES,
           llava_next_video_config.PRESETS, video_time=lambda config, fps: None, patch_kernel=_conv2d_kernel,
           row_format=LlavaRows.from_config, tower_prefixes=("vision_tower.",),
           projector_prefixes=("multi_modal_projector.", "image_newline")),
)}


def family_named(model_type: Any, source: str = "config.json") -> Family:
    """The family of a config.json `model_type`, or a ConfigError listing the supported ones."""
    if model_type not in FAMILIES:
        raise ConfigError(f"{source}: model_type {model_type!r} is not supported; supported: {', '.join(FAMILIES)}")
    return FAMILIES[model_type]


def family_of(config: ModelConfig) -> Family:
    """The family whose config dataclass `config` is."""
    for family in FAMILIES.values():
        if type(config) is family.config_class:
            return family
    raise TypeError(f"{type(config).__name__} is not the config of a known model family")


def config_from_hf_dict(d: dict[str, Any], source: str = "config.json") -> ModelConfig:
    """A parsed config.json -> its family's config dataclass."""
    return family_named(d.get("model_type"), source).config_class.from_hf_dict(d, source=source)


def config_from_json_text(text: str, source: str = "config.json") -> ModelConfig:
    return config_from_hf_dict(_json_object(text, source), source)


def read_config(path: str | os.PathLike) -> ModelConfig:
    """Reads `path` (a config.json, or a directory holding one) into its family's config."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    return config_from_hf_dict(read_config_json(path), source=path)


def video_time(config: ModelConfig, fps: float | None = None) -> VideoTime | None:
    """How `config`'s family places the slices of a video whose sampled frames run at `fps`
    frames per second in time (see `rope_index.VideoTime`); fps None: the processor's default
    rate. For a decoded clip, `fps = video.sampled_fps(info.fps, info.num_frames, frames shown)`.
    None for families whose positions ignore time (Qwen2-VL counts slices, LLaVA is 1D)."""
    return family_of(config).video_time(config, fps)


def row_format(config: ModelConfig) -> RowFormat:
    """How `config`'s family makes batch rows from frames and conversations (`models.rows`)."""
    return family_of(config).row_format(config)


def family_of_preset(name: str) -> Family:
    """The family holding preset `name` (KeyError listing every preset otherwise)."""
    for family in FAMILIES.values():
        if name in family.presets:
            return family
    known = sorted(n for f in FAMILIES.values() for n in f.presets)
    raise KeyError(f"unknown model preset {name!r}; known: {', '.join(known)}")


def preset_label(name: str) -> str:
    """A preset's display name, its family's name and size: 'qwen25vl_7b' -> 'Qwen2.5-VL-7B',
    'llava_next_video_tiny' -> 'LLaVA-NeXT-Video-TINY' (preset names end in `_<size>`). KeyError
    for a name no family holds."""
    return f"{family_of_preset(name).name}-{name.rsplit('_', 1)[-1].upper()}"


def preset(name: str) -> ModelConfig:
    """A preset of any family by name (`qwen2vl_7b`, `qwen25vl_7b`, ...)."""
    return family_of_preset(name).presets[name]()
