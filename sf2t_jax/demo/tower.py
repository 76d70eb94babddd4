"""The demo's tower stage: pretrain the vision tower on per-patch object labels, probe it, export.

    result = pretrain_tower(model, train_pairs, settings)      # model.visual learns in place
    probes = probe_tower(model, probe_train, probe_heldout)     # ridge probes on merged tokens

The tower (patch embedding, ViT blocks and merger) is trained with a linear head on each merged
token that predicts, for each of its 2x2 patches and each frame of the pair, the covering
object's colour and shape (`tower_data`). The head is thrown away; the LLM is not touched. The
base stage then captions with this tower frozen (the merger keeps training), as every
Video-LLM the paper fine-tunes starts from a pretrained image tower.

Probes say what the merged tokens (what the LLM reads) carry: a ridge classifier fitted on
training-split tokens, scored on held-out clips: the colour and the shape of the object
covering most of each token's window in the pair's first frame (over the tokens an object
covers), its position (whether an object covers the window at all, over every token) and the
token's window (which of the frame's merge windows it is, over every token: whether a token's
content says where in the frame it sits), next to the same probe on the random tower and the
majority class.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sf2t_jax.demo.tower_data import COLOUR_CLASSES, SHAPE_CLASSES, FramePairs
from sf2t_jax.models.vision import VisionPatches, VisionTower
from sf2t_jax.video.patchify import MERGE_SIZE, normalize_patches

log = logging.getLogger(__name__)
PROBES = ("colour", "shape", "position", "window")


@dataclasses.dataclass(frozen=True)
class TowerSettings:
    """steps, batch (pairs per step), lr (AdamW peak, cosine decay after 5% warmup), seed
    (head init and batch order)."""

    steps: int = 400
    batch: int = 64
    lr: float = 2e-3
    seed: int = 0


class LabelHead(nnx.Module):
    """Merged token (hidden) -> logits (2 frames, merge**2 patches, colour + shape classes)."""

    def __init__(self, hidden: int, rngs: nnx.Rngs):
        self.per_patch = len(COLOUR_CLASSES) + len(SHAPE_CLASSES)
        self.linear = nnx.Linear(hidden, 2 * MERGE_SIZE**2 * self.per_patch, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        n, w, _ = tokens.shape
        return self.linear(tokens).reshape(n, w, 2, MERGE_SIZE**2, self.per_patch)


class _Pretraining(nnx.Module):
    def __init__(self, visual: VisionTower, head: LabelHead):
        self.visual, self.head = visual, head


def _patches(rows: np.ndarray, grid_hw) -> VisionPatches:
    n, s, d = rows.shape
    return VisionPatches(jnp.asarray(normalize_patches(rows.reshape(n * s, d)).reshape(n, s, d)), tuple(grid_hw))


def _window_labels(labels: np.ndarray) -> np.ndarray:
    """(N, 2, P) per-patch classes in row order -> (N, P/4, 2, 4): per merged token."""
    n, f, p = labels.shape
    return labels.reshape(n, f, p // MERGE_SIZE**2, MERGE_SIZE**2).transpose(0, 2, 1, 3)


def label_loss(logits: jax.Array, colour: jax.Array, shape: jax.Array) -> tuple[jax.Array, dict]:
    """Mean cross-entropy of the colour and shape classes over every patch and frame.

    logits: (N, W, 2, 4, C+S); colour, shape: int (N, W, 2, 4)."""
    c = len(COLOUR_CLASSES)
    ce_colour = optax.softmax_cross_entropy_with_integer_labels(logits[..., :c], colour).mean()
    ce_shape = optax.softmax_cross_entropy_with_integer_labels(logits[..., c:], shape).mean()
    accuracy = {"colour": (logits[..., :c].argmax(-1) == colour).mean(),
                "shape": (logits[..., c:].argmax(-1) == shape).mean()}
    return ce_colour + ce_shape, accuracy


def pretrain_tower(visual: VisionTower, pairs: FramePairs, settings: TowerSettings, *,
                   heldout: FramePairs | None = None, log_every: int = 100) -> list[dict]:
    """Trains `visual` (in place) on the pairs' labels; returns per-log-step records
    {step, loss, colour, shape} (training-batch accuracies per patch) and, with `heldout`,
    {heldout_loss, heldout_colour, heldout_shape} over every held-out pair."""
    head = LabelHead(visual.merger.fc2.out_features, nnx.Rngs(settings.seed))
    model = _Pretraining(visual, head)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    schedule = optax.warmup_cosine_decay_schedule(0.0, settings.lr, max(1, settings.steps // 20), settings.steps,
                                                  settings.lr * 0.05)
    tx = optax.adamw(schedule, weight_decay=0.01)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, patches, colour, shape):
        def loss_fn(p):
            m = nnx.merge(graphdef, p, rest)
            return label_loss(m.head(m.visual(patches)), colour, shape)

        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, accuracy

    @jax.jit
    def evaluate(params, patches, colour, shape):
        m = nnx.merge(graphdef, params, rest)
        return label_loss(m.head(m.visual(patches)), colour, shape)

    def heldout_metrics(params) -> dict:
        sums, n = {"heldout_loss": 0.0, "heldout_colour": 0.0, "heldout_shape": 0.0}, len(heldout)
        for i in range(0, n, 256):
            j = slice(i, min(i + 256, n))
            loss, accuracy = evaluate(params, _patches(heldout.rows[j], heldout.grid_hw),
                                      _window_labels(heldout.colour[j]), _window_labels(heldout.shape[j]))
            weight = (j.stop - j.start) / n
            sums["heldout_loss"] += weight * float(loss)
            sums["heldout_colour"] += weight * float(accuracy["colour"])
            sums["heldout_shape"] += weight * float(accuracy["shape"])
        return sums

    colour, shape = _window_labels(pairs.colour), _window_labels(pairs.shape)
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(pairs))
    history, start, cursor = [], time.perf_counter(), 0
    for i in range(1, settings.steps + 1):
        if cursor + settings.batch > len(order):
            order, cursor = rng.permutation(len(pairs)), 0
        idx = np.sort(order[cursor:cursor + settings.batch])
        cursor += settings.batch
        params, opt_state, loss, accuracy = step(params, opt_state, _patches(pairs.rows[idx], pairs.grid_hw),
                                                 colour[idx], shape[idx])
        if i % log_every == 0 or i == settings.steps:
            record = {"step": i, "loss": float(loss), **{k: float(v) for k, v in accuracy.items()}}
            if heldout is not None:
                record.update(heldout_metrics(params))
            history.append(record)
            rate = i / (time.perf_counter() - start)
            seen = (f"; held-out colour {record['heldout_colour']:.3f} shape {record['heldout_shape']:.3f}"
                    if heldout is not None else "")
            log.info("tower step %d/%d: loss %.3f, patch accuracy colour %.3f shape %.3f%s; %.1f steps/s, ETA %.0f s",
                     i, settings.steps, record["loss"], record["colour"], record["shape"], seen, rate,
                     (settings.steps - i) / rate)
    nnx.update(model, params)
    return history


def merged_tokens(visual: VisionTower, pairs: FramePairs, batch: int = 256) -> np.ndarray:
    """float32 (N, W, hidden): the tower's output tokens for every pair."""
    graphdef, state = nnx.split(visual)
    forward = jax.jit(lambda s, p: nnx.merge(graphdef, s)(p))
    return np.concatenate([np.asarray(forward(state, _patches(pairs.rows[i:i + batch], pairs.grid_hw)), np.float32)
                           for i in range(0, len(pairs), batch)])


