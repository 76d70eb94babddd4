"""`launch.py prepare` on a tiny synthetic world: statistics, re-runs, interruptions, staleness."""
import json
import os

import pytest

import launch
from sf2t_jax import prepare as prep
from sf2t_jax.configuration import load_config
from sf2t_jax.datasets import layout, plans, read
from sf2t_jax.finevidbench.schema import SPEEDS
from sf2t_jax.ssv2 import CATEGORIES
from sf2t_jax.world import build as world_build
from sf2t_jax.validation import check_prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo.py")
# 24 test clips: one full round of the world's 24 templates, so every category appears
TINY = ["world.train_clips=4", "world.validation_clips=2", "world.test_clips=24",
        "world.height=32", "world.width=32", "world.num_frames=8"]


def _settings(data_dir, *extra):
    return check_prepare(load_config(DEMO, TINY + [f"data.dir={data_dir}", *extra]))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("demo")
    return data_dir, prep.prepare(_settings(data_dir), progress=False)


def test_demo_config_scales_and_refuses_unknown_keys():
    small = load_config(DEMO)
    assert (small.world.train_clips, small.world.validation_clips, small.world.test_clips) == (
        1920, 60, 60)  # 1920: the fewest with which the demo tower learns colour (docs/demo.md)
    assert small.world.height == 112 and 16 <= small.world.num_frames <= 32
    assert load_config(DEMO + ":scale=large").world.height == 224
    with pytest.raises(ValueError, match="scale"):
        load_config(DEMO + ":scale=huge")
    with pytest.raises(KeyError, match="data.nope"):
        load_config(DEMO, ["data.nope=1"])


