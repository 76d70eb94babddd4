"""The Qwen2.5-VL vision tower: Qwen2-VL's patch embedding, 2D RoPE and attention, with RMSNorm,
a gated SiLU MLP with biases, window attention outside `fullatt_block_indexes`, and an RMSNorm
merger (specs/qwen2_vl.md §1.8).

Same static layout as Qwen2-VL (`VisionPatches`: temporal slices of one grid, batched); the
windows are a constant mask per grid (`windows.window_mask`), so patches keep the processor's
order and no permutation is needed before the blocks or after the merger.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from sf2t_jax.models import rope
from sf2t_jax.models.attention import AttentionMask
from sf2t_jax.models.layers import Numerics, RMSNorm, linear, run_layers, stacked_layers
from sf2t_jax.models.qwen2_5_vl.config import VisionConfig
from sf2t_jax.models.qwen2_5_vl.windows import window_mask
from sf2t_jax.models.vision import PatchMerger, VisionAttention, VisionPatches
from sf2t_jax.parallel.activations import BATCH_LENGTH_EMBED, BATCH_LENGTH_MLP, constrain


class GatedVisionMLP(nnx.Module):
    """down(silu(gate(x)) * up(x)), every projection with a bias."""

    def __init__(self, cfg: VisionConfig, numerics: Numerics, rngs: nnx.Rngs):
        width, hidden = cfg.embed_dim, cfg.intermediate_size
        self.gate_proj = linear(width, hidden, ("vision_embed", "vision_mlp"), bias=True, numerics=numerics, rngs=rngs)
        self.up_proj = linear(width, hidden, ("vision_embed", "vision_mlp"), bias=True, numerics=numerics, rngs=rngs)
        self.down_proj = linear(hidden, width, ("vision_mlp", "vision_embed"), bias=True, numerics=numerics, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = constrain(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x), BATCH_LENGTH_MLP)
        return constrain(self.down_proj(hidden), BATCH_LENGTH_EMBED)


class VisionBlock(nnx.Module):
    """Pre-norm ViT block: x + attn(RMS1(x)); x + mlp(RMS2(x))."""

    def __init__(self, cfg: VisionConfig, numerics: Numerics, rngs: nnx.Rngs):
        self.norm1 = RMSNorm(cfg.embed_dim, eps=cfg.rms_norm_eps, numerics=numerics, axis_name="vision_embed")
        self.norm2 = RMSNorm(cfg.embed_dim, eps=cfg.rms_norm_eps, numerics=numerics, axis_name="vision_embed")
        self.attn = VisionAttention(cfg, numerics, rngs)
        self.mlp = GatedVisionMLP(cfg, numerics, rngs)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: AttentionMask = AttentionMask()) -> jax.Array:
        x = constrain(x, BATCH_LENGTH_EMBED)
        x = constrain(x + self.attn(constrain(self.norm1(x), BATCH_LENGTH_EMBED), cos, sin, mask), BATCH_LENGTH_EMBED)
        return constrain(x + self.mlp(constrain(self.norm2(x), BATCH_LENGTH_EMBED)), BATCH_LENGTH_EMBED)


class VisionTower(nnx.Module):
    """Qwen2_5_VisionTransformerPretrainedModel: patches -> merged LLM-width tokens."""

    def __init__(self, cfg: VisionConfig, numerics: Numerics, rngs: nnx.Rngs):
        self.cfg = cfg
        # The Conv3d patch embedding as a dense layer on the flattened patch row (as Qwen2-VL).
        self.patch_embed = linear(cfg.patch_dim, cfg.embed_dim, ("vision_patch", "vision_embed"), bias=False,
                                  numerics=numerics, rngs=rngs)
        if numerics.scan_layers:
            self.blocks = stacked_layers(lambda r: VisionBlock(cfg, numerics, r), cfg.depth, rngs)
        else:
            self.blocks = nnx.List([VisionBlock(cfg, numerics, rngs) for _ in range(cfg.depth)])
        self.merger = PatchMerger(cfg, numerics, rngs, rms_norm=True, out_features=cfg.out_hidden_size)
        self.numerics = numerics

    def __call__(self, vision: VisionPatches) -> jax.Array:
        """Returns (N, gh*gw/4, out_hidden_size): merged tokens per slice, in (bh, bw) raster order."""
        gh, gw = vision.grid_hw
        merge = self.cfg.spatial_merge_size
        cos, sin = rope.vision_cos_sin(rope.vision_rope_positions(gh, gw, merge), self.cfg.head_dim)
        windows = window_mask(gh, gw, merge=merge, window=self.cfg.window_merged)
        full = np.isin(np.arange(self.cfg.depth), self.cfg.fullatt_block_indexes)
        x = constrain(self.patch_embed(vision.patches.astype(self.numerics.dtype)), BATCH_LENGTH_EMBED)
        x = run_layers(self.blocks, _block_forward, x, cos, sin, windows, numerics=self.numerics, per_layer=(full,))
        return self.merger(x)


def _block_forward(block: VisionBlock, x, cos, sin, windows, full):
    """One block; `windows` (S, S) bool or None (one window covers the slice), `full` this
    block's flag: a numpy bool when the layers are unrolled (full blocks then take the fused
    kernels' unmasked path), traced when scanned or rematerialised (then ORed into the mask)."""
    if windows is None or (isinstance(full, (bool, np.bool_)) and full):
        return block(x, cos, sin)
    if isinstance(full, (bool, np.bool_)):
        return block(x, cos, sin, AttentionMask(dense=windows[None]))
    return block(x, cos, sin, AttentionMask(dense=(windows | full)[None]))
