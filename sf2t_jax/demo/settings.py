"""The demo config (`sf2t_jax.defaults.demo.demo_config`), converted once at start-up into the
typed settings the demo runs on, and each stage's training config.

    settings = DemoSettings.of(config)          # every section checked; errors name the field
    cfg = settings.stage_config("sft", init_from="runs/demo/stages/base/export")
    sf2t_jax.train.loop.train(cfg, "runs/demo/stages/sft")

A stage's training config is the SF²T experiment (`sf2t_config`, locked) with the stage's fields
applied as overrides (`stage_overrides`), so a stage can set only keys the experiment declares,
with values of their declared types, and the demo trains exactly as
`launch.py train --config configs/sf2t.py` does. The trainer takes that config (not typed
settings) because it checks `init_from` exists, which a later stage's export does not until the
stages before it ran.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections

from sf2t_jax import validation
from sf2t_jax.configuration import ConfigValueError, make_config, set_by_path
from sf2t_jax.datasets.layout import DataPaths
from sf2t_jax.defaults.sf2t import sf2t_config
from sf2t_jax.errors import InputError
from sf2t_jax.eval.config import EvalJob, eval_config
from sf2t_jax.experiment import HeldoutSettings
from sf2t_jax.prepare import PrepareSettings

# The paper's settings in table order (then any other stage, by name).
KNOWN_STAGES = ("base", "sft", "sf2t", "sft_sf2t", "sf2t_joint")


@dataclasses.dataclass(frozen=True)
class StageSettings:
    """One training stage (`stages.<name>` of the demo config; documented in defaults/demo.py)."""

    init: str  # the stage whose export it starts from; "tower"; "" = random init
    mode: str  # input.mode: captions | scene_qa | fragments
    method: str  # full | lora
    steps: int
    lr: float
    batch_size: int
    warmup_fraction: float
    log_every: int
    source: str  # input.source
    scene_frames: int
    frame_budget: int
    max_length: int
    max_skip_share: float
    freeze_tower: bool
    sft_weight: float
    heldout: bool
    fact_share: float
    clip_cache_mb: int


@dataclasses.dataclass(frozen=True)
class TowerStage:
    """The tower stage (`tower` section): pretraining steps and its frame-pair data."""

    steps: int  # 0 = no tower stage
    batch: int
    lr: float
    pairs_per_clip: int
    heldout_pairs_per_clip: int
    gaps: tuple[int, ...]
    min_cover: float


@dataclasses.dataclass(frozen=True)
class FragmentMix:
    """The SF²T task mix of every fragments stage (`fragments` section): weights per task
    (input.weights) and per-task config fields (input.tasks) set over the SF²T experiment's."""

    weights: dict[str, float]
    tasks: dict[str, dict[str, Any]]

    def overrides(self) -> dict[str, Any]:
        """Dotted keys of the SF²T experiment -> values."""
        out = {f"input.weights.{task}": float(w) for task, w in self.weights.items()}
        for task, fields in self.tasks.items():
            out.update({f"input.tasks.{task}.{field}": value for field, value in fields.items()})
        return out


