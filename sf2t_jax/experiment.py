"""A training experiment, typed: the one conversion of a configs/sf2t.py-shaped ConfigDict.

    experiment = from_config(load_config("configs/sf2t.py:model=qwen2vl_7b", overrides))
    sf2t_jax.train.loop.train(experiment, workdir)

The config file (`sf2t_jax.defaults.sf2t.sf2t_config`) declares every key and documents its
default; `from_config` checks every field once (`sf2t_jax.validation.check_train`: types,
ranges, names, paths and the cross-field rules) and turns each section into the frozen
dataclass below, which is all the trainer, the planner and the benchmarks receive: nothing
below the command line reads a ConfigDict (DESIGN.md decision 8; a test walks the package).
A key the dataclasses do not know, or one they need that the config lacks, is a
`ConfigKeyError` naming it.

The `input` section (with `data.sft_weight` / `data.sft_source` folded in for the video source)
becomes the input pipeline's own `sf2t_jax.input.InputConfig`. Field names are the config's, so
`experiment.train.lr` is `--config.train.lr`, and error messages name fields the same way.

This module imports no JAX itself: a bad setting is refused before a device is touched.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ml_collections

from sf2t_jax import validation
from sf2t_jax.configuration import ConfigKeyError

if TYPE_CHECKING:
    from sf2t_jax.input.config import InputConfig


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """`model`: which preset, and how it computes (names from `sf2t_jax.models.options`)."""

    name: str
    """The preset shape (`sf2t_jax.models.presets.PRESETS`); an `init_from` checkpoint must have it."""
    dtype: str
    """Activations and matmuls: float32 | bfloat16 | float16."""
    param_dtype: str
    """Master weights of trained parameters."""
    frozen_dtype: str
    """Storage of frozen parameters; '' = `param_dtype`."""
    precision: str
    """Matmul precision: default | high | highest."""
    remat: str
    """Per-layer rematerialisation policy: none | full | dots | dots_with_no_batch_dims."""
    scan_layers: bool
    """Stack the layers and scan them: one layer is compiled, not all."""
    attention: str
    """Attention kernel: auto | xla | splash | cudnn."""

    @property
    def frozen_storage_dtype(self) -> str:
        """The dtype name frozen parameters are stored in."""
        return self.frozen_dtype or self.param_dtype


@dataclasses.dataclass(frozen=True)
class LoraSettings:
    """`lora` (method=lora): the adapters on the linear layers `targets` matches."""

    rank: int
    """Adapter rank r."""
    alpha: float
    """The update is scaled by alpha / r."""
    dropout: float
    """Dropout on the adapter's input (PEFT's lora_dropout)."""
    targets: str
    """A regex (re.search) over linear-layer module paths."""


@dataclasses.dataclass(frozen=True)
class ParamsSettings:
    """`params`: which base parameters train (regexes over parameter paths, re.search)."""

    frozen: tuple[str, ...]
    """Frozen in both methods; frozen wins over trained."""
    extra_trainable: tuple[str, ...]
    """method=lora: base parameters trained fully next to the adapters."""


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """`data`: where batches come from (`sf2t_jax.train.data.open_batches`)."""

    source: str
    """synthetic (generated batches with the real shapes) | videos (the input pipeline)."""
    synthetic_examples: int
    """synthetic: records per epoch."""
    sft_weight: float
    """The share of SFT question-answer samples mixed in (joint SFT+SF²T); 1 = SFT only."""
    sft_source: str
    """data=videos: the SFT question-answer records ('tfds:NAME'); folded into `input`."""


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """`train`: the optimisation (AdamW, warmup + cosine: `sf2t_jax.train.optimizer`) and the step."""

    steps: int
    """Optimizer steps; 0 = input.num_epochs over the source (resolved by the trainer)."""
    grad_accum: int
    """Micro-steps per step; the global batch splits into this many."""
    lr: float
    """Peak learning rate."""
    warmup_fraction: float
    """Linear warmup over this share of the steps."""
    end_lr_fraction: float
    """Cosine decays to lr * this."""
    b1: float
    b2: float
    eps: float
    """AdamW's moment decays and epsilon."""
    weight_decay: float
    """Decoupled weight decay, on matrices only."""
    clip_norm: float
    """Global gradient-norm clip; 0 = off."""
    loss_positions: int
    """The LM head runs at each row's first K answer positions only; 0 = at every position."""
    loss_chunk: int
    """Positions per block of the LM head and loss; 0 = the whole head at once."""
    compilation_cache: str
    """'workdir', 'off', or a directory (local or gs://)."""
    max_skip_share: float
    """The run stops when a task loses more than this share of its samples to one skip reason."""


