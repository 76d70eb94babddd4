"""Clips per second of the tower stage's data (`demo.tower_data.load_pairs`: decode, resize the
frames pairs show, rasterise their labels) with one decoding thread and with one per CPU,
alternating, over a freshly rendered world at the small demo's geometry.

    python benchmarks/tower_data.py [--clips 240] [--rounds 2]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=240, help="training clips (24 frames of 112x112, as the demo's)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from sf2t_jax.demo.tower_data import load_pairs
    from sf2t_jax.world import WorldConfig, write_world

    folder = tempfile.mkdtemp(prefix="tower_data_bench_")
    try:
        write_world(folder, WorldConfig(train_clips=args.clips, validation_clips=0, test_clips=0, height=112,
                                        width=112, num_frames=24, seed=0), progress=False)
        cpus = os.cpu_count() or 1
        rates: dict[int, list[float]] = {1: [], cpus: []}
        for _ in range(args.rounds):
            for threads in rates:
                before = os.getloadavg()[0]
                start = time.perf_counter()
                pairs = load_pairs(folder, "train", (56, 56), pairs_per_clip=4, gaps=(0, 1, 2, 4), min_cover=0.15,
                                   seed=0, threads=threads)
                rate = args.clips / (time.perf_counter() - start)
                rates[threads].append(rate)
                print(f"threads={threads}: {rate:6.1f} clips/s ({len(pairs)} pairs)   load average {before:.2f} -> "
                      f"{os.getloadavg()[0]:.2f}", flush=True)
        one, every = (statistics.median(r) for r in rates.values())
        print(f"\nmedian of {args.rounds}: 1 thread {one:.1f}, {cpus} threads {every:.1f} clips/s ({every / one:.2f}x)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
