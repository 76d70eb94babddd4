"""What trains: the model (with LoRA adapters), which of its parameters are trained or frozen,
their shardings, and their first values (random, or a converted checkpoint).

The model is split once into four parts, each a plain nested dict (orbax- and optax-friendly):

    graphdef    the NNX graph structure (static)
    trainable   parameters the optimizer updates (master dtype, e.g. float32)
    frozen      parameters that never change: no gradient, no optimizer state
                (optionally stored in a smaller dtype, `model.frozen_dtype`)
    extra       non-parameter state: the dropout RNG streams of LoRA (reseeded every step)

`nnx.merge(graphdef, trainable, frozen, extra)` rebuilds the model inside the jitted step.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx, traverse_util

from sf2t_jax.models import family as families
from sf2t_jax.models import lora
from sf2t_jax.models.family import ModelConfig
from sf2t_jax.experiment import Experiment, ModelSettings
from sf2t_jax.models.layers import DTYPES, PRECISIONS, Numerics
from sf2t_jax.models.qwen2_vl import Qwen2VL  # the base class of every family's model (type hints)
from sf2t_jax.parallel.sharding import Rules, fully_shard, variable_shardings
from sf2t_jax.train.errors import TrainConfigError

log = logging.getLogger(__name__)



def numerics(model: ModelSettings) -> Numerics:
    """The `model` settings -> compute dtype, master-weight dtype, matmul precision, remat
    policy, layer scanning and the attention implementation (names checked by
    `sf2t_jax.experiment.from_config`)."""
    return Numerics(dtype=DTYPES[model.dtype], param_dtype=DTYPES[model.param_dtype],
                    precision=PRECISIONS[model.precision], remat=model.remat, scan_layers=model.scan_layers,
                    attention=model.attention)


def frozen_dtype(model: ModelSettings):
    return DTYPES[model.frozen_storage_dtype]


def dotted(path) -> str:
    return ".".join(str(getattr(p, "key", p)) for p in path)


# ----------------------------------------------------------------------------------------
# The model's shape
# ----------------------------------------------------------------------------------------
def init_kind(path: str) -> str:
    """'native' (config.json + params/, from `launch.py convert`), 'hf' (config.json +
    safetensors), or an error naming what is missing."""
    p = epath.Path(path)
    if not (p / "config.json").exists():
        raise FileNotFoundError(f"init_from={path}: no config.json; expected a directory written by "
                                "`launch.py convert --from-hf` (or a Hugging Face checkpoint)")
    if (p / "params").exists():
        return "native"
    if any(p.glob("*.safetensors")):
        return "hf"
    raise FileNotFoundError(f"init_from={path}: has config.json but neither params/ (our format) nor *.safetensors")


def model_config(config: Experiment) -> ModelConfig:
    """The preset `model.name`; with `init_from`, the checkpoint's shape, which must match it:
    its config.json's `model_type` picks the family, which must be the preset's."""
    family = families.family_of_preset(config.model.name)
    want = family.presets[config.model.name]()
    if not config.init_from:
        return want
    init_kind(config.init_from)
    source = f"{config.init_from}/config.json"
    have = families.config_from_json_text((epath.Path(config.init_from) / "config.json").read_text(), source=source)
    if families.family_of(have) is not family:
        raise families.ConfigError(
            f"init_from={config.init_from} is a {families.family_of(have).name} checkpoint (model_type "
            f"{families.family_of(have).model_type!r}) but model.name={config.model.name!r} is a {family.name} "
            f"preset (model_type {family.model_type!r})")
    preset = traverse_util.flatten_dict(dataclasses.asdict(want), sep=".")
    stored = traverse_util.flatten_dict(dataclasses.asdict(have), sep=".")
    diffs = [f"{k} {v} (preset) != {stored[k]} (checkpoint)" for k, v in preset.items() if v != stored[k]]
    if diffs:
        raise TrainConfigError(f"model.name={config.model.name!r} does not match init_from={config.init_from}: "
                         + "; ".join(diffs[:6]))
    return have


def builder(config: Experiment, shape: ModelConfig) -> Callable[[], Qwen2VL]:
    """A function that constructs the model (with adapters for method=lora). Call it inside
    `nnx.eval_shape` or `jax.jit`; the same seed gives the same values on any mesh."""
    num = numerics(config.model)
    model_class = families.family_of(shape).model_class

    def build() -> Qwen2VL:
        rngs = nnx.Rngs(params=config.seed, dropout=config.seed + 1)
        model = model_class(shape, num, rngs=rngs)
        if config.method == "lora":
            try:
                lora.apply_lora(model, targets=config.lora.targets, rank=config.lora.rank, alpha=config.lora.alpha,
                                dropout=config.lora.dropout, rngs=rngs)
            except lora.LoRATargetError as e:
                raise lora.LoRATargetError(f"lora.targets: {e}") from None
        return model

    return build


# ----------------------------------------------------------------------------------------
# Trainable vs frozen
# ----------------------------------------------------------------------------------------
def trainable_filter(config: Experiment, abstract: Qwen2VL) -> Callable[[tuple, Any], bool]:
    """An `nnx` filter (path, variable) -> bool selecting the trained parameters.

    full: every parameter not matching `params.frozen`; lora: adapters and parameters matching
    `params.extra_trainable`, unless they match `params.frozen`. Every regex must match some
    parameter, and something must train; otherwise a ValueError names the field.
    """
    frozen = [re.compile(p) for p in config.params.frozen]  # valid regexes: checked by from_config
    extra = [re.compile(p) for p in config.params.extra_trainable]
    names = [dotted(p) for p, _ in nnx.to_flat_state(nnx.state(abstract, nnx.Param))]
    for field, patterns in (("params.frozen", frozen), ("params.extra_trainable", extra)):
        for i, pattern in enumerate(patterns):
            if not any(pattern.search(n) for n in names):
                raise TrainConfigError(f"{field}[{i}]={pattern.pattern} matches no parameter; parameters look like: "
                                 f"{', '.join(names[:3])}, ...")
    is_lora = config.method == "lora"

    def trainable(path, variable) -> bool:
        if not isinstance(variable, nnx.Param):
            return False
        name = dotted(path)
        if any(p.search(name) for p in frozen):
            return False
        if not is_lora:
            return True
        return isinstance(variable, nnx.LoRAParam) or any(p.search(name) for p in extra)

    if not any(trainable(p, v) for p, v in nnx.to_flat_state(nnx.state(abstract, nnx.Param))):
        raise TrainConfigError("nothing to train: params.frozen freezes every parameter"
                         + (" (and the LoRA adapters)" if is_lora else ""))
    return trainable


@dataclasses.dataclass
class Parts:
    """The split model: graphdef plus abstract (ShapeDtypeStruct) trees and their shardings."""

    graphdef: Any
    abstract: dict[str, Any]  # {'trainable', 'frozen', 'extra'} -> pure dict of ShapeDtypeStruct
    shardings: dict[str, Any]  # same keys -> pure dict of NamedSharding
    filters: tuple  # nnx filters in split order: trainable, frozen, extra
    build: Callable[[], Qwen2VL]
    states: tuple  # the abstract nnx States (with logical-axis metadata), in split order

    def merge(self, trainable, frozen, extra) -> Qwen2VL:
        return nnx.merge(self.graphdef, trainable, frozen, extra)

    def on_mesh(self, mesh, rules: Rules) -> "Parts":
        """The same split with the shardings of another mesh (no model construction). Trained
        parameters (and so their optimizer state) are fully sharded (`sharding.fully_shard`)."""
        shardings = {n: nnx.to_pure_dict(variable_shardings(s, mesh, rules)) for n, s in zip(PART_NAMES, self.states)}
        shardings["trainable"] = jax.tree.map(lambda sh, x: fully_shard(sh, x.shape), shardings["trainable"],
                                              self.abstract["trainable"])
        return dataclasses.replace(self, shardings=shardings)


PART_NAMES = ("trainable", "frozen", "extra")


def split_model(config: Experiment, shape: ModelConfig, mesh, rules: Rules) -> Parts:
    """Builds the abstract model, decides what trains, and computes every sharding. No memory."""
    build = builder(config, shape)
    abstract = nnx.eval_shape(build)
    filters = (trainable_filter(config, abstract), nnx.Param, ...)
    graphdef, *states = nnx.split(abstract, *filters)
    fdtype = frozen_dtype(config.model)
    abstract_dicts = {}
    for name, state in zip(PART_NAMES, states):
        tree = nnx.to_pure_dict(state)
        if name == "frozen":
            tree = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, fdtype if jnp.issubdtype(x.dtype, jnp.floating)
                                                               else x.dtype), tree)
        abstract_dicts[name] = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
    parts = Parts(graphdef=graphdef, abstract=abstract_dicts, shardings={}, filters=filters, build=build,
                  states=tuple(states))
    return parts.on_mesh(mesh, rules)


def count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


# ----------------------------------------------------------------------------------------
# First values
# ----------------------------------------------------------------------------------------
def _cast_frozen(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def initial_values(parts: Parts, config: Experiment, mesh, rules: Rules, *, only: tuple[str, ...] = ("trainable", "frozen", "extra")
                   ) -> dict[str, Any]:
    """{'trainable', 'frozen', 'extra'} values, each created directly in its sharding.

    Random (seeded by `seed`), or with every base parameter read from `init_from` (each array
    straight into its shard by orbax / the safetensors reader) and only what the checkpoint
    lacks (LoRA adapters) initialised. `only` restricts which parts are produced.
    """
    names = PART_NAMES
    fdtype = frozen_dtype(config.model)

    def init_random(wanted: frozenset | None):
        """Constructs the model under jit; XLA drops the initialisers of anything not returned."""
        def fn():
            _, *states = nnx.split(parts.build(), *parts.filters)
            out = {n: nnx.to_pure_dict(s) for n, s in zip(names, states) if n in only}
            if "frozen" in out:
                out["frozen"] = _cast_frozen(out["frozen"], fdtype)
            if wanted is not None:
                out = {n: _select(t, wanted) for n, t in out.items()}
            return out

        shardings = {n: parts.shardings[n] for n in names if n in only}
        if wanted is not None:
            shardings = {n: _select(t, wanted) for n, t in shardings.items()}
        return jax.jit(fn, out_shardings=shardings)()

    if not config.init_from:
        return init_random(None)

    base = _load_base(config, mesh, rules)  # flat {path tuple: array}, sharded
    keys = {n: set(traverse_util.flatten_dict(parts.abstract[n])) for n in names if n in only}
    fresh_keys = frozenset(k for ks in keys.values() for k in ks if k not in base)
    fresh = init_random(fresh_keys) if fresh_keys else {n: {} for n in keys}
    out = {}
    for n in keys:
        new = traverse_util.flatten_dict(fresh.get(n, {}))
        flat = {k: base[k] if k in base else new[k] for k in keys[n]}
        out[n] = traverse_util.unflatten_dict(flat)
    if "frozen" in out:
        out["frozen"] = jax.jit(lambda t: _cast_frozen(t, fdtype), out_shardings=parts.shardings["frozen"],
                                donate_argnums=0)(out["frozen"])
    if "trainable" in out:  # checkpoint dtype -> master dtype
        dtype = numerics(config.model).param_dtype
        out["trainable"] = jax.jit(lambda t: _cast_frozen(t, dtype), out_shardings=parts.shardings["trainable"])(
            out["trainable"])
    log.info("init_from %s: %d base arrays read, %d initialised (adapters)", config.init_from,
             sum(1 for n in keys for k in keys[n] if k in base), len(fresh_keys))
    return out


def _select(tree: dict, wanted: frozenset) -> dict:
    flat = traverse_util.flatten_dict(tree)
    return traverse_util.unflatten_dict({k: v for k, v in flat.items() if k in wanted})


def _load_base(config: Experiment, mesh, rules: Rules) -> dict[tuple, jax.Array]:
    """Every parameter of the converted checkpoint, flat by path, in the model's shardings
    (and in the scanned layout when `model.scan_layers`)."""
    from sf2t_jax.convert import from_hf
    from sf2t_jax.convert.native import load_native

    num = numerics(config.model)
    flat_num = dataclasses.replace(num, scan_layers=False)  # converted checkpoints are per layer
    if init_kind(config.init_from) == "native":
        model = load_native(config.init_from, flat_num, mesh=mesh, rules=rules)
    else:
        if config.init_from.startswith("gs://"):
            raise TrainConfigError(f"init_from={config.init_from}: a Hugging Face checkpoint must be on local disk; "
                             "convert it first (launch.py convert --from-hf DIR --out gs://...)")
        model = from_hf(config.init_from, numerics=flat_num, mesh=mesh, rules=rules)
    flat = traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    del model
    return stack_layers(flat) if num.scan_layers else flat


# ----------------------------------------------------------------------------------------
# Per-layer <-> scanned parameter layouts
# ----------------------------------------------------------------------------------------
# Layer stacks that carry a leading 'layers' axis when the model scans (models/layers.py).
STACKS = (("model", "layers"), ("visual", "blocks"))


def stack_layers(flat: dict[tuple, jax.Array]) -> dict[tuple, jax.Array]:
    """{('model', 'layers', 3, 'mlp', ...): (...)} -> {('model', 'layers', 'mlp', ...): (layers, ...)}.

    One parameter at a time, each stacked in the sharding of its layers (the 'layers' axis is
    replicated by the rules), and the per-layer arrays dropped as it goes: the transient
    memory is one parameter, not the model.
    """
    out, groups = {}, {}
    for key, value in flat.items():
        if tuple(key[:2]) in STACKS and isinstance(key[2], int):
            groups.setdefault(key[:2] + key[3:], {})[key[2]] = value
        else:
            out[key] = value
    flat.clear()
    for key, layers in groups.items():
        arrays = [layers.pop(i) for i in range(len(layers))]
        sharding = arrays[0].sharding
        spec = jax.sharding.PartitionSpec(None, *sharding.spec) if hasattr(sharding, "spec") else None
        target = jax.sharding.NamedSharding(sharding.mesh, spec) if spec is not None else None
        out[key] = jax.jit(lambda *xs: jnp.stack(xs), out_shardings=target)(*arrays)
        del arrays
    return out


def unstack_layers(flat: dict[tuple, jax.Array]) -> dict[tuple, jax.Array]:
    """The inverse of `stack_layers` (for exporting a scanned model per layer)."""
    out = {}
    for key, value in flat.items():
        if tuple(key[:2]) in STACKS and not isinstance(key[2], int):
            for i in range(value.shape[0]):
                out[key[:2] + (i,) + key[2:]] = value[i]
        else:
            out[key] = value
    return out
