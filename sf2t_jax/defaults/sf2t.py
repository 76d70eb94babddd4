"""The SF²T experiment's defaults: the recipe (specs/sf2t.md §2) as a function of a few
arguments, inside the package so that an installed sf2t_jax has it.

`configs/sf2t.py` (the experiment file users pass and copy) returns `sf2t_config(arg)`; the demo
builds each training stage on it (`sf2t_jax.demo.settings`).

The recipe: LoRA rank 16, alpha 32 on the LLM's q/k/v/o/gate/up/down; the vision tower frozen,
the merger trained; AdamW, lr 1e-4, 3% warmup, cosine decay; one epoch; loss on answer tokens
only. Every default is documented next to its field.
"""
from __future__ import annotations

import ml_collections

from sf2t_jax.configuration import ConfigValueError, parse_arg
from sf2t_jax.fragments.mixing import FragmentsConfig
from sf2t_jax.models.presets import PRESETS
from sf2t_jax.train.options import DATA_SOURCES, METHODS

TASKS = ("count", "consistency", "localize", "disorder", "rearrange")

# Sizes per model: global batch, tokens per row (at least; grows with frames), resolution
# bucket, steps when data=synthetic, LM-head block (train.loss_chunk). The tiny model's are
# small enough for a 2-core CPU.
SIZES = {
    "qwen2vl_tiny": dict(batch_size=8, max_length=128, resolution=(56, 56), steps=100, loss_chunk=0),
    "qwen2vl_small": dict(batch_size=16, max_length=512, resolution=(112, 112), steps=100, loss_chunk=128),
    "qwen2vl_2b": dict(batch_size=32, max_length=1024, resolution=(224, 224), steps=1000, loss_chunk=256),
    "qwen2vl_7b": dict(batch_size=32, max_length=1024, resolution=(224, 224), steps=1000, loss_chunk=256),
    "qwen2vl_72b": dict(batch_size=32, max_length=1024, resolution=(224, 224), steps=1000, loss_chunk=256),
    "qwen25vl_tiny": dict(batch_size=8, max_length=128, resolution=(56, 56), steps=100, loss_chunk=0),
    "qwen25vl_3b": dict(batch_size=32, max_length=1024, resolution=(224, 224), steps=1000, loss_chunk=256),
    "qwen25vl_7b": dict(batch_size=32, max_length=1024, resolution=(224, 224), steps=1000, loss_chunk=256),
    "qwen25vl_72b": dict(batch_size=32, max_length=1024, resolution=(224, 224), steps=1000, loss_chunk=256),
    # LLaVA-NeXT-Video takes frames at exactly its tower's image_size, 1 frame per slice
    "llava_next_video_tiny": dict(batch_size=8, max_length=128, resolution=(84, 84), steps=100, loss_chunk=0),
    "llava_next_video_7b": dict(batch_size=32, max_length=1024, resolution=(336, 336), steps=1000, loss_chunk=256),
}
# Accelerator-sized models compile one scanned layer, recompute each layer in the backward pass
# and keep frozen weights in bfloat16: what fits a TPU slice (docs/plan.md).
POD_NUMERICS = dict(scan_layers=True, remat="full", frozen_dtype="bfloat16")
POD_MODELS = ("qwen2vl_2b", "qwen2vl_7b", "qwen2vl_72b", "qwen25vl_3b", "qwen25vl_7b", "qwen25vl_72b",
              "llava_next_video_7b")
# LLM attention and MLP projections (module paths like model.layers.3.self_attn.q_proj;
# without the layer index when model.scan_layers).
LLM_PROJECTIONS = r"^model\.layers\.(\d+\.)?(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)$"
VISION_TOWER = r"^visual\.(patch_embed|blocks)\."  # the ViT without its merger
MERGER = r"^visual\.merger\."
# Per model family (config.json model_type): (the vision tower, frozen by default; what joins it
# to the LLM, trained next to the adapters by default).
VISION_PARTS = {
    "qwen2_vl": (VISION_TOWER, MERGER),
    "qwen2_5_vl": (VISION_TOWER, MERGER),
    "llava_next_video": (r"^vision_tower\.", r"^(multi_modal_projector\.|image_newline$)"),
}

