"""The embedded demo in miniature: the same pipeline (prepare, four stages, evaluation, table,
claims) on a tiny world with a few steps and one benchmark video; a re-run with the same seed
in a fresh folder reproduces every number."""
import json
import os

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

from sf2t_jax.configuration import ConfigValueError, load_config
from sf2t_jax.demo import CLAIMS, DemoSettings, run_demo
from sf2t_jax.demo.run import DISPLAY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo.py")
STAGES = ("base", "sft", "sf2t", "sft_sf2t")
MINI = ["world.train_clips=8", "world.validation_clips=2", "world.test_clips=2", "world.height=32",
        "world.width=32", "world.num_frames=8", "eval.scene_frames=2", "eval.max_videos=1", "eval.bootstrap=20",
        "eval.batch_size=8", "eval.methods=loglik", "devices=1", "tower.steps=3", "tower.batch=4",
        "tower.pairs_per_clip=2", "tower.heldout_pairs_per_clip=2", "heldout.samples_per_task=2",
        "heldout.prior_samples_per_task=3"]
for _s in STAGES:  # 8 rows: one per fake device; x4 at 2 frames fits the 8-frame clips; one lr, so
    # stages of the same shapes share one compiled train step (the learning rate is a constant in it)
    MINI += [f"stages.{_s}.steps=2", f"stages.{_s}.batch_size=8", f"stages.{_s}.scene_frames=2",
             f"stages.{_s}.lr=0.001"]
MINI += [f"stages.{s}.frame_budget=2" for s in ("base", "sft")]
# 8 frames of 32x32: too few frames 3 grey levels apart (the demo's order-task threshold) for
# the order tasks to keep their samples; the tasks' own threshold
MINI += [f"fragments.tasks.{t}.min_frame_diff=1.0" for t in ("disorder", "rearrange")]


def _config(data_dir, *extra):
    return load_config(DEMO, MINI + [f"data.dir={data_dir}", *extra])


def _settings(data_dir, *extra):
    return DemoSettings.of(_config(data_dir, *extra))


@pytest.fixture(scope="module", autouse=True)
def compile_once(tmp_path_factory):
    """A persistent compilation cache for this module: stages of the same shapes, and the
    same-seed re-run, reuse executables instead of compiling them again (restored after)."""
    saved = {k: getattr(jax.config, k) for k in ("jax_compilation_cache_dir",
                                                  "jax_persistent_cache_min_compile_time_secs")}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    compilation_cache.reset_cache()
    yield
    for k, v in saved.items():
        jax.config.update(k, v)
    compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("demo_data"))


@pytest.fixture(scope="module")
def first(tmp_path_factory, data_dir):
    workdir = tmp_path_factory.mktemp("demo_run")
    return run_demo(_settings(data_dir), str(workdir), progress=False)


