"""`launch.py demo`: the paper's Base / SFT / SF²T / SFT+SF²T comparison on the synthetic world,
end to end on a CPU (docs/demo.md): prepare the data, train the four settings, evaluate them
on the synthetic FineVidBench, write the table, the figures and the claims' verdict.

    python launch.py demo                                     # scale small: 10-18 minutes on 2 cores
    python launch.py demo --scale medium --workdir runs/demo_medium
    python launch.py demo --config.stages.sf2t.method=lora    # any field of the demo config

Re-running the same command resumes: finished stages and evaluations are kept.
"""
from __future__ import annotations

import argparse
import logging

HELP = "the whole demo: data, Base/SFT/SF²T/SFT+SF²T training, FineVidBench evaluation, claims"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", default="small", choices=("small", "medium", "large"),
                        help="world size and training steps (sf2t_jax/defaults/demo.py SCALES, STEPS)")
    parser.add_argument("--workdir", help="the run folder (default runs/demo_SCALE)")
    parser.add_argument("--config", default=None, metavar="FILE[:ARG]",
                        help="demo config file, e.g. configs/demo.py:scale=medium (default: the package's "
                             "demo config at --scale); --config.KEY=VALUE overrides")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars in prepare")


def run(args: argparse.Namespace) -> None:
    from sf2t_jax.configuration import load_config, make_config
    from sf2t_jax.defaults.demo import demo_config

    if args.config:
        config = load_config(args.config, args.overrides)
    else:  # the package's own defaults: no repository folder needed
        config = make_config(demo_config, f"scale={args.scale}", args.overrides)
    from sf2t_jax.demo import DemoSettings, run_demo

    settings = DemoSettings.of(config)  # every section checked before anything is written
    workdir = args.workdir or f"runs/demo_{settings.scale}"
    result = run_demo(settings, workdir, progress=args.progress)
    logging.info("demo: run folder %s (comparison.md, claims.md, demo.log); %.0f s", result.workdir,
                 result.seconds["total"])