@dataclasses.dataclass(frozen=True)
class DemoModel:
    name: str  # a sf2t_jax.models.config preset
    tokenizer: str
    resolution: tuple[int, int]
    dtype: str


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """The whole demo, typed. `order` lists the training stages so that each comes after the one
    it starts from; `resolved` is the config as plain values (demo.json)."""

    scale: str
    seed: int
    devices: int
    prepare: PrepareSettings
    model: DemoModel
    tower: TowerStage
    fragments: FragmentMix
    stages: dict[str, StageSettings]
    order: tuple[str, ...]
    heldout: HeldoutSettings  # the demo's `heldout` section (its bootstrap settings: the defaults)
    eval: EvalJob
    resolved: dict

    @classmethod
    def of(cls, config: ml_collections.ConfigDict) -> DemoSettings:
        """Checks every section (errors name the field) and converts it."""
        prepare = validation.check_prepare(config)
        stages, known = {}, [f.name for f in dataclasses.fields(StageSettings)]
        for name in config.stages:
            values = config.stages[name].to_dict()
            unknown = sorted(set(values) - set(known))
            if unknown:
                raise ConfigValueError(f"demo: stages.{name} has unknown fields {unknown}; known: {known}")
            try:
                stages[name] = StageSettings(**values)
            except TypeError as e:
                raise ConfigValueError(f"demo: stages.{name}: {e}") from None
        tower = TowerStage(**{**config.tower.to_dict(), "gaps": tuple(int(g) for g in config.tower.gaps)})
        model = DemoModel(name=config.model.name, tokenizer=config.model.tokenizer,
                          resolution=tuple(int(v) for v in config.model.resolution), dtype=config.model.dtype)
        benchmark = DataPaths.from_dir(prepare.data_dir).jsonl
        try:
            job = EvalJob.of(_eval_config(config, str(benchmark), str(prepare.videos_root)))
        except ValueError as e:
            raise ConfigValueError(f"demo: {e}") from None
        fragments = FragmentMix(weights=config.fragments.weights.to_dict(), tasks=config.fragments.tasks.to_dict())
        settings = cls(scale=config.scale, seed=int(config.seed), devices=int(config.devices), prepare=prepare,
                       model=model, tower=tower, fragments=fragments, stages=stages,
                       order=_stage_order(stages, tower.steps > 0), heldout=HeldoutSettings(**config.heldout.to_dict()),
                       eval=job, resolved=config.to_dict())
        settings.check_stage_inputs()
        return settings

    def check_stage_inputs(self) -> None:
        """Builds every stage's input config now, so that a bad task mix (an unknown task or field,
        a frame range past the stage's frame budget) is refused at start, not when its stage
        begins after the ones before it trained. Raises ConfigValueError naming the stage."""
        from sf2t_jax.input.config import InputConfig

        for name, s in self.stages.items():
            try:
                cfg = self.stage_config(name, init_from="(checked at start)" if s.init else "")
                InputConfig.from_dict(cfg.input)
            except (InputError, ValueError, KeyError) as e:
                raise ConfigValueError(f"demo: stages.{name}: {e}") from None

    def stage_config(self, stage: str, *, init_from: str = "") -> ml_collections.ConfigDict:
        """The resolved training config of `stage`.

        Args:
          init_from: the previous stage's export ("" = random init; required when the stage's
            `init` names a stage or "tower").
        """
        if stage not in self.stages:
            raise KeyError(f"demo: no stage {stage!r}; the demo config defines {list(self.stages)}")
        s = self.stages[stage]
        if bool(s.init) != bool(init_from):
            raise ValueError(f"demo: stages.{stage}.init={s.init!r} but init_from={init_from!r}")
        c = make_config(sf2t_config, f"model={self.model.name},method={s.method},data=videos,frames={s.frame_budget}")
        for key, value in self.stage_overrides(stage, init_from=init_from).items():
            set_by_path(c, key, value)  # the config is locked: a key it lacks or a value of another type is an error
        return c

    def stage_overrides(self, stage: str, *, init_from: str) -> dict[str, Any]:
        """What stage `stage` sets over the SF²T experiment: dotted key -> value."""
        s, e = self.stages[stage], self.eval.settings
        out = {
            "seed": self.seed,
            "init_from": init_from,
            "mesh.devices": self.devices,
            "model.dtype": self.model.dtype,
            "input.mode": s.mode,
            "input.scene_frames": s.scene_frames,
            "input.fact_share": float(s.fact_share),
            "input.instruction": e.instruction,  # the scorer's prompt, exactly
            "input.answer_style": e.loglik_target,
            "input.source": s.source,
            "input.split": "train",  # video_sft and sf2t_corpus: videos disjoint from the benchmark's
            "input.data_dir": os.path.join(self.prepare.data_dir, "tfds"),
            "input.tokenizer": self.model.tokenizer,
            "input.resolution": self.model.resolution,
            "input.max_length": s.max_length,
            "input.batch_size": s.batch_size,
            "input.seed": self.seed,
            "input.num_epochs": 0,  # repeat the source; `steps` decides how long a stage trains
            "input.clip_cache_mb": s.clip_cache_mb,
            "train.steps": s.steps,
            "train.lr": float(s.lr),
            "train.warmup_fraction": float(s.warmup_fraction),
            "train.max_skip_share": float(s.max_skip_share),
            # joint SFT+SF²T: a share of scene QA samples (video_sft's train split) mixed into the fragments
            "data.sft_weight": float(s.sft_weight),
            # held-out accuracy per task against its answer prior (the same data's held-out split)
            "heldout.split": self.heldout.split if s.heldout else "",
            "heldout.every": self.heldout.every,
            "heldout.samples_per_task": self.heldout.samples_per_task,
            "heldout.prior_samples_per_task": self.heldout.prior_samples_per_task,
            "checkpoint.every": max(s.steps, 1),  # one checkpoint, at the end
            "checkpoint.keep": 1,
            "checkpoint.async_save": False,
            "log.every": max(1, min(s.log_every, s.steps)),
            "log.tensorboard": False,
        }
        if s.mode == "fragments":
            out.update(self.fragments.overrides())
        if s.sft_weight > 0:
            out["data.sft_source"] = "tfds:video_sft"
        if s.method == "full" and not s.freeze_tower:
            out["params.frozen"] = ()  # every parameter learns, the vision tower too
        # else the SF²T experiment's default: the ViT (patch embedding and blocks) frozen, the merger trained
        return out


