"""One validation pass over a command's settings, at start-up, before anything is built or written.

Every command of `launch.py` loads its config, applies the command-line overrides
(`sf2t_jax.configuration`: unknown keys and unparsable or mistyped values are refused there), and
then calls one `check_*` function here, before JAX, a model or a dataset is touched:

    check_train(config)                     configs/sf2t.py layout (sweep; train and plan through
                                            sf2t_jax.experiment.from_config, which then types it)
    check_input(section)                    an `input` section (preview; part of check_train)
    check_prepare(config, source)           configs/demo.py layout (prepare, demo) -> PrepareSettings
    check_eval(config, checkpoint)          configs/eval_finevidbench.py layout (eval)
    check_value(name, value, rule)          one command-line argument (--n, --mfu, ...)

The rules are the tables below, one per config layout: each dotted key (`*` matches one level)
maps to a `Rule` that fixes the type (no silent bool/int/float coercion: an int is a fine float,
nothing else is), the range, the allowed names (taken from the tables the code itself looks
names up in, never copied), or that a path exists. Sections that already have a typed, checked
form are checked by constructing it (`InputConfig`, `WorldConfig`, `BenchConfig`, `SftConfig`,
`EvalSettings`). A failure raises `ConfigValueError` (an `InputError`): one line naming the
field, the value and what was expected, which `launch.py` prints before exiting non-zero.

This module imports no JAX: a bad setting is refused in the time Python takes to start.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import ml_collections

from sf2t_jax.configuration import ConfigValueError
from sf2t_jax.errors import InputError
from sf2t_jax.models.config import PRESETS as QWEN2_VL_PRESETS
from sf2t_jax.models.presets import PRESETS
from sf2t_jax.models.options import ATTENTION_IMPLEMENTATIONS, DTYPE_NAMES, PRECISION_NAMES, REMAT_POLICY_NAMES
from sf2t_jax.parallel.rules import RULES
from sf2t_jax.train.options import DATA_SOURCES, METHODS, SIGNALS

if TYPE_CHECKING:
    from sf2t_jax.prepare import PrepareSettings

REMOTE = ("gs://",)  # paths on object storage are not checked here (no credentials at start-up)


# ----------------------------------------------------------------------------------------
# Rules
# ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Rule:
    """What one field accepts; `problem(value)` is None, or what was expected instead."""

    def problem(self, value: Any) -> str | None:
        raise NotImplementedError

    def check(self, name: str, value: Any) -> None:
        problem = self.problem(value)
        if problem is not None:
            raise ConfigValueError(f"{name}={value!r}: expected {problem}")


def _bounds(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi}")
    return " and ".join(parts)


@dataclasses.dataclass(frozen=True)
class Int(Rule):
    """An int (not a bool, not a float) in [lo, hi]; `note` says what special values mean."""

    lo: int | None = None
    hi: int | None = None
    note: str = ""

    def problem(self, value):
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi):
            return None
        bounds = _bounds(self.lo, self.hi)
        return " ".join(filter(None, ["an integer", bounds, self.note and f"({self.note})"]))


@dataclasses.dataclass(frozen=True)
class Float(Rule):
    """A number (int or float, not a bool) in the interval the bounds describe."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""

    def problem(self, value):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN
        if ok and self.lo is not None:
            ok = value > self.lo if self.lo_open else value >= self.lo
        if ok and self.hi is not None:
            ok = value < self.hi if self.hi_open else value <= self.hi
        if ok:
            return None
        bounds = _bounds(self.lo, self.hi, self.lo_open, self.hi_open)
        return " ".join(filter(None, ["a number", bounds, self.note and f"({self.note})"]))


FRACTION = Float(0.0, 1.0)
POSITIVE = Float(0.0, lo_open=True)
NON_NEGATIVE = Float(0.0)


@dataclasses.dataclass(frozen=True)
class Bool(Rule):
    def problem(self, value):
        return None if isinstance(value, bool) else "True or False"


@dataclasses.dataclass(frozen=True)
class Str(Rule):
    """A string; with `choices`, one of them (a table the code looks names up in)."""

    choices: Collection[str] | None = None
    nonempty: bool = False

    def problem(self, value):
        if not isinstance(value, str):
            return "a string"
        if self.choices is not None and value not in self.choices:
            return f"one of {list(self.choices)}"
        if self.nonempty and not value:
            return "a non-empty string"
        return None


