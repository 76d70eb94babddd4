"""Held-out accuracy per task against the answer prior (train/heldout.py, input/heldout.py), and
joint SFT+SF²T training on videos: a model forced to answer "yes" scores exactly the share of
"yes" answers; priors are the hand-counted majority; `launch.py train` killed after an
evaluation resumes without duplicate records and with the same numbers."""
import collections
import json
import os
import signal
import subprocess
import sys
import types

import jax
import numpy as np
import pytest
from flax import traverse_util

from sf2t_jax import prepare as prep
from sf2t_jax.configuration import load_config
from sf2t_jax.experiment import from_config
from sf2t_jax.datasets import layout
from sf2t_jax.input import InputConfig, InputPipeline, Prepared
from sf2t_jax.input.config import training_section
from sf2t_jax.input.heldout import Prior, draw_heldout, majority_answer
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.train import data as data_lib
from sf2t_jax.train import heldout as heldout_lib
from sf2t_jax.train import model as model_lib
from sf2t_jax.train import setup as setup_lib
from sf2t_jax.train.metrics import read_metrics
from sf2t_jax.validation import check_prepare
from test_train_launch import env  # noqa: F401  (the launch tests' fixture: CPU, a module-wide compilation cache)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORLD = ["world.train_clips=6", "world.validation_clips=3", "world.test_clips=2", "world.height=56", "world.width=56",
         "world.num_frames=24"]
PER_TASK, PRIOR_PER_TASK = 8, 12


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """sf2t_corpus and video_sft with train (6 videos) and validation (3 other videos) splits."""
    path = tmp_path_factory.mktemp("heldout_data")
    config = load_config(os.path.join(ROOT, "configs", "demo.py"), WORLD + [f"data.dir={path}"])
    prep.prepare(check_prepare(config), progress=False)
    return str(layout.DataPaths.from_dir(path).tfds)


def _overrides(tfds_dir):
    return ["input.max_length=128", "input.tokenizer=tiny:1000", "input.source=tfds:sf2t_corpus",
            f"input.data_dir={tfds_dir}", "input.num_epochs=0", "input.scene_frames=4", "heldout.split=validation",
            f"heldout.samples_per_task={PER_TASK}", f"heldout.prior_samples_per_task={PRIOR_PER_TASK}",
            "heldout.resamples=200", "model.dtype=float32"]


def _config(tfds_dir, *extra):
    return load_config(os.path.join(ROOT, "configs", "sf2t.py:frames=4,data=videos"), _overrides(tfds_dir) + list(extra))


def test_majority_answer_breaks_ties_by_the_smallest_text():
    assert majority_answer(["no", "yes", "no", "yes", "2"]) == Prior(answer="no", count=2, drawn=5)
    assert majority_answer(["3"]) == Prior(answer="3", count=1, drawn=1)


def test_above_prior_only_when_the_interval_clears_it():
    prior = Prior(answer="yes", count=3, drawn=4)
    videos = [f"v{i % 4}" for i in range(8)]
    answers = ["no", "2", "no", "3", "no", "4", "5", "6"]
    right = heldout_lib.task_report(np.ones(8, bool), answers, videos, prior, resamples=100, ci=0.95, seed=0,
                                    frames=[2, 3, 2, 3, 2, 3, 2, 4])
    assert (right["accuracy"], right["ci"], right["prior"]["accuracy"], right["above_prior"]) == (1.0, [1.0, 1.0], 0.0,
                                                                                                  True)
    assert right["prior"]["train_share"] == 0.75 and right["videos"] == 4
    assert right["best_constant"] == {"answer": "no", "accuracy": 3 / 8}
    # by frames shown, each with its own samples' most frequent answer ("no" 3 of 4 at two frames)
    assert right["by_frames"] == {"2": {"n": 4, "accuracy": 1.0, "best_constant": 3 / 4},
                                  "3": {"n": 3, "accuracy": 1.0, "best_constant": 1 / 3},
                                  "4": {"n": 1, "accuracy": 1.0, "best_constant": 1.0}}
    # A model right on every sample whose answers are all one constant is that constant: the
    # samples' own majority is the bar, however rare it was in training.
    constant = heldout_lib.task_report(np.ones(8, bool), ["no"] * 8, videos, prior, resamples=100, ci=0.95, seed=0)
    assert (constant["prior"]["accuracy"], constant["best_constant"]["accuracy"]) == (0.0, 1.0)
    assert constant["above_prior"] is False and "by_frames" not in constant
    # Above the training majority (.25) but not the samples' own (.75): not above.
    between = heldout_lib.task_report(np.array([1, 1, 1, 1, 1, 1, 1, 0], bool), ["a"] * 6 + ["yes"] * 2,
                                      videos, prior, resamples=100, ci=0.95, seed=0)
    assert between["prior"]["accuracy"] == 0.25 and between["best_constant"]["accuracy"] == 0.75
    assert 0.25 < between["ci"][0] <= 0.75 and between["above_prior"] is False
    # Exactly the constant's accuracy: the interval's lower end cannot exceed it.
    same = heldout_lib.task_report(np.array([1, 0] * 4, bool), ["yes", "no"] * 4, videos, prior, resamples=100,
                                   ci=0.95, seed=0)
    assert same["accuracy"] == same["prior"]["accuracy"] == 0.5 and same["above_prior"] is False
    tie = heldout_lib.task_report(np.ones(8, bool), ["yes"] * 8, videos, prior, resamples=100, ci=0.95, seed=0)
    assert tie["ci"][0] == tie["prior"]["accuracy"] == 1.0 and tie["above_prior"] is False  # not above: equal


