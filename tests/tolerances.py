"""Float tolerances derived from the dtype and the computation, never from one machine's output.

Another mesh, process count, accumulation split, packing or gather computes the same sums in
another order. Summing n terms in any order lands within (n - 1)·u·Σ|terms| of the exact sum,
u = eps/2 the unit roundoff (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
§4.2), so two orders differ by at most (n - 1)·eps·Σ|terms| < n·eps·Σ|terms|. A result that
passes through `depth` such reductions in sequence (layers) collects one such bound per
reduction. For a tensor of sums we take Σ|terms| to be the reference tensor's largest |value|:
in these tests' well-scaled models the terms are no larger than the results they add up to
(checked where it matters: the measured differences sit 1-2 orders of magnitude inside).

What must be exact (integer counts, token ids, batch digests, restored checkpoints) is
compared with `==`, never with these.
"""
from __future__ import annotations

import numpy as np


def eps(dtype) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)


def reorder_atol(reference, terms: int, dtype=np.float32, depth: int = 1) -> float:
    """Absolute bound on how far a tensor of `terms`-term sums (through `depth` reductions in
    sequence) moves when only the order of its sums changes."""
    scale = float(np.max(np.abs(np.asarray(reference, np.float64)))) if np.size(reference) else 0.0
    return depth * terms * eps(dtype) * scale


def assert_reordered_close(actual, desired, terms: int, dtype=np.float32, depth: int = 1, err_msg: str = "") -> None:
    """`actual` equals `desired` up to the order of their sums (see the module docstring)."""
    np.testing.assert_allclose(actual, desired, rtol=0, atol=reorder_atol(desired, terms, dtype, depth),
                               err_msg=err_msg)


def steps_atol(value, steps, dtype=np.float32):
    """Training curves that differ only in summation order, after `steps` optimizer steps: per
    step the local and the cross-process sums may each round the other way (2 ulps), doubled for
    the backward pass, and every step's update carries the difference into the later ones, so
    the bound grows linearly: 4 * steps ulps of `value` (elementwise)."""
    return 4 * np.asarray(steps) * np.spacing(np.abs(np.asarray(value, dtype)))
