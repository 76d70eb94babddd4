"""The Qwen2-VL vision tower: patch embedding, 2D-RoPE ViT blocks, and the 2x2 patch merger.

Static-shape layout (DESIGN.md decision 2): patches arrive as `VisionPatches`, one array of
temporal slices that share a spatial grid, `(N, gh*gw, 1176)`. A temporal slice attends only
to itself in Qwen2-VL (block-diagonal attention by `cu_seqlens` in transformers), which here is
just attention batched over N — no segment ids, no data-dependent shapes.
"""
from __future__ import annotations

import flax.struct
import jax
from flax import nnx

from sf2t_jax.models import rope
from sf2t_jax.models.config import VisionConfig
from sf2t_jax.models.attention import AttentionMask, attend
from sf2t_jax.models.layers import Numerics, RMSNorm, layer_norm, linear, run_layers, stacked_layers
from sf2t_jax.parallel.activations import BATCH_LENGTH_EMBED, BATCH_LENGTH_HEADS, BATCH_LENGTH_MLP, constrain


@flax.struct.dataclass
class VisionPatches:
    """Temporal slices of one spatial grid.

    patches: (N, grid_h*grid_w, C*temporal_patch*patch*patch) float, rows in the Qwen2-VL
      processor order (2x2 merge windows contiguous). N counts slices of every image and video
      in the batch that has this grid; padding slices are allowed (their outputs are dropped
      by the scatter index).
    grid_hw: (grid_h, grid_w) in patch units; static.
    """

    patches: jax.Array
    grid_hw: tuple[int, int] = flax.struct.field(pytree_node=False)


def batch_vision(vision_patches: jax.Array, grid_hw: tuple[int, int]) -> tuple[VisionPatches]:
    """A training batch's `vision_patches` (B, P, S, D) (sf2t_jax/batch.py) -> the model's
    vision input: one group of B*P slices of the static grid `grid_hw`, row b's slices at
    b*P .. b*P+P-1 (the order `vision_index` places merged tokens in; padding slices included,
    their outputs dropped by the scatter)."""
    b, p, s, d = vision_patches.shape
    return (VisionPatches(patches=vision_patches.reshape(b * p, s, d), grid_hw=tuple(grid_hw)),)


def quick_gelu(x: jax.Array) -> jax.Array:
    return x * jax.nn.sigmoid(1.702 * x)