@dataclasses.dataclass(frozen=True)
class HeldoutSettings:
    """`heldout`: accuracy per task on another split vs its answer prior (`sf2t_jax.train.heldout`).

    split: the held-out split of the input source ('' = no held-out evaluation).
    every: steps between evaluations; the last step is always evaluated (0 = only the last).
    samples_per_task: held-out samples scored per task.
    prior_samples_per_task: training samples per task whose majority answer is the prior.
    resamples, ci: the video bootstrap's resamples and interval level.
    """

    split: str = ""
    every: int = 0
    samples_per_task: int = 48
    prior_samples_per_task: int = 100
    resamples: int = 1000
    ci: float = 0.95

    @property
    def enabled(self) -> bool:
        return bool(self.split)


@dataclasses.dataclass(frozen=True)
class MeshSettings:
    """`mesh`: the device mesh and the logical-axis rules (`sf2t_jax.parallel`)."""

    ici: tuple[int, int, int]
    """(data, fsdp, tensor) within a slice; one may be -1 (the rest)."""
    dcn: tuple[int, int, int]
    """(data, fsdp, tensor) across slices / processes."""
    rules: str
    """A key of `sf2t_jax.parallel.rules.RULES`."""
    constrain_activations: bool
    """Constrain activations by their logical axes at every layer boundary."""
    devices: int
    """Devices the mesh spans: 0 = all; N = the first N (single process only)."""


@dataclasses.dataclass(frozen=True)
class CheckpointSettings:
    """`checkpoint`: orbax checkpoints of the run (`sf2t_jax.train.checkpoint`)."""

    every: int
    """Steps between checkpoints (and the last step)."""
    keep: int
    """Most recent checkpoints kept."""
    async_save: bool
    """Write in the background while training goes on."""
    ocdbt: bool
    """Orbax's OCDBT layout (False for storage without conditional writes)."""
    save_frozen: bool
    """Save frozen parameters; False re-reads them from init_from (or `seed`) on resume."""
    allow_fresh_start: bool
    """When every checkpoint is unreadable: set them aside and start over instead of refusing."""


@dataclasses.dataclass(frozen=True)
class LogSettings:
    """`log`: progress lines and metrics files (`sf2t_jax.train.metrics`)."""

    every: int
    """Steps between fetching metrics and printing a progress line."""
    tensorboard: bool
    """TensorBoard event files in WORKDIR/tensorboard."""
    flush_seconds: float
    """Remote workdirs: rewrite metrics files at most this often."""


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """`export`: the final model, LoRA merged, in our native format."""

    final: bool
    """Write WORKDIR/export at the end."""
    dtype: str
    """Parameter dtype of the export; '' = model.param_dtype."""


@dataclasses.dataclass(frozen=True)
class DebugSettings:
    """`debug`: fault injection and fingerprints, for tests."""

    signal_at_step: int
    """At the start of this step the process sends itself `signal`; -1 = never."""
    signal: str
    """SIGTERM | SIGKILL | SIGINT."""
    batch_digest: bool
    """Record a bit-exact fingerprint of every global batch row in the metrics."""
    input_ends_at_step: int
    """Process `input_ends_process`'s input runs out before this step + 1; -1 = never."""
    input_ends_process: int


