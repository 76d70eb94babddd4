"""Percentile bootstrap intervals that resample videos, not items.

A FineVidBench video carries many items (every speed of its Action and Effect questions, every
turn of its fragment conversations), and a model that perceives one video well answers all of
them well: items of one video are not independent. Resampling items treats 1,590 items in 60
videos as 1,590 independent draws and gives intervals too narrow; resampling videos (each
drawn video brings all its items; the statistic is the pooled mean, sum over drawn items /
their count) is the cluster bootstrap (Davison & Hinkley, *Bootstrap Methods and their
Application*, 1997, §3.8). With one item per cluster it is the ordinary item bootstrap.

    lo, hi = interval(values, clusters=video_ids, resamples=1000, ci=0.95, rng=rng)
    diff = paired_difference(correct_a, correct_b, clusters=video_ids, resamples=1000, ci=0.95, rng=rng)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Resampled means are computed this many at a time: (chunk, clusters) weights in memory.
_CHUNK = 256


def resampled_means(values: np.ndarray, clusters: Sequence | None, *, resamples: int,
                    rng: np.random.Generator) -> np.ndarray:
    """(resamples,) pooled means of `values` over bootstrap draws of whole clusters.

    clusters: one label per value (e.g. its video id); None: every value its own cluster. For
    0/1 values without clusters the resampled mean is Binomial(n, mean) / n, drawn directly
    (the same distribution, without an index array per resample).
    """
    values = np.asarray(values, np.float64)
    if clusters is None:
        if np.isin(values, (0.0, 1.0)).all():
            return rng.binomial(values.size, values.mean(), size=resamples) / values.size
        sums, counts = values, np.ones_like(values)
    else:
        labels, index = np.unique(np.asarray(clusters), return_inverse=True)
        if len(index) != values.size:
            raise ValueError(f"bootstrap: {len(index)} cluster labels for {values.size} values")
        sums = np.bincount(index, weights=values, minlength=len(labels))
        counts = np.bincount(index, minlength=len(labels)).astype(np.float64)
    c = sums.size
    means = []
    for start in range(0, resamples, _CHUNK):
        # How often each cluster is drawn in each of these resamples (C draws with replacement).
        weights = rng.multinomial(c, np.full(c, 1.0 / c), size=min(_CHUNK, resamples - start))
        means.append(weights @ sums / (weights @ counts))
    return np.concatenate(means)


def interval(values: np.ndarray, clusters: Sequence | None = None, *, resamples: int, ci: float,
             rng: np.random.Generator) -> list[float | None]:
    """[lo, hi] percentile interval of the mean; [None, None] with no values or no resamples."""
    values = np.asarray(values, np.float64)
    if values.size == 0 or resamples == 0:
        return [None, None]
    means = resampled_means(values, clusters, resamples=resamples, rng=rng)
    lo, hi = np.quantile(means, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return [float(lo), float(hi)]


def paired_difference(a: np.ndarray, b: np.ndarray, clusters: Sequence | None = None, *, resamples: int,
                      ci: float, rng: np.random.Generator) -> dict:
    """Mean of a - b over the same items (e.g. per-item correctness of two models) and its
    interval, both models' answers to a drawn video's items resampled together (paired).
    Returns {"value", "ci": [lo, hi], "n": items, "clusters": distinct clusters}."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n_clusters = diff.size if clusters is None else len(set(clusters))
    return {"value": float(diff.mean()) if diff.size else None, "n": int(diff.size), "clusters": int(n_clusters),
            "ci": interval(diff, clusters, resamples=resamples, ci=ci, rng=rng)}


def balanced_mean(values: np.ndarray, classes: Sequence, clusters: Sequence, *, resamples: int, ci: float,
                  rng: np.random.Generator) -> dict:
    """Balanced accuracy: the mean over classes of each class's mean of `values` (for 0/1
    correctness and gold classes, the mean per-class recall), with a percentile interval over
    resampled clusters (a drawn video brings its items of every class). A class no drawn
    cluster holds is left out of that resample's mean.

    Returns {"value", "ci": [lo, hi], "classes": {class: mean}}.
    """
    values = np.asarray(values, np.float64)
    classes = np.asarray(classes)
    names = sorted(set(classes.tolist()))
    if values.size == 0:
        return {"value": None, "ci": [None, None], "classes": {}}
    labels, index = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.stack([np.bincount(index, weights=values * (classes == k), minlength=len(labels)) for k in names])
    counts = np.stack([np.bincount(index, weights=(classes == k).astype(np.float64), minlength=len(labels))
                       for k in names])  # (classes, clusters)
    per_class = sums.sum(1) / counts.sum(1)
    out = {"value": float(per_class.mean()), "ci": [None, None],
           "classes": {k: float(m) for k, m in zip(names, per_class)}}
    if resamples:
        c = len(labels)
        means = []
        for start in range(0, resamples, _CHUNK):
            weights = rng.multinomial(c, np.full(c, 1.0 / c), size=min(_CHUNK, resamples - start))
            drawn = weights @ counts.T  # (chunk, classes)
            with np.errstate(invalid="ignore", divide="ignore"):
                means.append(np.nanmean(np.where(drawn > 0, (weights @ sums.T) / drawn, np.nan), axis=1))
        lo, hi = np.quantile(np.concatenate(means), [(1 - ci) / 2, 1 - (1 - ci) / 2])
        out["ci"] = [float(lo), float(hi)]
    return out
