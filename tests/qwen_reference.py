"""transformers (PyTorch, CPU) references for parity tests: tiny random Qwen2-VL and Qwen2.5-VL
models, the inputs a processor would produce, and helpers to run both implementations side by
side."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from transformers import Qwen2VLConfig as HFConfig
from transformers import Qwen2_5_VLConfig as HFQwen25Config
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

from sf2t_jax.models.config import Qwen2VLConfig, TextConfig, VisionConfig, qwen2vl_tiny


def other_tiny(tie: bool = False) -> Qwen2VLConfig:
    """A second tiny shape: MQA (1 kv head), head_dim 24 with mrope_section [4, 4, 4], 3 layers,
    a 4-head ViT of width 48 and mlp_ratio 3."""
    base = qwen2vl_tiny(vocab_size=512, tie_word_embeddings=tie)
    return dataclasses.replace(
        base,
        vision=VisionConfig(depth=3, embed_dim=48, num_heads=4, mlp_ratio=3, hidden_size=96),
        text=TextConfig(vocab_size=512, hidden_size=96, intermediate_size=160, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=1, rms_norm_eps=1e-5, rope_theta=10000.0,
                        mrope_section=(4, 4, 4), tie_word_embeddings=tie),
    )


def hf_model(config: Qwen2VLConfig, seed: int = 0) -> Qwen2VLForConditionalGeneration:
    """A randomly initialised transformers model of `config`, eager attention, float32, eval mode.

    Norm weights and biases are randomised too, so a swapped scale/bias cannot pass.
    """
    torch.manual_seed(seed)
    hf_config = HFConfig(**config.to_hf_dict())
    hf_config._attn_implementation = "eager"
    model = Qwen2VLForConditionalGeneration(hf_config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_q" in name or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def hf_qwen25_model(config, seed: int = 0, weight_scale: float = 8.0) -> Qwen2_5_VLForConditionalGeneration:
    """A random transformers Qwen2.5-VL of `config` (a `Qwen25VLConfig`), eager, float32, eval.

    Norm weights and biases are randomised (a swapped scale or bias cannot pass), and every
    weight matrix is multiplied by `weight_scale`: at the default 0.02 init the tiny model's
    logits stay within about +-0.6, where an error hides; x8 spreads them over about +-5 and
    makes the vision features as large as the token embeddings or larger.
    """
    torch.manual_seed(seed)
    hf_config = HFQwen25Config(**config.to_hf_dict())
    hf_config._attn_implementation = "eager"
    model = Qwen2_5_VLForConditionalGeneration(hf_config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_q" in name or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
            elif p.ndim >= 2:
                p.mul_(weight_scale)
    return model


def video_tokens(config: Qwen2VLConfig, grid_thw) -> list[int]:
    t, h, w = grid_thw
    n = t * h * w // config.vision.spatial_merge_size**2
    return [config.vision_start_token_id] + [config.video_token_id] * n + [config.vision_end_token_id]


def image_tokens(config: Qwen2VLConfig, grid_thw) -> list[int]:
    t, h, w = grid_thw
    n = t * h * w // config.vision.spatial_merge_size**2
    return [config.vision_start_token_id] + [config.image_token_id] * n + [config.vision_end_token_id]


def patches(config: Qwen2VLConfig, grids, seed: int) -> np.ndarray:
    rows = sum(int(np.prod(g)) for g in grids)
    return np.random.default_rng(seed).standard_normal((rows, config.vision.patch_dim)).astype(np.float32)


def hf_logits(model, **inputs) -> np.ndarray:
    """transformers logits for numpy inputs (None entries are left out)."""
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items() if v is not None}
    with torch.no_grad():
        return model(**tensors).logits.numpy()
