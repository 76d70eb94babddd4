"""The one entry point of sf2t-jax: the same command on a laptop, one GPU, or every TPU worker.

    python launch.py convert --from-hf HF_DIR --out DIR      Hugging Face -> our orbax format
    python launch.py convert --to-hf DIR --out HF_DIR        our format -> Hugging Face safetensors
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys


def _convert(args: argparse.Namespace) -> None:
    import jax.numpy as jnp

    from sf2t_jax.convert import from_hf, to_hf
    from sf2t_jax.convert.native import load_native, save_native
    from sf2t_jax.models.layers import Numerics

    if bool(args.from_hf) == bool(args.to_hf):
        raise SystemExit("convert: give exactly one of --from-hf HF_DIR or --to-hf DIR")
    if args.from_hf:
        dtype = args.dtype or _checkpoint_dtype(args.from_hf)
        model = from_hf(args.from_hf, getattr(jnp, dtype), progress=True)
        save_native(model, args.out)
    else:
        dtype = args.dtype or "float32"
        model = load_native(args.to_hf, Numerics(dtype=getattr(jnp, dtype), param_dtype=getattr(jnp, dtype)))
        to_hf(model, args.out, max_shard_bytes=int(args.max_shard_gb * 2**30), progress=True)
    logging.info("wrote %s", args.out)


def _checkpoint_dtype(hf_dir: str) -> str:
    """The dtype the checkpoint was saved in (config.json `torch_dtype`), so conversion never
    silently doubles memory by upcasting bfloat16 weights."""
    path = os.path.join(hf_dir, "config.json")
    if not os.path.exists(path):
        return "float32"  # from_hf raises the clear error
    with open(path) as f:
        return {"bfloat16": "bfloat16", "float16": "float16"}.get(json.load(f).get("torch_dtype"), "float32")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="launch.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="convert checkpoints between Hugging Face and our format")
    convert.add_argument("--from-hf", metavar="HF_DIR", help="Hugging Face checkpoint directory to read")
    convert.add_argument("--to-hf", metavar="DIR", help="our converted checkpoint directory to export")
    convert.add_argument("--out", required=True, help="output directory (local or gs://)")
    convert.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                         help="parameter dtype (default: the checkpoint's own)")
    convert.add_argument("--max-shard-gb", type=float, default=5.0, help="safetensors shard size for --to-hf")
    convert.set_defaults(run=_convert)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every metadata write at INFO
    try:
        args.run(args)
    except (FileNotFoundError, FileExistsError, ValueError) as e:  # ConfigError, CheckpointError: clear messages
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
