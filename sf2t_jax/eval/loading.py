"""What `launch.py eval --checkpoint PATH` accepts, and the tokenizer that goes with it.

PATH is one of:
  * a Hugging Face checkpoint: config.json + *.safetensors (`convert.from_hf`);
  * our converted format: config.json + params/ (`convert.native.load_native`);
  * a training workdir with a final export: WORKDIR/export (LoRA merged, our format).
Each is restored directly into the mesh's shardings when a mesh is given.
"""
from __future__ import annotations

from typing import Any

from etils import epath

from sf2t_jax.convert import from_hf
from sf2t_jax.convert.native import load_native
from sf2t_jax.eval.config import EvalJob
from sf2t_jax.models.layers import DTYPES, Numerics
from sf2t_jax.models.qwen2_vl import Qwen2VL  # the base class of every family's model
from sf2t_jax.text import Tokenizer, build_tiny_tokenizer


def resolve_checkpoint(path: str) -> tuple[str, str]:
    """(kind, directory): kind is "hf" or "native"; a workdir resolves to its export."""
    p = epath.Path(path)
    if (p / "export" / "config.json").exists():
        p = p / "export"
    if (p / "config.json").exists():
        if (p / "params").exists():
            return "native", str(p)
        if any(p.glob("*.safetensors")):
            return "hf", str(p)
    raise FileNotFoundError(
        f"{path}: not a checkpoint eval can read: expected a Hugging Face directory (config.json + "
        "*.safetensors), a converted one (config.json + params/), or a training workdir with export/ "
        "(written at the end of training)")


def load_model(path: str, *, dtype: str = "float32", numerics: Numerics | None = None, mesh=None,
               rules=None) -> Qwen2VL:
    """The model at `path` (see the module docstring), in `dtype` unless `numerics` is given."""
    if numerics is None:
        if dtype not in DTYPES:
            raise ValueError(f"eval config dtype={dtype!r}: expected one of {sorted(DTYPES)}")
        numerics = Numerics(dtype=DTYPES[dtype], param_dtype=DTYPES[dtype])
    kind, directory = resolve_checkpoint(path)
    if kind == "hf":
        return from_hf(directory, numerics=numerics, mesh=mesh, rules=rules)
    return load_native(directory, numerics, mesh=mesh, rules=rules)


def load_tokenizer(spec: str, checkpoint: str = "") -> Tokenizer:
    """`spec`: a tokenizer.json, a directory holding one, or "tiny:V" (the built-in test
    tokenizer); "" = the checkpoint's directory (or its workdir export)."""
    if spec.startswith("tiny:"):
        return Tokenizer(build_tiny_tokenizer(int(spec[len("tiny:"):])), source=spec)
    if spec:
        return Tokenizer.from_file(spec)
    if not checkpoint:
        raise ValueError("eval config tokenizer is empty and there is no checkpoint directory to take it from")
    _, directory = resolve_checkpoint(checkpoint)
    if not (epath.Path(directory) / "tokenizer.json").exists():
        raise FileNotFoundError(f"{directory} holds no tokenizer.json; set the eval config field 'tokenizer'")
    return Tokenizer.from_file(directory)


def load_for_job(job: EvalJob, checkpoint: str) -> tuple[Qwen2VL, Tokenizer, Any, Any]:
    """(model, tokenizer, mesh, rules) that an evaluation `job` scores `checkpoint` with: the
    model restored into the job's mesh, the tokenizer checked against the model's config."""
    from sf2t_jax.parallel.mesh import make_mesh, select_devices
    from sf2t_jax.parallel.rules import named_rules

    mesh = make_mesh(*job.ici, devices=select_devices(job.devices))
    rules = named_rules(job.rules)
    model = load_model(checkpoint, dtype=job.dtype, mesh=mesh, rules=rules)
    tokenizer = load_tokenizer(job.tokenizer, checkpoint)
    tokenizer.check_model_config(model.config)
    return model, tokenizer, mesh, rules
