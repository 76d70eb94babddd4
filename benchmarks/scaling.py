"""How our train step's time grows with frames per sample and with the batch size.

Usage: python benchmarks/scaling.py [--frames 4,8,16,32] [--batches 1,2,4] [--steps 3] [--dtype bf16]

The model, recipe and batch layout are those of `benchmarks/train_step.py` (the ~105 M
Qwen2-VL config, LoRA r=16 on the LLM projections, merger trained, ViT frozen, AdamW, loss on
answer tokens, the LM head at answer positions only). Frames at 112x112 give 2 frames per
temporal slice of 8x8 patches, 16 merged LLM tokens per slice; a sample's text is a fixed
384 tokens, so its length is 384 + 16 * frames / 2 (416 ... 640 tokens for 4 ... 32 frames).

Two sweeps: frames (at batch 1) and batch size (at 16 frames). Each point compiles once, runs
one warm-up step and `--steps` timed steps (the median is used). For each sweep it prints the
step time, tokens/s, the analytic FLOPs by part (`sf2t_jax.plan.flops`; the LLM's attention
share shown separately), and fits log(time) = a + k log(x): k is the growth exponent (1 =
linear). The same fit over each part's FLOPs says which part grows fastest, and the part that
adds the most FLOPs across the sweep is named.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np

from train_step import (LORA_RANK, Ours, Shape, bench_config, flops_by_part, make_batch,
                        reexec_with_malloc_tunables)

TEXT_TOKENS = 384
ANSWER_POSITIONS = 16


def length_for(cfg, frames: int, size: int) -> int:
    grid = size // cfg.vision.patch_size
    slices = math.ceil(frames / cfg.vision.temporal_patch_size)
    return TEXT_TOKENS + slices * grid * grid // cfg.vision.spatial_merge_size**2


def attention_flops(cfg, shape: Shape) -> float:
    """The LLM's attention products in a LoRA train step (forward + input gradients: 2x)."""
    t = cfg.text
    per_token = t.num_hidden_layers * 4 * shape.length * t.num_attention_heads * t.head_dim
    return 2.0 * shape.batch * shape.length * per_token


def measure(cfg, shape: Shape, dtype: str, steps: int) -> tuple[float, float, dict[str, float]]:
    """(first call s, median step s, FLOPs by part) of our step at `shape`."""
    host = make_batch(cfg, shape)
    t0 = time.perf_counter()
    ours = Ours(cfg, shape, host, dtype, ANSWER_POSITIONS)
    ours.run()
    first = time.perf_counter() - t0
    compiles = ours.compiles  # those of the first call
    ours.run()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        ours.run()
        times.append(time.perf_counter() - t0)
    ours.close()
    if ours.step.traces != 1 or ours.compiles != compiles:
        raise RuntimeError(f"the step recompiled at {shape}: {ours.step.traces} traces, "
                           f"{ours.compiles - compiles} compilations after the first call")
    parts = flops_by_part(cfg, shape, shape.batch * ANSWER_POSITIONS)
    parts["llm attention"] = attention_flops(cfg, shape)
    return first, statistics.median(times), parts


def exponent(xs, ys) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def sweep(name: str, xs: list[int], shapes: list[Shape], cfg, dtype: str, steps: int) -> None:
    print(f"\n== {name} sweep ({dtype}) ==")
    print(f"{name:>7s}{'tokens':>8s}{'first s':>9s}{'step s':>8s}{'tok/s':>8s}{'GFLOP/s':>9s}  "
          "analytic GFLOP per step: vision, merger, llm (attention), lm_head, lora = total")
    rows = []
    for x, shape in zip(xs, shapes):
        first, step, parts = measure(cfg, shape, dtype, steps)
        tokens = shape.batch * shape.length
        rows.append((step, parts))
        g = {k: v / 1e9 for k, v in parts.items()}
        print(f"{x:>7d}{tokens:>8d}{first:>9.1f}{step:>8.2f}{tokens / step:>8.0f}{parts['total'] / step / 1e9:>9.1f}  "
              f"{g['vision']:.1f}, {g['merger']:.1f}, {g['llm']:.1f} ({g['llm attention']:.1f}), {g['lm_head']:.1f}, "
              f"{g['lora']:.1f} = {g['total']:.1f}", flush=True)
    times = [r[0] for r in rows]
    keys = ("vision", "merger", "llm", "llm attention", "lm_head", "lora", "total")
    growth = {k: exponent(xs, [r[1][k] for r in rows]) for k in keys}
    print(f"growth exponent of the step time in {name}: {exponent(xs, times):.2f} (FLOPs: {growth['total']:.2f}); "
          "FLOPs by part: " + ", ".join(f"{k} {growth[k]:.2f}" for k in keys[:-1]))
    added = {k: rows[-1][1][k] - rows[0][1][k] for k in ("vision", "merger", "llm", "lm_head", "lora")}
    top = max(added, key=added.get)
    share = {k: rows[-1][1][k] / rows[-1][1]["total"] for k in added}
    print(f"from {name}={xs[0]} to {xs[-1]}: +{sum(added.values()) / 1e9:.0f} GFLOP, most of it {top} "
          f"(+{added[top] / 1e9:.0f}); at {name}={xs[-1]} the llm is {share['llm']:.0%} of the FLOPs (attention "
          f"{rows[-1][1]['llm attention'] / rows[-1][1]['total']:.0%}), vision {share['vision']:.0%}, "
          f"lm_head {share['lm_head']:.0%}")


def main():
    reexec_with_malloc_tunables()  # see train_step.py: no page faults on XLA's per-step temporaries
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", default="4,8,16,32")
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--frames-batch", type=int, default=1, help="batch size of the frames sweep")
    parser.add_argument("--batch-frames", type=int, default=16, help="frames of the batch sweep")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    args = parser.parse_args()
    cfg = bench_config()
    frames = [int(f) for f in args.frames.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    print(f"LoRA r={LORA_RANK} step of the ~105 M Qwen2-VL config; {args.size}x{args.size} frames, {TEXT_TOKENS} text "
          f"tokens per sample; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    sweep("frames", frames, [Shape(args.frames_batch, f, args.size, length_for(cfg, f, args.size)) for f in frames],
          cfg, args.dtype, args.steps)
    length = length_for(cfg, args.batch_frames, args.size)
    sweep("batch", batches, [Shape(b, args.batch_frames, args.size, length) for b in batches], cfg, args.dtype,
          args.steps)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
