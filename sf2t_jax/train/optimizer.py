"""AdamW with linear warmup and cosine decay, global-norm clipping, and decay only on matrices.

The optimizer only ever sees the trainable parameters (`train/model.py` splits them from the
frozen ones), so frozen weights carry no optimizer state at all, not even masked placeholders.
"""
from __future__ import annotations

import jax
import optax

from sf2t_jax.experiment import TrainSettings


def schedule(config: TrainSettings) -> optax.Schedule:
    """lr(step): 0 -> `lr` linearly over `warmup_fraction` of the steps, then cosine -> `lr * end_lr_fraction`.

    `config` is the `train` settings; `config.steps` must already be resolved (> 0).
    """
    steps = int(config.steps)
    warmup = int(round(config.warmup_fraction * steps))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.lr, warmup_steps=warmup,
        decay_steps=max(steps, warmup + 1), end_value=config.lr * config.end_lr_fraction)


def _decay_mask(params):
    """Weight decay on matrices only; biases, norm scales and other vectors are not decayed."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(config: TrainSettings) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The `train` settings -> (transformation, schedule). Clipping comes first, so the clipped
    gradient is what Adam sees (as in PyTorch's clip_grad_norm_ before step())."""
    lr = schedule(config)
    parts = []
    if config.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(config.clip_norm))
    parts.append(optax.adamw(lr, b1=config.b1, b2=config.b2, eps=config.eps, weight_decay=config.weight_decay,
                             mask=_decay_mask))
    return optax.chain(*parts), lr
