"""The five SF²T self-supervised fragment tasks (spec §2), on decoded clip frames.

Every task is a pure function `(frames uint8 (T, H, W, 3), rng, config) -> Sample` that
raises `SampleSkip(reason)` when the clip cannot serve it (both defined in `sf2t_jax.sample`,
re-exported here). The input pipeline calls

    sample = make_sample(frames, seed, index, FragmentsConfig(...))

which seeds the generator from (seed, index) alone, draws a task by weight and runs it.

Modules: base (helpers, checks), motion (near-static and distinct frames), edits
(3x3 grid edits), sprites (shapes and colours), one module per task, mixing (weights and
`make_sample`).
"""
from sf2t_jax.fragments.base import NO, YES
from sf2t_jax.fragments.consistency import ConsistencyConfig, make_consistency
from sf2t_jax.fragments.count import CountConfig, make_count
from sf2t_jax.fragments.disorder import DisorderConfig, make_disorder
from sf2t_jax.fragments.edits import CELL_NAMES, EDIT_KINDS, EditConfig
from sf2t_jax.fragments.localize import LocalizeConfig, make_localize
from sf2t_jax.fragments.mixing import (
    TASK_NAMES,
    TASKS,
    FragmentsConfig,
    draw_task,
    make_sample,
    make_task,
)
from sf2t_jax.fragments.rearrange import RearrangeConfig, make_rearrange
from sf2t_jax.fragments.sprites import SPRITE_COLORS, SPRITE_SHAPES
from sf2t_jax.sample import PRESENT_MODES, SKIP_REASONS, Sample, SampleSkip, sample_rng

__all__ = [
    "CELL_NAMES", "EDIT_KINDS", "NO", "PRESENT_MODES", "SKIP_REASONS", "SPRITE_COLORS", "SPRITE_SHAPES",
    "TASK_NAMES", "TASKS", "YES",
    "ConsistencyConfig", "CountConfig", "DisorderConfig", "EditConfig", "FragmentsConfig",
    "LocalizeConfig", "RearrangeConfig", "Sample", "SampleSkip",
    "draw_task", "make_consistency", "make_count", "make_disorder", "make_localize",
    "make_rearrange", "make_sample", "make_task", "sample_rng",
]
