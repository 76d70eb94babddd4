"""Softmax attention for the decoder and the vision tower, in three implementations:

    xla     the reference: float32 logits (B, H, Lq, Lk) in memory, any mask; runs everywhere
    splash  Pallas splash attention (jax.experimental.pallas.ops.tpu): blockwise, logits never
            materialised, causal blocks skipped; native on TPU, interpret mode elsewhere (tests)
    cudnn   cuDNN flash attention through `jax.nn.dot_product_attention` (GPU, bf16/f16 only)

`model.attention='auto'` picks splash on TPU, cuDNN on GPU for bfloat16/float16 compute and XLA
otherwise; the platform is the mesh's when a sharded step is being traced (so the planner's
AOT compile for a TPU topology on a CPU host gets splash), else JAX's default backend.

Splash is used for sequences of at least one 128-token tile; shorter ones take the XLA path.
The fused kernels take structured masks only: causal or not, plus per-token padding. A dense
mask (KV-cache decoding, packed prompts sharing a prefix) always goes through XLA. Padding is
given to splash as segment ids (real = 1, padding = 0) and to cuDNN as a key mask, so a real
token sees exactly the keys it sees on the XLA path; a padding query's output differs between
implementations (XLA: uniform over all keys; splash: the padding keys before it) and is unused.

Under an `activation_sharding` context the fused kernels run per shard (`jax.shard_map` over the
batch and head shardings the activation rules give q/k/v): a Pallas or cuDNN call is opaque to
GSPMD, which would otherwise gather its operands onto every device.
"""
from __future__ import annotations

import functools
import math

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from sf2t_jax.models.layers import Precision, einsum
from sf2t_jax.models.options import ATTENTION_IMPLEMENTATIONS
from sf2t_jax.parallel import activations
from sf2t_jax.parallel.sharding import fit_to_shape, logical_to_spec

IMPLEMENTATIONS = ATTENTION_IMPLEMENTATIONS
CUDNN_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
GPU_PLATFORMS = ("gpu", "cuda", "rocm")
# Splash tiles the sequence in blocks of a multiple of 128 (TPU lanes); sequences are padded to
# one, the pad masked out by segment id.
SPLASH_ALIGN = 128
SPLASH_MAX_BLOCK = 512


@flax.struct.dataclass
class AttentionMask:
    """Which keys each query may attend to.

    causal: query i sees keys j <= i (static).
    valid: optional (B, L) bool, False at padding tokens (queries and keys; Lq = Lk = L).
    dense: optional (B, Lq, Lk) bool ANDed in (KV cache, shared prefixes); XLA only.
    """

    valid: jax.Array | None = None
    dense: jax.Array | None = None
    causal: bool = flax.struct.field(pytree_node=False, default=False)

    def to_dense(self, lq: int, lk: int) -> jax.Array | None:
        """(B or 1, Lq, Lk) bool, or None when every query sees every key."""
        mask = jnp.tril(jnp.ones((lq, lk), bool))[None] if self.causal else None
        if self.valid is not None:
            keys = self.valid[:, None, :]
            mask = keys if mask is None else mask & keys
        if self.dense is not None:
            mask = self.dense if mask is None else mask & self.dense
        return mask


def resolve(implementation: str, dtype, platform: str | None = None) -> str:
    """'auto' -> the implementation for `platform` (default: the traced mesh's or JAX's) and
    compute `dtype`; a named one is checked against them. Returns 'xla', 'splash' or 'cudnn'."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"model.attention={implementation!r}: expected one of {', '.join(IMPLEMENTATIONS)}")
    platform = platform or current_platform()
    dtype = jnp.dtype(dtype)
    if implementation == "auto":
        if platform == "tpu":
            return "splash"
        if platform in GPU_PLATFORMS and dtype in CUDNN_DTYPES:
            return "cudnn"
        return "xla"
    if implementation == "cudnn" and (platform not in GPU_PLATFORMS or dtype not in CUDNN_DTYPES):
        raise ValueError(f"model.attention='cudnn' needs a GPU and bfloat16/float16 compute; this is {platform} "
                         f"with {dtype.name} (use 'auto' or 'xla')")
    return implementation


def current_platform() -> str:
    """The platform of the mesh being traced for, else JAX's default backend."""
    context = activations.current()
    if context is not None:
        return context[0].devices.flat[0].platform
    return jax.default_backend()


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: AttentionMask, *, implementation: str = "auto",
           precision: Precision = None) -> jax.Array:
    """Attention with grouped-query heads by the chosen implementation.

    Args:
      q: (B, Lq, H, D) queries; k, v: (B, Lk, Hkv, D), H a multiple of Hkv.
      mask: `AttentionMask`; a dense part forces the XLA path.
      implementation: a name in IMPLEMENTATIONS ('auto' resolved here, at trace time).
    Returns:
      (B, Lq, H, D) in q's dtype.
    """
    chosen = resolve(implementation, q.dtype)
    # Below one splash tile the logits are small and the tile padding would multiply the work
    # (a 56x56 frame has 16 patches): XLA's path is the better kernel there.
    short = chosen == "splash" and k.shape[1] < SPLASH_ALIGN
    if chosen == "xla" or mask.dense is not None or short:
        return xla_attention(q, k, v, mask.to_dense(q.shape[1], k.shape[1]), precision=precision)
    kernel = splash_attention if chosen == "splash" else cudnn_attention
    return _per_shard(functools.partial(kernel, causal=mask.causal), q, k, v, mask.valid)


