"""Evaluation settings: the ml_collections defaults an experiment file embeds, and their typed,
checked form.

`eval_config()` is the `ConfigDict` that `configs/eval_finevidbench.py` returns (and that a
training config can hold as `config.eval`, for evaluation every N steps). `EvalSettings.of`
checks it once, at start-up, so a typo in a method name fails before a video is decoded.
"""
from __future__ import annotations

import dataclasses

import ml_collections

from sf2t_jax.finevidbench.prompt import ANSWER_STYLES
from sf2t_jax.finevidbench.schema import TASKS
from sf2t_jax.sample import PRESENT_MODES

METHODS = ("loglik", "generate")
# How an option is written, as the scored continuation and in earlier turns: the benchmark's
# answer styles (the training side's input.answer_style takes the same names).
LOGLIK_TARGETS = ANSWER_STYLES
HISTORY_ANSWERS = ANSWER_STYLES
HISTORIES = ("own", "gold", "none")
SHORT_CLIP = ("error", "skip")
# What a run shows of each item (`visuals.apply_view`): the frames themselves, or a control.
CONTROL_VIEWS = ("static", "blind")  # the first shown frame held still; blank frames (no video)
VIEWS = ("real", *CONTROL_VIEWS)
DEFAULT_INSTRUCTION = "Answer with the option's letter from the given choices directly."


