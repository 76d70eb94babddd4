"""The embedded demo's defaults: the synthetic SSv2-format world, its datasets, and the paper's
four runs (Base, SFT, SF²T, SFT+SF²T) evaluated on the synthetic FineVidBench (docs/demo.md),
inside the package so that `launch.py demo` works from an installed sf2t_jax.

`configs/demo.py` (the experiment file users pass and copy) returns `demo_config(arg)`, and
`launch.py demo` without `--config` uses it directly.

Scales (clips train/validation/test, resolution, frames per clip):
  small   1920/60/60,      112x112, 24 frames   the laptop demo: 10-18 minutes on 2 cores
  medium  3840/240/240,    112x112, 32 frames   about 45 minutes on 2 cores (README's headline)
  large   7680/960/960,    224x224, 32 frames   not measured
Training steps per stage grow with the scale (STEPS below); the model is the same.
"""
from __future__ import annotations

import ml_collections

from sf2t_jax.configuration import ConfigValueError, parse_arg
from sf2t_jax.fragments import DisorderConfig

SCALES = {
    # name: (train, validation, test clips, side in pixels, frames per clip)
    # small: 1920 training clips, the fewest with which the tower and the captioning base learn
    # colour and SFT motion at all (480 did not); medium: twice that, where the captioning base
    # itself reads motion (Action 36.7 vs chance at small) and SF²T learns consistency (docs/demo.md)
    "small": (1920, 60, 60, 112, 24),
    "medium": (3840, 240, 240, 112, 32),
    "large": (7680, 960, 960, 224, 32),
}
# Optimizer steps of the tower stage (per-patch object labels; ~30 steps/s on 2 cores).
TOWER_STEPS = {"small": 1500, "medium": 3000, "large": 6000}
# Optimizer steps per stage: (base captions, SFT, SF²T, SFT+SF²T's SF²T).
# Measured at scale small (docs/demo.md): the base's LLM reads the object's colour from its vision
# tokens after 1800 caption steps (the right colour in 45 of 60 test captions), not after 600 (7 of
# 60, chance), and SFT over it reaches Action 74.2 (62.5 with the first frame held) against 43.8
# (39.6) over the 600-step base; SFT at 300 steps did not use motion, at 900 it did; SF²T at 300
# steps learned only counting above its answer prior, at 1200 (lr 1e-3) counting and localisation.
# At scale medium SF²T at 2400 steps learned count, consistency and localisation, at 4800 (with
# the order tasks' min_frame_diff 3.0) disorder too, and at 14400 with rearrangement weighted 8
# (REARRANGE_WEIGHT) all five; small keeps 1200 to stay within 15 minutes.
STEPS = {
    "small": (1800, 900, 1200, 1200),
    "medium": (3600, 1800, 14400, 14400),
    "large": (12000, 6000, 16000, 16000),
}
# Rearrangement's weight in the fragment mix (the other four tasks weigh 1). Exact order over 3-8
# frames needs about ten times the samples a uniform mix gives it (docs/demo.md, "Why
# rearrangement is not learned"): at medium, weight 8 and 14400 steps put all five tasks above
# both constants on held-out clips (training majority and best constant); the uniform mix at 4800
# steps left rearrangement at its best constant. Small keeps the uniform mix (its 1200 steps are
# too few either way; the reweighting is unmeasured there); large follows medium (unmeasured).
REARRANGE_WEIGHT = {"small": 1.0, "medium": 8.0, "large": 8.0}
STAGES = ("base", "sft", "sf2t", "sft_sf2t")


