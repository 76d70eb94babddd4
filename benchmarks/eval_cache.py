"""Seconds per FineVidBench evaluation with the scorer's clip cache (`eval.cache_mb`) off and on.

Under own history the inquiry asks a conversation's turns in rounds over every video (every
first turn, then every second turn, ... once per method), so a loader that keeps only its batch
window's clips decodes each video once per round. Writes a synthetic world of `--clips` test
videos (24 frames of 112x112, VP9, as the demo's) and its benchmark, builds the demo's model
(`qwen2vl_tiny`, random weights: speed does not depend on them), then times `evaluate` over the
whole benchmark (loglik and generate, 56x56 frames, 6 scene frames, as the demo scores) with
cache_mb=0 and the default, alternating, after one warm-up evaluation that compiles. Prints
seconds, videos decoded per evaluation and the load average.

    python benchmarks/eval_cache.py [--clips 30] [--rounds 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=30, help="test videos in the benchmark")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    args = parser.parse_args()

    from flax import nnx

    from sf2t_jax.eval import EvalSettings, evaluate, load_items
    from sf2t_jax.eval import visuals as visuals_module
    from sf2t_jax.finevidbench import load_source, write_benchmark
    from sf2t_jax.models.config import preset
    from sf2t_jax.models.qwen2_vl import Qwen2VL
    from sf2t_jax.text import Tokenizer, build_tiny_tokenizer
    from sf2t_jax.world import WorldConfig, write_world

    decoded = []
    real_decode = visuals_module.decode_video

    def counting_decode(path, *a, **kw):
        decoded.append(path)
        return real_decode(path, *a, **kw)

    visuals_module.decode_video = counting_decode
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_world(root / "world", WorldConfig(train_clips=0, validation_clips=0, test_clips=args.clips, height=112,
                                                width=112, num_frames=24, seed=0), progress=False)
        write_benchmark(load_source(root / "world", ("test",)), root / "bench", ("test",))
        items = load_items(root / "bench" / "finevidbench_test.jsonl")
        tokenizer = Tokenizer(build_tiny_tokenizer(1000), source="tiny")
        model = Qwen2VL(preset("qwen2vl_tiny"), rngs=nnx.Rngs(0))
        base = EvalSettings(batch_size=16, scene_frames=6, size=(56, 56), history="own", history_answer="text",
                            instruction="", bootstrap=0, progress_every_s=0)

        def run(cache_mb: int) -> tuple[float, int]:
            decoded.clear()
            start = time.perf_counter()
            evaluate(model, items, dataclasses.replace(base, cache_mb=cache_mb), tokenizer=tokenizer,
                     video_root=root / "world")
            return time.perf_counter() - start, len(decoded)

        warm, _ = run(base.cache_mb)
        print(f"{len(items)} items on {args.clips} videos; warm-up (compiles) {warm:.1f} s", flush=True)
        seconds = {0: [], base.cache_mb: []}
        for _ in range(args.rounds):
            for cache_mb in seconds:
                before = os.getloadavg()[0]
                took, decodes = run(cache_mb)
                seconds[cache_mb].append(took)
                print(f"cache_mb={cache_mb:5d}: {took:6.1f} s, {decodes:4d} videos decoded   load average "
                      f"{before:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
        off, on = (statistics.median(seconds[k]) for k in seconds)
        print(f"\nmedian of {args.rounds}: cache off {off:.1f} s, on {on:.1f} s ({off / on:.2f}x); {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