@dataclasses.dataclass(frozen=True)
class Ints(Rule):
    """A tuple of `n` ints (None: one or more), each >= `lo`."""

    n: int | None
    lo: int | None = None
    note: str = ""

    def problem(self, value):
        ok = (isinstance(value, (tuple, list)) and (len(value) == self.n if self.n is not None else len(value) > 0)
              and all(isinstance(v, int) and not isinstance(v, bool) and (self.lo is None or v >= self.lo)
                      for v in value))
        if ok:
            return None
        count = "one or more" if self.n is None else str(self.n)
        return " ".join(filter(None, [f"a tuple of {count} integers", _bounds(self.lo, None),
                                      self.note and f"({self.note})"]))


@dataclasses.dataclass(frozen=True)
class Strs(Rule):
    """A tuple of strings, each from `choices` when given."""

    choices: Collection[str] | None = None

    def problem(self, value):
        if isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
            if self.choices is None or all(v in self.choices for v in value):
                return None
        return "a tuple of strings" + (f" from {list(self.choices)}" if self.choices is not None else "")


@dataclasses.dataclass(frozen=True)
class Regex(Rule):
    """A regular expression (str), or with `many`, a tuple of them."""

    many: bool = False

    def problem(self, value):
        items = value if self.many else (value,)
        if (self.many and not isinstance(value, (tuple, list))) or not all(isinstance(v, str) for v in items):
            return "a tuple of regular expressions" if self.many else "a regular expression"
        for v in items:
            try:
                re.compile(v)
            except re.error as e:
                return f"valid regular expressions ({v!r}: {e})"
        return None


@dataclasses.dataclass(frozen=True)
class Path(Rule):
    """A local path that must exist ('' allowed when `optional`); gs:// paths and values with
    one of `passthrough`'s prefixes (e.g. 'tfds:', 'tiny:') are not paths and pass."""

    kind: str = "any"  # 'file' | 'dir' | 'any'
    optional: bool = True
    what: str = ""
    passthrough: tuple[str, ...] = ()

    def problem(self, value):
        if not isinstance(value, str):
            return "a path (string)"
        if not value:
            return None if self.optional else f"a path to {self.what or 'an existing ' + self.kind}"
        if value.startswith(REMOTE + self.passthrough):
            return None
        exists = {"file": os.path.isfile, "dir": os.path.isdir, "any": os.path.exists}[self.kind](value)
        if exists:
            return None
        noun = {"file": "file", "dir": "folder", "any": "file or folder"}[self.kind]
        state = "not a " + noun if os.path.exists(value) else "no such " + noun
        return f"an existing {noun}{' (' + self.what + ')' if self.what else ''}; {state}"


@dataclasses.dataclass(frozen=True)
class Delegated(Rule):
    """Checked by constructing the section's typed form (see the `check_*` functions)."""

    by: str

    def problem(self, value):
        return None


# ----------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------
def sharding_rules() -> Mapping[str, Any]:
    """The rules tables `mesh.rules` can name (the table `parallel.rules.named_rules` reads)."""
    return RULES


def _dtype(optional: bool = False) -> Str:
    return Str(("",) + DTYPE_NAMES if optional else DTYPE_NAMES)


INPUT_DELEGATED = Delegated("sf2t_jax.input.InputConfig")

