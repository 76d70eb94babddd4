"""`launch.py convert`: Hugging Face checkpoints <-> our orbax format."""
from __future__ import annotations

import argparse
import logging
import os

from sf2t_jax.models.options import DTYPE_NAMES

HELP = "convert checkpoints between Hugging Face and our format"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-hf", metavar="HF_DIR", help="Hugging Face checkpoint directory to read")
    parser.add_argument("--to-hf", metavar="DIR", help="our converted checkpoint directory to export")
    parser.add_argument("--out", required=True, help="output directory (local or gs://)")
    parser.add_argument("--dtype", choices=DTYPE_NAMES,
                        help="parameter dtype (default: the checkpoint's own)")
    parser.add_argument("--max-shard-gb", type=float, default=5.0, help="safetensors shard size for --to-hf")


def run(args: argparse.Namespace) -> None:
    from sf2t_jax import validation

    if bool(args.from_hf) == bool(args.to_hf):
        raise SystemExit("convert: give exactly one of --from-hf HF_DIR or --to-hf DIR")
    if args.from_hf:
        validation.check_value("--from-hf", args.from_hf, validation.Path(
            "dir", optional=False, what="a Hugging Face checkpoint folder"))
    else:
        validation.check_value("--to-hf", args.to_hf, validation.Path(
            "dir", optional=False, what="a folder written by convert --from-hf or a training export"))
    validation.check_value("--max-shard-gb", args.max_shard_gb, validation.POSITIVE)

    import jax.numpy as jnp

    from sf2t_jax.convert import from_hf, to_hf
    from sf2t_jax.convert.native import load_native, save_native
    from sf2t_jax.models.layers import Numerics

    if args.from_hf:
        dtype = args.dtype or _checkpoint_dtype(args.from_hf)
        save_native(from_hf(args.from_hf, getattr(jnp, dtype), progress=True), args.out)
    else:
        dtype = getattr(jnp, args.dtype or "float32")
        model = load_native(args.to_hf, Numerics(dtype=dtype, param_dtype=dtype))
        to_hf(model, args.out, max_shard_bytes=int(args.max_shard_gb * 2**30), progress=True)
    logging.info("wrote %s", args.out)


def _checkpoint_dtype(hf_dir: str) -> str:
    """The dtype the checkpoint was saved in (config.json `torch_dtype`), so conversion never
    silently doubles memory by upcasting bfloat16 weights."""
    from sf2t_jax.models.config import read_config_json

    path = os.path.join(hf_dir, "config.json")
    if not os.path.exists(path):
        return "float32"  # from_hf raises the clear error
    return {"bfloat16": "bfloat16", "float16": "float16"}.get(read_config_json(path).get("torch_dtype"), "float32")
