"""Hugging Face checkpoints <-> our modules, strictly and tensor by tensor, for every model family
(`models/family.py`: Qwen2-VL, Qwen2.5-VL, LLaVA-NeXT-Video)."""
from __future__ import annotations

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from tqdm import tqdm

from sf2t_jax.convert import table
from sf2t_jax.convert.safetensors_io import FLOAT_DTYPES, CheckpointError, SafetensorsReader, write_checkpoint
from sf2t_jax.models import family as families  # a module import: families imports convert.table
from sf2t_jax.models.layers import Numerics
from sf2t_jax.models.qwen2_vl import Qwen2VL
from sf2t_jax.parallel.sharding import Rules, variable_shardings

log = logging.getLogger(__name__)


def abstract_model(config: families.ModelConfig, numerics: Numerics = Numerics()) -> Qwen2VL:
    """The model of `config`'s family with `ShapeDtypeStruct`s instead of arrays: no memory,
    no initialisation."""
    model_class = families.family_of(config).model_class
    return nnx.eval_shape(lambda: model_class(config, numerics, rngs=nnx.Rngs(0)))


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def _patch_kernel(config: families.ModelConfig) -> tuple[int, ...]:
    return families.family_of(config).patch_kernel(config)


def from_hf(path: str | os.PathLike, dtype=None, *, numerics: Numerics | None = None,
            mesh: Mesh | None = None, rules: Rules | None = None, progress: bool = False) -> Qwen2VL:
    """Loads a Hugging Face checkpoint directory (config.json + safetensors) of any family in
    `models/family.py`, picked by config.json's `model_type`.

    Args:
      path: directory with `config.json` and `model.safetensors` or sharded safetensors.
      dtype: parameter and compute dtype (default float32). Ignored when `numerics` is given.
      mesh, rules: when given, each parameter is placed directly into its `NamedSharding`
        (each device receives only its shard), so no host holds a second full copy.
    Raises:
      FileNotFoundError / ConfigError for a missing, unreadable or unsupported config.json;
      CheckpointError naming the file and key for a missing, unexpected, wrongly shaped or
      non-float tensor, or an unreadable file. Tensors holding NaN or inf are converted with
      a warning naming each.
    """
    config = families.read_config(path)
    conversion_rules = families.family_of(config).conversion_rules
    if numerics is None:
        dtype = jnp.float32 if dtype is None else dtype
        numerics = Numerics(dtype=dtype, param_dtype=dtype)
    graphdef, abstract_state = nnx.split(abstract_model(config, numerics))
    reader = SafetensorsReader(path)
    flat = nnx.to_flat_state(abstract_state)
    shardings = None
    if mesh is not None:
        if rules is None:
            raise ValueError("from_hf: a mesh needs a rules table (sf2t_jax.parallel.rules)")
        shardings = dict(nnx.to_flat_state(variable_shardings(abstract_state, mesh, rules)))

    expected = {}  # Hub key -> (our path, hook)
    for our_path, var in flat:
        for view, _ in _layer_views(our_path, var.shape, numerics):
            key, hook = table.ours_to_hf(_dotted(view), conversion_rules)
            expected[key] = (our_path, hook)
    present = set(reader.keys())
    if config.text.tie_word_embeddings and "lm_head.weight" in present and "model.embed_tokens.weight" in present:
        # Some exporters write the tied head out; accept it only when it really is the embedding.
        if not np.array_equal(reader.get("lm_head.weight"), reader.get("model.embed_tokens.weight")):
            raise CheckpointError(f"{path}: config.json says tie_word_embeddings=true but 'lm_head.weight' differs "
                                  "from 'model.embed_tokens.weight'")
        log.info("%s: ignoring 'lm_head.weight', a copy of the tied embedding", path)
        present.discard("lm_head.weight")
    missing = sorted(set(expected) - present)
    unexpected = sorted(present - set(expected))
    if missing:
        raise CheckpointError(f"{path}: missing key {missing[0]!r}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if unexpected:
        hint = " (config.json says tie_word_embeddings=true)" if unexpected[0] == "lm_head.weight" else ""
        raise CheckpointError(f"{path}: unexpected key {unexpected[0]!r}{hint}"
                              + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""))

    for key in sorted(expected):  # before loading anything: an integer weight would cast to garbage
        if reader.dtype(key) not in FLOAT_DTYPES:
            raise CheckpointError(f"{reader.path(key)}: tensor {key!r} has dtype {reader.dtype(key)}; expected a "
                                  f"floating-point weight ({', '.join(FLOAT_DTYPES)})")

    loaded = []
    for our_path, var in tqdm(flat, desc="loading tensors", unit="param", disable=not progress):
        views = _layer_views(our_path, var.shape, numerics)
        layer_shape = var.shape[1:] if views[0][1] is not None else var.shape
        parts = []
        for view, _ in views:
            key, hook = table.ours_to_hf(_dotted(view), conversion_rules)
            want_hf = table.hf_shape(hook, layer_shape, _patch_kernel(config))
            got = reader.shape(key)
            if tuple(got) != tuple(want_hf):
                raise CheckpointError(f"{path}: tensor {key!r} has shape {tuple(got)}, expected {tuple(want_hf)}")
            raw = reader.get(key)
            _warn_if_not_finite(raw, key, reader.path(key))
            parts.append(table.to_ours(hook, raw).astype(var.dtype))
            del raw
        value = np.stack(parts) if views[0][1] is not None else parts[0]
        del parts
        if shardings is None:
            array = jnp.asarray(value)
        else:
            array = jax.make_array_from_callback(value.shape, shardings[our_path], lambda idx, v=value: v[idx])
        loaded.append((our_path, var.replace(array)))
        del value
    return nnx.merge(graphdef, nnx.from_flat_state(loaded))


