"""One demo stage -> the trainer's config: the SF²T experiment (`sf2t_config`, locked) with the
stage's fields applied as overrides (`stage_overrides`), so a stage can set only keys the
experiment declares, with values of their declared types.

    cfg = stage_config(demo_config, "sft", data_dir="runs/demo/data", init_from="runs/demo/base/export")
    sf2t_jax.train.loop.train(cfg, "runs/demo/sft")

The stage sections of the demo config (`demo_config`) name only what differs between the paper's settings
(data mode, init, method, steps, lr); everything else (LoRA shape, optimizer, checkpoints)
is the SF²T experiment's, so the demo trains exactly as `launch.py train --config configs/sf2t.py`
does.
"""
from __future__ import annotations

import os
from typing import Any

import ml_collections

from sf2t_jax.configuration import make_config, set_by_path
from sf2t_jax.defaults.sf2t import sf2t_config

STAGE_FIELDS = ("init", "mode", "method", "steps", "lr", "batch_size", "warmup_fraction", "log_every", "source",
                "scene_frames", "frame_budget", "max_length", "max_skip_share", "freeze_tower", "sft_weight",
                "heldout", "fact_share")


def stage_config(demo: ml_collections.ConfigDict, stage: str, *, data_dir: str,
                 init_from: str = "") -> ml_collections.ConfigDict:
    """The resolved training config of `stage` (a key of `demo.stages`).

    Args:
      demo: the demo config (`sf2t_jax.defaults.demo.demo_config`, or a file like it).
      data_dir: the prepared data folder (its `tfds/` holds sf2t_corpus and video_sft).
      init_from: the previous stage's export ("" = random init; required when the stage's
        `init` names a stage or "tower").
    """
    if stage not in demo.stages:
        raise KeyError(f"demo: no stage {stage!r}; the demo config defines {list(demo.stages)}")
    s = demo.stages[stage]
    unknown = sorted(set(s) - set(STAGE_FIELDS))
    if unknown:
        raise KeyError(f"demo: stages.{stage} has unknown fields {unknown}; known: {list(STAGE_FIELDS)}")
    if bool(s.init) != bool(init_from):
        raise ValueError(f"demo: stages.{stage}.init={s.init!r} but init_from={init_from!r}")
    frames = int(s.frame_budget)
    c = make_config(sf2t_config, f"model={demo.model.name},method={s.method},data=videos,frames={frames}")
    for key, value in stage_overrides(demo, stage, data_dir=data_dir, init_from=init_from).items():
        set_by_path(c, key, value)  # the config is locked: a key it lacks or a value of another type is an error
    return c


def stage_overrides(demo: ml_collections.ConfigDict, stage: str, *, data_dir: str, init_from: str) -> dict[str, Any]:
    """What stage `stage` sets over the SF²T experiment: dotted key -> value."""
    s = demo.stages[stage]
    out = {
        "seed": int(demo.seed),
        "init_from": init_from,
        "mesh.devices": int(demo.devices),
        "model.dtype": demo.model.dtype,
        "input.mode": s.mode,
        "input.scene_frames": int(s.scene_frames),
        "input.fact_share": float(s.fact_share),
        "input.instruction": demo.eval.instruction,  # the scorer's prompt, exactly
        "input.answer_style": demo.eval.loglik_target,
        "input.source": s.source,
        "input.split": "train",  # video_sft and sf2t_corpus: videos disjoint from the benchmark's
        "input.data_dir": os.path.join(data_dir, "tfds"),
        "input.tokenizer": demo.model.tokenizer,
        "input.resolution": tuple(demo.model.resolution),
        "input.max_length": int(s.max_length),
        "input.batch_size": int(s.batch_size),
        "input.seed": int(demo.seed),
        "input.num_epochs": 0,  # repeat the source; `steps` decides how long a stage trains
        "train.steps": int(s.steps),
        "train.lr": float(s.lr),
        "train.warmup_fraction": float(s.warmup_fraction),
        "train.max_skip_share": float(s.max_skip_share),
        # joint SFT+SF²T: a share of scene QA samples (video_sft's train split) mixed into the fragments
        "data.sft_weight": float(s.sft_weight),
        # held-out accuracy per task against its answer prior (the same data's held-out split)
        "heldout.split": demo.heldout.split if s.heldout else "",
        "heldout.every": int(demo.heldout.every),
        "heldout.samples_per_task": int(demo.heldout.samples_per_task),
        "heldout.prior_samples_per_task": int(demo.heldout.prior_samples_per_task),
        "checkpoint.every": max(int(s.steps), 1),  # one checkpoint, at the end
        "checkpoint.keep": 1,
        "checkpoint.async_save": False,
        "log.every": max(1, min(int(s.log_every), int(s.steps))),
        "log.tensorboard": False,
    }
    if s.sft_weight > 0:
        out["data.sft_source"] = "tfds:video_sft"
    if s.method == "full" and not s.freeze_tower:
        out["params.frozen"] = ()  # every parameter learns, the vision tower too
    # else the SF²T experiment's default: the ViT (patch embedding and blocks) frozen, the merger trained
    return out
