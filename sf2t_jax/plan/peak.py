"""Measured matmul peak of the local device: the denominator of MFU on machines without a
published peak (CPUs), and a sanity check on machines with one."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp


def measure_matmul_peak(size: int = 2048, dtype=jnp.bfloat16, repeats: int = 10) -> float:
    """Best observed FLOP/s of a (size x size) @ (size x size) matmul with float32 accumulation."""
    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), dtype)
    matmul = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    matmul(a, b).block_until_ready()  # compile
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