def _warn_if_not_finite(array: np.ndarray, key: str, path: str) -> None:
    """One warning line per tensor holding NaN or inf: converted as stored (a model may mean
    it, e.g. a masked bias), but a damaged or overflowed checkpoint shows here first."""
    finite = np.isfinite(array)
    if not finite.all():
        bad = array[~finite].astype(np.float32)
        log.warning("%s: tensor %r has %d non-finite values of %d (NaN %d, inf %d); converted as stored", path, key,
                    bad.size, array.size, int(np.isnan(bad).sum()), int(np.isinf(bad).sum()))


# Layer stacks whose parameters carry a leading 'layers' axis when the model scans its layers.
_STACKED_PREFIXES = (("model", "layers"), ("visual", "blocks"), ("vision_tower", "layers"))


def _layer_views(path: tuple, shape: tuple[int, ...], numerics: Numerics) -> list[tuple[tuple, int | None]]:
    """The per-layer (unscanned) paths of one parameter, with the index into its stacked axis.

    The conversion table speaks unscanned paths (`model.layers.3.mlp.up_proj.kernel`); a
    scanned parameter `model.layers.mlp.up_proj.kernel` of shape (layers, ...) is `layers` of them.
    """
    if numerics.scan_layers and tuple(path[:2]) in _STACKED_PREFIXES:
        return [(tuple(path[:2]) + (i,) + tuple(path[2:]), i) for i in range(shape[0])]
    return [(tuple(path), None)]


def hf_tensors(model: Qwen2VL):
    """Yields (Hub key, numpy array in Hub layout) for every parameter, one at a time."""
    config = model.config
    conversion_rules = families.family_of(config).conversion_rules
    for our_path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        value = var[...]
        if jax.process_count() > 1 and not value.is_fully_addressable:
            from jax.experimental import multihost_utils
            value = multihost_utils.process_allgather(value, tiled=True)
        array = np.asarray(jax.device_get(value))
        for view, index in _layer_views(our_path, array.shape, model.numerics):
            key, hook = table.ours_to_hf(_dotted(view), conversion_rules)
            part = array if index is None else array[index]
            yield key, table.to_hf(hook, part, table.hf_shape(hook, part.shape, _patch_kernel(config)))


def to_hf(model: Qwen2VL, out_dir: str | os.PathLike, *, max_shard_bytes: int = 5 * 2**30,
          overwrite: bool = False, progress: bool = False) -> list[str]:
    """Writes `config.json` and safetensors that the family's transformers class
    (`Qwen2VLForConditionalGeneration`, `Qwen2_5_VLForConditionalGeneration`) `from_pretrained` loads. On several processes every process gathers; process 0 writes.
    Returns the file names written (empty on other processes).
    """
    config_text = json.dumps(model.config.to_hf_dict() | {"torch_dtype": _torch_dtype_name(model)}, indent=2)
    n = len(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    tensors = tqdm(hf_tensors(model), total=n, desc="writing tensors", unit="tensor", disable=not progress)
    if jax.process_index() != 0:
        for _ in tensors:  # every process takes part in the gathers
            pass
        return []
    return write_checkpoint(tensors, out_dir, max_shard_bytes=max_shard_bytes,
                            extra_files={"config.json": config_text}, overwrite=overwrite)


def _torch_dtype_name(model: Qwen2VL) -> str:
    return {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}[jnp.dtype(model.numerics.param_dtype).name]