# Each task's (fewest, most) frames shown at the default 16-frame budget (specs/sf2t.md §2);
# consistency always shows a pair. With `frames=N` the tasks that reach 16 reach N instead,
# rearrange keeps at most 8 (its answer lists every position), and every range is capped at N.
TASK_FRAMES = {"count": (2, 16), "localize": (6, 16), "disorder": (4, 16), "rearrange": (3, 8)}
# The order tasks, whose least difference between any two shown frames (grey levels on
# thumbnails, `fragments/motion.py`) is listed so that a config can set it.
ORDER_TASKS = ("disorder", "rearrange")
TEXT_TOKENS = 64  # room for the chat template, the question and the answer


def _task_overrides(frames: int) -> dict:
    """Per-task config overrides: each task's frame range for `frames`, the order tasks'
    `min_frame_diff` and disorder's questions of both polarities (listed so the command line can
    set them)."""
    out = {}
    for task, (lo, hi) in TASK_FRAMES.items():
        hi = frames if hi == 16 else min(hi, frames)
        out[task] = {"n_frames": (min(lo, hi), hi)}
    defaults = FragmentsConfig()
    for task in ORDER_TASKS:
        out[task]["min_frame_diff"] = float(defaults.task_config(task).min_frame_diff)
    out["disorder"]["questions"] = tuple(defaults.disorder.questions)
    out["disorder"]["reorder_questions"] = tuple(defaults.disorder.reorder_questions)
    return out