# configs/sf2t.py (train, sweep, plan; preview reads its `input` section).
TRAIN: dict[str, Rule] = {
    "seed": Int(),
    "init_from": Path("dir", what="a converted or Hugging Face checkpoint folder"),
    "method": Str(METHODS),
    "model.name": Str(PRESETS),
    "model.dtype": _dtype(),
    "model.param_dtype": _dtype(),
    "model.frozen_dtype": _dtype(optional=True),
    "model.precision": Str(PRECISION_NAMES),
    "model.remat": Str(REMAT_POLICY_NAMES),
    "model.scan_layers": Bool(),
    "model.attention": Str(ATTENTION_IMPLEMENTATIONS),
    "lora.rank": Int(1),
    "lora.alpha": POSITIVE,
    "lora.dropout": Float(0.0, 1.0, hi_open=True),
    "lora.targets": Regex(),
    "params.frozen": Regex(many=True),
    "params.extra_trainable": Regex(many=True),
    "data.source": Str(DATA_SOURCES),
    "data.synthetic_examples": Int(1),
    "data.sft_weight": FRACTION,
    "data.sft_source": Path(what="SFT question-answer records", passthrough=("tfds:",)),
    "input.source": Path(what="videos: a folder, manifest or file", passthrough=("tfds:",)),
    "input.data_dir": Path("dir", what="the tfds data_dir"),
    "input.tokenizer": Path(what="tokenizer.json or a checkpoint folder", passthrough=("tiny:",)),
    "input.*": INPUT_DELEGATED,
    "input.weights.*": INPUT_DELEGATED,
    "input.tasks.*": INPUT_DELEGATED,
    "input.tasks.*.*": INPUT_DELEGATED,
    "train.steps": Int(0, note="0 = input.num_epochs over the source"),
    "train.grad_accum": Int(1),
    "train.lr": POSITIVE,
    "train.warmup_fraction": FRACTION,
    "train.end_lr_fraction": FRACTION,
    "train.b1": Float(0.0, 1.0, hi_open=True),
    "train.b2": Float(0.0, 1.0, hi_open=True),
    "train.eps": POSITIVE,
    "train.weight_decay": NON_NEGATIVE,
    "train.clip_norm": Float(0.0, note="0 = off"),
    "train.loss_positions": Int(0, note="0 = every position"),
    "train.loss_chunk": Int(0, note="0 = the whole head at once"),
    "train.compilation_cache": Str(nonempty=True),
    "train.max_skip_share": FRACTION,
    "heldout.split": Str(),
    "heldout.every": Int(0, note="0 = only at the last step"),
    "heldout.samples_per_task": Int(1),
    "heldout.prior_samples_per_task": Int(1),
    "heldout.resamples": Int(0),
    "heldout.ci": Float(0.0, 1.0, lo_open=True, hi_open=True),
    "mesh.ici": Ints(3, -1, note="data, fsdp, tensor; -1 = the rest"),
    "mesh.dcn": Ints(3, 1, note="data, fsdp, tensor across slices"),
    "mesh.rules": Str(sharding_rules()),
    "mesh.constrain_activations": Bool(),
    "mesh.devices": Int(0, note="0 = all"),
    "checkpoint.every": Int(1),
    "checkpoint.keep": Int(1),
    "checkpoint.async_save": Bool(),
    "checkpoint.ocdbt": Bool(),
    "checkpoint.save_frozen": Bool(),
    "checkpoint.allow_fresh_start": Bool(),
    "log.every": Int(1),
    "log.tensorboard": Bool(),
    "log.flush_seconds": NON_NEGATIVE,
    "export.final": Bool(),
    "export.dtype": _dtype(optional=True),
    "debug.signal_at_step": Int(-1, note="-1 = never"),
    "debug.signal": Str(SIGNALS),
    "debug.batch_digest": Bool(),
    "debug.input_ends_at_step": Int(-1, note="-1 = never"),
    "debug.input_ends_process": Int(0),
}

# configs/eval_finevidbench.py (eval): paths, dtype, mesh and every field's type here; the
# ranges and names of the scorer's own fields are EvalSettings' (`check_eval` constructs it).
EVAL: dict[str, Rule] = {
    "benchmark": Path("file", optional=False, what="a finevidbench_*.jsonl file"),
    "videos": Path("dir", optional=False, what="an SSv2-format root holding videos/"),
    # "tiny:V": the built-in tokenizer the demo's models are trained with (eval.loading reads it)
    "tokenizer": Path(what="tokenizer.json or a folder holding one", passthrough=("tiny:",)),
    "dtype": _dtype(),
    "methods": Str(), "tasks": Str(),
    "max_videos": Int(0, note="0 = all"),
    "batch_size": Int(), "rows": Int(),
    "share_prefix": Bool(),
    "controls": Str(),
    "video.scene_frames": Int(),
    "video.size": Ints(2),
    "video.present": Str(), "video.on_short_clip": Str(),
    "prompt.system": Str(), "prompt.instruction": Str(), "prompt.history": Str(),
    "prompt.history_answer": Str(),
    "loglik.target": Str(),
    "loglik.score_end": Bool(),
    "generate.max_new_tokens": Int(), "generate.max_new_tokens_open": Int(),
    "buckets.min_length": Int(), "buckets.min_option_length": Int(),
    "metrics.bootstrap": Int(), "metrics.ci": Float(), "metrics.seed": Int(),
    "mesh.ici": Ints(3, -1, note="data, fsdp, tensor; -1 = the rest"),
    "mesh.rules": Str(sharding_rules()),
    "mesh.devices": Int(0, note="0 = all"),
    "progress_every_s": NON_NEGATIVE,
    "cache_mb": Int(0),
}

WORLD_DELEGATED = Delegated("sf2t_jax.world.WorldConfig")
BENCH_DELEGATED = Delegated("sf2t_jax.finevidbench.build.BenchConfig / sf2t_jax.datasets.sft.SftConfig")