def as_json_dict(config: ml_collections.ConfigDict) -> dict:
    """A stage's training config as plain values (configs/<stage>.json)."""
    return config.to_dict()


def _stage_order(stages: dict[str, StageSettings], tower: bool) -> tuple[str, ...]:
    """Training stages in an order where every stage comes after the one it starts from (the
    tower stage, when there is one, comes before all of them)."""
    before = ["tower"] if tower else []
    from_tower = [s for s in stages if stages[s].init == "tower"]
    if not tower and from_tower:
        raise ConfigValueError(f"demo: tower.steps=0 (no tower stage) but stages {from_tower} start from it; set "
                               "their init to \"\" (random init) or tower.steps > 0")
    order: list[str] = []
    pending = sorted(stages, key=lambda s: (KNOWN_STAGES.index(s) if s in KNOWN_STAGES else len(KNOWN_STAGES), s))
    while pending:
        ready = [s for s in pending if not stages[s].init or stages[s].init in order + before][:1]
        if not ready:
            raise ConfigValueError(f"demo: stages {pending} start from stages that do not exist or form a cycle "
                                   f"(init: { {s: stages[s].init for s in pending} })")
        order += ready
        pending = [s for s in pending if s not in ready]
    return tuple(order)


def _eval_config(config: ml_collections.ConfigDict, benchmark: str, videos: str) -> ml_collections.ConfigDict:
    """The scorer's config (`eval_config()`) with the demo's `eval` section, model and seed."""
    e = config.eval
    c = eval_config()
    c.benchmark, c.videos, c.tokenizer = benchmark, videos, config.model.tokenizer
    c.dtype = config.model.dtype
    c.methods, c.batch_size, c.max_videos = e.methods, int(e.batch_size), int(e.max_videos)
    c.controls = e.controls
    c.video.scene_frames = int(e.scene_frames)
    c.video.size = tuple(config.model.resolution)
    c.prompt.instruction = e.instruction
    c.prompt.history = e.history
    c.prompt.history_answer = e.history_answer
    c.loglik.target = e.loglik_target
    c.metrics.bootstrap = int(e.bootstrap)
    c.metrics.seed = int(config.seed)
    c.mesh.devices = int(config.devices)
    return c
