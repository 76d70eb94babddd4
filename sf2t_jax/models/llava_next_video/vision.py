"""LLaVA-NeXT-Video's vision side: the CLIP ViT (class token, learned position embeddings,
pre-layernorm, pre-norm blocks with a quick-GELU MLP), video frame pooling and the two-layer
GELU projector.

Inputs are `VisionPatches` like the Qwen families': `(N, grid*grid, C*patch*patch)` rows, one
row of the batch per frame or anyres tile, patches in raster order (the Conv2d patch embedding
with kernel = stride is a dense layer on a flattened patch). The tower returns the hidden
state transformers selects with `vision_feature_layer` (only the layers up to it run; the
later ones and `post_layernorm` are kept for the checkpoint), class token dropped.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sf2t_jax.models.attention import AttentionMask, attend
from sf2t_jax.models.layers import Numerics, layer_norm, linear, run_layers, stacked_layers
from sf2t_jax.models.llava_next_video.config import LlavaNextVideoConfig, VisionConfig
from sf2t_jax.models.vision import VisionPatches, quick_gelu
from sf2t_jax.parallel.activations import BATCH_LENGTH_EMBED, BATCH_LENGTH_HEADS, BATCH_LENGTH_MLP, constrain


class ClipAttention(nnx.Module):
    def __init__(self, cfg: VisionConfig, numerics: Numerics, rngs: nnx.Rngs):
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.precision, self.implementation = numerics.precision, numerics.attention
        e = cfg.embed_dim
        self.q_proj = linear(e, e, ("vision_embed", "vision_qkv"), bias=True, numerics=numerics, rngs=rngs)
        self.k_proj = linear(e, e, ("vision_embed", "vision_qkv"), bias=True, numerics=numerics, rngs=rngs)
        self.v_proj = linear(e, e, ("vision_embed", "vision_qkv"), bias=True, numerics=numerics, rngs=rngs)
        self.out_proj = linear(e, e, ("vision_heads", "vision_embed"), bias=True, numerics=numerics, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (N, S, E) -> (N, S, E); every token attends to every token of its image."""
        n, s, e = x.shape
        split = lambda y: constrain(y.reshape(n, s, self.num_heads, self.head_dim), BATCH_LENGTH_HEADS)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        out = constrain(attend(q, k, v, AttentionMask(), implementation=self.implementation, precision=self.precision),
                        BATCH_LENGTH_HEADS)
        return constrain(self.out_proj(out.reshape(n, s, e)), BATCH_LENGTH_EMBED)


