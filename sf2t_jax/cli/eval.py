"""`launch.py eval`: score a checkpoint on FineVidBench, or compare finished runs.

    python launch.py eval --config configs/eval_finevidbench.py --checkpoint PATH --out DIR
    python launch.py eval --compare DIR1 DIR2 ... --out DIR [--names Base SFT ...]

PATH: a Hugging Face checkpoint, our converted format, or a training workdir's export
(sf2t_jax/eval/loading.py). DIR gets results.json, predictions.jsonl, results.md, tasks.png
and speed.png; then each control of the config's `controls` (static, blind) is scored the same
way into DIR/controls/<view>/, and DIR/controls.md, controls.json and controls.png put real,
static, blind and real - static side by side (sf2t_jax/eval/controls.py). --compare writes
comparison.md and the same figures over the runs.
"""
from __future__ import annotations

import argparse
import logging
import os
import time

HELP = "evaluate a checkpoint on FineVidBench (or --compare finished runs)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="experiment config FILE[:ARG] (configs/eval_finevidbench.py)")
    parser.add_argument("--checkpoint", help="Hugging Face dir, converted dir, or training workdir")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--name", help="run name in tables and figures (default: the checkpoint's folder name)")
    parser.add_argument("--compare", nargs="+", metavar="DIR", help="eval output directories to put side by side")
    parser.add_argument("--names", nargs="+", help="with --compare: one name per directory")


def run(args: argparse.Namespace) -> None:
    from sf2t_jax import validation

    if args.compare:
        if args.checkpoint or args.config:
            raise SystemExit("eval: --compare takes finished run directories only (no --checkpoint / --config)")
        if args.names and len(args.names) != len(args.compare):
            raise SystemExit(f"eval: {len(args.compare)} directories but {len(args.names)} --names")
        for directory in args.compare:
            validation.check_value("--compare", directory, validation.Path("dir", optional=False,
                                                                           what="an eval output folder"))
        from sf2t_jax.eval import report

        path = report.compare(args.compare, args.out, args.names)
        logging.info("wrote %s", path)
        return
    if not (args.config and args.checkpoint):
        raise SystemExit("eval: give --config and --checkpoint (or --compare DIR ...)")
    _evaluate(args)


def _evaluate(args: argparse.Namespace) -> None:
    from sf2t_jax import validation
    from sf2t_jax.configuration import load_config

    config = load_config(args.config, args.overrides)
    validation.check_eval(config, args.checkpoint)  # before the model loads or anything is written

    import jax

    from sf2t_jax.eval import controls, evaluate, load_items, report
    from sf2t_jax.eval.config import EvalJob
    from sf2t_jax.eval.loading import load_for_job

    job = EvalJob.of(config)
    settings = job.settings
    items = load_items(job.benchmark)  # a broken benchmark file: BenchmarkError, one line (cli.main)
    t0 = time.perf_counter()
    model, tokenizer, mesh, rules = load_for_job(job, args.checkpoint)
    logging.info("loaded %s in %.1fs", args.checkpoint, time.perf_counter() - t0)
    name = args.name or os.path.basename(os.path.normpath(args.checkpoint))
    extra_meta = {"checkpoint": args.checkpoint, "benchmark": job.benchmark, "config": job.resolved}
    # The real run, then each control: the same items, prompts, batches and methods; only the
    # frames shown differ. Each is written as soon as it is scored.
    for view in ("real", *settings.controls):
        # video.on_short_clip='error' and a clip too short for its speed: ShortClip, one line
        result = evaluate(model, items, settings, tokenizer=tokenizer, video_root=job.videos, mesh=mesh,
                          rules=rules, view=view)
        if jax.process_index() != 0:
            continue  # every process evaluated (and holds) the same results; one writes them
        if view == "real":
            path = report.write_run(result, args.out, name, extra_meta=extra_meta)
            _log_run(result)
        else:
            report.write_run(result, controls.control_dir(args.out, view), f"{name} ({view})", extra_meta=extra_meta)
            logging.info("%s control: overall %s", view, ", ".join(
                f"{method} {100 * m['overall']['value']:.1f}%" for method, m in result.metrics.items()))
    if jax.process_index() != 0:
        return
    if settings.controls:
        table = controls.report_from_dirs(args.out, name, settings.controls, resamples=settings.bootstrap,
                                          ci=settings.ci, seed=settings.seed)
        controls.log_table(table)
        logging.info("wrote %s", os.path.join(args.out, "controls.md"))
    logging.info("wrote %s", path)


def _log_run(result) -> None:
    if result.meta["skipped"]:
        logging.warning("eval: %d items skipped (%s); listed in results.json meta.skipped", len(result.meta["skipped"]),
                        ", ".join(f"{k} {v}" for k, v in result.meta["skipped_by_reason"].items()))
    for method, m in result.metrics.items():
        logging.info("%s: overall %.1f%% over %d answers", method, 100 * m["overall"]["value"], m["n"])
