"""Qwen2.5-VL: its vision tower (`qwen2_5_vl.vision`) in front of Qwen2-VL's decoder, scatter
and LM head (`Qwen2VL`), with absolute-time M-RoPE positions computed on the host.

Parameter paths mirror the Hub layout (`visual.*`, `model.*`, `lm_head`) as for Qwen2-VL; the
conversion rules are `sf2t_jax.convert.table.QWEN2_5_VL_RULES`.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from sf2t_jax.models import qwen2_vl
from sf2t_jax.models.qwen2_5_vl.config import Qwen25VLConfig
from sf2t_jax.models.qwen2_5_vl.vision import VisionTower


class Qwen25VL(qwen2_vl.Qwen2VL):
    """Qwen2_5_VLForConditionalGeneration in Flax NNX; inputs and outputs as `Qwen2VL`."""

    vision_tower = VisionTower

    def hf_logits(self, input_ids, attention_mask=None, pixel_values=None, image_grid_thw=None,
                  pixel_values_videos=None, video_grid_thw=None, second_per_grid_ts=None) -> np.ndarray:
        """Logits for exactly the numpy arrays a Hugging Face Qwen2.5-VL processor produces
        (`second_per_grid_ts`: (num_videos,) seconds per temporal slice; default 1.0 each, as
        in transformers). Returns (B, L, vocab) float32 numpy."""
        inputs = prepare_hf_inputs(self.config, input_ids, attention_mask, pixel_values, image_grid_thw,
                                   pixel_values_videos, video_grid_thw, second_per_grid_ts)
        graphdef, state = nnx.split(self)
        return np.asarray(jax.device_get(qwen2_vl._jitted_logits(graphdef, state, **inputs)))


def prepare_hf_inputs(config: Qwen25VLConfig, input_ids, attention_mask=None, pixel_values=None, image_grid_thw=None,
                      pixel_values_videos=None, video_grid_thw=None, second_per_grid_ts=None) -> dict:
    """`Qwen25VL.__call__` keyword arguments plus `rope_deltas` from processor outputs; see
    `qwen2_vl.prepare_hf_inputs`. Video positions advance `second_per_grid_ts[i] *
    tokens_per_second` per temporal slice."""
    return qwen2_vl.prepare_hf_inputs(config, input_ids, attention_mask, pixel_values, image_grid_thw,
                                      pixel_values_videos, video_grid_thw,
                                      tokens_per_second=config.vision.tokens_per_second,
                                      second_per_grid_ts=second_per_grid_ts)