# configs/demo.py (prepare, demo).
PREPARE: dict[str, Rule] = {
    "scale": Str(),
    "seed": Int(),
    "devices": Int(0, note="0 = all"),
    "world.*": WORLD_DELEGATED,
    "data.dir": Str(nonempty=True),
    "data.source": Path("dir", what="an SSv2-format folder (videos/, labels/)"),
    "data.train_split": Str(nonempty=True),
    "data.heldout_split": Str(),
    "data.benchmark_split": Str(nonempty=True),
    "data.check_videos": Bool(),
    "data.workers": Int(0, note="0 = one per CPU"),
    "data.benchmark.*": BENCH_DELEGATED,
    "data.sft.*": BENCH_DELEGATED,
    "model.name": Str(QWEN2_VL_PRESETS),  # the demo's stages (tower pretraining) are Qwen2-VL's
    "model.tokenizer": Path(what="tokenizer.json or a checkpoint folder", passthrough=("tiny:",)),
    "model.resolution": Ints(2, 28),
    "model.dtype": _dtype(),
    "tower.steps": Int(0, note="0 = no tower stage"),
    "tower.batch": Int(1),
    "tower.lr": POSITIVE,
    "tower.pairs_per_clip": Int(1),
    "tower.heldout_pairs_per_clip": Int(1),
    "tower.gaps": Ints(None, 0),
    "tower.min_cover": FRACTION,
    "fragments.weights.*": NON_NEGATIVE,
    "fragments.tasks.*.*": Delegated("the SF²T experiment's input.tasks (sf2t_jax.input.config.InputConfig)"),
    "stages.*.init": Str(),
    "stages.*.freeze_tower": Bool(),
    "stages.*.sft_weight": FRACTION,
    "stages.*.heldout": Bool(),
    "stages.*.fact_share": FRACTION,
    "stages.*.clip_cache_mb": Int(0, note="0 = decode every time"),
    "heldout.split": Str(),
    "heldout.every": Int(0, note="0 = the last step only"),
    "heldout.samples_per_task": Int(1),
    "heldout.prior_samples_per_task": Int(1),
    "stages.*.mode": Str(),
    "stages.*.method": Str(METHODS),
    "stages.*.steps": Int(0, note="0 = input.num_epochs over the source"),
    "stages.*.lr": POSITIVE,
    "stages.*.batch_size": Int(1),
    "stages.*.warmup_fraction": FRACTION,
    "stages.*.log_every": Int(1),
    "stages.*.source": Str(nonempty=True),
    "stages.*.scene_frames": Int(1),
    "stages.*.frame_budget": Int(1),
    "stages.*.max_length": Int(1),
    "stages.*.max_skip_share": FRACTION,
    "eval.*": Delegated("sf2t_jax.demo: each evaluation's EvalSettings"),
}


# ----------------------------------------------------------------------------------------
# The pass
# ----------------------------------------------------------------------------------------
def leaves(config: Mapping, prefix: str = "") -> dict[str, Any]:
    """{'a.b.c': value} for every leaf of a nested ConfigDict / dict."""
    out = {}
    for key, value in config.items():
        if isinstance(value, (ml_collections.ConfigDict, dict)) and value:
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def rule_for(table: Mapping[str, Rule], key: str) -> Rule | None:
    """The rule of dotted `key`: an exact entry, else a pattern (`*` = one level)."""
    if key in table:
        return table[key]
    depth = key.count(".")
    for pattern, rule in table.items():
        if "*" in pattern and pattern.count(".") == depth and fnmatch.fnmatchcase(key, pattern):
            return rule
    return None


def check_table(config: Mapping, table: Mapping[str, Rule], prefix: str = "") -> None:
    """Every leaf of `config` that `table` has a rule for; keys it lacks are left alone (the
    config file declares which keys exist; `configuration` refuses unknown ones)."""
    for key, value in leaves(config).items():
        rule = rule_for(table, key)
        if rule is not None:
            rule.check(prefix + key, value)


def check_value(name: str, value: Any, rule: Rule) -> None:
    """One command-line argument, e.g. check_value('--n', args.n, Int(1))."""
    rule.check(name, value)


def _as_config_error(prefix: str, error: Exception) -> ConfigValueError:
    text = str(error.args[0]) if error.args else str(error)
    return ConfigValueError(text if text.startswith(prefix) else f"{prefix}: {text}")


def check_input(section: Mapping) -> Any:
    """An `input` section -> its InputConfig (which checks every field and the geometry)."""
    check_table({"input": section}, {k: v for k, v in TRAIN.items() if k.startswith("input.")})
    _check_tfds_dataset(section.get("source", ""), section.get("data_dir", ""))
    from sf2t_jax.input.config import InputConfig

    try:
        return InputConfig.from_dict(dict(section))
    except (ValueError, TypeError) as e:
        raise _as_config_error("input", e) from None


