"""The evaluation loop end to end: plumbing guards, compile counts over a whole benchmark run,
`launch.py eval` and --compare, and bad input."""
import collections
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import launch
from qwen_reference import hf_model
from sf2t_jax.configuration import ConfigKeyError, load_config
from sf2t_jax.eval import (BenchmarkError, EvalSettings, eval_config, evaluate, load_items, load_model,
                           load_tokenizer, write_run)
from sf2t_jax.eval.batching import plan_batches
from sf2t_jax.eval import controls
from sf2t_jax.eval.config import VIEWS
from sf2t_jax.eval.scorer import AnswerScorer, ModelScorer, constant_scorer, oracle_scorer
from sf2t_jax.eval.visuals import ShortClip, VisualLoader, shown_key
from sf2t_jax.finevidbench.schema import LETTERS
from sf2t_jax.finevidbench import load_source, write_benchmark
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.text import write_tiny_tokenizer
from sf2t_jax.world import WorldConfig, write_world
from tolerances import assert_reordered_close

SETTINGS = EvalSettings(scene_frames=4, size=(56, 56), batch_size=8, bootstrap=200, progress_every_s=0)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    write_world(root / "world", WorldConfig(train_clips=0, validation_clips=0, test_clips=8, height=64, width=64,
                                            num_frames=16, seed=5), progress=False)
    write_benchmark(load_source(root / "world", ("test",)), root / "bench", ("test",))
    hf_model(qwen2vl_tiny(tie_word_embeddings=False), seed=2).save_pretrained(root / "hf")
    write_tiny_tokenizer(root / "hf")
    path = root / "bench" / "finevidbench_test.jsonl"
    return dict(root=root, path=path, items=load_items(path), tok=load_tokenizer("", str(root / "hf")))


def _run(bench, scorer, settings=SETTINGS, view="real"):
    return evaluate(scorer, bench["items"], settings, tokenizer=bench["tok"], video_root=str(bench["root"] / "world"),
                    view=view)


def test_constant_letter_scores_chance_and_oracle_scores_everything(bench):
    items, tok = bench["items"], bench["tok"]
    const = _run(bench, constant_scorer(SETTINGS, tok, "A"))
    multiple_choice = [it for it in items if it.options]
    chance = np.mean([1 / len(it.options) for it in multiple_choice])
    for method in ("loglik", "generate"):
        m = const.metrics[method]
        for task, stat in m["tasks"].items():
            task_items = [it for it in items if it.task == task]
            # Exactly the share of gold "A" answers: every "A" is graded right, nothing else is.
            assert stat["value"] == pytest.approx(np.mean([it.answer == "A" for it in task_items])), (method, task)
        mc = [r["correct"] for r in const.records if r["method"] == method and r["task"] != "rearrangement"]
        assert abs(np.mean(mc) - chance) < 0.03, (method, np.mean(mc), chance)  # letters are balanced
    assert const.metrics["generate"]["unparsable"]["tasks"]["rearrangement"]["value"] == 1.0

    oracle = _run(bench, oracle_scorer(SETTINGS, tok))
    for method, m in oracle.metrics.items():
        assert m["overall"]["value"] == 1.0 and m["chain"]["value"] == 1.0, method
        assert m["kendall_tau"]["value"] == 1.0 and m["unparsable"]["overall"]["value"] == 0.0
        assert all(s["value"] == 1.0 for s in m["tasks"].values())
        assert set(m["speed"]["speed"]) == {"x0.5", "x1", "x2", "x4", "static"}
    assert oracle.meta["items"] == len(items) and len(oracle.records) == 2 * len(items)


class MotionScorer(AnswerScorer):
    """Answers from the pixels it is given: the gold answer when an item's vision slices change
    over time (its frames move), a wrong one when they do not. Keeps the slices it was shown."""

    def __init__(self, settings, tokenizer):
        super().__init__(settings, tokenizer, self._say)
        self.shown = {}  # item id -> (S, gh*gw, patch_dim) slices

    def _say(self, item):
        if (self.shown[item.item_id] != self.shown[item.item_id][:1]).any():
            return item.answer
        return LETTERS[(LETTERS.index(item.answer) + 1) % len(item.options)] if item.options else ""

    def dispatch(self, batch):
        self.shown.update({p.item.item_id: p.slices for p in batch.prompts})
        return super().dispatch(batch)


