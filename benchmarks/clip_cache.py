"""Input pipeline throughput with and without the clip cache (`input.clip_cache_mb`), over
repeated passes of one source, as the demo's stages read theirs.

Writes a corpus like the demo world's training clips (24 frames of 112x112, VP9 WebM), then
times the fragment pipeline at the demo's geometry (56x56 bucket, 8-frame budget, batch 16,
0 workers, 1 reader thread): the first pass (every clip decoded either way) and the later passes
(cached clips are not decoded again). Cache off and on alternate, `--rounds` times each, in one
process; the load average is printed before and after each measurement.

    python benchmarks/clip_cache.py [--clips 96] [--passes 3] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def measure(corpus: str, cache_mb: int, clips: int, passes: int) -> tuple[float, float]:
    """(samples/s over the first pass, samples/s over the later passes)."""
    from sf2t_jax.fragments import CountConfig, DisorderConfig, FragmentsConfig, LocalizeConfig
    from sf2t_jax.input import InputConfig, InputPipeline

    # the demo's ranges at an 8-frame budget (defaults/sf2t.py TASK_FRAMES)
    fragments = FragmentsConfig(count=CountConfig(n_frames=(2, 8)), localize=LocalizeConfig(n_frames=(6, 8)),
                                disorder=DisorderConfig(n_frames=(4, 8)))
    config = InputConfig(source=corpus, tokenizer="tiny:1000", batch_size=16, max_length=128, resolution=(56, 56),
                         frame_budget=8, seed=0, num_epochs=0, drop_remainder=True, threads=1,
                         fragments=fragments, clip_cache_mb=cache_mb)
    it = InputPipeline(config, process_index=0, process_count=1).iterator()
    per_pass = clips // config.batch_size
    next(it)  # start-up (threads, first decode) is not a pass's cost
    start = time.perf_counter()
    for _ in range(per_pass - 1):
        next(it)
    first = (per_pass - 1) * config.batch_size / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(per_pass * (passes - 1)):
        next(it)
    later = per_pass * (passes - 1) * config.batch_size / (time.perf_counter() - start)
    it.close()
    return first, later


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--passes", type=int, default=3, help="passes over the corpus per measurement (>= 2)")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    args = parser.parse_args()
    if args.passes < 2:
        parser.error("--passes must be >= 2: the cache only helps from the second pass")

    from sf2t_jax.input.fixture_clips import write_clips

    tmp = tempfile.mkdtemp(prefix="clip_cache_bench_")
    try:
        write_clips(tmp, args.clips, num_frames=24, height=112, width=112, container="webm")
        cache_mb = -(-args.clips * 24 * 56 * 56 * 3 // (1 << 20)) + 1  # room for every clip
        results = {"off": [], "on": []}
        for _ in range(args.rounds):
            for name, mb in (("off", 0), ("on", cache_mb)):
                before = os.getloadavg()[0]
                first, later = measure(tmp, mb, args.clips, args.passes)
                results[name].append((first, later))
                print(f"cache {name:3s} ({mb:3d} MiB): first pass {first:6.1f} samples/s, later passes "
                      f"{later:6.1f} samples/s   load average {before:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
        off = statistics.median(r[1] for r in results["off"])
        on = statistics.median(r[1] for r in results["on"])
        print(f"\nlater passes, median of {args.rounds}: off {off:.1f}, on {on:.1f} samples/s ({on / off:.2f}x); "
              f"{args.clips} clips of 24x112x112, {os.cpu_count()} CPUs")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