def _check_tfds_dataset(source: str, data_dir: str, field: str = "input.source") -> None:
    """'tfds:NAME' with a local data_dir: NAME must be built there (tfds would otherwise answer
    with its whole catalogue)."""
    if not source.startswith("tfds:") or not data_dir or data_dir.startswith(REMOTE):
        return
    name = source[len("tfds:"):].split("/")[0].split(":")[0]
    if not os.path.isdir(os.path.join(data_dir, name)):
        built = sorted(d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d)))
        raise ConfigValueError(f"{field}={source!r}: expected a dataset built under input.data_dir="
                               f"{data_dir!r}; it has no {name}/ (built there: {', '.join(built) or 'nothing'})")


def check_train(config: ml_collections.ConfigDict) -> None:
    """A configs/sf2t.py-shaped config: every rule of TRAIN, then the input section."""
    check_table(config, TRAIN)
    if "input" in config:
        from sf2t_jax.input.config import training_section

        section = training_section(config.to_dict()) if "data" in config else config.input.to_dict()
        if section.get("sft_weight", 0) > 0:
            _check_tfds_dataset(section["sft_source"], section.get("data_dir", ""), "data.sft_source")
        check_input(section)
    if "heldout" in config:
        _check_heldout(config)


def _check_heldout(config: ml_collections.ConfigDict) -> None:
    """heldout.split: another split of the same tfds source, read by the video pipeline."""
    split = config.heldout.split
    if not split:
        return
    if config.data.source != "videos":
        raise ConfigValueError(f"heldout.split={split!r}: expected '' with data.source={config.data.source!r} "
                               "(a held-out split needs data.source='videos')")
    if not config.input.source.startswith("tfds:"):
        raise ConfigValueError(f"heldout.split={split!r}: expected '' with input.source={config.input.source!r} "
                               "(splits are a tfds source's, e.g. tfds:sf2t_corpus)")
    if split == config.input.split:
        raise ConfigValueError(f"heldout.split={split!r}: expected a split other than input.split={split!r} "
                               "(held-out videos must not be trained on)")


def check_eval(config: ml_collections.ConfigDict, checkpoint: str | None = None) -> None:
    """A configs/eval_finevidbench.py-shaped config (and the checkpoint to evaluate)."""
    check_table(config, EVAL)
    if checkpoint is not None:
        Path("dir", optional=False, what="a checkpoint folder").check("--checkpoint", checkpoint)
    from sf2t_jax.eval.config import EvalSettings

    try:
        EvalSettings.of(config)
    except (ValueError, TypeError) as e:
        raise _as_config_error("eval config", e) from None


def check_prepare(config: ml_collections.ConfigDict, source: str | None = None) -> PrepareSettings:
    """A configs/demo.py-shaped config (and prepare's --source, which replaces `data.source`)
    -> the typed settings `prepare` takes."""
    check_table(config, PREPARE)
    if source:
        PREPARE["data.source"].check("--source", source)
    from sf2t_jax.datasets.sft import SftConfig
    from sf2t_jax.finevidbench.build import BenchConfig
    from sf2t_jax.world.config import WorldConfig

    sections = {}
    for field, cls in (("world", WorldConfig), ("data.benchmark", BenchConfig), ("data.sft", SftConfig)):
        node = config
        for part in field.split("."):
            node = node[part]
        try:
            _check_dataclass_types(cls, node.to_dict(), field)
            sections[field] = cls(**node.to_dict())
        except (InputError, ValueError, TypeError) as e:
            raise _as_config_error(field, e) from None
    from sf2t_jax.prepare import PrepareSettings  # the datasets' code: imported once the config is known good

    data = config.data
    return PrepareSettings(
        data_dir=data.dir, world=sections["world"], bench=sections["data.benchmark"], sft=sections["data.sft"],
        source=source or data.source, train_split=data.train_split, heldout_split=data.heldout_split,
        benchmark_split=data.benchmark_split, check_videos=data.check_videos, workers=data.workers)


def _check_dataclass_types(cls, values: Mapping[str, Any], section: str) -> None:
    """Fields declared int / float / bool / str in a dataclass get exactly that (an int is a
    fine float); the dataclass's own __post_init__ checks ranges."""
    rules = {"int": Int(), "float": Float(), "bool": Bool(), "str": Str()}
    declared = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    for name, value in values.items():
        rule = rules.get(declared.get(name, ""))
        if rule is not None:
            rule.check(f"{section}.{name}", value)