def test_controls_show_held_and_blank_frames_and_tell_a_motion_reader_apart(bench):
    first = bench["items"][0]
    keys = {view: VisualLoader(bench["root"] / "world", SETTINGS, view=view).visual(first).key for view in VIEWS}
    assert len(set(keys.values())) == len(VIEWS) and len({k[:-1] for k in keys.values()}) == 1

    runs, shown = {}, {}
    for view in VIEWS:
        scorer = MotionScorer(SETTINGS, bench["tok"])
        runs[view], shown[view] = _run(bench, scorer, view=view), scorer.shown
    # The same items, in the same batches (one plan), scored by the same methods.
    pairs = {v: [(r["item_id"], r["method"]) for r in run.records] for v, run in runs.items()}
    assert pairs["static"] == pairs["real"] and pairs["blind"] == pairs["real"]
    assert runs["static"].meta["shape_buckets"] == runs["real"].meta["shape_buckets"]
    assert all((s == s[:1]).all() for s in shown["static"].values())  # one frame held: no motion
    blank = next(iter(shown["blind"].values()))[0, 0]
    assert all((s == blank).all() for s in shown["blind"].values())  # one blank frame's patches everywhere
    moving = np.mean([(s != s[:1]).any() for s in shown["real"].values()])
    assert moving > 0.5

    table = controls.compare_views({v: run.records for v, run in runs.items()},
                                   {m: x["chance"] for m, x in runs["real"].metrics.items()},
                                   resamples=SETTINGS.bootstrap, ci=SETTINGS.ci, seed=SETTINGS.seed)
    for method, rows in table["methods"].items():
        action = next(r for r in rows if r["key"] == "action")
        assert action["real"]["value"] > 0.5 and action["static"]["value"] == 0.0 == action["blind"]["value"]
        assert action["uses_motion"] == "yes"
        # The real column is the real run's own statistic, to the last digit.
        metrics = runs["real"].metrics[method]
        for row in rows:
            expected = {"task": lambda: metrics["tasks"][row["key"]], "level": lambda: metrics["levels"][row["key"]],
                        "overall": lambda: metrics["overall"]}[row["kind"]]()
            assert (row["real"]["value"], row["real"]["ci"]) == (expected["value"], expected["ci"]), row["key"]


def test_plan_keeps_questions_about_the_same_frames_together(bench):
    items = bench["items"]
    plan = plan_batches(items, SETTINGS)
    assert sorted(it.item_id for b in plan for it in b) == sorted(it.item_id for it in items)
    assert all(1 <= len(b) <= SETTINGS.batch_size for b in plan)
    assert len(plan) <= 1.15 * len(items) / SETTINGS.batch_size  # whole groups still fill the batches
    where = {it.item_id: i for i, b in enumerate(plan) for it in b}
    by_key = collections.defaultdict(set)
    for it in items:
        by_key[shown_key(it, SETTINGS)].add(where[it.item_id])
    assert all(len(batches) == 1 for batches in by_key.values())  # groups here are smaller than a batch
    # Without sharing: file order.
    plain = plan_batches(items, dataclasses.replace(SETTINGS, share_prefix=False))
    assert [it for b in plain for it in b] == list(items)


