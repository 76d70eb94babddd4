"""`launch.py demo`: the paper's Base / SFT / SF²T / SFT+SF²T comparison on the synthetic world,
end to end on a CPU (docs/demo.md): prepare the data, train the four settings, evaluate them
on the synthetic FineVidBench, write the table, the figures and the claims' verdict.

    python launch.py demo                                     # scale small: ~15 minutes on 2 cores
    python launch.py demo --scale medium --workdir runs/demo_medium
    python launch.py demo --config.stages.sf2t.method=lora    # any configs/demo.py field

Re-running the same command resumes: finished stages and evaluations are kept.
"""
from __future__ import annotations

import argparse
import logging
import os

HELP = "the whole demo: data, Base/SFT/SF²T/SFT+SF²T training, FineVidBench evaluation, claims"
CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo.py")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", default="small", choices=("small", "medium", "large"),
                        help="world size and training steps (configs/demo.py SCALES, STEPS)")
    parser.add_argument("--workdir", help="the run folder (default runs/demo_SCALE)")
    parser.add_argument("--config", default=None, metavar="FILE[:ARG]",
                        help="demo config (default configs/demo.py:scale=SCALE); --config.KEY=VALUE overrides")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars in prepare")


def run(args: argparse.Namespace) -> None:
    from sf2t_jax import validation
    from sf2t_jax.configuration import load_config

    spec = args.config or f"{os.path.normpath(CONFIG)}:scale={args.scale}"
    config = load_config(spec, args.overrides)
    validation.check_prepare(config)

    from sf2t_jax.demo import run_demo
    from sf2t_jax.train.errors import TrainConfigError

    workdir = args.workdir or f"runs/demo_{config.scale}"
    try:
        result = run_demo(config, workdir, progress=args.progress)
    except TrainConfigError as e:
        raise SystemExit(f"error: {e}") from None
    logging.info("demo: run folder %s (comparison.md, claims.md, demo.log); %.0f s", result.workdir,
                 result.seconds["total"])