def test_priors_are_the_majority_of_the_first_training_samples_of_each_task(tfds_dir):
    config = InputConfig.from_dict(training_section(_config(tfds_dir).to_dict()))
    held = draw_heldout(config, split="validation", per_task=PER_TASK, prior_per_task=PRIOR_PER_TASK)
    assert held.tasks == ("count", "consistency", "localize", "disorder", "rearrange")
    # By hand: the training stream's samples in order, the first PRIOR_PER_TASK of each task.
    train = InputPipeline(config, process_index=0, process_count=1)
    answers, g = collections.defaultdict(list), 0
    while any(len(answers[t]) < PRIOR_PER_TASK for t in held.tasks):
        out = train.prepare(g)
        g += 1
        if isinstance(out, Prepared) and len(answers[out.sample.task]) < PRIOR_PER_TASK:
            answers[out.sample.task].append(out.sample.answer)
    for task in held.tasks:
        counts = collections.Counter(answers[task])
        top = max(counts.values())
        assert held.priors[task] == Prior(min(a for a, c in counts.items() if c == top), top, PRIOR_PER_TASK), task
    # The held-out samples: the validation stream's, PER_TASK per task, their videos not trained on.
    validation = InputPipeline(InputConfig.from_dict({**training_section(_config(tfds_dir).to_dict()),
                                                      "split": "validation"}), process_index=0, process_count=1)
    assert [len(held.indices(t)) for t in held.tasks] == [PER_TASK] * 5
    for s in held.samples[:6]:
        again = validation.prepare(s.index)
        assert (again.sample.question, again.sample.answer) == (s.sample.question, s.sample.answer)
    train_ids = {train.source[i]["id"] for i in range(len(train.source))}
    assert {s.id for s in held.samples}.isdisjoint(train_ids) and len({s.id for s in held.samples}) == 3


def _answer_yes(values: dict, parts) -> dict:
    """The model's weights edited so that greedy decoding always writes "yes<|im_end|>" (tiny
    tokenizer: 'yes' = [88, 262], '<|im_end|>' = 999, the answer follows '\\n' = 198): every layer's
    output projections are zero (the residual stream is the token embedding), and the embeddings
    of 198, 88, 262 are unit vectors e0, e1, e2 that the (untied) LM head maps to 88, 262, 999."""
    chain = {198: 88, 88: 262, 262: 999}
    out = {}
    for part, tree in values.items():
        flat = traverse_util.flatten_dict(jax.device_get(tree))
        for key, value in flat.items():
            value = np.array(value)
            if key[-2:] == ("embed_tokens", "embedding"):  # (V, D)
                value[:, :len(chain)] = 0
                for i, token in enumerate(chain):
                    value[token] = 0
                    value[token, i] = 1
            elif key[-2:] == ("lm_head", "kernel"):  # (D, V)
                value[:len(chain)] = 0
                for i, nxt in enumerate(chain.values()):
                    value[i, nxt] = 10
            elif key[-1] == "kernel" and key[-2] in ("o_proj", "down_proj"):
                value[:] = 0
            flat[key] = value
        out[part] = jax.device_put(traverse_util.unflatten_dict(flat), parts.shardings[part])
    return out


def test_answers_given_names_each_prediction_by_the_gold_answer_it_spells():
    # yes = (5, 1), no = (6, 1), top left = (7, 8, 1), top right = (7, 9, 1)
    gold = [(5, 1), (6, 1), (7, 8, 1), (7, 9, 1), (7, 8, 1), (5, 1)]
    answers = ["yes", "no", "top left", "top right", "top left", "yes"]
    # right; "yes" for "no" (what follows the wrong first token is not greedy's); right; "top"
    # then "left" for "top right"; a first token no answer starts with; "top", which two start with
    argmax = [(5, 1), (5, 4), (7, 8, 1), (7, 8, 3), (9, 9, 9), (7, 2)]
    assert heldout_lib.answers_given(argmax, gold, answers) == {"top left": 2, "yes": 2, "(other)": 2}


