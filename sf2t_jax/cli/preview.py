"""`launch.py preview`: look at the training data before training on it.

    python launch.py preview --config configs/sf2t.py --n 16 --out DIR
    python launch.py preview --source VIDEO_DIR --n 16 --out DIR [--tokenizer tokenizer.json]

Writes, for the first N usable samples of the pipeline's stream (sample g is exactly what
training sees at stream position g), `DIR/sample_{g:05d}_{task}.png`: the frames as the model
sees them (after resizing to the bucket), numbered as the question counts them, with the
question and answer; and `DIR/summary.json`: samples per task, answer distributions, token
lengths, and skipped files by reason (each listed with its path). The config's `input` section
is read (see `sf2t_jax.input.InputConfig.from_dict`); `--source` replaces its source, or, with
no --config, previews a folder with the default input settings.
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import time

HELP = "write contact sheets and a summary of the first N training samples"

log = logging.getLogger(__name__)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="experiment config FILE[:ARG] with an `input` section")
    parser.add_argument("--source", help="a folder / manifest / video file / tfds:NAME to preview instead")
    parser.add_argument("--tokenizer", help="tokenizer.json (default: the config's; without a config, tiny:1000)")
    parser.add_argument("--n", type=int, default=16, help="samples to draw (16)")
    parser.add_argument("--out", required=True, help="output folder")


def input_config(args: argparse.Namespace):
    """The InputConfig the arguments describe, every field checked (`validation.check_input`)."""
    from sf2t_jax import validation

    section = {}
    if args.config:
        from sf2t_jax.configuration import load_config

        config = load_config(args.config, args.overrides)
        if "input" not in config:
            raise SystemExit(f"error: {args.config} has no `input` section (keys: {', '.join(sorted(config))})")
        section = config.input.to_dict()
    elif args.overrides:
        raise SystemExit("error: --config.* overrides need --config")
    elif not args.source:
        raise SystemExit("error: give --config FILE or --source DIR")
    if args.source:
        section["source"] = args.source
    if args.tokenizer:
        section["tokenizer"] = args.tokenizer
    default_tokenizer = not args.tokenizer and not section.get("tokenizer")
    if default_tokenizer:
        section["tokenizer"] = "tiny:1000"
    config = validation.check_input(section)
    if default_tokenizer:  # logged once the settings are known to be good
        log.info("preview: no tokenizer given; token counts use the built-in tiny tokenizer")
    return config


def run(args: argparse.Namespace) -> None:
    from sf2t_jax import validation

    validation.check_value("--n", args.n, validation.Int(1))
    config = input_config(args)  # bad settings stop here, before the pipeline opens anything

    from sf2t_jax.input import InputPipeline, NoUsableVideoError, Prepared, SkipCounter
    from sf2t_jax.input.contact_sheet import contact_sheet

    pipeline = InputPipeline(config, process_index=0, process_count=1)  # bad settings: InputError, one line
    os.makedirs(args.out, exist_ok=True)
    skips = SkipCounter()
    skipped_files, files = [], []
    per_task = collections.Counter()
    answers: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    tokens = []
    total = len(pipeline.records)  # finite epochs bound the stream
    run_limit = 2 * len(pipeline.source)  # as the pipeline: a full epoch in a row unusable -> error
    g, run_length, start = 0, 0, time.perf_counter()
    while len(files) < args.n and g < total:
        out = pipeline.prepare(g)
        g += 1
        if not isinstance(out, Prepared):
            skips.add(out)
            skipped_files.append({"index": out.index, "path": out.path, "reason": out.reason, "task": out.task,
                                  "detail": out.detail})
            run_length += 1
            if run_length >= run_limit:
                break
            continue
        run_length = 0
        sample = out.sample
        name = f"sample_{out.index:05d}_{sample.task}.png"
        contact_sheet(out).save(os.path.join(args.out, name))
        per_task[sample.task] += 1
        answers[sample.task][sample.answer] += 1
        tokens.append(out.num_tokens)
        files.append({"index": out.index, "id": out.id, "record_index": out.record_index, "task": sample.task,
                      "present": sample.present, "frames": int(len(sample.frames)), "question": sample.question,
                      "answer": sample.answer, "tokens": out.num_tokens, "png": name})
        log.info("preview: %d/%d  #%d %s -> %s", len(files), args.n, out.index, sample.task, name)
    if not files:
        raise SystemExit(f"error: {NoUsableVideoError.__name__}: no usable sample in the first {g} of "
                         f"{pipeline.source!r}: {skips.describe()}")
    summary = {
        "source": repr(pipeline.source),
        "records": len(pipeline.source),
        "tried": g,
        "samples": len(files),
        "samples_per_task": dict(sorted(per_task.items())),
        "answers": {t: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for t, c in sorted(answers.items())},
        "tokens": {"min": min(tokens), "max": max(tokens), "mean": round(sum(tokens) / len(tokens), 1),
                   "max_length": config.max_length, "tokenizer": config.tokenizer},
        "batch_shapes": {k: f"{tuple(shape)} {dtype}" for k, (shape, dtype) in pipeline.spec.shapes().items()},
        "skipped": skips.total,
        "skipped_by_reason": dict(sorted(skips.by_reason.items())),
        "skipped_by_task": skips.state()["by_task"],
        "skipped_files": skipped_files,
        "files": files,
    }
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    log.info("preview: %d samples (%s) from %d tried in %.1f s; %s; wrote %s", len(files),
             ", ".join(f"{t} {c}" for t, c in sorted(per_task.items())), g, time.perf_counter() - start,
             skips.describe(), args.out)
