"""The one entry point of sf2t-jax: the same command on a laptop, one GPU, or every TPU worker.

    python launch.py demo [--scale small|medium|large]       the embedded demo: Base / SFT / SF²T / SFT+SF²T
    python launch.py convert --from-hf HF_DIR --out DIR      Hugging Face -> our orbax format
    python launch.py convert --to-hf DIR --out HF_DIR        our format -> Hugging Face safetensors
    python launch.py prepare --config configs/demo.py        render the synthetic world, build the datasets
    python launch.py prepare --config configs/demo.py --source SSV2_DIR   build them from a real SSv2 folder
    python launch.py preview --config CONFIG --n 16 --out DIR contact sheets of training samples
    python launch.py eval --config configs/eval_finevidbench.py --checkpoint PATH --out DIR
    python launch.py eval --compare DIR1 DIR2 ... --out DIR  several runs in one table and figure
    python launch.py train --config configs/sf2t.py[:ARGS] --workdir DIR   (local or gs://)
    python launch.py sweep configs/ablations/NAME.py [--dry-run]

An installed sf2t_jax runs the same commands as `python -m sf2t_jax COMMAND ...` (launch.py in the
repository is a shortcut for it); configs/ holds example experiment files, and the package has
its own defaults (`launch.py demo` needs no --config).

Commands that take an experiment config accept `--config FILE[:ARG]` and field overrides
`--config.a.b=VALUE`; an unknown key, a value of the wrong type or range, an unknown name or a
missing path is refused in one line before anything runs or is written (sf2t_jax/validation.py).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

# Every module in sf2t_jax/cli is a sub-command named after it (register(parser), run(args)).
COMMANDS = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)))


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported in one line (like every other bad input)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(prog: str = "launch.py") -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"sf2t_jax.cli.{name}")
        sub = commands.add_parser(name, help=module.HELP, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.register(sub)
        sub.set_defaults(run=module.run)
    return parser


def parse(argv: list[str], prog: str = "launch.py") -> argparse.Namespace:
    """argparse plus `--config.key=value` overrides, collected into `args.overrides`."""
    parser = build_parser(prog)
    args, rest = parser.parse_known_args(argv)
    overrides, unknown = [], []
    for item in rest:
        (overrides if item.startswith("--config.") and "=" in item else unknown).append(item)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if overrides and not hasattr(args, "config"):
        parser.error(f"{args.command} takes no --config overrides")
    args.overrides = [o[len("--config."):] for o in overrides]
    return args


def main(argv: list[str] | None = None, prog: str = "launch.py") -> None:
    """Runs one command; `prog` is how usage lines and errors name the program."""
    args = parse(sys.argv[1:] if argv is None else argv, prog)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every metadata write at INFO
    # grain worker processes read absl flags; mark them parsed without giving them our argv.
    from absl import flags
    flags.FLAGS(sys.argv[:1], known_only=True)
    from sf2t_jax.errors import InputError

    try:
        args.run(args)
    except (FileNotFoundError, FileExistsError, InputError) as e:
        raise SystemExit(f"error: {e}") from None  # bad input: the message says it all, no traceback
    except KeyboardInterrupt:  # Ctrl-C outside training, or a second one during it
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