def xla_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None, *,
                  precision: Precision = None) -> jax.Array:
    """Softmax attention with grouped-query heads; logits and softmax in float32.

    Args:
      q: (B, Lq, H, D) queries.
      k, v: (B, Lk, Hkv, D) keys and values; H must be a multiple of Hkv.
      mask: (B, Lq, Lk) bool, True where a query may attend to a key; None attends to all.
        A query row with no allowed key gets uniform weights (transformers' min-value fill),
        never NaN; such rows are padding and their outputs are ignored.
    Returns:
      (B, Lq, H, D) in q's dtype.
    """
    b, lq, h, d = q.shape
    hkv = k.shape[2]
    # Head-major operands (B, Hkv, G, L, D), so both products are plain batched matmuls over
    # (B, Hkv) and the (.., Lq, Lk) logits are never transposed, forward or backward; only
    # the small q/k/v/output tensors are (1.7x faster on CPU than token-major einsums).
    q = q.reshape(b, lq, hkv, h // hkv, d).transpose(0, 2, 3, 1, 4)
    k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
    logits = einsum("bkgqd,bksd->bkgqs", q, k, precision=precision, out_dtype=jnp.float32) * (d ** -0.5)
    if mask is not None:
        logits = jnp.where(mask[:, None, None, :, :], logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = einsum("bkgqs,bksd->bkgqd", weights, v, precision=precision)
    return out.transpose(0, 3, 1, 2, 4).reshape(b, lq, h, d)


def splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, valid: jax.Array | None, *,
                     causal: bool) -> jax.Array:
    """Splash attention on one shard. q: (B, L, H, D); k, v: (B, L, Hkv, D); valid: (B, L) bool
    or None. The sequence is padded to a multiple of 128 (pad = its own segment). Returns
    (B, L, H, D). Interpret mode off TPU (tests on CPU; slow)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernels
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks

    b, length, heads, head_dim = q.shape
    padded = -(-length // SPLASH_ALIGN) * SPLASH_ALIGN
    # The kernel does not scale; scale q in float32 then round once (XLA scales the logits).
    q = (q.astype(jnp.float32) * head_dim ** -0.5).astype(q.dtype)

    def heads_major(x):  # (B, L, h, D) -> (B, h, P, D)
        return jnp.pad(x, ((0, 0), (0, padded - length), (0, 0), (0, 0))).transpose(0, 2, 1, 3)

    segments = None
    if valid is not None or padded != length:
        real = jnp.ones((b, length), bool) if valid is None else valid.astype(bool)
        ids = jnp.pad(real.astype(jnp.int32), ((0, 0), (0, padded - length)))
        segments = kernels.SegmentIds(q=ids, kv=ids)
    shape = (padded, padded)
    one_head = masks.CausalMask(shape) if causal else masks.FullMask(shape)
    block = math.gcd(padded, SPLASH_MAX_BLOCK)
    blocks = kernels.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                                block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    kernel = kernels.make_splash_mha(masks.MultiHeadMask([one_head] * heads), head_shards=1, q_seq_shards=1,
                                     block_sizes=blocks, interpret=current_platform() != "tpu")
    if segments is None:
        out = jax.vmap(kernel)(heads_major(q), heads_major(k), heads_major(v))
    else:
        out = jax.vmap(kernel)(heads_major(q), heads_major(k), heads_major(v), segment_ids=segments)
    return out.transpose(0, 2, 1, 3)[:, :length].astype(q.dtype)


def cudnn_attention(q: jax.Array, k: jax.Array, v: jax.Array, valid: jax.Array | None, *,
                    causal: bool) -> jax.Array:
    """cuDNN flash attention on one shard (`jax.nn.dot_product_attention`); padding as a key
    mask, which cuDNN takes as a (B, 1, L, L) additive bias. Shapes as `splash_attention`."""
    mask = None
    if valid is not None:
        b, length = valid.shape
        mask = jnp.broadcast_to(valid.astype(bool)[:, None, None, :], (b, 1, length, length))
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal, implementation="cudnn")


def _per_shard(kernel, q, k, v, valid):
    """`kernel(q, k, v, valid)` under `jax.shard_map` over the activation rules' batch and head
    shardings (the sequence whole on each shard); directly outside an activation context."""
    context = activations.current()
    if context is None:
        return kernel(q, k, v, valid)
    mesh, rules = context
    q_spec = fit_to_shape(logical_to_spec(activations.BATCH_LENGTH_HEADS, rules), q.shape, mesh)
    kv_spec = fit_to_shape(logical_to_spec(activations.BATCH_LENGTH_KV_HEADS, rules), k.shape, mesh)
    q_spec = PartitionSpec(q_spec[0], None, q_spec[2], None)
    if (kv_spec[0], kv_spec[2]) != (q_spec[0], q_spec[2]):
        # KV heads that cannot shard like the query heads (fewer heads than the axis) are
        # repeated to one per query head, so each shard holds its queries' own keys.
        group = q.shape[2] // k.shape[2]
        k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
    kv_spec = q_spec
    if valid is None:
        return jax.shard_map(lambda q, k, v: kernel(q, k, v, None), mesh=mesh, in_specs=(q_spec, kv_spec, kv_spec),
                             out_specs=q_spec, check_vma=False)(q, k, v)
    return jax.shard_map(kernel, mesh=mesh, in_specs=(q_spec, kv_spec, kv_spec, PartitionSpec(q_spec[0], None)),
                         out_specs=q_spec, check_vma=False)(q, k, v, valid)