def test_whole_run_compiles_once_per_shape_bucket(bench, tmp_path):
    model = load_model(str(bench["root"] / "hf"))
    # prompts of 130-470 tokens: 256, 384 or 512. Gold history: one round, the fewest shapes.
    settings = dataclasses.replace(SETTINGS, min_length=256, history="gold")
    jitted = ModelScorer.jitted()
    for fn in jitted.values():
        fn.clear_cache()  # so the count does not depend on what other tests compiled
    first = _run(bench, model, settings)
    buckets = first.meta["shape_buckets"]
    views = {b["view"] for b in buckets}
    assert views <= {256, 384, 512} and len(views) >= 2
    assert {(b["rows"], b["batch"]) for b in buckets} == {(2, 8)}  # automatic: a row per 4 questions
    prefill_shapes = {(b["length"], b["view"]) for b in buckets}
    assert first.meta["compiles"] == {"prefill": len(prefill_shapes), "decode": len(views)}
    assert len(prefill_shapes) <= 6
    tokens = first.meta["tokens"]
    assert tokens["row_tokens"] < 0.6 * tokens["prompt_tokens"]  # shared prefixes computed once
    sizes = {name: fn._cache_size() for name, fn in jitted.items()}
    again = _run(bench, model, settings)  # the same shapes again: nothing new to compile
    assert again.meta["compiles"] == {"prefill": 0, "decode": 0}
    assert {name: fn._cache_size() for name, fn in jitted.items()} == sizes
    nll = lambda run: np.concatenate([r["nll"] for r in run.records if "nll" in r])
    np.testing.assert_array_equal(nll(again), nll(first))
    assert [r["item_id"] for r in first.records[::2]] == [it.item_id for it in bench["items"]]  # item order
    write_run(first, tmp_path / "tiny", "tiny")
    for f in ("results.json", "results.md", "tasks.png", "speed.png", "predictions.jsonl"):
        assert (tmp_path / "tiny" / f).stat().st_size > 0

    # Each question scored alone (no shared prefix, one question per row) scores the same.
    alone = _run(bench, model, dataclasses.replace(settings, share_prefix=False, rows=8))
    assert alone.meta["tokens"]["row_tokens"] == tokens["prompt_tokens"]
    # The same sums in another order (tolerances.py): attention over a row or a prompt, the
    # vocabulary's logsumexp; through every layer.
    config = model.config
    terms = max(config.text.vocab_size, max(b["length"] for b in buckets))
    assert_reordered_close(nll(alone), nll(first), terms, depth=config.text.num_hidden_layers + config.vision.depth)
    generated = lambda run: [(r["item_id"], r["text"]) for r in run.records if r["method"] == "generate"]
    assert generated(alone) == generated(first)
    assert [r["pred"] for r in alone.records] == [r["pred"] for r in first.records]

    # Own history (rounds by turn, later rounds once per method): still at most one compile per
    # shape bucket, none when run again; turn 1 is scored exactly as under gold history.
    own_settings = dataclasses.replace(settings, history="own")
    own = _run(bench, model, own_settings)
    own_shapes = {(b["length"], b["view"]) for b in own.meta["shape_buckets"]}
    assert own.meta["compiles"]["prefill"] <= len(own_shapes - prefill_shapes) + len(own_shapes & prefill_shapes)
    assert _run(bench, model, own_settings).meta["compiles"] == {"prefill": 0, "decode": 0}
    assert [r["item_id"] for r in own.records[::2]] == [it.item_id for it in bench["items"]]
    first_turns = lambda run: [(r["item_id"], r["method"], r.get("text"), r["pred"]) for r in run.records  # noqa: E731
                               if r["turn"] == 1]
    assert first_turns(own) == first_turns(first)


