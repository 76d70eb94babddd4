"""Attention alone, XLA vs splash, on a TPU topology: memory per chip of forward + backward,
from the AOT-compiled program (libtpu; no TPU needed): temporaries, and the outputs (the
gradients of q, k, v) for scale. Splash never holds the (B, H, L, L)
float32 logits; XLA's path does, per layer, which is what limits batch x length on a pod.

    pip install '.[plan]'
    python benchmarks/attention_memory.py                       # Qwen2-VL-7B shapes on v5e:2x2
    python benchmarks/attention_memory.py --length 4096 --rows 8

Shapes per chip (the global batch is rows x chips, sharded over them as the trainer does):
decoder: rows x length tokens, 28 query heads, 4 KV heads, head_dim 128 (causal, padded rows);
vision: rows x 8 slices of 16x16 patches, 16 heads, head_dim 80 (full). Both implementations
are compiled alternately in one process; the load average is printed since compile times
depend on it (memory does not).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def compile_attention(implementation: str, mesh, shape, kv_heads: int, causal: bool):
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec

    from configs.sharding import DEFAULT_RULES
    from sf2t_jax.models.attention import AttentionMask, attend
    from sf2t_jax.parallel.activations import activation_sharding

    b, length, heads, head_dim = shape

    def loss(q, k, v, valid):
        with activation_sharding(mesh, DEFAULT_RULES):
            mask = AttentionMask(valid=valid if causal else None, causal=causal)
            out = attend(q, k, v, mask, implementation=implementation)
        return jnp.sum(out.astype(jnp.float32) ** 2)

    rows = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    args = (jax.ShapeDtypeStruct((b, length, heads, head_dim), jnp.bfloat16, sharding=rows),
            *(jax.ShapeDtypeStruct((b, length, kv_heads, head_dim), jnp.bfloat16, sharding=rows) for _ in range(2)),
            jax.ShapeDtypeStruct((b, length), jnp.bool_, sharding=rows))
    start = time.perf_counter()
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(*args).compile()
    memory = compiled.memory_analysis()
    return memory.temp_size_in_bytes, memory.output_size_in_bytes, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", default="v5e:2x2")
    parser.add_argument("--rows", type=int, default=2, help="rows (sequences) per chip")
    parser.add_argument("--length", type=int, default=1024, help="decoder tokens per row")
    args = parser.parse_args(argv)

    import numpy as np
    from jax.sharding import Mesh

    from sf2t_jax.plan import topology

    topo = topology.parse(args.topology)
    chips = len(topo.devices)
    mesh = Mesh(np.array(topo.devices).reshape(1, chips, 1), ("data", "fsdp", "tensor"))
    cases = {
        "decoder": ((args.rows * chips, args.length, 28, 128), 4, True),
        "vision": ((args.rows * chips * 8, 256, 16, 80), 16, False),
    }
    print(f"{args.topology}: {chips} chips; per chip {args.rows} rows x {args.length} tokens; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'block':<8} {'implementation':<15} {'temp MiB / chip':>16} {'outputs MiB':>12} {'compile s':>10}")
    for name, (shape, kv_heads, causal) in cases.items():
        for implementation in ("xla", "splash"):
            temp, outputs, seconds = compile_attention(implementation, mesh, shape, kv_heads, causal)
            print(f"{name:<8} {implementation:<15} {temp / 2**20:>16.1f} {outputs / 2**20:>12.1f} {seconds:>10.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