class ClipMLP(nnx.Module):
    def __init__(self, cfg: VisionConfig, numerics: Numerics, rngs: nnx.Rngs):
        e, m = cfg.embed_dim, cfg.intermediate_size
        self.fc1 = linear(e, m, ("vision_embed", "vision_mlp"), bias=True, numerics=numerics, rngs=rngs)
        self.fc2 = linear(m, e, ("vision_mlp", "vision_embed"), bias=True, numerics=numerics, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return constrain(self.fc2(constrain(quick_gelu(self.fc1(x)), BATCH_LENGTH_MLP)), BATCH_LENGTH_EMBED)


class ClipLayer(nnx.Module):
    """x + attn(LN1(x)); x + mlp(LN2(x))."""

    def __init__(self, cfg: VisionConfig, numerics: Numerics, rngs: nnx.Rngs):
        norm = lambda: layer_norm(cfg.embed_dim, "vision_embed", eps=cfg.layer_norm_eps, numerics=numerics, rngs=rngs)
        self.layer_norm1 = norm()
        self.self_attn = ClipAttention(cfg, numerics, rngs)
        self.layer_norm2 = norm()
        self.mlp = ClipMLP(cfg, numerics, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = constrain(x, BATCH_LENGTH_EMBED)
        x = constrain(x + self.self_attn(constrain(self.layer_norm1(x), BATCH_LENGTH_EMBED)), BATCH_LENGTH_EMBED)
        return constrain(x + self.mlp(constrain(self.layer_norm2(x), BATCH_LENGTH_EMBED)), BATCH_LENGTH_EMBED)


class ClipVisionTower(nnx.Module):
    """CLIPVisionModel up to the selected hidden state (Hub prefix `vision_tower.vision_model.`)."""

    def __init__(self, config: LlavaNextVideoConfig, numerics: Numerics, rngs: nnx.Rngs):
        cfg = config.vision
        self.cfg, self.numerics, self.run = cfg, numerics, config.feature_layer_count
        self.patch_embedding = linear(cfg.patch_dim, cfg.embed_dim, ("vision_patch", "vision_embed"), bias=False,
                                      numerics=numerics, rngs=rngs)
        self.class_embedding = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (cfg.embed_dim,), numerics.param_dtype),
            logical_axes=("vision_embed",))
        self.position_embedding = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (cfg.num_patches + 1, cfg.embed_dim), numerics.param_dtype),
            logical_axes=("vision_positions", "vision_embed"))
        norm = lambda: layer_norm(cfg.embed_dim, "vision_embed", eps=cfg.layer_norm_eps, numerics=numerics, rngs=rngs)
        self.pre_layrnorm = norm()  # transformers' spelling, kept so paths read like the Hub's
        if numerics.scan_layers:
            self.layers = stacked_layers(lambda r: ClipLayer(cfg, numerics, r), cfg.depth, rngs)
        else:
            self.layers = nnx.List([ClipLayer(cfg, numerics, rngs) for _ in range(cfg.depth)])
        self.post_layernorm = norm()  # in the checkpoint; LLaVA reads an earlier hidden state

    def embeddings(self, vision: VisionPatches) -> jax.Array:
        """(N, S, patch_dim) raster-order patches -> (N, 1+S, E): class token, patches, plus positions."""
        n, s, _ = vision.patches.shape
        if s != self.cfg.num_patches:
            raise ValueError(f"vision patches hold {s} patches per image; the tower takes {self.cfg.num_patches} "
                             f"({self.cfg.image_size} pixels square)")
        dtype = self.numerics.dtype
        patches = self.patch_embedding(vision.patches.astype(dtype))
        cls = jnp.broadcast_to(self.class_embedding[...].astype(dtype), (n, 1, self.cfg.embed_dim))
        x = jnp.concatenate([cls, patches], axis=1) + self.position_embedding[...].astype(dtype)
        return constrain(x, BATCH_LENGTH_EMBED)

    def __call__(self, vision: VisionPatches) -> jax.Array:
        """Returns (N, S, E): the selected hidden state of every patch, class token dropped."""
        x = self.pre_layrnorm(self.embeddings(vision))
        if self.run:
            layers = self.layers if self.run == self.cfg.depth else _first_layers(self.layers, self.run,
                                                                                 self.numerics.scan_layers)
            x = run_layers(layers, _layer_forward, x, numerics=self.numerics)
        return x[:, 1:]


def _first_layers(layers, count: int, stacked: bool):
    """The first `count` layers: a list slice, or the stacked parameters' leading `count` rows."""
    if not stacked:
        return nnx.List(list(layers)[:count])
    graphdef, state = nnx.split(layers)
    return nnx.merge(graphdef, jax.tree.map(lambda a: a[:count], state))


def _layer_forward(layer: ClipLayer, x):
    return layer(x)


def pool_frames(features: jax.Array, grid: int, stride: int, mode: str) -> jax.Array:
    """LlavaNextVideoPooler: (N, grid*grid, E) raster-order features -> (N, (grid//stride)**2, E),
    each token the average (or max) of a stride x stride block; a ragged edge is dropped, as
    torch's pooling floors."""
    n, _, e = features.shape
    out = grid // stride
    x = features.reshape(n, grid, grid, e)[:, :out * stride, :out * stride]
    x = x.reshape(n, out, stride, out, stride, e)
    x = x.mean(axis=(2, 4)) if mode == "average" else x.max(axis=(2, 4))
    return x.reshape(n, out * out, e)


class Projector(nnx.Module):
    """linear_2(gelu(linear_1(x))): vision width -> LLM width (Hub `multi_modal_projector`)."""

    def __init__(self, config: LlavaNextVideoConfig, numerics: Numerics, rngs: nnx.Rngs):
        e, d, bias = config.vision.embed_dim, config.text.hidden_size, config.multimodal_projector_bias
        self.linear_1 = linear(e, d, ("vision_embed", "embed"), bias=bias, numerics=numerics, rngs=rngs)
        self.linear_2 = linear(d, d, ("mlp", "embed"), bias=bias, numerics=numerics, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = constrain(jax.nn.gelu(self.linear_1(x), approximate=False), BATCH_LENGTH_MLP)
        return constrain(self.linear_2(hidden), BATCH_LENGTH_EMBED)