class VisionAttention(nnx.Module):
    def __init__(self, cfg: VisionConfig, numerics: Numerics, rngs: nnx.Rngs):
        self.num_heads = cfg.num_heads
        self.precision, self.implementation = numerics.precision, numerics.attention
        self.qkv = linear(cfg.embed_dim, 3 * cfg.embed_dim, ("vision_embed", "vision_qkv"), bias=True,
                          numerics=numerics, rngs=rngs)
        self.proj = linear(cfg.embed_dim, cfg.embed_dim, ("vision_heads", "vision_embed"), bias=True,
                           numerics=numerics, rngs=rngs)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: AttentionMask = AttentionMask()) -> jax.Array:
        """x: (N, S, E); cos/sin: (S, head_dim). Attention within each of the N slices, further
        restricted by `mask` (Qwen2.5-VL's windows: a dense (1, S, S) part)."""
        n, s, e = x.shape
        qkv = self.qkv(x).reshape(n, s, 3, self.num_heads, e // self.num_heads)
        q, k, v = (constrain(qkv[:, :, i], BATCH_LENGTH_HEADS) for i in range(3))
        q = rope.apply_rotary(q, cos, sin)
        k = rope.apply_rotary(k, cos, sin)
        out = constrain(attend(q, k, v, mask, implementation=self.implementation, precision=self.precision),
                        BATCH_LENGTH_HEADS)
        return constrain(self.proj(out.reshape(n, s, e)), BATCH_LENGTH_EMBED)


class VisionMLP(nnx.Module):
    def __init__(self, cfg: VisionConfig, numerics: Numerics, rngs: nnx.Rngs):
        self.fc1 = linear(cfg.embed_dim, cfg.mlp_dim, ("vision_embed", "vision_mlp"), bias=True, numerics=numerics, rngs=rngs)
        self.fc2 = linear(cfg.mlp_dim, cfg.embed_dim, ("vision_mlp", "vision_embed"), bias=True, numerics=numerics, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return constrain(self.fc2(constrain(quick_gelu(self.fc1(x)), BATCH_LENGTH_MLP)), BATCH_LENGTH_EMBED)


class VisionBlock(nnx.Module):
    """Pre-norm ViT block: x + attn(LN1(x)); x + mlp(LN2(x))."""

    def __init__(self, cfg: VisionConfig, numerics: Numerics, rngs: nnx.Rngs):
        self.norm1 = layer_norm(cfg.embed_dim, "vision_embed", eps=cfg.layer_norm_eps, numerics=numerics, rngs=rngs)
        self.norm2 = layer_norm(cfg.embed_dim, "vision_embed", eps=cfg.layer_norm_eps, numerics=numerics, rngs=rngs)
        self.attn = VisionAttention(cfg, numerics, rngs)
        self.mlp = VisionMLP(cfg, numerics, rngs)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        x = constrain(x, BATCH_LENGTH_EMBED)
        x = constrain(x + self.attn(constrain(self.norm1(x), BATCH_LENGTH_EMBED), cos, sin), BATCH_LENGTH_EMBED)
        return constrain(x + self.mlp(constrain(self.norm2(x), BATCH_LENGTH_EMBED)), BATCH_LENGTH_EMBED)


class PatchMerger(nnx.Module):
    """Norm per patch, then each 2x2 window (4 consecutive rows) -> MLP -> one LLM token.

    Qwen2-VL normalises with a LayerNorm; Qwen2.5-VL with an RMSNorm (`rms_norm=True`) and
    names the output width `out_hidden_size` (`out_features`; default `cfg.hidden_size`).
    """

    def __init__(self, cfg, numerics: Numerics, rngs: nnx.Rngs, *, rms_norm: bool = False,
                 out_features: int | None = None):
        self.group = cfg.spatial_merge_size**2
        if rms_norm:
            self.ln_q = RMSNorm(cfg.embed_dim, eps=cfg.rms_norm_eps, numerics=numerics, axis_name="vision_embed")
        else:
            self.ln_q = layer_norm(cfg.embed_dim, "vision_embed", eps=cfg.layer_norm_eps, numerics=numerics, rngs=rngs)
        self.fc1 = linear(cfg.merged_dim, cfg.merged_dim, ("vision_merged", "vision_merged_mlp"), bias=True,
                          numerics=numerics, rngs=rngs)
        self.fc2 = linear(cfg.merged_dim, out_features or cfg.hidden_size, ("vision_merged_mlp", "embed"), bias=True,
                          numerics=numerics, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, S, E) -> (N, S/4, hidden)."""
        n, s, e = x.shape
        x = constrain(self.ln_q(x).reshape(n, s // self.group, self.group * e), BATCH_LENGTH_EMBED)
        hidden = constrain(jax.nn.gelu(self.fc1(x), approximate=False), BATCH_LENGTH_MLP)
        return constrain(self.fc2(hidden), BATCH_LENGTH_EMBED)


class VisionTower(nnx.Module):
    """Qwen2VisionTransformerPretrainedModel: patches -> merged LLM-width tokens."""

    def __init__(self, cfg: VisionConfig, numerics: Numerics, rngs: nnx.Rngs):
        self.cfg = cfg
        # A Conv3d whose kernel equals its stride and its input is exactly a dense layer on
        # the flattened (C, t, py, px) patch row.
        self.patch_embed = linear(cfg.patch_dim, cfg.embed_dim, ("vision_patch", "vision_embed"), bias=False,
                                  numerics=numerics, rngs=rngs)
        if numerics.scan_layers:
            self.blocks = stacked_layers(lambda r: VisionBlock(cfg, numerics, r), cfg.depth, rngs)
        else:
            self.blocks = nnx.List([VisionBlock(cfg, numerics, rngs) for _ in range(cfg.depth)])
        self.merger = PatchMerger(cfg, numerics, rngs)
        self.numerics = numerics

    def __call__(self, vision: VisionPatches) -> jax.Array:
        """Returns (N, gh*gw/4, hidden): merged tokens per slice, in (bh, bw) raster order."""
        return self.merger(self.patch_features(vision))

    def patch_features(self, vision: VisionPatches) -> jax.Array:
        """Returns (N, gh*gw, embed_dim): the ViT's output per patch, before the merger."""
        gh, gw = vision.grid_hw
        positions = rope.vision_rope_positions(gh, gw, self.cfg.spatial_merge_size)
        cos, sin = rope.vision_cos_sin(positions, self.cfg.head_dim)
        x = constrain(self.patch_embed(vision.patches.astype(self.numerics.dtype)), BATCH_LENGTH_EMBED)
        return run_layers(self.blocks, _block_forward, x, cos, sin, numerics=self.numerics)


def _block_forward(block: VisionBlock, x, cos, sin):
    return block(x, cos, sin)