SECTIONS = {"model": ModelSettings, "lora": LoraSettings, "params": ParamsSettings, "data": DataSettings,
            "train": TrainSettings, "heldout": HeldoutSettings, "mesh": MeshSettings,
            "checkpoint": CheckpointSettings, "log": LogSettings, "export": ExportSettings, "debug": DebugSettings}
TOP_LEVEL = ("seed", "init_from", "method")


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Every setting of one training run, checked; what the trainer, planner and benchmarks read."""

    seed: int
    """Model init, LoRA init and dropout (the data order has its own: input.seed)."""
    init_from: str
    """A converted checkpoint (native or Hugging Face folder); '' = random init."""
    method: str
    """lora (adapters + params.extra_trainable) | full (every parameter not frozen)."""
    model: ModelSettings
    lora: LoraSettings
    params: ParamsSettings
    data: DataSettings
    input: InputConfig
    """The input pipeline's config (the SFT mix folded in for data.source='videos')."""
    train: TrainSettings
    heldout: HeldoutSettings
    mesh: MeshSettings
    checkpoint: CheckpointSettings
    log: LogSettings
    export: ExportSettings
    debug: DebugSettings
    recorded: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    """The config as a nested dict of plain values, as given: what WORKDIR/config.json and each
    checkpoint record (the trainer adds the resolved `train.steps`)."""

    def recorded_config(self) -> dict[str, Any]:
        """A deep copy of `recorded` (JSON-serialisable with `default=str`)."""
        return copy.deepcopy(dict(self.recorded))


def from_config(config: ml_collections.ConfigDict) -> Experiment:
    """Checks every field of a configs/sf2t.py-shaped config and converts it (see the module
    docstring); `ConfigValueError` / `ConfigKeyError` name the field otherwise."""
    from sf2t_jax.input.config import InputConfig, training_section

    validation.check_train(config)
    values = config.to_dict()
    known = set(TOP_LEVEL) | set(SECTIONS) | {"input"}
    _refuse_unknown(values, known, "")
    sections = {name: _section(cls, values.get(name), name) for name, cls in SECTIONS.items()}
    top = {name: values[name] if name in values else _missing(name) for name in TOP_LEVEL}
    if "input" not in values:
        _missing("input")
    return Experiment(**top, **sections, input=InputConfig.from_dict(training_section(values)), recorded=values)


# What the library's entry points (`train.loop.train`, `plan.aot.compile_step`) accept: an
# Experiment, or a configs/sf2t.py ConfigDict that they convert first.
ExperimentLike = Experiment | ml_collections.ConfigDict


def of(config: ExperimentLike) -> Experiment:
    """`config` converted by `from_config`, or passed through when it already is an Experiment."""
    return config if isinstance(config, Experiment) else from_config(config)


def _section(cls, values: Mapping[str, Any] | None, name: str):
    """`values` (one section of the config) -> `cls`, tuples for lists; unknown or missing keys
    are ConfigKeyErrors naming them."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if values is None:
        if all(f.default is not dataclasses.MISSING for f in fields.values()):
            return cls()  # a section whose every field has a default may be left out
        _missing(name)
    _refuse_unknown(values, set(fields), name + ".")
    kwargs = {}
    for key, field in fields.items():
        if key in values:
            value = values[key]
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        elif field.default is dataclasses.MISSING:
            _missing(f"{name}.{key}")
    return cls(**kwargs)


def _refuse_unknown(values: Mapping[str, Any], known: set[str], prefix: str) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigKeyError(f"config key {prefix + unknown[0]!r} is not a training setting; known here: "
                             f"{', '.join(sorted(known))}")


def _missing(dotted: str):
    raise ConfigKeyError(f"config key {dotted!r} is missing: a training config declares every key "
                         "(start from sf2t_jax.defaults.sf2t.sf2t_config)")

