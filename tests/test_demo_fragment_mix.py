"""The demo's `fragments` section (task weights and per-task fields) reaches the sampler of every
fragments stage and nothing else, and a bad mix is refused at start, naming the stage or key."""
import pytest

from sf2t_jax.configuration import ConfigKeyError, ConfigValueError, make_config
from sf2t_jax.defaults.demo import demo_config
from sf2t_jax.demo import DemoSettings
from sf2t_jax.fragments.disorder import DisorderConfig
from sf2t_jax.input.config import InputConfig

DATA = "data.dir=/nonexistent/demo-data"  # the settings read no file


def _sampler(settings: DemoSettings, stage: str) -> InputConfig:
    """The input config `stage` trains with, as the trainer builds it."""
    init = settings.stages[stage].init
    return InputConfig.from_dict(settings.stage_config(stage, init_from="export" if init else "").input)


def _with_task_field(arg, task: str, field: str, value, overrides=()):
    """The demo config with `fragments.tasks.<task>.<field>` set, as an edited configs/demo.py
    sets a field the defaults leave to the task (a frame range depends on the stage's budget)."""
    config = make_config(demo_config, arg, [DATA, *overrides])
    with config.unlocked():
        config.fragments.tasks[task][field] = value
    return config


def test_the_mix_reaches_every_fragments_stage_and_no_scene_stage():
    overrides = ["fragments.weights.localize=2.5", "fragments.tasks.disorder.min_frame_diff=4.5"]
    settings = DemoSettings.of(_with_task_field("joint=True", "rearrange", "n_frames", (3, 5), overrides))
    fragment_stages = [s for s, v in settings.stages.items() if v.mode == "fragments"]
    assert sorted(fragment_stages) == ["sf2t", "sf2t_joint", "sft_sf2t"]
    for stage in fragment_stages:
        fragments = _sampler(settings, stage).fragments
        assert dict(fragments.weights)["localize"] == 2.5
        assert fragments.disorder.min_frame_diff == 4.5
        assert fragments.rearrange.n_frames == (3, 5)
    for stage in ("base", "sft"):  # scene stages keep the SF²T experiment's defaults
        fragments = _sampler(settings, stage).fragments
        assert dict(fragments.weights)["localize"] == 1.0
        assert fragments.disorder.min_frame_diff == DisorderConfig.min_frame_diff


def test_disorder_asked_in_the_benchmark_polarity_alone_reaches_the_sampler_from_the_command_line():
    reorder = ("Are these frames shuffled?",)
    settings = DemoSettings.of(make_config(demo_config, None, [
        DATA, "fragments.tasks.disorder.questions=()", f"fragments.tasks.disorder.reorder_questions={reorder!r}"]))
    for stage in ("sf2t", "sft_sf2t"):
        disorder = _sampler(settings, stage).fragments.disorder
        assert (disorder.questions, disorder.reorder_questions) == ((), reorder)
    defaults = _sampler(DemoSettings.of(make_config(demo_config, None, [DATA])), "sf2t").fragments.disorder
    assert (defaults.questions, defaults.reorder_questions) == (DisorderConfig().questions, ())
    with pytest.raises(ConfigValueError, match=r"stages\.sf2t: DisorderConfig\.questions: expected a non-empty"):
        DemoSettings.of(make_config(demo_config, None, [DATA, "fragments.tasks.disorder.questions=()"]))


def test_a_frame_range_past_the_budget_is_refused_at_start_naming_the_stage():
    with pytest.raises(ConfigValueError, match=r"stages\.sf2t: .*disorder.*frame_budget=8"):
        DemoSettings.of(_with_task_field(None, "disorder", "n_frames", (4, 16)))


def test_unknown_fields_tasks_and_negative_weights_are_refused_naming_them():
    with pytest.raises(ConfigKeyError, match="fragments.tasks.disorder.min_gap"):
        make_config(demo_config, None, [DATA, "fragments.tasks.disorder.min_gap=3"])
    with pytest.raises(ConfigValueError, match="fragments.weights.count"):
        DemoSettings.of(make_config(demo_config, None, [DATA, "fragments.weights.count=-1"]))
    config = make_config(demo_config, None, [DATA])
    with config.unlocked():
        config.fragments.weights.juggling = 1.0  # as an edited configs/demo.py would
    with pytest.raises(ConfigValueError, match="juggling"):
        DemoSettings.of(config)