def test_run_folder_holds_results_table_figures_configs_and_logs(first):
    root = first.workdir
    for name in ("demo.json", "demo.log", "comparison.md", "tasks.png", "speed.png", "claims.md", "claims.json",
                 "configs/eval.json", "heldout.md"):
        assert os.path.isfile(os.path.join(root, name)), name
    # the fragment stages' held-out rows, each with what the model answered most
    heldout_lines = open(os.path.join(root, "heldout.md")).read().splitlines()
    heldout_rows = [line for line in heldout_lines if line.startswith("| ")][1:]
    heldout = {stage: json.load(open(os.path.join(root, "stages", stage, "heldout.json")))
               for stage in ("sf2t", "sft_sf2t")}
    assert len(heldout_rows) == sum(len(h["tasks"]) for h in heldout.values())
    for row, r in zip(heldout_rows, [r for h in heldout.values() for r in h["tasks"].values()]):
        answer, count = next(iter(r["answers_given"].items()))  # the most frequent first
        assert sum(r["answers_given"].values()) == r["n"] or len(r["answers_given"]) == 5, r
        assert row.split(" | ")[-1].startswith(f"{answer[:16]!r} {count}"), row
        best = r["best_constant"]
        assert row.split(" | ")[-3].startswith(f"{100 * best['accuracy']:.1f} ({best['answer'][:24]!r})"), row
        # by frames shown: the samples of each frame count add up to the task's
        assert sum(v["n"] for v in r["by_frames"].values()) == r["n"], r
    # tasks whose frame count varies get a line of accuracy by frames shown
    varied = [(stage, task) for stage, h in heldout.items() for task, r in h["tasks"].items() if len(r["by_frames"]) > 1]
    frame_lines = [line for line in heldout_lines if line.startswith("- ")]
    assert varied and len(frame_lines) == len(varied)
    for line, (stage, task) in zip(frame_lines, varied):  # each count: accuracy (samples, best constant)
        r = heldout[stage]["tasks"][task]
        cells = [f"{k}: {100 * v['accuracy']:.1f} ({v['n']}, {100 * v['best_constant']:.1f})"
                 for k, v in r["by_frames"].items()]
        assert line.endswith(", ".join(cells)), (line, cells)
    # the tower stage: pretrained on per-patch labels, probed, exported; the base starts from it
    # with the ViT frozen (the merger trains)
    tower = json.load(open(os.path.join(root, "stages", "tower", "tower.json")))
    assert [h["step"] for h in tower["history"]] == [3]
    assert set(tower["probes"]) == {"colour", "shape", "position", "window"}
    assert tower["pairs"] == {"train": 16, "heldout": 4}
    assert os.path.isfile(os.path.join(root, "stages", "tower", "export", "config.json"))
    base = json.load(open(os.path.join(root, "configs", "base.json")))
    assert base["init_from"] == os.path.join(root, "stages", "tower", "export")
    assert base["params"]["frozen"] == [r"^visual\.(patch_embed|blocks)\."]
    for stage in STAGES:
        resolved = json.load(open(os.path.join(root, "configs", f"{stage}.json")))
        assert resolved["train"]["steps"] == 2
        assert os.path.isdir(os.path.join(root, "stages", stage, "export"))
        # the demo's lengths hold every sample: nothing skipped as too long, and the rates are written
        skips = json.load(open(os.path.join(root, "stages", stage, "input_skips.json")))
        assert skips["stopped"] is False and skips["limit"] == resolved["train"]["max_skip_share"]
        assert {t: r["skipped"].get("too_long", 0) for t, r in skips["tasks"].items()} == {
            t: 0 for t in skips["tasks"]}, stage
        if stage in ("sf2t", "sft_sf2t"):  # fragment stages: their own tasks vs answer priors, held out
            heldout = json.load(open(os.path.join(root, "stages", stage, "heldout.json")))
            assert heldout["step"] == 2 and sorted(heldout["tasks"]) == sorted(
                t for t, w in resolved["input"]["weights"].items() if w > 0), stage
        else:
            assert resolved["heldout"]["split"] == "" and not os.path.exists(
                os.path.join(root, "stages", stage, "heldout.json")), stage
        for name in ("results.json", "results.md", "predictions.jsonl", "tasks.png", "speed.png"):
            assert os.path.isfile(os.path.join(root, "eval", stage, name)), (stage, name)
        for view in ("static", "blind"):  # the controls, each a run folder like the real run's
            control = json.load(open(os.path.join(root, "eval", stage, "controls", view, "results.json")))
            assert control["meta"]["view"] == view
        for name in ("controls.md", "controls.json", "controls.png"):
            assert os.path.isfile(os.path.join(root, "eval", stage, name)), (stage, name)
    table = open(os.path.join(root, "comparison.md")).read()
    for stage in STAGES:
        assert DISPLAY[stage] in table
    # The "uses motion" table comes first: a row per setting, real - static and a verdict per task.
    motion = table.index("## Does a model use the video's motion?")
    assert motion < table.index("| Overall |")
    for setting in (DISPLAY[s] for s in STAGES):
        row = next(line for line in table[motion:].splitlines() if line.startswith(f"| {setting} | loglik |"))
        assert row.count(" [") >= 3 and any(v in row for v in (" yes", " no", " reversed")), row
    assert set(first.controls) == {DISPLAY[s] for s in STAGES}
    headline = json.load(open(os.path.join(root, "demo.json")))["headline"]
    for setting, controls_table in first.controls.items():
        overall = next(r for r in controls_table["methods"]["loglik"] if r["kind"] == "overall")
        assert headline[setting]["loglik"]["static"]["overall"] == overall["static"]["value"]
        assert headline[setting]["loglik"]["blind"]["overall"] == overall["blind"]["value"]
        assert headline[setting]["loglik"]["overall"] == overall["real"]["value"]
    for row in ("Action", "Effect", "Speed @", "Chain", "Frame count", "Rearrangement"):
        assert row.lower() in table.lower(), row
    assert {c["claim"] for c in first.claims} == {c[0] for c in CLAIMS}
    assert set(first.seconds) >= {"prepare", "tower", "train base", "eval sft_sf2t", "controls sft_sf2t", "total"}
    log = open(os.path.join(root, "demo.log")).read()
    assert "ETA for the whole demo" in log and "step 2/2" in log
    assert "controls sft_sf2t loglik Action: real " in log  # a line per task: real, static, blind, verdict


