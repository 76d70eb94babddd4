"""Clips per second of the synthetic world's rendering (render + VP9 encode + write) with one
process and with one per CPU (`write_world(workers=...)`), alternating, each into a fresh folder.

    python benchmarks/world_render.py [--clips 120] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=120, help="training clips (24 frames of 112x112, as the demo's)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from sf2t_jax.world import WorldConfig, write_world

    config = WorldConfig(train_clips=args.clips, validation_clips=0, test_clips=0, height=112, width=112,
                         num_frames=24, seed=0)
    cpus = os.cpu_count() or 1
    rates: dict[int, list[float]] = {1: [], cpus: []}
    for _ in range(args.rounds):
        for workers in rates:
            folder = tempfile.mkdtemp(prefix="world_bench_")
            try:
                before = os.getloadavg()[0]
                summary = write_world(folder, config, progress=False, workers=workers)
                rates[workers].append(summary.clips_per_second)
                print(f"workers={workers}: {summary.clips_per_second:6.1f} clips/s ({summary.seconds:.1f} s)   "
                      f"load average {before:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    one, every = (statistics.median(r) for r in rates.values())
    print(f"\nmedian of {args.rounds}: 1 process {one:.1f}, {cpus} processes {every:.1f} clips/s ({every / one:.2f}x)")


if __name__ == "__main__":
    main()
