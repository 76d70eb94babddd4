"""LoRA (Hu et al. 2021) on chosen linear layers, and merging it back into plain weights.

    y = x W + b + (alpha / rank) * dropout(x) A B        A: (in, rank), B: (rank, out)

`apply_lora` swaps each targeted `nnx.Linear` for a `LoRALinear` in place. The wrapper keeps
the base layer's `kernel` and `bias` Variables under the same names, so parameter paths, the
Hugging Face conversion table and the sharding rules see the base weights exactly where they
were; the adapters appear next to them as `<layer>.lora_a` / `<layer>.lora_b` (`nnx.LoRAParam`,
a subclass of `nnx.Param`). Initialisation follows PEFT: A ~ U(-1/sqrt(in), 1/sqrt(in))
(kaiming-uniform with a=sqrt(5)), B = 0, so a fresh adapter leaves the model's output unchanged.

`merge_lora` folds every adapter into its kernel (W' = W + (alpha/rank) A B) and turns the
wrapper back into a plain `nnx.Linear`, so `to_hf` / `save_native` export an ordinary Qwen2-VL.

Scanned layer stacks (`Numerics.scan_layers`) work too: a stacked kernel (layers, in, out)
gets stacked adapters (layers, in, rank) and (layers, rank, out) on the same leading
'layers' axis, and a stacked dropout stream, so `nnx.scan` slices them like the kernel.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
from flax import nnx

from sf2t_jax.errors import InputError
from sf2t_jax.models.layers import dot_general

# The LLM's attention and MLP projections (specs/sf2t.md §2): module paths such as
# `model.layers.3.self_attn.q_proj` or `model.layers.3.mlp.down_proj`.
DEFAULT_TARGETS = r"^model\.layers\.(\d+\.)?(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)$"

# The attributes of `nnx.Linear` that its __call__ reads; copied so the wrapper computes the
# base projection with exactly the base layer's numerics.
_LINEAR_FIELDS = ("kernel", "bias", "in_features", "out_features", "use_bias", "dtype", "param_dtype", "precision",
                  "dot_general", "promote_dtype", "preferred_element_type")


class LoRATargetError(InputError):
    """The targets regex is invalid or selects no linear layer."""


class LoRALinear(nnx.Linear):
    """An `nnx.Linear` plus a low-rank update. Built from an existing layer, whose Variables it
    takes over (no copy)."""

    def __init__(self, base: nnx.Linear, *, rank: int, alpha: float, dropout: float = 0.0, rngs: nnx.Rngs):
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout}")
        for name in _LINEAR_FIELDS:
            setattr(self, name, getattr(base, name))
        lead = tuple(base.kernel.shape[:-2])  # (layers,) for a scanned stack, else ()
        axes = tuple(base.kernel.get_metadata().get("logical_axes") or (None,) * (len(lead) + 2))
        self.rank, self.alpha, self.dropout_rate = rank, float(alpha), float(dropout)
        bound = self.in_features ** -0.5
        a = jax.random.uniform(rngs.params(), lead + (self.in_features, rank), self.param_dtype, -bound, bound)
        self.lora_a = nnx.LoRAParam(a, logical_axes=axes[:-1] + (None,))
        self.lora_b = nnx.LoRAParam(jnp.zeros(lead + (rank, self.out_features), self.param_dtype),
                                    logical_axes=axes[:-2] + (None, axes[-1]))
        # A stream per layer (stacked like the kernel); the train step reseeds it every step.
        self.lora_rng = nnx.data(None)
        if dropout > 0:
            self.lora_rng = nnx.data(rngs["dropout"].split(lead) if lead else rngs["dropout"].fork())

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def delta(self) -> jax.Array:
        """(..., in, out) float32: the update this adapter adds to the kernel."""
        a, b = self.lora_a[...].astype(jnp.float32), self.lora_b[...].astype(jnp.float32)
        return self.scale * jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)

    def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
        y = super().__call__(inputs, out_sharding)
        h = inputs
        if self.lora_rng is not None:  # inverted dropout on the adapter's input only
            keep = jax.random.bernoulli(self.lora_rng(), 1.0 - self.dropout_rate, inputs.shape)
            h = jnp.where(keep, inputs / (1.0 - self.dropout_rate), 0).astype(inputs.dtype)
        # The adapters stay in their (master) dtype: `dot_general` casts them to the compute
        # dtype inside its custom VJP.
        h = h if self.dtype is None else h.astype(self.dtype)
        a, b = self.lora_a[...], self.lora_b[...]
        contract = (((h.ndim - 1,), (0,)), ((), ()))
        low = dot_general(h, a, contract, precision=self.precision)  # (..., rank): the cheap side first
        return y + (dot_general(low, b, contract, precision=self.precision) * self.scale).astype(y.dtype)


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def _set_child(root: nnx.Module, path: tuple, child) -> None:
    parent = root
    for key in path[:-1]:
        parent = parent[key] if isinstance(key, int) else getattr(parent, key)
    if isinstance(path[-1], int):
        parent[path[-1]] = child
    else:
        setattr(parent, path[-1], child)


def linear_paths(model: nnx.Module) -> list[str]:
    """Dotted paths of every `nnx.Linear` in the model (LoRA target candidates)."""
    return [_dotted(p) for p, node in nnx.iter_graph(model) if isinstance(node, nnx.Linear)]


def apply_lora(model: nnx.Module, *, targets: str = DEFAULT_TARGETS, rank: int = 16, alpha: float = 32.0,
               dropout: float = 0.0, rngs: nnx.Rngs) -> list[str]:
    """Wraps every `nnx.Linear` whose dotted path matches `targets` (`re.search`) in place.

    Call it inside `nnx.eval_shape` (together with the model constructor) to get an abstract
    model with adapters, or inside `jax.jit` with out_shardings to initialise it sharded.
    Returns the wrapped paths, in graph order.
    Raises LoRATargetError when the regex is invalid or matches no linear layer (a typo must
    not train a model with no adapters).
    """
    try:
        pattern = re.compile(targets)
    except re.error as e:
        raise LoRATargetError(f"LoRA targets {targets!r} is not a valid regex: {e}") from None
    hits = [(p, node) for p, node in nnx.iter_graph(model)
            if isinstance(node, nnx.Linear) and not isinstance(node, LoRALinear) and pattern.search(_dotted(p))]
    if not hits:
        examples = ", ".join(linear_paths(model)[:4])
        raise LoRATargetError(f"LoRA targets {targets!r} match no linear layer; linear layers look like: "
                              f"{examples}, ...")
    for path, node in hits:
        _set_child(model, path, LoRALinear(node, rank=rank, alpha=alpha, dropout=dropout, rngs=rngs))
    return [_dotted(p) for p, _ in hits]


def lora_paths(model: nnx.Module) -> list[str]:
    return [_dotted(p) for p, node in nnx.iter_graph(model) if isinstance(node, LoRALinear)]


def merge_lora(model: nnx.Module) -> nnx.Module:
    """Folds every adapter into its kernel and restores plain `nnx.Linear` layers, in place.

    The merged kernel keeps the base kernel's dtype, metadata and sharding. Returns `model`.
    """
    for path, node in [(p, n) for p, n in nnx.iter_graph(model) if isinstance(n, LoRALinear)]:
        kernel = node.kernel[...]
        sharding = getattr(kernel, "sharding", None)
        merge = jax.jit(lambda w, d: (w.astype(jnp.float32) + d).astype(w.dtype),
                        out_shardings=sharding if isinstance(sharding, jax.sharding.NamedSharding) else None)
        merged = merge(kernel, node.delta())
        plain = nnx.eval_shape(lambda n=node: nnx.Linear(n.in_features, n.out_features, use_bias=n.use_bias,
                                                         dtype=n.dtype, param_dtype=n.param_dtype,
                                                         precision=n.precision, rngs=nnx.Rngs(0)))
        for name in _LINEAR_FIELDS:
            setattr(plain, name, getattr(node, name))
        plain.kernel = nnx.Param(merged, **node.kernel.get_metadata())
        _set_child(model, path, plain)
    return model
