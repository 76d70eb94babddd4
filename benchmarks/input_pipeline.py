"""Input pipeline throughput per fragment task, with 0 and 2 grain workers, against bare PyAV decoding.

Writes a corpus of clips (16 frames of 224x224, VP9 webm like SSv2 by default), then measures:
  * bare decode: PyAV opens each clip and converts every frame to RGB (one swscale context per
    clip), nothing else (clips/s);
  * the pipeline, one task at a time: decode + task + patchify + tokenize + static batches of
    8 rows at the (224, 224) bucket (samples/s in steady state, after the first batch, which
    also pays for starting the workers);
  * where a sample's time goes (0 workers): decode, resize, task, patchify + tokenize, collate.
The ratio column is pipeline samples/s over bare-decode clips/s, the decode being timed right
before each row (on a shared machine the load moves): 1.0 would mean the pipeline costs no
more than decoding the frames.

    python benchmarks/input_pipeline.py [--clips 32] [--batches 12] [--workers 0 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)



def bare_decode(paths: list[str], repeats: int, naive: bool = False) -> tuple[float, float]:
    """PyAV alone (open, decode every frame, convert it to RGB): (clips/s, CPU ms per clip).

    RGB conversion through one `VideoReformatter` per clip, the fast way; `naive` uses
    `frame.to_ndarray(format='rgb24')`, which builds an FFmpeg swscale context per frame.
    """
    import av
    from av.video.reformatter import VideoReformatter

    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        for path in paths:
            with av.open(path) as container:
                reformatter = VideoReformatter()
                for frame in container.decode(video=0):
                    if naive:
                        frame.to_ndarray(format="rgb24")
                    else:
                        reformatter.reformat(frame, format="rgb24").to_ndarray()
    clips = repeats * len(paths)
    return clips / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / clips


def pipeline_rate(config, batches: int) -> tuple[float, float, float, int]:
    """(samples/s after the first batch, main-process CPU ms per sample, seconds to the first
    batch, skips). With 0 workers the CPU time is the whole cost of a sample; with workers it
    is what the main process still pays (collating, moving arrays between processes)."""
    from sf2t_jax.input import InputPipeline

    start = time.perf_counter()
    it = InputPipeline(config, process_index=0, process_count=1).iterator()
    next(it)
    first = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(it)
    samples = batches * config.batch_size
    rate = samples / (time.perf_counter() - start)
    cpu_ms = 1000 * (time.process_time() - cpu) / samples
    skipped = it.skips.total
    it.close()
    return rate, cpu_ms, first, skipped


def stage_costs(config, samples: int) -> dict[str, float]:
    """Mean milliseconds per sample of each step of `ExampleMaker`, in this process."""
    from sf2t_jax.fragments import SampleSkip, make_sample
    from sf2t_jax.input import InputPipeline, collate
    from sf2t_jax.video import resize_frames

    pipeline = InputPipeline(config, process_index=0, process_count=1)
    maker = pipeline.maker
    totals = dict.fromkeys(("decode", "resize", "task", "patchify+tokenize", "collate"), 0.0)
    examples, done, g = [], 0, 0
    while done < samples:
        record = pipeline.records[g]
        t0 = time.perf_counter()
        clip = maker._decode(record, record["id"])
        t1 = time.perf_counter()
        clip = resize_frames(clip, maker.resolution)
        t2 = time.perf_counter()
        try:
            sample = make_sample(clip, maker.seed, g, maker.fragments)
        except SampleSkip:
            g += 1
            continue
        t3 = time.perf_counter()
        example, _ = maker._encode(sample)
        t4 = time.perf_counter()
        for key, dt in zip(("decode", "resize", "task", "patchify+tokenize"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            totals[key] += dt
        examples.append({**example, "sample_index": g, "record_index": record["record_index"]})
        done += 1
        g += 1
    spec = pipeline.spec
    t0 = time.perf_counter()
    for k in range(0, len(examples) - spec.batch_size + 1, spec.batch_size):
        collate(examples[k: k + spec.batch_size], spec)
    batches = len(examples) // spec.batch_size
    totals["collate"] = (time.perf_counter() - t0) * samples / max(1, batches * spec.batch_size)  # per-sample share
    return {k: 1000 * v / samples for k, v in totals.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32, help="clips in the corpus (32)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224, help="clip height = width = bucket side (224)")
    parser.add_argument("--container", default="webm", choices=["webm", "mp4", "mkv", "avi"])
    parser.add_argument("--batches", type=int, default=12, help="timed batches of 8 per run, after one warm-up (12)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--workdir", help="where to write the corpus (default: a temporary folder)")
    args = parser.parse_args()

    from absl import flags

    flags.FLAGS(sys.argv[:1], known_only=True)  # grain workers read absl flags
    from sf2t_jax.fragments import TASK_NAMES, FragmentsConfig
    from sf2t_jax.input import InputConfig
    from sf2t_jax.input.fixture_clips import write_clips

    workdir = args.workdir or tempfile.mkdtemp(prefix="input_bench_")
    corpus = os.path.join(workdir, "clips")
    shutil.rmtree(corpus, ignore_errors=True)
    t0 = time.perf_counter()
    paths = write_clips(corpus, args.clips, num_frames=args.frames, height=args.size, width=args.size,
                        container=args.container)
    print(f"corpus: {args.clips} clips of {args.frames} frames {args.size}x{args.size} ({args.container}), "
          f"{sum(os.path.getsize(p) for p in paths) / len(paths) / 1024:.0f} KiB each, written in "
          f"{time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")

    bare_decode(paths, repeats=1)  # warm the page cache
    naive, naive_ms = bare_decode(paths, repeats=1, naive=True)
    print(f"for reference, naive PyAV (frame.to_ndarray per frame): {naive:.1f} clips/s, {naive_ms:.1f} CPU ms/clip\n")

    def config(task, workers):
        return InputConfig(source=corpus, tokenizer="tiny:1000", batch_size=8, max_length=1024,
                           resolution=(args.size, args.size), frame_budget=max(16, args.frames), num_epochs=0,
                           workers=workers, prefetch=8, fragments=FragmentsConfig(weights={task: 1.0}))

    print("samples/s: pipeline throughput; decode/s: bare PyAV clips/s timed just before; ratio = samples/s /\n"
          "decode/s. CPU ms: main-process CPU per sample (pipeline) and per clip (bare decode); their ratio,\n"
          "with 0 workers, is the pipeline's cost in units of a bare decode, robust to the machine's load.\n")
    print(f"{'task':<12} {'workers':>7} {'samples/s':>10} {'decode/s':>9} {'ratio':>6} {'CPU ms':>7} "
          f"{'decode CPU ms':>14} {'CPU ratio':>10} {'first batch s':>14} {'skipped':>8}")
    for task in TASK_NAMES:
        for workers in args.workers:
            decode, decode_ms = bare_decode(paths, repeats=2)
            rate, cpu_ms, first, skipped = pipeline_rate(config(task, workers), args.batches)
            cpu_ratio = f"{decode_ms / cpu_ms:>10.2f}" if workers == 0 else f"{'-':>10}"
            print(f"{task:<12} {workers:>7} {rate:>10.1f} {decode:>9.1f} {rate / decode:>6.2f} {cpu_ms:>7.1f} "
                  f"{decode_ms:>14.1f} {cpu_ratio} {first:>14.1f} {skipped:>8}", flush=True)

    print("\nper-sample wall time by step, 0 workers (ms)")
    steps = ("decode", "resize", "task", "patchify+tokenize", "collate")
    print(f"{'task':<12} " + " ".join(f"{s:>17}" for s in steps))
    for task in TASK_NAMES:
        costs = stage_costs(config(task, 0), samples=16)
        print(f"{task:<12} " + " ".join(f"{costs[s]:>17.1f}" for s in steps), flush=True)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