def test_launch_eval_and_compare(bench, tmp_path):
    """`launch.py eval` in a fresh process (one device), then --compare with an oracle run."""
    root, out = bench["root"], tmp_path / "cli"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    proc = subprocess.run(
        [sys.executable, "launch.py", "eval", "--config", "configs/eval_finevidbench.py", "--checkpoint",
         str(root / "hf"), "--out", str(out), "--name", "tiny", f"--config.benchmark={bench['path']}",
         f"--config.videos={root / 'world'}", "--config.video.scene_frames=4", "--config.video.size=(56, 56)",
         "--config.max_videos=2", "--config.buckets.min_length=1024"],
        capture_output=True, text=True, env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "questions" in proc.stderr and "q/s, ETA" in proc.stderr  # the progress line
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["videos"] == 2
    assert results["meta"]["compiles"] == {"prefill": 1, "decode": 1}
    assert set(results["metrics"]) == {"loglik", "generate"}
    assert sum(1 for _ in open(out / "predictions.jsonl")) == 2 * results["meta"]["items"]
    # The controls (default: static, blind): run folders like the real run's, scored in the same
    # batch shapes (nothing compiled again), and the report with a line per task in the log.
    for view in ("static", "blind"):
        control = json.loads((out / "controls" / view / "results.json").read_text())
        assert control["meta"]["view"] == view and control["meta"]["items"] == results["meta"]["items"]
        assert control["meta"]["compiles"] == {"prefill": 0, "decode": 0}
        assert control["meta"]["shape_buckets"] == results["meta"]["shape_buckets"]
    table = json.loads((out / "controls.json").read_text())
    assert table["views"] == ["real", "static", "blind"] and set(table["methods"]) == {"loglik", "generate"}
    for row in table["methods"]["loglik"]:
        assert row["uses_motion"] in ("yes", "no", "reversed")
        if row["kind"] == "task":
            assert row["real"]["value"] == results["metrics"]["loglik"]["tasks"][row["key"]]["value"]
        verdict = f"-> uses motion: {row['uses_motion']}"
        line = next(x for x in proc.stderr.splitlines() if f"controls loglik {controls.row_label(row)}: real " in x)
        assert "static" in line and "blind" in line and line.endswith(verdict), line
    assert "| uses motion | loglik | real | static | blind | real − static | chance |" in (out / "controls.md").read_text()
    assert (out / "controls.png").stat().st_size > 0

    oracle_dir = tmp_path / "oracle"
    write_run(_run(bench, oracle_scorer(SETTINGS, bench["tok"])), oracle_dir, "oracle")
    launch.main(["eval", "--compare", str(out), str(oracle_dir), "--out", str(tmp_path / "cmp")])
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "tiny · loglik" in table and "oracle · generate" in table and "| Chain (all steps right) |" in table
    assert "| Overall | " in table and "100.0 [100.0, 100.0]" in table
    assert (tmp_path / "cmp" / "tasks.png").stat().st_size > 0 and (tmp_path / "cmp" / "speed.png").stat().st_size > 0


def test_launch_eval_without_controls_writes_none(bench, tmp_path):
    out = tmp_path / "cli"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    proc = subprocess.run(
        [sys.executable, "launch.py", "eval", "--config", "configs/eval_finevidbench.py", "--checkpoint",
         str(bench["root"] / "hf"), "--out", str(out), f"--config.benchmark={bench['path']}",
         f"--config.videos={bench['root'] / 'world'}", "--config.video.scene_frames=4", "--config.video.size=(56, 56)",
         "--config.max_videos=1", "--config.methods=loglik", "--config.controls="],
        capture_output=True, text=True, env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "results.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["predictions.jsonl", "results.json", "results.md", "speed.png",
                                                     "tasks.png"]
    assert "control" not in proc.stderr


def _rewrite(src, dst, line_no, edit):
    lines = src.read_text().splitlines()
    record = json.loads(lines[line_no - 1])
    edit(record)
    lines[line_no - 1] = json.dumps(record)
    dst.write_text("\n".join(lines) + "\n")
    return dst


def test_bad_benchmark_lines_name_file_line_and_field(bench, tmp_path):
    src = bench["path"]
    missing = _rewrite(src, tmp_path / "missing.jsonl", 3, lambda r: r.pop("question"))
    with pytest.raises(BenchmarkError, match=rf"missing.jsonl:3: field 'question': missing"):
        load_items(missing)
    two = next(n for n, line in enumerate(src.read_text().splitlines(), 1) if len(json.loads(line)["options"]) == 2)
    wrong = _rewrite(src, tmp_path / "answer.jsonl", two, lambda r: r.update(answer="C"))
    with pytest.raises(BenchmarkError, match=rf"answer.jsonl:{two}: field 'answer': 'C' is not among the 2 options"):
        load_items(wrong)
    text = _rewrite(src, tmp_path / "text.jsonl", 1, lambda r: r.update(answer_text="something else"))
    with pytest.raises(BenchmarkError, match=r"text.jsonl:1: field 'answer_text'"):
        load_items(text)
    first_turn = next(n for n, line in enumerate(src.read_text().splitlines(), 1) if json.loads(line)["turn"] == 2)
    gap = _rewrite(src, tmp_path / "gap.jsonl", first_turn, lambda r: r.update(turn=7))
    with pytest.raises(BenchmarkError, match=r"has turns \[1, 3, 4.*\]; expected 1\.\.\d"):
        load_items(gap)
    # Through the command line: a one-line error, no traceback.
    with pytest.raises(SystemExit, match=rf"error: .*missing.jsonl:3: field 'question': missing"):
        launch.main(["eval", "--config", "configs/eval_finevidbench.py", "--checkpoint", str(bench["root"] / "hf"),
                     "--out", str(tmp_path / "o"), f"--config.benchmark={missing}",
                     f"--config.videos={bench['root'] / 'world'}"])


def test_config_file_defaults_and_bad_settings(bench):
    config = load_config("configs/eval_finevidbench.py:benchmark=b.jsonl", ["video.size=(56, 84)", "methods=loglik"])
    assert config.benchmark == "b.jsonl" and EvalSettings.of(config).size == (56, 84)
    assert EvalSettings.of(eval_config()) == EvalSettings()  # one set of defaults, not two
    with pytest.raises(ConfigKeyError, match="video.sizes"):
        load_config("configs/eval_finevidbench.py", ["video.sizes=(56, 56)"])
    with pytest.raises(ValueError, match="methods"):
        EvalSettings(methods=("loglik", "beam"))
    with pytest.raises(ValueError, match="size"):
        EvalSettings(size=(50, 56))


def test_short_clips_error_or_are_skipped_and_counted(bench):
    long = EvalSettings(scene_frames=8, size=(56, 56), bootstrap=0, progress_every_s=0)  # x4 needs 29 frames
    with pytest.raises(ShortClip, match=r"x4/?.*speed x4 over 8 frames spans 29 source frames but video \d+ has 16"):
        _run(bench, oracle_scorer(long, bench["tok"]), long)
    skip = EvalSettings(scene_frames=8, size=(56, 56), bootstrap=0, progress_every_s=0, on_short_clip="skip")
    run = _run(bench, oracle_scorer(skip, bench["tok"]), skip)
    x4 = [it.item_id for it in bench["items"] if it.speed == "x4"]
    assert sorted(s["item_id"] for s in run.meta["skipped"]) == sorted(x4)
    assert run.meta["items"] == len(bench["items"]) - len(x4)


# ---- broken videos and bad input ---------------------------------------------------------
def _videos_with(bench, tmp_path, damaged: dict[str, bytes]):
    """A copy of the benchmark's video root in which the videos named in `damaged` hold those bytes."""
    root = tmp_path / "videos_root"
    (root / "videos").mkdir(parents=True)
    for path in (bench["root"] / "world" / "videos").iterdir():
        data = damaged.get(path.stem, path.read_bytes())
        if data is not None:
            (root / "videos" / path.name).write_bytes(data)
    return root


def test_launch_eval_skips_and_counts_the_items_of_a_broken_video(bench, tmp_path):
    """`launch.py eval` over two videos, one of them cut short: the other is scored, the broken
    one's items are skipped and reported by reason, and the run exits 0."""
    items = bench["items"]
    first, second = list(dict.fromkeys(it.video_id for it in items))[:2]
    data = (bench["root"] / "world" / "videos" / f"{second}.webm").read_bytes()
    root = _videos_with(bench, tmp_path, {second: data[: len(data) // 3]})
    out = tmp_path / "out"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    proc = subprocess.run(
        [sys.executable, "launch.py", "eval", "--config", "configs/eval_finevidbench.py", "--checkpoint",
         str(bench["root"] / "hf"), "--out", str(out), f"--config.benchmark={bench['path']}",
         f"--config.videos={root}", "--config.video.scene_frames=4", "--config.video.size=(56, 56)",
         "--config.max_videos=2", "--config.methods=loglik"],
        capture_output=True, text=True, env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    broken = [it.item_id for it in items if it.video_id == second]
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert sorted(s["item_id"] for s in meta["skipped"]) == sorted(broken)
    assert meta["skipped_by_reason"] == {"corrupt": len(broken)} and meta["skipped_videos_by_reason"] == {"corrupt": 1}
    assert meta["items"] == sum(it.video_id == first for it in items)
    assert f"{len(broken)} skipped (corrupt {len(broken)})" in (out / "results.md").read_text()
    assert proc.stderr.count(f"eval: skipping the items of video {second} (corrupt)") == 1  # logged once
    for view in ("static", "blind"):  # the controls skip exactly the items the real run skips
        control = json.loads((out / "controls" / view / "results.json").read_text())["meta"]
        assert (control["skipped"], control["items"]) == (meta["skipped"], meta["items"])


def test_eval_with_no_usable_video_is_refused_in_one_line(bench, tmp_path):
    root = _videos_with(bench, tmp_path, {p.stem: None for p in (bench["root"] / "world" / "videos").iterdir()})
    with pytest.raises(SystemExit) as e:
        launch.main(["eval", "--config", "configs/eval_finevidbench.py", "--checkpoint", str(bench["root"] / "hf"),
                     "--out", str(tmp_path / "o"), f"--config.benchmark={bench['path']}", f"--config.videos={root}",
                     "--config.video.scene_frames=4", "--config.video.size=(56, 56)", "--config.max_videos=1"])
    n = sum(it.video_id == bench["items"][0].video_id for it in bench["items"])
    assert str(e.value.code) == (f"error: eval: no item could be shown: all {n} selected items were skipped "
                                 f"(missing {n}); check the eval config field 'videos' ({root})")
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def damaged_native(bench, tmp_path_factory):
    """The benchmark model converted to our format, one weight's stored chunk cut short."""
    from sf2t_jax.convert import from_hf
    from sf2t_jax.convert.native import save_native

    directory = tmp_path_factory.mktemp("damaged") / "native"
    save_native(from_hf(str(bench["root"] / "hf")), str(directory))
    chunk = next((directory / "params" / "model.embed_tokens.embedding").glob("0*"))
    chunk.write_bytes(chunk.read_bytes()[:10])
    return directory


def test_bad_benchmark_files_and_a_damaged_checkpoint_are_refused_in_one_line(bench, tmp_path, damaged_native):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(bench["path"].read_bytes() + '{"question": "caf\u00e9"}\n'.encode("latin-1"))
    lines = len(bench["path"].read_text().splitlines())
    folder = tmp_path / "folder"
    folder.mkdir()
    expected = {
        empty: f"error: {empty}: no items (an empty file); expected FineVidBench JSON lines, one item per line",
        latin1: f"error: {latin1}:{lines + 1}: not UTF-8 text (byte 0xe9 at offset",
        # Refused by the validation pass, before the benchmark is read (not a file).
        folder: f"error: benchmark={str(folder)!r}: expected an existing file",
    }
    for benchmark, message in expected.items():
        with pytest.raises(SystemExit) as e:
            launch.main(["eval", "--config", "configs/eval_finevidbench.py", "--checkpoint",
                         str(bench["root"] / "hf"), "--out", str(tmp_path / "o"), f"--config.benchmark={benchmark}",
                         f"--config.videos={bench['root'] / 'world'}"])
        assert str(e.value.code).startswith(message) and "\n" not in str(e.value.code), e.value.code
    with pytest.raises(SystemExit) as e:
        launch.main(["eval", "--config", "configs/eval_finevidbench.py", "--checkpoint", str(damaged_native),
                     "--out", str(tmp_path / "o"), f"--config.benchmark={bench['path']}",
                     f"--config.videos={bench['root'] / 'world'}"])
    message = str(e.value.code)
    assert message.startswith(f"error: {damaged_native}/params: cannot be restored, the converted checkpoint is "
                              "damaged or incomplete (Exception: ") and message.endswith("); convert it again")
    assert "\n" not in message and "TensorStore details" not in message
    assert not (tmp_path / "o").exists()


class _PromptRecorder:
    """Answers "B" by option likelihood and "C" by generation (every item, every turn), and
    keeps every prompt it was asked, decoded: [(item_id, text)] in the order asked."""

    def __init__(self, settings, tok):
        self.tok = tok
        self.by_loglik = oracle_scorer(settings, tok)
        self.by_loglik.answer = lambda item: "B"
        self.by_generation = oracle_scorer(settings, tok)
        self.by_generation.answer = lambda item: "C" if item.options else item.answer
        self.asked = []

    def dispatch(self, batch):
        self.asked += [(p.item.item_id, self.tok.decode(p.input_ids.tolist(), skip_special_tokens=False))
                       for p in batch.prompts]
        return {**self.by_generation.dispatch(batch), **{k: v for k, v in self.by_loglik.dispatch(batch).items()
                                                        if k in ("nll", "choice")}}

    def fetch(self, pending):
        return pending


def test_own_history_shows_each_methods_own_answers_turn_by_turn(bench):
    items, tok = bench["items"], bench["tok"]
    by_id = {it.item_id: it for it in items}
    reply = "<|im_start|>assistant\n{}<|im_end|>"
    own = _PromptRecorder(SETTINGS, tok)
    run = _run(bench, own)
    assert EvalSettings().history == "own" and run.meta["history"] == "own"
    gold = _PromptRecorder(SETTINGS, tok)
    gold_run = _run(bench, gold, dataclasses.replace(SETTINGS, history="gold"))
    assert gold_run.meta["history"] == "gold"
    # Rounds: every first turn is asked before any second turn, and so on.
    turns = [by_id[i].turn for i, _ in own.asked]
    assert turns == sorted(turns)
    # Turn 1 is asked once, exactly as under gold history; later turns once per method.
    asked = collections.defaultdict(list)
    for item_id, text in own.asked:
        asked[item_id].append(text)
    gold_asked = dict(gold.asked)
    for item_id, texts in asked.items():
        item = by_id[item_id]
        if item.turn == 1:
            assert texts == [gold_asked[item_id]]
            continue
        assert len(texts) == 2, item_id
        history = [h for h in items if h.conversation == item.conversation and h.turn < item.turn]
        # loglik's history holds the option it chose ("B", written as history_answer="letter"),
        # generation's the text it generated ("C"); gold history the gold letters
        loglik_text, generate_text = texts
        assert loglik_text.count(reply.format("B")) == len(history), loglik_text
        assert generate_text.count(reply.format("C")) == len(history), generate_text
        gold_text = gold_asked[item_id]
        assert [gold_text.count(reply.format(h.answer)) >= 1 for h in history] == [True] * len(history)
        assert loglik_text.replace(reply.format("B"), "") == generate_text.replace(reply.format("C"), "")
    # Records: one per item and method, as under gold history, each method graded on its own pass.
    key = lambda r: (r["item_id"], r["method"])  # noqa: E731
    assert sorted(map(key, run.records)) == sorted(map(key, gold_run.records))
    for r in run.records:
        options = by_id[r["item_id"]].options
        if options:  # "C" is no answer to a yes/no question
            assert r["pred"] == ("B" if r["method"] == "loglik" else "C" if len(options) > 2 else None), r
    assert run.meta["questions_asked"] == len(items) + sum(it.turn > 1 for it in items)


def test_no_history_asks_every_turn_alone_with_the_frames(bench):
    items, tok = bench["items"], bench["tok"]
    by_id = {it.item_id: it for it in items}
    alone, gold = _PromptRecorder(SETTINGS, tok), _PromptRecorder(SETTINGS, tok)
    run = _run(bench, alone, dataclasses.replace(SETTINGS, history="none"))
    _run(bench, gold, dataclasses.replace(SETTINGS, history="gold"))
    assert run.meta["history"] == "none" and run.meta["questions_asked"] == len(items)
    gold_asked = dict(gold.asked)
    for item_id, text in alone.asked:
        item = by_id[item_id]
        # one user turn, the frames in it, no assistant reply before the one being asked for
        assert text.count("<|im_start|>user") == 1 and text.count("<|im_start|>assistant") == 1, text
        assert text.count("<|vision_start|>") == 1
        if item.turn == 1:
            assert text == gold_asked[item_id]
        else:  # the same question closes the prompt as under gold history, which shows earlier turns
            assert gold_asked[item_id].endswith(text[text.index("<|im_start|>user"):].split("<|vision_end|>", 1)[1])
            assert gold_asked[item_id].count("<|im_start|>user") == item.turn


def test_own_history_asks_the_earlier_turns_a_task_filter_leaves_out(bench):
    items, tok = bench["items"], bench["tok"]
    scorer = _PromptRecorder(SETTINGS, tok)
    run = _run(bench, scorer, dataclasses.replace(SETTINGS, tasks=("frame_comparison",)))
    comparisons = [it for it in items if it.task == "frame_comparison"]
    assert {r["item_id"] for r in run.records} == {it.item_id for it in comparisons}
    asked = {i for i, _ in scorer.asked}
    convs = {it.conversation for it in comparisons}
    assert asked == {it.item_id for it in items if it.conversation in convs
                     and it.turn <= comparisons[0].turn}
    assert run.meta["items"] == len(comparisons)


def test_each_video_is_decoded_once_per_evaluation_while_it_fits_the_cache(bench, monkeypatch):
    """Under own history the turns are asked in rounds over every video; the scorer keeps decoded
    clips (eval cache_mb) so a video is decoded once, not once per round, with the same records."""
    from sf2t_jax.eval import visuals as visuals_module

    decoded = []
    real = visuals_module.decode_video
    monkeypatch.setattr(visuals_module, "decode_video", lambda path, *a, **kw: decoded.append(path) or real(path, *a, **kw))
    scorer = oracle_scorer(SETTINGS, bench["tok"])
    videos = {it.video_id for it in bench["items"]}
    cached = _run(bench, scorer)
    assert sorted(decoded) == sorted(set(decoded)) and len(decoded) == len(videos)
    decoded.clear()
    window_only = _run(bench, scorer, dataclasses.replace(SETTINGS, cache_mb=0))
    assert len(decoded) > len(videos)  # what the cache saves: the rounds came back to decoded videos
    assert cached.records == window_only.records
    with pytest.raises(ValueError, match="cache_mb"):
        dataclasses.replace(SETTINGS, cache_mb=-1)