def demo_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The demo: every field with its default, documented where it is set.

    `arg` is 'key=value,...' (`configs/demo.py:ARG` on the command line):
      scale   small (default) | medium | large: SCALES' world size, STEPS' training steps
      joint   False (default) | True: add the joint SFT+SF²T ablation (one stage over a
              fragments/scene-QA mix, from base)
    A bad argument raises `ConfigValueError` naming it.
    """
    arg = parse_arg(arg, scale="small", joint=False)
    if arg.scale not in SCALES:
        raise ConfigValueError(f"config arg scale={arg.scale!r}, expected one of {sorted(SCALES)}")
    train, validation, test, side, frames = SCALES[arg.scale]
    config = ml_collections.ConfigDict()
    config.scale = arg.scale
    config.seed = 0  # every stage's model init and data order derive from it (same seed, same numbers)
    config.devices = 0  # devices training and eval span: 0 = all; 1 = one (a tiny model compiles fastest there)

    # ---- world: the synthetic SSv2-format folder (sf2t_jax.world.WorldConfig) ----------------
    config.world = ml_collections.ConfigDict(dict(
        train_clips=train, validation_clips=validation, test_clips=test,
        height=side, width=side, num_frames=frames, fps=12,
        seed=0, codec="vp9",  # vp9 in WebM, as SSv2 ships; "h264" writes .mp4
        max_objects=3,
    ))

    # ---- data: where datasets go and how the source's splits are used ------------------------
    config.data = ml_collections.ConfigDict(dict(
        dir=f"workdirs/demo_{arg.scale}/data",  # world/, tfds/, finevidbench/, prepare.json
        source="",  # an SSv2-format folder instead of the world ("" renders; --source sets it)
        # label split per role; "auto": benchmark = test if labels/test.json has labels, else
        # validation (real SSv2); heldout = validation unless the benchmark uses it ("" = none)
        train_split="train",
        heldout_split="auto",
        benchmark_split="auto",
        check_videos=True,  # open every video once; skip and list those that do not decode
        workers=0,  # processes rendering the world (0 = one per CPU); the clips are the same whatever the count
    ))
    # FineVidBench construction (sf2t_jax.finevidbench.BenchConfig): about 24 items per video
    config.data.benchmark = ml_collections.ConfigDict(dict(
        seed=0,
        scene_speeds=("x0.5", "x1", "x2", "x4"),  # action and effect asked at these speeds
        # speed asked at these, once per gold answer (x2 and x4 take turns over the videos)
        speed_speeds=("x0.5", "x1", "x2", "x4", "static"),
        sets_per_video=3,  # fragment conversations per video
        frames_per_clip=16,  # fragment frame indices refer to this uniform sampling
        set_size=(4, 8),  # frames per fragment set, inclusive
        shuffled_fraction=0.5,  # share of fragment sets shown shuffled
    ))
    # SFT baseline questions per training video (sf2t_jax.datasets.sft.SftConfig)
    config.data.sft = ml_collections.ConfigDict(dict(
        seed=0,
        scene_speeds=("x0.5", "x1", "x2", "x4"),
        speed_speeds=("x0.5", "x1", "x2", "x4", "static"),
    ))

    # ---- model: one Qwen2-VL-architecture shape for all four runs ----------------------------
    config.model = ml_collections.ConfigDict(dict(
        name="qwen2vl_tiny",  # sf2t_jax.models.config preset (special tokens at the top of the vocab)
        tokenizer="tiny:1000",  # the built-in byte-level tokenizer of that vocabulary size
        resolution=(56, 56),  # frames are resized to this bucket for training and evaluation
        dtype="float32",  # CPU: bfloat16 matmuls are emulated and slower
    ))

    # ---- tower: the vision tower pretrained on the world's per-frame object labels ----------
    # Every Video-LLM the paper fine-tunes starts from a pretrained image tower; the demo
    # pretrains its own (sf2t_jax/demo/tower.py): per patch of a frame pair, the colour and shape
    # of the object covering it, from the world's ground truth (tracks/; train split only; no
    # motion labels). Probes of the tower (held-out validation clips) go to stages/tower/.
    # steps=0: no tower stage (the base starts from random init; then stages.base.init="").
    config.tower = ml_collections.ConfigDict(dict(
        steps=TOWER_STEPS[arg.scale], batch=64, lr=2e-3,
        pairs_per_clip=4,  # frame pairs drawn per training clip
        heldout_pairs_per_clip=8,  # per validation clip, for the held-out accuracy and the probes
        gaps=(0, 1, 2, 4),  # frames between a pair's two frames (the speeds a video slice shows)
        min_cover=0.15,  # share of a patch an object must cover to label it
    ))

    # ---- fragments: the SF²T task mix of every fragments stage (input.weights, input.tasks) --
    # The spec's uniform mix, rearrangement weighted up at medium and large (REARRANGE_WEIGHT).
    # min_frame_diff: the least difference between any two frames an order task (disorder,
    # rearrange) shows, in grey levels on ~32 px thumbnails (fragments/motion.py); the tasks' own
    # default, 1.0, is nearly invisible at 56x56. Measured at scale medium (docs/demo.md, "The
    # order tasks"): an MLP on the frozen tower's tokens tells a shuffled 4-frame fragment from an
    # ordered one 72% of the time at 1.0, 76% at 3.0; the five-task SF²T stage learned disorder
    # above its prior only with 3.0 and 4800 steps.
    # disorder.reorder_questions: questions whose "yes" means shuffled (FineVidBench's Adjust-or-not
    # polarity), asked alongside the spec's; with disorder.questions=() alone. Measured at medium
    # (docs/demo.md, "Rearrangement, the question's polarity, and a second seed"): the spec's
    # polarity transfers inverted to Adjust-or-not, the benchmark's does not, and neither gains.
    config.fragments = ml_collections.ConfigDict(dict(
        weights=dict(count=1.0, consistency=1.0, localize=1.0, disorder=1.0,
                     rearrange=REARRANGE_WEIGHT[arg.scale]),
        tasks=dict(disorder=dict(min_frame_diff=3.0, questions=DisorderConfig().questions, reorder_questions=()),
                   rearrange=dict(min_frame_diff=3.0)),
    ))

    # ---- stages: the paper's four settings (specs/sf2t.md §1, §4) --------------------------
    # Each stage is the SF²T experiment (sf2t_jax.defaults.sf2t: model, LoRA, optimizer,
    # checkpoints) with these fields
    # applied; `init` names the stage whose export it starts from ("" = random init).
    base_steps, sft_steps, sf2t_steps, sft_sf2t_steps = STEPS[arg.scale]
    # freeze_tower: the pretrained ViT stays as the tower stage left it (the merger trains), as
    # in the paper's recipe; False trains every parameter.
    # sft_weight: share of scene QA samples mixed into a fragments stage (joint SFT+SF²T).
    # heldout: score the stage's own tasks on held-out clips against their answer priors (the
    # `heldout` section below); on for the fragment stages, whose answers are short (a number,
    # yes/no, a cell, frame positions); a scene answer is a whole sentence, which greedy decoding
    # rarely writes exactly: the benchmark scores scene questions by option likelihood instead.
    # fact_share: share of a captions stage's samples that ask a non-temporal multiple-choice
    # question (colour, shape, how many objects) instead of the caption (sf2t_jax/datasets/facts.py).
    # clip_cache_mb: decoded, resized clips kept between passes over the source (input.clip_cache_mb):
    # the stages repeat their source about ten times, and decoding was most of a step's time on a
    # CPU. 1536 MiB holds a split of train clips at scales small (434 MB) and medium (1.2 GB).
    common = dict(batch_size=16, warmup_fraction=0.03, log_every=25, freeze_tower=True, sft_weight=0.0, fact_share=0.0,
                  clip_cache_mb=1536)
    # Lengths measured at scale small (every sample fits: nothing is skipped as too_long; the
    # run stops when a task loses more than max_skip_share of its samples to one reason):
    # captions 55 tokens median, 76 max; scene QA over every video_sft record: action 109 / 158,
    # effect 109 / 140, speed 65 / 67 (at 96, 81% of action and 92% of effect were skipped).
    scene = dict(source="tfds:video_sft", scene_frames=6, frame_budget=6, max_skip_share=0.05, heldout=False)
    # SF²T: the five fragment tasks over unlabelled sf2t_corpus clips (train split: videos
    # disjoint from the benchmark's). Frame budget 8 at 56x56: at most 4 slices x 4 tokens.
    # Longest of 400 samples: rearrange 107 tokens, consistency 92. The spec skips near-static
    # clips for disorder and rearrange (their order cannot be judged): 16-21% of their draws at
    # scale small (the world's "slight" templates), and clips with too few frames min_frame_diff
    # apart another 10-13% (of 1500 draws), so these stages allow 40% per reason.
    fragments = dict(source="tfds:sf2t_corpus", scene_frames=6, frame_budget=8, max_length=128,
                     max_skip_share=0.4, heldout=True)
    config.stages = ml_collections.ConfigDict()
    config.stages.base = ml_collections.ConfigDict(dict(
        # the "base" Video-LLM: captioning pretraining of a random-init LLM over the pretrained tower
        init="tower", mode="captions", method="full", steps=base_steps, lr=1e-3, max_length=96, **common, **scene))
    config.stages.sft = ml_collections.ConfigDict(dict(
        # supervised fine-tuning on labelled scene QA (action, effect, speed), from base
        init="base", mode="scene_qa", method="full", steps=sft_steps, lr=5e-4, max_length=192, **common,
        **scene))
    # SF²T. The recipe is LoRA (rank 16, alpha 32, lr 1e-4 for 7B models); on a 64-wide model
    # a rank-16 adapter is a quarter of the width, so the demo trains fully ("full") at a small
    # model's learning rate. method="lora" runs the recipe (the SF²T experiment's LoRA section).
    config.stages.sf2t = ml_collections.ConfigDict(dict(
        init="base", mode="fragments", method="full", steps=sf2t_steps, lr=1e-3, **common, **fragments))
    config.stages.sft_sf2t = ml_collections.ConfigDict(dict(
        init="sft", mode="fragments", method="full", steps=sft_sf2t_steps, lr=1e-3, **common, **fragments))
    if arg.joint:  # the spec's joint schedule: SFT and SF²T in one run, half the samples each
        config.stages.sf2t_joint = ml_collections.ConfigDict(dict(
            init="base", mode="fragments", method="full", steps=sf2t_steps + sft_steps, lr=1e-3,
            **{**common, "sft_weight": 0.5}, **{**fragments, "max_length": 192}))

    # ---- held-out accuracy of a stage on its own tasks, against each task's answer prior
    # (sf2t_jax/train/heldout.py; stages with heldout=True): the stage's data on the validation
    # split, logged during training and written to stages/<stage>/heldout.json. split "" = off.
    # 240 samples per task: with 48 (the SF²T experiment's default) a task's 95% interval spanned
    # about 26 points and the bar moved with the draw (disorder, a yes/no task drawn half and half,
    # had 'yes' for 64.6% of 48 samples, 52.5% of 240); scoring 240 takes seconds on 2 cores.
    config.heldout = ml_collections.ConfigDict(dict(
        split="validation", every=0, samples_per_task=240, prior_samples_per_task=200))

    # ---- evaluation (sf2t_jax.eval.eval_config fields; the benchmark is never changed) ------
    config.eval = ml_collections.ConfigDict(dict(
        methods="loglik,generate",  # option log-likelihood and greedy generation
        batch_size=16,
        scene_frames=6,  # = the scene stages' scene_frames: training shows what the scorer shows
        instruction="",  # no letter instruction: the scene stages answer with the option's text
        # earlier fragment turns show the model's "own" answers (asked turn by turn) or the "gold"
        # ones; "none" asks each turn alone (a diagnostic, not the benchmark's inquiry)
        history="own",
        history_answer="text",  # earlier turns' answers written as text, like the training answers
        loglik_target="text",
        bootstrap=1000,  # CI resamples
        # controls scored after each setting's evaluation (eval/controls.py): "static" (first frame
        # held), "blind" (blank frames); real - static is comparison.md's "uses motion" table; "" = none
        controls="static,blind",
        max_videos=0,  # 0 = the whole benchmark
    ))
    return config