def eval_config() -> ml_collections.ConfigDict:
    """Defaults, each documented where it is defined."""
    c = ml_collections.ConfigDict()
    c.benchmark = ""  # finevidbench_{split}.jsonl (launch.py prepare / finevidbench.write_benchmark)
    c.videos = ""  # SSv2-format root holding videos/{video_id}.webm|mp4
    c.tokenizer = ""  # tokenizer.json (file or directory); "" = the checkpoint directory's
    c.dtype = "float32"  # parameter and compute dtype: float32 | bfloat16
    c.methods = "loglik,generate"  # comma-separated subset of METHODS
    c.tasks = ""  # comma-separated subset of finevidbench TASKS; "" = all
    c.max_videos = 0  # evaluate the first N videos of the file (whole conversations); 0 = all
    c.batch_size = 8  # questions per jitted call; must divide over the mesh's batch axes
    # Packed rows per batch: questions about the same frames share a row and compute their prefix
    # once; more rows, less attention across unrelated prompts. 0 = one per 4 questions, rounded
    # up to a multiple of the mesh's batch shards (rows are split over them).
    c.rows = 0
    c.share_prefix = True  # compute a shared prefix (video, earlier turns) once per row; False: per question
    # Controls `launch.py eval` and the demo score after the real run, on the same items with the
    # same prompts and methods (eval/controls.py): "static" shows each item's first frame held for
    # as many frames, "blind" blank frames. Real minus static says whether a model uses motion;
    # blind is what answer priors alone reach. Comma-separated subset of CONTROL_VIEWS; "" = none.
    # Evaluation during training never runs them.
    c.controls = "static,blind"

    c.video = ml_collections.ConfigDict()
    # Frames shown for scene items at every speed. x4 spans 4*(n-1)+1 source frames: 6 fits the
    # synthetic world's 24-frame clips; real SSv2 clips (24-70 frames) mostly fit 8.
    c.video.scene_frames = 6
    c.video.size = (112, 112)  # (height, width) every frame is resized to: one static grid
    c.video.present = "video"  # fragment frames as one video, or one image per frame ("images")
    c.video.on_short_clip = "error"  # a clip too short for x4 at scene_frames: error | skip (counted)

    c.prompt = ml_collections.ConfigDict()
    c.prompt.system = ""  # system prompt; "" = Qwen2-VL's default ("You are a helpful assistant.")
    c.prompt.instruction = DEFAULT_INSTRUCTION  # appended after the options (lmms-eval's wording)
    # Earlier turns of a fragment conversation show the model's "own" answers (turn by turn:
    # no gold answer leaks into a later turn) or the "gold" ones (each turn judged on its own);
    # "none" asks every turn alone, with the frames (a diagnostic: not the step-by-step inquiry).
    c.prompt.history = "own"
    # how a chosen (own, loglik) or gold answer is written: "B", "B. option text" or "option text"
    c.prompt.history_answer = "letter"

    c.loglik = ml_collections.ConfigDict()
    # The continuation scored per option. "text" (cloze: the option text) is the default
    # because it is meaningful for a base captioning model that has never answered a letter;
    # "letter" scores "B"; "letter_text" scores "B. option text".
    c.loglik.target = "text"
    c.loglik.score_end = True  # include the closing <|im_end|>: the tokens training targets

    c.generate = ml_collections.ConfigDict()
    c.generate.max_new_tokens = 16  # multiple-choice answers (the spec's budget)
    # Open answers: the order of 8 frames, "3, 1, 4, 2, 8, 6, 5, 7", is 22 Qwen2 tokens. A batch
    # decodes to the larger budget; multiple-choice answers are cut at max_new_tokens, which is
    # exact (greedy tokens never depend on later ones).
    c.generate.max_new_tokens_open = 32

    c.buckets = ml_collections.ConfigDict()
    c.buckets.min_length = 128  # prompt lengths pad to powers of two from here: few compiles
    c.buckets.min_option_length = 8  # scored option tokens per batch round up to a multiple of this

    c.metrics = ml_collections.ConfigDict()
    c.metrics.bootstrap = 1000  # resamples for the confidence intervals (0: none)
    c.metrics.ci = 0.95
    c.metrics.seed = 0

    c.mesh = ml_collections.ConfigDict()
    c.mesh.ici = (1, -1, 1)  # (data, fsdp, tensor) sizes, one may be -1 (the rest), as in configs/sf2t.py
    c.mesh.rules = "default"  # a key of sf2t_jax.parallel.rules.RULES; batch rows split over its 'batch' axes
    c.mesh.devices = 0  # devices the mesh spans: 0 = all; N = the first N (single process only)

    # MiB of decoded clips and of patchified frames (half each) the scorer keeps beyond what its
    # batch window needs: under own history the inquiry asks its turns in rounds over every video,
    # and a video that stays decoded is decoded once per evaluation instead of once per round.
    c.cache_mb = 1024
    c.progress_every_s = 10.0  # seconds between progress lines (0: none)
    return c


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """The checked, typed form of `eval_config()` that the evaluator reads."""

    methods: tuple[str, ...] = METHODS
    tasks: tuple[str, ...] = ()
    max_videos: int = 0
    batch_size: int = 8
    rows: int = 0
    share_prefix: bool = True
    controls: tuple[str, ...] = CONTROL_VIEWS
    scene_frames: int = 6
    size: tuple[int, int] = (112, 112)
    present: str = "video"
    on_short_clip: str = "error"
    system: str = ""
    instruction: str = DEFAULT_INSTRUCTION
    history: str = "own"
    history_answer: str = "letter"
    loglik_target: str = "text"
    score_end: bool = True
    max_new_tokens: int = 16
    max_new_tokens_open: int = 32
    min_length: int = 128
    min_option_length: int = 8
    bootstrap: int = 1000
    ci: float = 0.95
    seed: int = 0
    progress_every_s: float = 10.0
    cache_mb: int = 1024

    def __post_init__(self):
        def need(ok: bool, field: str, message: str):
            if not ok:
                raise ValueError(f"eval config {field}={getattr(self, field)!r}: {message}")

        need(bool(self.methods) and all(m in METHODS for m in self.methods), "methods",
             f"expected a comma-separated subset of {METHODS}")
        need(all(t in TASKS for t in self.tasks), "tasks", f"expected a subset of {TASKS}")
        need(all(v in CONTROL_VIEWS for v in self.controls) and len(set(self.controls)) == len(self.controls),
             "controls", f"expected a comma-separated subset of {CONTROL_VIEWS}, each once ('' = none)")
        need(self.batch_size >= 1, "batch_size", "expected >= 1")
        need(self.rows >= 0, "rows", "expected >= 0 (0: automatic)")
        need(self.scene_frames >= 1, "scene_frames", "expected >= 1")
        need(len(self.size) == 2 and all(s > 0 and s % 28 == 0 for s in self.size), "size",
             "expected (height, width), positive multiples of 28")
        need(self.present in PRESENT_MODES, "present", f"expected one of {PRESENT_MODES}")
        need(self.on_short_clip in SHORT_CLIP, "on_short_clip", f"expected one of {SHORT_CLIP}")
        need(self.history in HISTORIES, "history", f"expected one of {HISTORIES}")
        need(self.history_answer in HISTORY_ANSWERS, "history_answer", f"expected one of {HISTORY_ANSWERS}")
        need(self.loglik_target in LOGLIK_TARGETS, "loglik_target", f"expected one of {LOGLIK_TARGETS}")
        need(self.max_new_tokens >= 1, "max_new_tokens", "expected >= 1")
        need(self.max_new_tokens_open >= 1, "max_new_tokens_open", "expected >= 1")
        need(self.min_length >= 1 and self.min_option_length >= 1, "min_length", "expected >= 1")
        need(0.0 < self.ci < 1.0, "ci", "expected a level in (0, 1)")
        need(self.bootstrap >= 0, "bootstrap", "expected >= 0")
        need(self.cache_mb >= 0, "cache_mb", "expected >= 0 (0: keep only the batch window's clips)")

    def rows_for(self, shards: int = 1) -> int:
        """Packed rows per batch on a mesh with `shards` batch shards (`rows`, or automatic)."""
        rows = self.rows or -(-self.batch_size // 4)
        return -(-rows // shards) * shards

    @classmethod
    def of(cls, config: ml_collections.ConfigDict | EvalSettings) -> EvalSettings:
        """From an `eval_config()`-shaped ConfigDict (or pass settings through)."""
        if isinstance(config, EvalSettings):
            return config
        c = config
        return cls(
            methods=_csv(c.methods), tasks=_csv(c.tasks), max_videos=int(c.max_videos),
            batch_size=int(c.batch_size), rows=int(c.rows), share_prefix=bool(c.share_prefix),
            controls=_csv(c.controls),
            scene_frames=int(c.video.scene_frames),
            size=tuple(int(s) for s in c.video.size), present=c.video.present,
            on_short_clip=c.video.on_short_clip, system=c.prompt.system,
            instruction=c.prompt.instruction, history=c.prompt.history, history_answer=c.prompt.history_answer,
            loglik_target=c.loglik.target, score_end=bool(c.loglik.score_end),
            max_new_tokens=int(c.generate.max_new_tokens),
            max_new_tokens_open=int(c.generate.max_new_tokens_open), min_length=int(c.buckets.min_length),
            min_option_length=int(c.buckets.min_option_length), bootstrap=int(c.metrics.bootstrap),
            ci=float(c.metrics.ci), seed=int(c.metrics.seed), progress_every_s=float(c.progress_every_s),
            cache_mb=int(c.cache_mb))


@dataclasses.dataclass(frozen=True)
class EvalJob:
    """One evaluation's inputs beyond the scorer's `settings`: the files, the dtype and the mesh;
    `resolved` is the config it came from, as plain values (written beside the results)."""

    settings: EvalSettings
    benchmark: str  # finevidbench_{split}.jsonl
    videos: str  # SSv2-format root holding videos/
    tokenizer: str  # tokenizer.json; "" = the checkpoint directory's
    dtype: str
    ici: tuple[int, ...]  # (data, fsdp, tensor) mesh sizes, one may be -1
    rules: str  # a key of sf2t_jax.parallel.rules.RULES
    devices: int  # 0 = all
    resolved: dict

    @classmethod
    def of(cls, config: ml_collections.ConfigDict) -> EvalJob:
        """From an `eval_config()`-shaped ConfigDict."""
        return cls(settings=EvalSettings.of(config), benchmark=config.benchmark, videos=config.videos,
                   tokenizer=config.tokenizer, dtype=config.dtype, ici=tuple(int(v) for v in config.mesh.ici),
                   rules=config.mesh.rules, devices=int(config.mesh.devices), resolved=config.to_dict())