def test_stage_configs_chain_the_paper_settings(data_dir):
    settings = _settings(data_dir)
    assert settings.order == ("base", "sft", "sf2t", "sft_sf2t")
    sf2t = settings.stage_config("sf2t", init_from="x/base/export")
    assert (sf2t.input.mode, sf2t.input.source, sf2t.input.split) == ("fragments", "tfds:sf2t_corpus", "train")
    assert sf2t.input.data_dir == os.path.join(data_dir, "tfds")
    assert settings.stage_config("sft", init_from="x").input.mode == "scene_qa"
    with pytest.raises(ValueError, match="init"):
        settings.stage_config("base", init_from="")  # base starts from the tower's export
    base = settings.stage_config("base", init_from="x/tower/export")
    assert base.params.frozen == (r"^visual\.(patch_embed|blocks)\.",)  # freeze_tower: the ViT, not the merger
    thawed = _settings(data_dir, "stages.sft.freeze_tower=False")
    assert thawed.stage_config("sft", init_from="x").params.frozen == ()


def test_a_stage_that_starts_from_a_disabled_tower_is_refused(data_dir):
    with pytest.raises(ConfigValueError, match="tower.steps=0.*base"):
        _settings(data_dir, "tower.steps=0")
    assert _settings(data_dir, "tower.steps=0", "stages.base.init=").order == ("base", "sft", "sf2t", "sft_sf2t")


def test_same_seed_same_numbers(first, data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative run folder, as `launch.py demo --workdir runs/demo` gives
    again = run_demo(_settings(data_dir), "again", progress=False)
    assert again.workdir == str(tmp_path / "again")
    assert again.metrics == first.metrics
    assert again.claims == first.claims
    assert again.controls == first.controls
    for stage in STAGES:
        a = open(os.path.join(first.workdir, "eval", stage, "predictions.jsonl")).read()
        b = open(os.path.join(again.workdir, "eval", stage, "predictions.jsonl")).read()
        assert a == b, stage


def test_a_resumed_demo_keeps_finished_controls_and_redoes_a_missing_one(first, data_dir):
    """Runs last: it re-runs the first demo's folder after deleting one control run."""
    root = first.workdir
    predictions = os.path.join(root, "eval", "sft", "controls", "blind", "predictions.jsonl")
    before = open(predictions).read()
    os.remove(os.path.join(root, "eval", "sft", "controls", "blind", "results.json"))
    again = run_demo(_settings(data_dir), root, progress=False)
    log = open(os.path.join(root, "demo.log")).read().split("demo: scale")[-1]  # this session's lines
    for stage in STAGES:
        assert f"static control {stage}: " in log and f"eval {stage}: " in log  # kept: "... exists ...; kept"
    assert "blind control sft: " not in log and "blind control sft (loglik): overall" in log  # scored again
    assert open(predictions).read() == before  # the same model, the same answers
    assert again.controls == first.controls
    found = json.load(open(os.path.join(root, "demo.json")))["found_done"]
    assert "controls base" in found and "controls sft" not in found
