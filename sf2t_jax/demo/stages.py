"""One demo stage -> the trainer's config: the SF²T experiment (`sf2t_config`) with the stage's
fields applied.

    cfg = stage_config(demo_config, "sft", data_dir="runs/demo/data", init_from="runs/demo/base/export")
    sf2t_jax.train.loop.train(cfg, "runs/demo/sft")

The stage sections of the demo config (`demo_config`) name only what differs between the paper's settings
(data mode, init, method, steps, lr); everything else (LoRA shape, optimizer, checkpoints)
is the SF²T experiment's, so the demo trains exactly as `launch.py train --config configs/sf2t.py`
does.
"""
from __future__ import annotations

import os

import ml_collections

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
    c = sf2t_config(f"model={demo.model.name},method={s.method},data=videos,frames={frames}")
    c.seed = int(demo.seed)
    c.init_from = init_from
    c.mesh.devices = int(demo.devices)
    c.model.dtype = demo.model.dtype

    c.input.mode = s.mode
    c.input.scene_frames = int(s.scene_frames)
    c.input.fact_share = float(s.fact_share)
    c.input.instruction = demo.eval.instruction  # the scorer's prompt, exactly
    c.input.answer_style = demo.eval.loglik_target
    c.input.source = s.source
    c.input.split = "train"  # video_sft and sf2t_corpus: videos disjoint from the benchmark's
    c.input.data_dir = os.path.join(data_dir, "tfds")
    c.input.tokenizer = demo.model.tokenizer
    c.input.resolution = tuple(demo.model.resolution)
    c.input.max_length = int(s.max_length)
    c.input.batch_size = int(s.batch_size)
    c.input.seed = int(demo.seed)
    c.input.num_epochs = 0  # repeat the source; `steps` decides how long a stage trains

    c.train.steps = int(s.steps)
    c.train.lr = float(s.lr)
    c.train.warmup_fraction = float(s.warmup_fraction)
    c.train.max_skip_share = float(s.max_skip_share)
    # joint SFT+SF²T: a share of scene QA samples (video_sft's train split) mixed into the fragments
    c.data.sft_weight = float(s.sft_weight)
    c.data.sft_source = "tfds:video_sft" if s.sft_weight > 0 else c.data.sft_source
    # held-out accuracy per task against its answer prior (the same data's held-out split)
    c.heldout.split = demo.heldout.split if s.heldout else ""
    c.heldout.every = int(demo.heldout.every)
    c.heldout.samples_per_task = int(demo.heldout.samples_per_task)
    c.heldout.prior_samples_per_task = int(demo.heldout.prior_samples_per_task)
    if s.method == "full" and not s.freeze_tower:
        c.params.frozen = ()  # every parameter learns, the vision tower too
    # else the SF²T experiment's default: the ViT (patch embedding and blocks) frozen, the merger trained
    c.checkpoint.every = max(int(s.steps), 1)  # one checkpoint, at the end
    c.checkpoint.keep = 1
    c.checkpoint.async_save = False
    c.log.every = max(1, min(int(s.log_every), int(s.steps)))
    c.log.tensorboard = False
    c.lock()
    return c
