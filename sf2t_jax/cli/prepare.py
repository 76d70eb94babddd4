"""`launch.py prepare`: render the synthetic world (or read a real SSv2 folder) and build the
SF²T corpus, the SFT set and FineVidBench; prints what was built, skipped and the benchmark
statistics. Re-running skips finished work and finishes an interrupted run.

    python launch.py prepare --config configs/demo.py
    python launch.py prepare --config configs/demo.py:scale=medium --config.data.dir=/data/demo
    python launch.py prepare --config configs/demo.py --source /data/ssv2   # videos/, labels/
"""
from __future__ import annotations

import argparse

HELP = "render the world (or read --source) and build the datasets"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE[:ARG]",
                        help="experiment config, e.g. configs/demo.py (sections world, data)")
    parser.add_argument("--source", metavar="PATH",
                        help="an SSv2-format folder (videos/*.webm, labels/*.json) to build "
                             "from instead of rendering the synthetic world")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars")


def run(args: argparse.Namespace) -> None:
    from sf2t_jax import validation
    from sf2t_jax.configuration import load_config

    config = load_config(args.config, args.overrides)
    settings = validation.check_prepare(config, args.source)  # before anything is rendered or written

    from sf2t_jax.prepare import prepare

    # bad input (SSv2FolderError, UnknownTemplateError, ...) is printed in one line by cli.main
    result = prepare(settings, progress=args.progress)
    print(result.report())