def test_benchmark_statistics_match_the_spec(prepared):
    _, result = prepared
    stats = result.benchmark
    videos = stats["videos"]
    assert videos == 24 and 22 <= stats["items_per_video"] <= 30  # "about 25 QA per video"
    # counts per task follow from the benchmark config: 4 speeds x action/effect, 4 speed
    # items (one per gold answer), 3 conversations of 3 turns, the shuffled half of them with
    # a fourth and fifth (frame comparison, rearrangement)
    assert stats["tasks"] == {"action": 4 * videos, "effect": 4 * videos, "speed": 4 * videos,
                              "frame_count": 3 * videos, "meaning_of_order": 3 * videos,
                              "frame_comparison": 3 * videos // 2, "adjust_or_not": 3 * videos,
                              "rearrangement": 3 * videos // 2}
    for letter, share in stats["letters_4way"].items():
        assert abs(share - 0.25) <= 0.05, stats["letters_4way"]
    assert set(stats["categories"]) == set(CATEGORIES)
    assert set(stats["speeds"]) == set(SPEEDS)
    saved = json.loads(result.paths.stats.read_text())
    assert saved["test"] == stats and saved["source_split"] == "test"


def test_cli_prints_statistics_and_a_rerun_skips_everything(prepared, capsys):
    data_dir, first = prepared
    launch.main(["prepare", "--config", DEMO, f"--config.data.dir={data_dir}", "--no-progress",
                 *(f"--config.{o}" for o in TINY)])
    out = capsys.readouterr().out
    assert "FineVidBench: " in out and "(24.0 per video)" in out
    assert "answer letters A 25.0%" in out and "categories     distinctive" in out
    assert "speeds         static 24, x0.5 24, x1 24, x2 12, x4 12" in out  # one speed per gold answer
    assert "skipped records: missing_video 0" in out
    for name in layout.DATASETS:
        assert f"{name:20s} up to date" in out
    assert "0 rendered, 30 already there" in out


def test_rerun_opens_no_video(prepared, monkeypatch):
    data_dir, first = prepared

    def fail(*a, **k):
        raise AssertionError("an up-to-date prepare must not open videos")

    monkeypatch.setattr(prep, "check_videos", fail)
    again = prep.prepare(_settings(data_dir), progress=False)
    assert set(again.datasets.values()) == {"up to date"}
    assert again.benchmark == first.benchmark and again.examples == first.examples


def test_splits_are_disjoint_and_the_benchmark_uses_test_videos_only(prepared):
    data_dir, result = prepared
    labels = {s: {r["id"] for r in json.loads((result.source / "labels" / f"{s}.json").read_text())}
              for s in ("train", "validation", "test")}
    training = set()
    for split in ("train", "validation"):
        training |= {read.features.text(r["id"]) for r in read.corpus_source(data_dir, split)}
        training |= {read.features.text(r["id"]) for r in read.sft_source(data_dir, split)}
    bench = read.benchmark_source(data_dir)
    bench_ids = {it.video_id for it in bench.items()}
    assert training == labels["train"] | labels["validation"]
    assert bench_ids == labels["test"] and not training & bench_ids


def test_interrupted_prepare_reruns_cleanly(tmp_path, monkeypatch, prepared):
    data_dir = tmp_path / "data"
    settings = _settings(data_dir, "data.workers=1")  # rendering in this process: the patch below applies

    # 1. killed while rendering the world
    write_clip, calls = world_build.write_clip, []

    def crash_in_world(*args):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt("simulated interruption")
        write_clip(*args)

    monkeypatch.setattr(world_build, "write_clip", crash_in_world)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(settings, progress=False)
    monkeypatch.setattr(world_build, "write_clip", write_clip)
    assert len(list((data_dir / "world" / "videos").glob("*.webm"))) == 5

    # 2. killed in the middle of writing video_sft (after sf2t_corpus finished)
    sft_examples = plans.sft_examples

    def crash_in_sft(*args):
        for n, example in enumerate(sft_examples(*args)):
            if n == 2:
                raise KeyboardInterrupt("simulated interruption")
            yield example

    monkeypatch.setattr(plans, "sft_examples", crash_in_sft)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(settings, progress=False)
    monkeypatch.setattr(plans, "sft_examples", sft_examples)
    paths = layout.DataPaths.from_dir(data_dir)
    assert (paths.dataset(layout.CORPUS) / "dataset_info.json").is_file()
    assert not (paths.tfds / "video_sft").exists() or not any(
        (paths.tfds / "video_sft").iterdir()), "TFDS left a partial video_sft behind"
    with pytest.raises(FileNotFoundError, match="not prepared"):
        read.sft_source(data_dir)
    assert not paths.summary.exists()

    # 3. what a SIGKILL leaves: TFDS's temporary folder, never renamed into place
    junk = paths.tfds / "video_sft" / f"incomplete.KILLED_{layout.VERSION}"
    junk.mkdir(parents=True)
    (junk / "video_sft-train.array_record-00000-of-00001").write_bytes(b"half")

    result = prep.prepare(settings, progress=False)
    assert result.datasets == {layout.CORPUS: "up to date", layout.SFT: "built",
                               layout.BENCH_ITEMS: "built", layout.BENCH_VIDEOS: "built"}
    assert not junk.exists()
    assert result.world.rendered == 0 and result.world.skipped == 30

    # the finished datasets equal those of an uninterrupted run
    clean_dir, clean = prepared
    assert result.benchmark == clean.benchmark and result.examples == clean.examples
    assert read.benchmark_items(data_dir) == read.benchmark_items(clean_dir)
    for split in ("train", "validation"):
        got, want = read.sft_source(data_dir, split), read.sft_source(clean_dir, split)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert a["id"] == b["id"] and a["video"] == b["video"] and a["caption"] == b["caption"]
            assert a["qa"]["answer_text"] == b["qa"]["answer_text"]


def test_changed_config_rebuilds_only_what_depends_on_it(tmp_path, prepared):
    data_dir = tmp_path / "data"
    prep.prepare(_settings(data_dir), progress=False)
    result = prep.prepare(_settings(data_dir, "data.benchmark.seed=7"), progress=False)
    assert result.datasets == {layout.CORPUS: "up to date", layout.SFT: "up to date",
                               layout.BENCH_ITEMS: "built", layout.BENCH_VIDEOS: "built"}
    items = read.benchmark_items(data_dir)
    assert read.benchmark_source(data_dir).items() == items
    assert items != read.benchmark_items(prepared[0])
