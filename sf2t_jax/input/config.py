"""The input pipeline's config: one frozen dataclass, and its reading from an experiment file.

Everything that fixes a batch's static shapes lives here (batch size, sequence length,
resolution bucket, frame budget), next to what decides its content (source, seed, task mix)
and how it is computed (workers, prefetch). `InputConfig.from_dict` reads the `input` section of
an `ml_collections` experiment config; unknown keys are errors naming the key.

Geometry, derived once (`InputConfig.geometry`): a resolution bucket (h, w) is a patch grid
(gh, gw) = (h/14, w/14), so every temporal slice holds S = gh*gw patches and S/4 merged LLM
tokens. A sample of N frames takes ceil(N/2) slices in 'video' presentation (Qwen2-VL pairs
frames; an odd N repeats the last) and N slices in 'images' presentation (one image of grid_t=1
per frame). P, the slices every batch row reserves, is the largest of these over the enabled
tasks, so no sample is ever truncated.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sf2t_jax.errors import InputError
from sf2t_jax.finevidbench.prompt import ANSWER_STYLES
from sf2t_jax.fragments import TASK_NAMES, FragmentsConfig
from sf2t_jax.input.scene import QA_TASKS, SCENE_FIELDS, SCENE_MODES, SCENE_TASK_NAMES, SceneConfig
from sf2t_jax.models.rows import QWEN2_VL_ROWS, RowFormat
from sf2t_jax.sample import PRESENT_MODES
from sf2t_jax.video.resize import check_bucket

INPUT_MODES = ("fragments",) + SCENE_MODES
PATCH = 14  # ViT patch side
MERGE = 2  # spatial merge: 2x2 patches -> one LLM token


class InputConfigError(InputError):
    """A pipeline config that cannot work; the message names the field and what was expected."""


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Static shapes the config implies per batch row: the batch contract's P, S and T
    (sf2t_jax/batch.py), and what bounds them.

    slices: P, temporal slices reserved per sample.
    grid_hw: (gh, gw), the patch grid of the resolution bucket.
    patches_per_slice: S = gh * gw.
    tokens_per_slice: T, LLM tokens per slice (Qwen-VL: S / 4, merged; LLaVA: the pooled frame).
    max_frames: the most frames any enabled task shows.
    max_vision_tokens: LLM tokens the largest sample's vision input takes, including its
      <|vision_start|>/<|vision_end|> markers.
    """

    slices: int
    grid_hw: tuple[int, int]
    patches_per_slice: int
    tokens_per_slice: int
    max_frames: int
    max_vision_tokens: int


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """How raw videos become static-shape fragment batches. Defaults in parentheses."""

    # ---- what is read -----------------------------------------------------------------
    source: str = ""
    """A folder of video files (searched recursively by extension), a manifest (.txt/.lst:
    one path per line, relative to the manifest, '#' comments), one video file — each local
    or gs:// (every worker of a pod reads the same bucket) — or 'tfds:NAME' (a tfds dataset
    with fields `id` and `video` (encoded bytes), read with `tfds.data_source`). Required."""
    split: str = "train"
    """tfds split ('train'); ignored for files."""
    data_dir: str = ""
    """tfds data_dir ('' = tfds' default)."""
    tokenizer: str = ""
    """A tokenizer.json (or a Hugging Face checkpoint folder holding one), or 'tiny:V' for the
    built-in test tokenizer of V ids (`sf2t_jax.text.build_tiny_tokenizer`). Required."""

    # ---- static shapes ----------------------------------------------------------------
    batch_size: int = 8
    """Global batch size (8), split evenly over processes."""
    max_length: int = 1024
    """Tokens per row (1024). Longer samples are dropped and counted ('too_long'); vision
    tokens are never truncated. Must hold the largest sample's vision tokens."""
    resolution: tuple[int, int] = (224, 224)
    """The resolution bucket (height, width), multiples of 28 ((224, 224)): every frame is
    resized to it (bicubic, antialiased, aspect ratio not kept), so S = (h/14)*(w/14)."""
    frame_budget: int = 16
    """The most frames one sample may show (16); every enabled task's largest fragment must
    fit, else an error names the task."""
    slices: int = 0
    """P, temporal slices per row (0 = the least that holds the largest sample)."""

    # ---- content ----------------------------------------------------------------------
    mode: str = "fragments"
    """What a sample is: 'fragments' (the five SF²T tasks on unlabelled videos), 'captions'
    or 'scene_qa' (labelled `video_sft` records: captions to pretrain the base model, scene QA
    for the SFT baseline; see input/scene.py). Scene modes need a `tfds:video_sft` source."""
    scene_frames: int = 6
    """Scene modes: frames shown, the clip replayed at the question's speed (6; keep equal to
    the scorer's video.scene_frames)."""
    instruction: str = ""
    """Scene QA: text after the lettered options (''; keep equal to the scorer's
    prompt.instruction)."""
    answer_style: str = "text"
    """Scene QA: the answer written as the option's 'text' (default; the scorer's default
    log-likelihood target), 'letter' or 'letter_text'."""
    fact_share: float = 0.0
    """Captions: the share of samples asking one of the video's non-temporal fact questions
    (colour, shape, how many objects; `datasets/facts.py`) in the benchmark's multiple-choice
    format instead of its caption (0.0)."""
    fragments: FragmentsConfig = FragmentsConfig()
    """Task weights and per-task configs (uniform weights, spec defaults)."""
    sft_weight: float = 0.0
    """Fragments mode: the share of the stream's samples that are scene QA samples (the
    'scene_qa' sampler) from `sft_source`, mixed in for joint SFT+SF²T (0.0; 1 = scene QA only).
    The trainer sets it from `data.sft_weight`."""
    sft_source: str = ""
    """The labelled `video_sft` records of the mix ('tfds:NAME', read from `split` under
    `data_dir`); required when `sft_weight` > 0. The trainer sets it from `data.sft_source`."""
    present: str = ""
    """'' (each task's own `present`, 'video' by default), 'video' or 'images' for all tasks."""
    source_frames: int = 32
    """Frames decoded per clip, evenly spaced as qwen-vl-utils samples (32); 0 = every frame.
    Tasks draw their fragments from these, so a long clip never costs more than this."""
    seed: int = 0
    """Seeds the shuffle and every sample: sample g is a function of (seed, g) and its clip."""
    shuffle: bool = True
    """Shuffle records (reshuffled every epoch)."""
    num_epochs: int = 1
    """Passes over the source (1); 0 repeats forever."""
    drop_remainder: bool = False
    """Drop a final partial batch instead of padding it with valid=0 rows."""

    # ---- compute ----------------------------------------------------------------------
    workers: int = 0
    """grain worker processes per host (0 = decode in the main process)."""
    threads: int = 0
    """Reader threads per process (grain ReadOptions.num_threads); 0 reads synchronously."""
    prefetch: int = 8
    """Samples each worker (or the reader threads) keeps ready."""
    clip_cache_mb: int = 0
    """MiB of decoded, resized clips each process keeps between epochs (`clip_cache.ClipCache`,
    least recently used out first); 0 = decode every time. Worth it when a run repeats a source
    that fits: a clip is T x H x W x 3 bytes at the bucket resolution (24 x 56 x 56 x 3 = 226 KB)."""

    def __post_init__(self):
        def fail(field, expected, value):
            raise InputConfigError(f"input.{field}: expected {expected}, got {value!r}")

        for field in ("batch_size", "max_length", "frame_budget", "prefetch", "scene_frames"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(field, "an integer >= 1", value)
        for field in ("slices", "source_frames", "seed", "num_epochs", "workers", "threads", "clip_cache_mb"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                fail(field, "an integer >= 0", value)
        try:
            object.__setattr__(self, "resolution", check_bucket(tuple(self.resolution)))
        except (ValueError, TypeError) as e:
            raise InputConfigError(f"input.resolution: {e}") from None
        if self.present not in ("",) + PRESENT_MODES:
            fail("present", f"'' or one of {PRESENT_MODES}", self.present)
        if not isinstance(self.fragments, FragmentsConfig):
            fail("fragments", "a FragmentsConfig", self.fragments)
        if self.mode not in INPUT_MODES:
            fail("mode", f"one of {INPUT_MODES}", self.mode)
        if self.answer_style not in ANSWER_STYLES:
            fail("answer_style", f"one of {ANSWER_STYLES}", self.answer_style)
        share = self.fact_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
            fail("fact_share", "a number >= 0 and <= 1", share)
        if share and self.mode != "captions":
            fail("fact_share", f"0 unless input.mode='captions' (fact questions join captions; mode {self.mode!r})",
                 share)
        self._check_sft_mix()
        self.geometry  # validates the frame budget, slices and max_length now, not mid-run

    def _check_sft_mix(self) -> None:
        """`sft_weight` / `sft_source` (set from the trainer's data.sft_weight / data.sft_source)."""
        w = self.sft_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
            raise InputConfigError(f"data.sft_weight={w!r}: expected a number >= 0 and <= 1")
        if w == 0:
            return
        if self.mode != "fragments":
            raise InputConfigError(f"data.sft_weight={w!r}: mixing scene QA samples in needs input.mode='fragments', "
                                   f"got {self.mode!r} (scene_qa alone is input.mode='scene_qa')")
        if not self.sft_source.startswith("tfds:"):
            raise InputConfigError(f"data.sft_source={self.sft_source!r}: data.sft_weight={w!r} needs labelled "
                                   "video_sft records, 'tfds:NAME' (e.g. tfds:video_sft)")

    # ---- derived ----------------------------------------------------------------------
    @property
    def mixes_sft(self) -> bool:
        """Fragments mode with scene QA samples mixed in (`sft_weight` > 0)."""
        return self.mode == "fragments" and self.sft_weight > 0

    def sft_scene_config(self) -> SceneConfig | None:
        """The scene QA sampler of the joint stream's SFT samples; None without a mix."""
        if not self.mixes_sft:
            return None
        return SceneConfig(mode="scene_qa", scene_frames=self.scene_frames, instruction=self.instruction,
                           answer_style=self.answer_style)

    def task_config(self) -> FragmentsConfig:
        """The FragmentsConfig the pipeline runs: `fragments` with `present` applied."""
        if not self.present:
            return self.fragments
        return dataclasses.replace(self.fragments, **{
            name: dataclasses.replace(self.fragments.task_config(name), present=self.present)
            for name in TASK_NAMES})

    def scene_config(self) -> SceneConfig | None:
        """The scene sampler's config in scene modes, None for fragments."""
        if self.mode == "fragments":
            return None
        return SceneConfig(mode=self.mode, scene_frames=self.scene_frames, instruction=self.instruction,
                           answer_style=self.answer_style, fact_share=self.fact_share)

    @property
    def task_names(self) -> tuple[str, ...]:
        """What `task_id` indexes: the five fragment tasks (then the scene QA tasks when they are
        mixed in), or the scene tasks."""
        if self.mode != "fragments":
            return SCENE_TASK_NAMES
        return TASK_NAMES + (QA_TASKS if self.mixes_sft else ())

    def enabled_tasks(self) -> tuple[str, ...]:
        if self.mode != "fragments":
            return self.scene_config().tasks
        fragments = () if self.sft_weight >= 1 else tuple(name for name, weight in self.fragments.weights if weight > 0)
        return fragments + (QA_TASKS if self.mixes_sft else ())

    @property
    def geometry(self) -> Geometry:
        """The geometry of Qwen2-VL's rows (`geometry_of` for another model family's)."""
        return self.geometry_of(QWEN2_VL_ROWS)

    def geometry_of(self, rows: RowFormat) -> Geometry:
        """The static shapes of `rows` (a model family's `models.rows.RowFormat`) under this
        config; InputConfigError when the family cannot take the resolution or a task's frames."""
        layout = rows.layout
        fragments = self.task_config()
        try:
            layout.check_resolution(self.resolution)
        except ValueError as e:
            raise InputConfigError(str(e)) from None
        gh, gw = self.resolution[0] // layout.patch_size, self.resolution[1] // layout.patch_size
        s = gh * gw
        tokens = layout.tokens_per_slice((gh, gw))
        around = rows.tokens_around_item
        need, max_frames, vision_tokens = 0, 0, 0
        if self.mode != "fragments" or self.mixes_sft:  # one video of scene_frames frames
            n = self.scene_frames
            if n > self.frame_budget:
                raise InputConfigError(f"input.scene_frames={n} is more than input.frame_budget={self.frame_budget}")
            need, max_frames, vision_tokens = layout.slices(n), n, layout.slices(n) * tokens + around
        for name in () if self.mode != "fragments" else self.enabled_tasks():
            if name in QA_TASKS:  # the mixed-in scene QA samples: counted above
                continue
            cfg = fragments.task_config(name)
            n = task_max_frames(name, cfg)
            if n > self.frame_budget:
                raise InputConfigError(
                    f"input.fragments.{name}: shows up to {n} frames, more than input.frame_budget="
                    f"{self.frame_budget}; lower {name}.n_frames or raise the budget")
            if cfg.present == "images" and not layout.images_as_slices:
                raise InputConfigError(
                    f"input.fragments.{name}: presents its frames as images, which this model takes as anyres "
                    "tiles the input pipeline does not make; set input.present='video'")
            slices = n if cfg.present == "images" else layout.slices(n)
            items = n if cfg.present == "images" else 1  # each may carry markers (<|vision_start|>...<|vision_end|>)
            need = max(need, slices)
            max_frames = max(max_frames, n)
            vision_tokens = max(vision_tokens, slices * tokens + around * items)
        if self.slices and self.slices < need:
            raise InputConfigError(f"input.slices={self.slices}: the largest sample needs {need} slices")
        if vision_tokens >= self.max_length:
            raise InputConfigError(
                f"input.max_length={self.max_length} cannot hold the largest sample: its vision input alone "
                f"is {vision_tokens} tokens ({max_frames} frames at {self.resolution}); raise max_length, or "
                "lower the resolution or the frames per task")
        return Geometry(slices=self.slices or need, grid_hw=(gh, gw), patches_per_slice=s, tokens_per_slice=tokens,
                        max_frames=max_frames, max_vision_tokens=vision_tokens)

    # ---- reading an experiment config section -----------------------------------------
    @classmethod
    def from_dict(cls, section: Mapping[str, Any]) -> "InputConfig":
        """Builds the config from an experiment file's `input` section (a dict / ConfigDict).

        Keys: every field above except `fragments`, plus
          weights: {task: weight} (a task left out is off; default uniform),
          tasks: {task: {field: value}} overrides of a task's config (e.g.
            {'count': {'n_frames': (2, 8)}}).
        """
        section = dict(section)
        scalar = {f.name for f in dataclasses.fields(cls)} - {"fragments"}
        unknown = set(section) - scalar - {"weights", "tasks"}
        if unknown:
            raise InputConfigError(f"input: unknown key(s) {sorted(unknown)}; known: "
                                   f"{sorted(scalar | {'weights', 'tasks'})}")
        fragments = FragmentsConfig()
        overrides = dict(section.pop("tasks", None) or {})
        replaced = {}
        every = section.get("present", cls.present)
        for name, fields in overrides.items():
            if name not in TASK_NAMES:
                raise InputConfigError(f"input.tasks: unknown task {name!r}; known: {', '.join(TASK_NAMES)}")
            fields = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(fields).items()}
            if every and fields.get("present", every) != every:  # `task_config` would overwrite it unseen
                raise InputConfigError(
                    f"input.tasks.{name}.present={fields['present']!r} conflicts with input.present={every!r}, "
                    "which applies to every task; set input.present='' to present tasks one by one")
            try:
                replaced[name] = dataclasses.replace(fragments.task_config(name), **fields)
            except TypeError as e:
                raise InputConfigError(f"input.tasks.{name}: {e}") from None
        weights = section.pop("weights", None)
        try:
            fragments = FragmentsConfig(weights=dict(weights) if weights is not None else fragments.weights,
                                        **replaced)
        except ValueError as e:
            raise InputConfigError(f"input: {e}") from None
        if "resolution" in section:
            section["resolution"] = tuple(section["resolution"])
        return cls(fragments=fragments, **section)


def task_max_frames(name: str, task_config) -> int:
    """The most frames task `name` shows (consistency always shows a pair)."""
    if name == "consistency":
        return 2
    return int(task_config.n_frames[1])


def default_section() -> dict[str, Any]:
    """The `input` section with every default, for experiment files to start from."""
    section = {f.name: getattr(InputConfig, f.name) for f in dataclasses.fields(InputConfig) if f.name != "fragments"}
    section["weights"] = {name: 1.0 for name in TASK_NAMES}
    section["tasks"] = {}
    return section


def training_section(config) -> dict[str, Any]:
    """The `input` section of a configs/sf2t.py experiment as the trainer's pipeline reads it:
    for `data.source='videos'`, with the joint SFT+SF²T mix (`data.sft_weight`,
    `data.sft_source`) folded in (the synthetic source mixes its own 'sft' rows)."""
    section = dict(config["input"])
    data = config["data"]
    if data["source"] == "videos":
        section["sft_weight"] = data["sft_weight"]
        section["sft_source"] = data["sft_source"]
    return section