def probe_targets(pairs: FramePairs) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{probe: (token mask (N*W,) bool, classes of the masked tokens)} for the pair's first frame:
    position = whether an object covers the token's window (every token); colour and shape of
    that object (tokens an object covers: most windows are background, which would otherwise
    dominate the score); window = the token's own index among the frame's windows, in row order
    (every token)."""
    colour, shape = pairs.window_colour[:, 0].reshape(-1), pairs.window_shape[:, 0].reshape(-1)
    occupied = colour > 0
    n, windows = pairs.window_colour[:, 0].shape
    return {"colour": (occupied, colour[occupied]), "shape": (occupied, shape[occupied]),
            "position": (np.ones_like(occupied), occupied.astype(np.int32)),
            "window": (np.ones_like(occupied), np.tile(np.arange(windows, dtype=np.int32), n))}


def ridge_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                l2: float = 1.0) -> float:
    """Accuracy on (test_x, test_y) of a one-vs-rest ridge classifier fitted on the training
    features (standardised by the training statistics; a bias column is not penalised)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    def design(x):
        return np.concatenate([(x - mean) / std, np.ones((len(x), 1))], axis=1).astype(np.float64)
    a, b = design(train_x), design(test_x)
    classes = np.unique(train_y)
    onehot = (train_y[:, None] == classes[None, :]).astype(np.float64)
    penalty = l2 * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0
    w = np.linalg.solve(a.T @ a + penalty, a.T @ onehot)
    return float((classes[(b @ w).argmax(1)] == test_y).mean())


def probe_tower(visuals: dict[str, VisionTower], fit: FramePairs, heldout: FramePairs) -> dict[str, dict]:
    """{probe: {name of each tower: held-out accuracy, 'majority': the held-out share of the
    training split's most common class, 'tokens': (fit, held-out) counts}}."""
    fit_y, test_y = probe_targets(fit), probe_targets(heldout)
    features = {}
    for name, v in visuals.items():
        a, b = merged_tokens(v, fit), merged_tokens(v, heldout)
        features[name] = (a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]))
    out = {}
    for probe in PROBES:
        (fit_mask, fit_classes), (test_mask, test_classes) = fit_y[probe], test_y[probe]
        values, counts = np.unique(fit_classes, return_counts=True)
        row = {name: ridge_probe(a[fit_mask], fit_classes, b[test_mask], test_classes)
               for name, (a, b) in features.items()}
        row["majority"] = float((test_classes == values[counts.argmax()]).mean())
        row["tokens"] = [int(fit_classes.size), int(test_classes.size)]
        out[probe] = row
    return out


def probes_markdown(probes: dict[str, dict]) -> str:
    names = [k for k in next(iter(probes.values())) if k not in ("majority", "tokens")]
    lines = ["| probe (held-out tokens) | " + " | ".join(names) + " | majority class |",
             "|---" * (len(names) + 2) + "|"]
    for probe, row in probes.items():
        lines.append(f"| {probe} ({row['tokens'][1]}) | " + " | ".join(f"{100 * row[n]:.1f}" for n in names)
                     + f" | {100 * row['majority']:.1f} |")
    return "\n".join(lines) + "\n"
