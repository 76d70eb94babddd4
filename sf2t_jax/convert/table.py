"""The declarative tables between Hugging Face Hub tensor names and our parameter paths.

One table per model family (`QWEN2_VL_RULES`, `QWEN2_5_VL_RULES`,
`LLAVA_NEXT_VIDEO_RULES`; `models/family.py` says which a checkpoint uses). Each rule pairs a Hub key template with our path template (placeholders
`{i}` for a layer index and `{name}` for one of the listed alternatives) and names a layout
hook. Both directions use the same rules, so a round trip is exact by construction.

Hooks (HF tensor <-> ours):
  copy         same layout (norm scales and biases, embeddings).
  linear       torch Linear (out, in) <-> Flax kernel (in, out).
  patch_embed  Conv3d (E, C, t, p, p) (Qwen) or Conv2d (E, C, p, p) (CLIP) <-> dense kernel
               (C*[t*]p*p, E); the conv's kernel equals its stride, so it is a dense layer on
               the flattened patch row.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np


@dataclasses.dataclass(frozen=True)
class Rule:
    hf: str
    ours: str
    hook: str
    choices: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def _regex(self, template: str) -> re.Pattern:
        pattern = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)")
        for name, options in self.choices:
            pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>{'|'.join(map(re.escape, options))})")
        return re.compile(f"^{pattern}$")

    def match_hf(self, key: str) -> str | None:
        m = self._regex(self.hf).match(key)
        return None if m is None else self.ours.format(**m.groupdict())

    def match_ours(self, path: str) -> str | None:
        m = self._regex(self.ours).match(path)
        return None if m is None else self.hf.format(**m.groupdict())


def _rule(hf, ours, hook, **choices):
    return Rule(hf, ours, hook, tuple((k, tuple(v)) for k, v in choices.items()))


# ---- shared by the Qwen families -----------------------------------------------------------
_PATCH_EMBED_AND_ATTENTION = (
    _rule("visual.patch_embed.proj.weight", "visual.patch_embed.kernel", "patch_embed"),
    _rule("visual.blocks.{i}.attn.{p}.weight", "visual.blocks.{i}.attn.{p}.kernel", "linear", p=("qkv", "proj")),
    _rule("visual.blocks.{i}.attn.{p}.bias", "visual.blocks.{i}.attn.{p}.bias", "copy", p=("qkv", "proj")),
)
_MERGER_MLP = (
    _rule("visual.merger.mlp.0.weight", "visual.merger.fc1.kernel", "linear"),
    _rule("visual.merger.mlp.0.bias", "visual.merger.fc1.bias", "copy"),
    _rule("visual.merger.mlp.2.weight", "visual.merger.fc2.kernel", "linear"),
    _rule("visual.merger.mlp.2.bias", "visual.merger.fc2.bias", "copy"),
)
_QWEN2_DECODER = (
    _rule("model.embed_tokens.weight", "model.embed_tokens.embedding", "copy"),
    _rule("model.layers.{i}.self_attn.{p}.weight", "model.layers.{i}.self_attn.{p}.kernel", "linear",
          p=("q_proj", "k_proj", "v_proj", "o_proj")),
    _rule("model.layers.{i}.self_attn.{p}.bias", "model.layers.{i}.self_attn.{p}.bias", "copy",
          p=("q_proj", "k_proj", "v_proj")),
    _rule("model.layers.{i}.mlp.{p}.weight", "model.layers.{i}.mlp.{p}.kernel", "linear",
          p=("gate_proj", "up_proj", "down_proj")),
    _rule("model.layers.{i}.{n}.weight", "model.layers.{i}.{n}.scale", "copy",
          n=("input_layernorm", "post_attention_layernorm")),
    _rule("model.norm.weight", "model.norm.scale", "copy"),
    _rule("lm_head.weight", "lm_head.kernel", "linear"),
)

# ---- Qwen2-VL: LayerNorm blocks with a quick-GELU fc1/fc2 MLP, LayerNorm merger --------------
QWEN2_VL_RULES = _PATCH_EMBED_AND_ATTENTION + (
    _rule("visual.blocks.{i}.{n}.weight", "visual.blocks.{i}.{n}.scale", "copy", n=("norm1", "norm2")),
    _rule("visual.blocks.{i}.{n}.bias", "visual.blocks.{i}.{n}.bias", "copy", n=("norm1", "norm2")),
    _rule("visual.blocks.{i}.mlp.{p}.weight", "visual.blocks.{i}.mlp.{p}.kernel", "linear", p=("fc1", "fc2")),
    _rule("visual.blocks.{i}.mlp.{p}.bias", "visual.blocks.{i}.mlp.{p}.bias", "copy", p=("fc1", "fc2")),
    _rule("visual.merger.ln_q.weight", "visual.merger.ln_q.scale", "copy"),
    _rule("visual.merger.ln_q.bias", "visual.merger.ln_q.bias", "copy"),
) + _MERGER_MLP + _QWEN2_DECODER
RULES = QWEN2_VL_RULES  # the default of the functions below

# ---- Qwen2.5-VL: RMSNorm blocks (weight only) with a gated MLP with biases, RMSNorm merger ----
QWEN2_5_VL_RULES = _PATCH_EMBED_AND_ATTENTION + (
    _rule("visual.blocks.{i}.{n}.weight", "visual.blocks.{i}.{n}.scale", "copy", n=("norm1", "norm2")),
    _rule("visual.blocks.{i}.mlp.{p}.weight", "visual.blocks.{i}.mlp.{p}.kernel", "linear",
          p=("gate_proj", "up_proj", "down_proj")),
    _rule("visual.blocks.{i}.mlp.{p}.bias", "visual.blocks.{i}.mlp.{p}.bias", "copy",
          p=("gate_proj", "up_proj", "down_proj")),
    _rule("visual.merger.ln_q.weight", "visual.merger.ln_q.scale", "copy"),
) + _MERGER_MLP + _QWEN2_DECODER


# ---- LLaVA-NeXT-Video: CLIP tower, projector, image_newline, Llama decoder (no q/k/v biases) --
_CLIP = "vision_tower.vision_model."
LLAVA_NEXT_VIDEO_RULES = (
    _rule(_CLIP + "embeddings.patch_embedding.weight", "vision_tower.patch_embedding.kernel", "patch_embed"),
    _rule(_CLIP + "embeddings.class_embedding", "vision_tower.class_embedding", "copy"),
    _rule(_CLIP + "embeddings.position_embedding.weight", "vision_tower.position_embedding", "copy"),
    _rule(_CLIP + "{n}.weight", "vision_tower.{n}.scale", "copy", n=("pre_layrnorm", "post_layernorm")),
    _rule(_CLIP + "{n}.bias", "vision_tower.{n}.bias", "copy", n=("pre_layrnorm", "post_layernorm")),
    _rule(_CLIP + "encoder.layers.{i}.self_attn.{p}.weight", "vision_tower.layers.{i}.self_attn.{p}.kernel", "linear",
          p=("q_proj", "k_proj", "v_proj", "out_proj")),
    _rule(_CLIP + "encoder.layers.{i}.self_attn.{p}.bias", "vision_tower.layers.{i}.self_attn.{p}.bias", "copy",
          p=("q_proj", "k_proj", "v_proj", "out_proj")),
    _rule(_CLIP + "encoder.layers.{i}.{n}.weight", "vision_tower.layers.{i}.{n}.scale", "copy",
          n=("layer_norm1", "layer_norm2")),
    _rule(_CLIP + "encoder.layers.{i}.{n}.bias", "vision_tower.layers.{i}.{n}.bias", "copy",
          n=("layer_norm1", "layer_norm2")),
    _rule(_CLIP + "encoder.layers.{i}.mlp.{p}.weight", "vision_tower.layers.{i}.mlp.{p}.kernel", "linear",
          p=("fc1", "fc2")),
    _rule(_CLIP + "encoder.layers.{i}.mlp.{p}.bias", "vision_tower.layers.{i}.mlp.{p}.bias", "copy", p=("fc1", "fc2")),
    _rule("multi_modal_projector.{p}.weight", "multi_modal_projector.{p}.kernel", "linear", p=("linear_1", "linear_2")),
    _rule("multi_modal_projector.{p}.bias", "multi_modal_projector.{p}.bias", "copy", p=("linear_1", "linear_2")),
    _rule("image_newline", "image_newline", "copy"),
) + tuple(
    _rule("language_model." + r.hf, r.ours, r.hook, **dict(r.choices)) for r in _QWEN2_DECODER
    if r.hf != "model.layers.{i}.self_attn.{p}.bias"  # Llama has no q/k/v biases
)


def hf_to_ours(key: str, rules: tuple[Rule, ...] = RULES) -> tuple[str, str] | None:
    """Hub key -> (our dotted path, hook), or None if no rule knows the key."""
    for rule in rules:
        path = rule.match_hf(key)
        if path is not None:
            return path, rule.hook
    return None


def ours_to_hf(path: str, rules: tuple[Rule, ...] = RULES) -> tuple[str, str]:
    """Our dotted path -> (Hub key, hook). Every parameter of the model must have a rule."""
    for rule in rules:
        key = rule.match_ours(path)
        if key is not None:
            return key, rule.hook
    raise KeyError(f"parameter {path!r} has no rule in sf2t_jax/convert/table.py")


def to_ours(hook: str, tensor: np.ndarray) -> np.ndarray:
    """Hub layout -> our layout."""
    if hook == "copy":
        return tensor
    if hook == "linear":
        return tensor.T
    if hook == "patch_embed":
        return tensor.reshape(tensor.shape[0], -1).T
    raise ValueError(f"unknown conversion hook {hook!r}")


def to_hf(hook: str, array: np.ndarray, hf_shape: tuple[int, ...]) -> np.ndarray:
    """Our layout -> Hub layout (`hf_shape` is needed to restore the Conv3d kernel's shape)."""
    if hook == "copy":
        return array
    if hook == "linear":
        return array.T
    if hook == "patch_embed":
        return array.T.reshape(hf_shape)
    raise ValueError(f"unknown conversion hook {hook!r}")


def hf_shape(hook: str, our_shape: tuple[int, ...], patch_kernel: tuple[int, int, int, int] | None = None) -> tuple[int, ...]:
    """The Hub shape of a parameter of our shape; `patch_kernel` = (C, t, p, p) or (C, p, p) for
    the patch embed."""
    if hook == "copy":
        return tuple(our_shape)
    if hook == "linear":
        return tuple(reversed(our_shape))
    if hook == "patch_embed":
        return (our_shape[1],) + tuple(patch_kernel)
    raise ValueError(f"unknown conversion hook {hook!r}")