def test_scorer_counts_a_sample_right_exactly_when_greedy_decoding_writes_its_answer(tfds_dir, tmp_path):
    config = from_config(_config(tfds_dir, "input.weights={'consistency': 1.0, 'disorder': 1.0, 'count': 1.0}"))
    model = setup_lib.build_model(config, jax.devices(), shape=qwen2vl_tiny(tie_word_embeddings=False))
    held = heldout_lib.open_heldout(config)
    spec = held.spec
    geometry = data_lib.BatchGeometry(batch_size=spec.global_batch_size, length=spec.max_length, slices=spec.slices,
                                      grid_hw=spec.grid_hw, steps_per_epoch=1, num_tasks=5, task_names=held.tasks)
    built = setup_lib.build_step(config, model, geometry, 10)
    values = _answer_yes(model_lib.initial_values(model.parts, config, model.mesh, model.rules), model.parts)
    evaluator = heldout_lib.make_evaluator(config, held, model, built, geometry, workdir=str(tmp_path), first_step=0,
                                           total_steps=10)
    record = evaluator.evaluate(10, types.SimpleNamespace(params=values["trainable"], frozen=values["frozen"]),
                                values["extra"])
    assert list(record["tasks"]) == ["count", "consistency", "disorder"]
    for task, r in record["tasks"].items():
        yes = sum(held.samples[i].sample.answer == "yes" for i in held.indices(task))
        assert (r["n"], r["correct"], r["accuracy"]) == (PER_TASK, yes, yes / PER_TASK), task
        # what the model wrote, named by the gold answer it spells: "yes" every time
        assert r["answers_given"] == ({"yes": PER_TASK} if yes else {heldout_lib.OTHER_ANSWER: PER_TASK}), task
        if r["prior"]["answer"] == "yes":  # the model is that constant answer
            assert r["accuracy"] == r["prior"]["accuracy"] and r["above_prior"] is False
    assert record["tasks"]["count"]["correct"] == 0  # count answers are numbers
    assert 0 < record["tasks"]["disorder"]["correct"] < PER_TASK  # yes and no both present
    assert json.loads((tmp_path / "heldout.json").read_text()) == record
    assert [json.loads(l)["step"] for l in (tmp_path / "metrics" / "heldout.jsonl").read_text().splitlines()] == [10]


@pytest.mark.parametrize("overrides, message", [
    (["data.source=synthetic"], "heldout.split='validation': expected '' with data.source='synthetic'"),
    (["input.split=validation"], "heldout.split='validation': expected a split other than input.split"),
    (["heldout.ci=1.0"], "heldout.ci=1.0: expected a number > 0.0 and < 1.0"),
    (["heldout.samples_per_task=0"], "heldout.samples_per_task=0: expected an integer >= 1"),
])
def test_bad_heldout_settings_are_refused_naming_the_field(tfds_dir, overrides, message):
    from sf2t_jax import validation
    from sf2t_jax.configuration import ConfigValueError

    with pytest.raises(ConfigValueError) as e:
        validation.check_train(_config(tfds_dir, *overrides))
    assert str(e.value).startswith(message), str(e.value)


# ---- launch.py train, as a user runs it --------------------------------------------------
def _launch(env, tfds_dir, workdir, *extra):
    args = [f"--config.{o}" for o in _overrides(tfds_dir)]
    cmd = [sys.executable, os.path.join(ROOT, "launch.py"), "train", "--config", "configs/sf2t.py:frames=4,data=videos",
           *args, "--config.train.steps=6", "--config.heldout.every=2", "--config.checkpoint.every=3",
           "--config.log.every=1", "--config.export.final=false", "--config.log.tensorboard=false",
           "--config.train.max_skip_share=1.0", "--config.data.sft_weight=0.25",
           "--config.data.sft_source=tfds:video_sft", "--workdir", str(workdir), *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _heldout_records(workdir):
    return [json.loads(line) for line in (workdir / "metrics" / "heldout.jsonl").read_text().splitlines()]


def _without_time(record):
    return {k: v for k, v in record.items() if k != "seconds"}


def test_joint_training_with_heldout_resumes_without_duplicate_records(env, tfds_dir, tmp_path):
    kill = ["--config.debug.signal_at_step=5", "--config.debug.signal=SIGKILL"]
    killed = _launch(env, tfds_dir, tmp_path, *kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = _heldout_records(tmp_path)
    assert [r["step"] for r in before] == [2, 4]  # step 4 evaluated, then killed before checkpoint 6
    assert "held-out step 2/6 (validation" in killed.stderr and "vs prior" in killed.stderr
    resumed = _launch(env, tfds_dir, tmp_path, *kill)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _heldout_records(tmp_path)
    assert [r["step"] for r in after] == [2, 4, 6]
    assert "resumed from step 3" in resumed.stderr and "dropping 1 record(s) after step 3" in resumed.stderr
    assert [_without_time(r) for r in after[:2]] == [_without_time(r) for r in before]  # recomputed bit for bit
    assert json.loads((tmp_path / "heldout.json").read_text()) == after[-1]
    tasks = after[-1]["tasks"]
    assert list(tasks) == ["count", "consistency", "localize", "disorder", "rearrange", "action", "effect", "speed"]
    assert all(t["n"] == PER_TASK and t["prior"]["train_samples"] == PRIOR_PER_TASK for t in tasks.values())
    # The mixed stream trains every kind of task: per-task token accuracy of scene QA too.
    logged = set().union(*(r.keys() for r in read_metrics(str(tmp_path))))
    assert {"accuracy/count", "accuracy/action", "accuracy/effect", "accuracy/speed"} <= logged
    skips = json.loads((tmp_path / "input_skips.json").read_text())["tasks"]
    assert {"count", "action", "effect", "speed"} <= set(skips)
