"""Analytic FLOP counts of Qwen2-VL, Qwen2.5-VL and LLaVA-NeXT-Video forward passes and train
steps (vision tower included).

One multiply-add is 2 FLOPs. Counted: every matmul (projections, MLPs, attention scores and
weighted sums, the patch embedding, the merger, the LM head). Not counted: norms, softmax,
rotary embeddings and element-wise ops (well under 1% at these widths). Attention is counted
over the full L x L score matrix, as the dense kernels we run compute it (no causal halving;
Qwen2.5-VL's window attention is a mask over the whole slice, so it costs a full block's).
LLaVA-NeXT-Video's CLIP tower runs each frame as its patches plus the class token, through the
layers up to `vision_feature_layer` only; its 'merger' part is the two-layer projector over the
pooled frame tokens (pooling itself is an average, not a matmul).

A train step costs the forward pass plus, for every matmul, one backward product per gradient
it must produce: the input gradient (needed wherever anything trainable lies upstream) and the
weight gradient (only for trainable weights). So full fine-tuning is 3x the forward pass and
LoRA on a frozen base is about 2x over the LLM and 1x over a frozen vision tower.
"""
from __future__ import annotations

import dataclasses

from sf2t_jax.models.family import ModelConfig
from sf2t_jax.models.llava_next_video.config import LlavaNextVideoConfig


@dataclasses.dataclass(frozen=True)
class Workload:
    """The static shape of one batch.

    batch: samples; seq_len: LLM tokens per sample (padding included, as computed);
    slices: temporal slices (frame pairs / images) per sample; patches_per_slice: gh*gw.
    """

    batch: int
    seq_len: int
    slices: int
    patches_per_slice: int

    @property
    def tokens(self) -> int:
        return self.batch * self.seq_len


def forward_flops(config: ModelConfig, w: Workload) -> dict[str, float]:
    """FLOPs of one forward pass by part: vision (patch embed + blocks), merger, llm, lm_head."""
    v, t = config.vision, config.text
    patches = w.batch * w.slices * w.patches_per_slice
    e = v.embed_dim
    vit_block = 2 * (e * 3 * e + e * e + v.mlp_weights)  # per token: qkv, proj, the MLP
    if isinstance(config, LlavaNextVideoConfig):
        frames = w.batch * w.slices  # one frame per slice
        tokens = w.patches_per_slice + 1  # the class token attends and is attended to
        vit_attention = 2 * 2 * tokens * e
        vision = 2 * v.patch_dim * e * patches + frames * tokens * config.feature_layer_count * (
            vit_block + vit_attention)
        pooled = frames * config.tokens_per_frame
        merger = pooled * 2 * (e * t.hidden_size + t.hidden_size * t.hidden_size)
    else:
        vit_attention = 2 * 2 * w.patches_per_slice * e  # per patch: scores + weighted sum within its slice
        vision = patches * (2 * v.patch_dim * e + v.depth * (vit_block + vit_attention))
        merged = patches // v.spatial_merge_size**2
        merger = merged * 2 * (v.merged_dim * v.merged_dim + v.merged_dim * t.hidden_size)
    d, hd = t.hidden_size, t.head_dim
    q, kv = t.num_attention_heads * hd, t.num_key_value_heads * hd
    llm_layer = 2 * (d * q + 2 * d * kv + q * d + 3 * d * t.intermediate_size)
    llm_attention = 2 * 2 * w.seq_len * q  # per token: scores + weighted sum over the sequence
    llm = w.tokens * t.num_hidden_layers * (llm_layer + llm_attention)
    lm_head = w.tokens * 2 * d * t.vocab_size
    return {"vision": float(vision), "merger": float(merger), "llm": float(llm), "lm_head": float(lm_head)}


def train_step_flops(config: ModelConfig, w: Workload, *, method: str = "lora", lora_rank: int = 16,
                     train_vision: bool | None = None, train_merger: bool = True) -> dict[str, float]:
    """FLOPs of one train step (forward + backward) by part, plus 'total'.

    method: 'full' (every LLM weight trained) or 'lora' (LLM base frozen, rank-`lora_rank`
    adapters on q/k/v/o/gate/up/down). train_vision: whether the vision tower (patch embed and
    blocks) trains; None = the method's default (full: yes, lora: no). The merger trains when
    `train_merger`, when the tower trains, or under method='full'.
    """
    if method not in ("full", "lora"):
        raise ValueError(f"method must be 'full' or 'lora', got {method!r}")
    fwd = forward_flops(config, w)
    full = method == "full"
    vision_trained = full if train_vision is None else train_vision
    merger_trained = full or train_merger or vision_trained
    # backward multipliers: input gradients (1x) wherever something trainable is upstream,
    # weight gradients (1x) for trained weights.
    out = {
        "vision": fwd["vision"] * (1 + (2 if vision_trained else 0)),
        "merger": fwd["merger"] * (1 + (1 if merger_trained else 0) + (1 if vision_trained else 0)),
        "llm": fwd["llm"] * (3 if full else 2),
        "lm_head": fwd["lm_head"] * (3 if full else 2),
    }
    if not full:
        t = config.text
        d, q, kv = t.hidden_size, t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
        dims = [(d, q), (d, kv), (d, kv), (q, d), (d, t.intermediate_size), (d, t.intermediate_size),
                (t.intermediate_size, d)]
        adapter = sum(2 * lora_rank * (i + o) for i, o in dims)  # x@A then @B, per token
        out["lora"] = float(w.tokens * t.num_hidden_layers * adapter * 3)
    out["total"] = sum(out.values())
    return out