def _max_length(base: int, resolution, frames: int, present: str, layout) -> int:
    """`base`, or the next power of two that holds `frames` frames' vision tokens plus text, in
    the model's slice layout (`models/slices.py`)."""
    per_slice = layout.tokens_per_slice((resolution[0] // layout.patch_size, resolution[1] // layout.patch_size))
    slices, items = (frames, frames) if present == "images" else (layout.slices(frames), 1)
    need = slices * per_slice + (2 if layout.mrope else 0) * items + TEXT_TOKENS
    length = base
    while length < need:
        length *= 2
    return length


def sf2t_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The SF²T experiment: every field with its default, documented where it is set.

    `arg` is 'key=value,...' (`configs/sf2t.py:ARG` on the command line):
      model   qwen2vl_tiny (default) | qwen2vl_small (4 x 512, for scaling checks) | qwen2vl_2b |
              qwen2vl_7b | qwen2vl_72b | qwen25vl_tiny | qwen25vl_3b | qwen25vl_7b | qwen25vl_72b |
              llava_next_video_tiny | llava_next_video_7b
              (Qwen2.5-VL): the shape, and sizes (and for the pod models numerics) that suit it
      method  lora (default) | full
      tasks   '+'-separated fragment tasks to train (default all five: count+consistency+localize+
              disorder+rearrange); the others get weight 0
      data    synthetic (default: generated batches with the real shapes, for smoke runs and tests)
              | videos (the fragment pipeline, sf2t_jax.input, over `input.source`)
      frames  the most frames one sample shows (default 16, the spec's task ranges); each task's
              frame range is capped at it, and max_length grows to fit
      present video (default: one video of N frames) | images (one image per frame)
    A bad argument raises `ConfigValueError` naming it.
    """
    arg = parse_arg(arg, model="qwen2vl_tiny", method="lora", tasks="+".join(TASKS), data="synthetic", frames=16,
                    present="video")
    if arg.model not in SIZES:
        raise ConfigValueError(f"config arg model={arg.model!r}, expected one of {sorted(SIZES)}")
    if arg.method not in METHODS:
        raise ConfigValueError(f"config arg method={arg.method!r}, expected one of {list(METHODS)}")
    if arg.data not in DATA_SOURCES:
        raise ConfigValueError(f"config arg data={arg.data!r}, expected one of {list(DATA_SOURCES)}")
    if arg.present not in ("video", "images"):
        raise ConfigValueError(f"config arg present={arg.present!r}, expected 'video' or 'images'")
    if arg.frames < 2:
        raise ConfigValueError(f"config arg frames={arg.frames}, expected >= 2")
    tasks = tuple(t for t in arg.tasks.split("+") if t)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise ConfigValueError(f"config arg tasks={arg.tasks!r}: unknown {unknown}; known: {'+'.join(TASKS)}")
    size = SIZES[arg.model]
    model_type, make_shape = PRESETS[arg.model]
    c = ml_collections.ConfigDict()
    c.seed = 0  # model init, LoRA init and dropout; the data order has its own seed (input.seed)
    c.init_from = ""  # converted checkpoint: our native dir (launch.py convert) or a Hugging Face dir; "" = random
    c.method = arg.method  # lora: train adapters (+ params.extra_trainable); full: every parameter not frozen

    # ---- model ------------------------------------------------------------------------------
    c.model = ml_collections.ConfigDict()
    c.model.name = arg.model  # preset shape; an --init-from checkpoint must have this shape
    c.model.dtype = "bfloat16"  # activations and matmuls (float32 | bfloat16)
    c.model.param_dtype = "float32"  # master weights of trained parameters
    pod = arg.model in POD_MODELS
    # storage of frozen parameters; "" = param_dtype, "bfloat16" halves them (default for 2B/7B/72B)
    c.model.frozen_dtype = POD_NUMERICS["frozen_dtype"] if pod else ""
    c.model.precision = "default"  # matmul precision: default | high | highest
    # per-layer rematerialisation: none | full | dots | dots_with_no_batch_dims (full for 2B/7B/72B)
    c.model.remat = POD_NUMERICS["remat"] if pod else "none"
    c.model.scan_layers = pod  # stack layers and nnx.scan them: compile one layer, not all (2B/7B/72B)
    # attention kernel: auto (splash on TPU, cuDNN on GPU with bf16, XLA on CPU) | xla | splash | cudnn
    c.model.attention = "auto"

    # ---- LoRA (method=lora) -----------------------------------------------------------------
    c.lora = ml_collections.ConfigDict()
    c.lora.rank = 16  # adapter rank r
    c.lora.alpha = 32.0  # the update is scaled by alpha / r
    c.lora.dropout = 0.0  # dropout on the adapter's input (PEFT's lora_dropout)
    c.lora.targets = LLM_PROJECTIONS  # regex (re.search) over linear-layer module paths

    # ---- which parameters train ---------------------------------------------------------------
    c.params = ml_collections.ConfigDict()
    # Frozen in both methods (regexes over parameter paths, re.search); frozen wins over trained.
    tower, joiner = VISION_PARTS[model_type]
    c.params.frozen = (tower,)
    # method=lora: base parameters trained fully next to the adapters (the merger / projector).
    c.params.extra_trainable = (joiner,)

    # ---- data -------------------------------------------------------------------------------
    c.data = ml_collections.ConfigDict()
    c.data.source = arg.data  # synthetic | videos (see the module docstring)
    c.data.synthetic_examples = 4096  # synthetic: records per epoch
    c.data.sft_weight = 0.0  # share of SFT question-answer samples mixed in (joint SFT+SF²T); 1 = SFT only
    c.data.sft_source = ""  # data=videos: the SFT question-answer records (sf2t_jax.datasets.sft)

    # The input pipeline's section (sf2t_jax.input.InputConfig.from_dict reads it as is).
    c.input = ml_collections.ConfigDict()
    c.input.source = ""  # data=videos: a folder of videos, a manifest, one file (local or gs://), or tfds:NAME
    c.input.split = "train"  # tfds split
    c.input.data_dir = ""  # tfds data_dir ("" = tfds' default)
    c.input.tokenizer = ""  # tokenizer.json, a HF checkpoint dir holding one, or tiny:V
    c.input.batch_size = size["batch_size"]  # GLOBAL batch (all processes); divides over data x fsdp
    # tokens per row L: the model's size, doubled until `frames` frames fit
    c.input.max_length = _max_length(size["max_length"], size["resolution"], arg.frames, arg.present,
                                     make_shape().slice_layout)
    c.input.resolution = size["resolution"]  # (height, width) bucket, multiples of 28
    c.input.frame_budget = arg.frames  # most frames one sample shows
    c.input.slices = 0  # P, temporal slices per row; 0 = the least that fits the largest sample
    c.input.present = arg.present  # video | images (or "": each task's own presentation)
    c.input.source_frames = 32  # frames decoded per clip
    # What a sample is: fragments (SF²T, unlabelled videos) | captions | scene_qa (labelled
    # tfds:video_sft records: the base model's captions and the SFT baseline; sf2t_jax/input/scene.py).
    c.input.mode = "fragments"
    c.input.scene_frames = 6  # scene modes: frames shown (keep equal to the scorer's video.scene_frames)
    c.input.instruction = ""  # scene_qa: text after the options (keep equal to the scorer's prompt.instruction)
    c.input.answer_style = "text"  # scene_qa: answer as the option's text | letter | letter_text
    # captions: share of samples asking a video's non-temporal fact question (colour, shape, how
    # many objects; multiple choice, from the world's tracks/) instead of its caption
    c.input.fact_share = 0.0
    c.input.seed = 0  # data order and every sample
    c.input.shuffle = True
    c.input.num_epochs = 1  # passes over the source (the recipe: one epoch); 0 = forever
    c.input.drop_remainder = True  # training wants full batches: static shapes, one compile
    c.input.workers = 0  # grain worker processes per host
    c.input.threads = 1  # reader threads per process (0: make each batch when the step asks for it)
    c.input.prefetch = 8  # samples each worker keeps ready
    c.input.clip_cache_mb = 0  # MiB of decoded, resized clips kept between epochs per process; 0 = off
    c.input.weights = {t: (1.0 if t in tasks else 0.0) for t in TASKS}  # task mix; 0 = off
    c.input.tasks = _task_overrides(arg.frames)  # per-task config overrides (frame ranges for `frames`)

    # ---- optimisation -----------------------------------------------------------------------
    c.train = ml_collections.ConfigDict()
    # Optimizer steps; 0 = input.num_epochs over the source (estimated from its size).
    c.train.steps = size["steps"] if arg.data == "synthetic" else 0
    c.train.grad_accum = 1  # micro-steps per step; the global batch splits into this many
    c.train.lr = 1e-4  # peak learning rate
    c.train.warmup_fraction = 0.03  # linear warmup over this share of the steps
    c.train.end_lr_fraction = 0.0  # cosine decays to lr * this
    c.train.b1 = 0.9  # AdamW
    c.train.b2 = 0.999
    c.train.eps = 1e-8
    c.train.weight_decay = 0.0  # decoupled, on matrices only
    c.train.clip_norm = 1.0  # global gradient-norm clip; 0 = off
    # The LM head runs at each row's first K answer positions only (0 = at every position): the
    # same loss while no row has more than K targets (a row with more is an error naming it).
    c.train.loss_positions = 0
    # Positions per block of the LM head and loss, each block's float32 logits recomputed in the
    # backward pass (never (B, L, V) at once); 0 = the whole head at once (fastest when it fits).
    c.train.loss_chunk = size["loss_chunk"]
    # Persistent compilation cache, so a restart loads the compiled step: 'workdir' (the
    # environment's JAX_COMPILATION_CACHE_DIR if set, else WORKDIR/compilation_cache), 'off', or a
    # directory (local or gs://).
    c.train.compilation_cache = "workdir"
    # The run stops when a task loses more than this share of its samples to one skip reason
    # (too long for input.max_length, a clip too static for disorder, ...): a task that silently
    # loses most of its samples leaves a biased training mix. Each run's rates per task and
    # reason go to WORKDIR/input_skips.json. 1 = never stop.
    c.train.max_skip_share = 0.05

    # ---- held-out accuracy per task vs its answer prior (sf2t_jax/train/heldout.py) -----------
    # The training sampler on another split of the same data (data=videos, a tfds input.source
    # such as tfds:sf2t_corpus: its 'validation' videos are disjoint from 'train''s); each sample
    # is right when greedy decoding would write exactly its answer (one teacher-forced forward).
    # Lines in the log; records in WORKDIR/metrics/heldout.jsonl, the last in WORKDIR/heldout.json.
    c.heldout = ml_collections.ConfigDict()
    c.heldout.split = ""  # the held-out split, e.g. "validation"; "" = off
    c.heldout.every = 0  # steps between evaluations; the last step is always evaluated (0 = only it)
    c.heldout.samples_per_task = 48  # fixed held-out samples per task (stream order)
    # training samples per task whose most frequent answer is the task's prior (best constant answer)
    c.heldout.prior_samples_per_task = 100
    c.heldout.resamples = 1000  # bootstrap resamples of videos for each task's interval
    c.heldout.ci = 0.95  # interval level; "above prior" = the interval's lower end above the prior

    # ---- devices ----------------------------------------------------------------------------
    c.mesh = ml_collections.ConfigDict()
    c.mesh.ici = (1, -1, 1)  # (data, fsdp, tensor) within a slice; one may be -1 (the rest)
    c.mesh.dcn = (1, 1, 1)  # (data, fsdp, tensor) across slices / processes; product = number of slices
    c.mesh.rules = "default"  # logical-axis rules: a key of sf2t_jax.parallel.rules.RULES
    # Constrain activations by their logical axes at every layer boundary (the rules map them);
    # False leaves every activation layout to GSPMD, for comparison (memory stops scaling).
    c.mesh.constrain_activations = True
    c.mesh.devices = 0  # devices the mesh spans: 0 = all; N = the first N (single process only)

    # ---- checkpoints, logs, export -----------------------------------------------------------
    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 500 if arg.model != "qwen2vl_tiny" else 50  # steps between checkpoints (and the last)
    c.checkpoint.keep = 3  # most recent checkpoints kept
    c.checkpoint.async_save = True  # write in the background while training goes on
    # Orbax's OCDBT layout: a few large files per checkpoint instead of a directory per array.
    # False for storage without conditional writes (e.g. the gcp-storage-emulator).
    c.checkpoint.ocdbt = True
    # Save frozen parameters in every checkpoint. False: resume re-reads them from init_from
    # (or re-initialises them from `seed`), saving their size per checkpoint.
    c.checkpoint.save_frozen = True
    # Resuming a workdir whose checkpoints are all unreadable (damaged files) refuses to start;
    # True sets them aside in checkpoints/damaged/ and trains from scratch instead.
    c.checkpoint.allow_fresh_start = False

    c.log = ml_collections.ConfigDict()
    c.log.every = 10  # steps between fetching metrics and printing a progress line
    c.log.tensorboard = True  # TensorBoard event files in WORKDIR/tensorboard
    c.log.flush_seconds = 120.0  # remote workdirs: rewrite metrics files at most this often

    c.export = ml_collections.ConfigDict()
    c.export.final = True  # write WORKDIR/export (LoRA merged; our native format) at the end
    c.export.dtype = ""  # parameter dtype of the export; "" = model.param_dtype

    # ---- fault injection (tests) ----------------------------------------------------------------
    c.debug = ml_collections.ConfigDict()
    # At the start of this step (once checkpoints in flight are committed) the process sends
    # itself `debug.signal`: preemption (SIGTERM) and crash (SIGKILL) tests. -1 = never.
    c.debug.signal_at_step = -1
    c.debug.signal = "SIGTERM"
    # Record a bit-exact fingerprint of every global batch row in the metrics ("batch_digest"):
    # runs on other process counts or meshes must show the same digests (train/digest.py).
    c.debug.batch_digest = False
    # Process `input_ends_process`'s input runs out before step `input_ends_at_step` + 1 (the
    # multi-host end-of-data test); -1 = never.
    c.debug.input_ends_at_step = -1
    c.debug.input_ends_process = 0
    return c


def fixed_model_config(model: str, arg: str | None, path: str) -> ml_collections.ConfigDict:
    """`sf2t_config` with `model` fixed, for one-model experiment files (configs/*_lora.py);
    `arg` takes the other arguments, and naming model there is an error."""
    if any(item.partition("=")[0] == "model" for item in filter(None, (arg or "").split(","))):
        raise ConfigValueError(f"{path} fixes model={model}; for another model, pass model=... to the general SF²T "
                               "experiment file instead")
    return sf2t_config(",".join(filter(None, [f"model={model}", arg])))
