"""Scene samples (captions, scene QA) from video_sft records, in exactly the scorer's format."""
import collections
import json
import os

import numpy as np
import pytest

from sf2t_jax import prepare as prep
from sf2t_jax.configuration import load_config
from sf2t_jax.datasets import layout
from sf2t_jax.datasets.facts import FACT_TASKS
from sf2t_jax.eval.inquiry import question_text
from sf2t_jax.finevidbench.schema import Item
from sf2t_jax.input import InputConfig, InputPipeline
from sf2t_jax.input.scene import CAPTION_QUESTIONS, SCENE_TASK_NAMES
from sf2t_jax.video import centered_speed_indices, decode_video, resize_frames
from sf2t_jax.validation import check_prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["world.train_clips=6", "world.validation_clips=1", "world.test_clips=2", "world.height=56",
        "world.width=56", "world.num_frames=24"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("scene")
    config = load_config(os.path.join(ROOT, "configs", "demo.py"), TINY + [f"data.dir={path}"])
    prep.prepare(check_prepare(config), progress=False)
    return path


def _pipeline(data_dir, mode, **kw):
    config = InputConfig(source="tfds:video_sft", data_dir=str(layout.DataPaths.from_dir(data_dir).tfds),
                         tokenizer="tiny:1000", mode=mode, batch_size=2, max_length=160, resolution=(56, 56),
                         frame_budget=6, scene_frames=6, **kw)
    return InputPipeline(config, process_index=0, process_count=1)


def test_scene_qa_samples_match_the_scorer_format(data_dir):
    pipeline = _pipeline(data_dir, "scene_qa", instruction="Pick one.")
    tok = pipeline.tokenizer
    seen = set()
    for g in range(12):
        prepared = pipeline.prepare(g)
        sample, record = prepared.sample, pipeline.records[g]
        qa, j = record["qa"], prepared.sample.metadata["question_index"]
        options = tuple(o.decode() for o in qa["options"][j])
        letter = qa["answer"][j].decode()
        item = Item(item_id="x", video_id=record["id"], split="train", level="scene", task=sample.task,
                    speed=qa["speed"][j].decode(), conversation="x", turn=1, question=qa["question"][j].decode(),
                    options=options, answer=letter, answer_text=qa["answer_text"][j].decode(), category="", template="")
        assert sample.question == question_text(item, "Pick one.")
        assert sample.answer == item.answer_text
        clip = decode_video(record["video"]).frames
        plan = centered_speed_indices(len(clip), 6, item.speed)
        np.testing.assert_array_equal(sample.frames, resize_frames(clip, (56, 56))[plan])
        ex = prepared.example
        assert tok.decode(ex["input_ids"][ex["loss_mask"] == 1].tolist()) == sample.answer + "<|im_end|>"
        assert SCENE_TASK_NAMES[ex["task_id"]] == sample.task
        seen.add(sample.task)
    assert seen == {"action", "effect", "speed"}


def test_caption_samples_and_batches(data_dir):
    pipeline = _pipeline(data_dir, "captions")
    prepared = pipeline.prepare(3)
    assert prepared.sample.task == "caption"
    assert prepared.sample.question in CAPTION_QUESTIONS
    assert prepared.sample.answer == pipeline.records[3]["caption"].decode()
    batch = next(pipeline.iterator())
    assert batch["vision_patches"].shape == (2, 3, 16, 1176)
    assert (batch["task_id"] == 0).all() and batch["loss_mask"].sum() > 0


# ---- non-temporal fact questions (datasets/facts.py) in the captioning base's stream ---------
def _tracks_objects(data_dir, video_id):
    tracks = json.loads((data_dir / "world" / "tracks" / f"{video_id}.json").read_text())
    return [(o["colour"], o["shape"]) for o in tracks["objects"] if o["role"] != "hand"]


def test_fact_questions_are_true_of_the_world_and_leave_the_scene_questions_unchanged(data_dir):
    records = _pipeline(data_dir, "captions").records
    asked = collections.Counter()
    for record in records:
        objects, qa = _tracks_objects(data_dir, record["id"]), record["qa"]
        tasks = [t.decode() for t in qa["task"]]
        assert tasks[:-len([t for t in tasks if t in FACT_TASKS])] == [t for t in tasks if t not in FACT_TASKS]
        for j, task in enumerate(tasks):
            if task not in FACT_TASKS:
                continue
            asked[task] += 1
            question, answer = qa["question"][j].decode(), qa["answer_text"][j].decode()
            options = [o.decode() for o in qa["options"][j]]
            assert answer == options["ABCD".index(qa["answer"][j].decode())] and len(set(options)) == 4
            if task == "objects":
                assert answer == str(len(objects))
            elif task == "colour":  # "What colour is the circle?": the scene's only circle
                shape = question.removeprefix("What colour is the ").removesuffix("?")
                assert [c for c, s in objects if s == shape] == [answer], (question, objects)
            else:  # "What shape is the red object?": the scene's only red object
                colour = question.removeprefix("What shape is the ").removesuffix(" object?")
                assert [s for c, s in objects if c == colour] == [answer], (question, objects)
    assert asked["objects"] == len(records) and asked["colour"] > 0 and asked["shape"] > 0
    # the action, effect and speed questions are those of a source without tracks
    from sf2t_jax.datasets.inventory import Roles, take_inventory
    from sf2t_jax.datasets.plans import Planner
    from sf2t_jax.datasets.sft import SftConfig, sft_examples

    inventory = take_inventory(data_dir / "world", Roles(train="train", heldout="validation", benchmark="test"))
    planner = Planner(inventory)
    tables = planner.tables
    with_facts = dict(sft_examples(inventory.records("train"), tables, SftConfig(), "train", planner.scene_facts))
    without = dict(sft_examples(inventory.records("train"), tables, SftConfig(), "train"))
    for key, example in without.items():
        assert [q["question"] for q in with_facts[key]["qa"][:len(example["qa"])]] == [q["question"] for q in example["qa"]]
        assert [q["answer"] for q in with_facts[key]["qa"][:len(example["qa"])]] == [q["answer"] for q in example["qa"]]


def test_fact_questions_are_asked_only_where_the_scene_answers_them(tmp_path):
    from sf2t_jax.datasets import facts
    from sf2t_jax.finevidbench.options import LetterBalancer

    colours, shapes = ("blue", "green", "red", "yellow"), ("circle", "square", "star", "triangle")
    rng, balancer = np.random.default_rng(0), LetterBalancer(np.random.default_rng(1))
    # two red objects, two circles: no colour of "the circle", no shape of "the red object"
    twins = facts.fact_questions([("red", "circle"), ("red", "circle")], colours, shapes, rng, balancer)
    assert [(q["task"], q["answer_text"]) for q in twins] == [("objects", "2")]
    mixed = facts.fact_questions([("red", "circle"), ("red", "star"), ("blue", "circle")], colours, shapes, rng,
                                 balancer)
    assert [(q["task"], q["question"], q["answer_text"]) for q in mixed] == [
        ("colour", "What colour is the star?", "red"), ("shape", "What shape is the blue object?", "circle"),
        ("objects", "How many objects does the video show?", "3")]
    assert facts.fact_questions([], colours, shapes, rng, balancer) == []
    # a tracks file without what the questions read is refused naming it; too few colours: none
    (tmp_path / "1.json").write_text(json.dumps({"objects": [{"colour": "red", "role": "actor"}]}))
    with pytest.raises(facts.FactsError, match=r"1\.json: expected objects with colour, shape and role"):
        facts.read_scene_facts(tmp_path, ["1"])
    (tmp_path / "1.json").write_text(json.dumps({"objects": [{"colour": "red", "shape": "star", "role": "actor"}]}))
    assert facts.read_scene_facts(tmp_path, ["1"]) is None and facts.read_scene_facts(tmp_path / "no", ["1"]) is None


def test_captions_ask_fact_questions_at_their_share_and_scene_qa_never(data_dir):
    def tasks(pipeline, n=40):
        return [pipeline.prepare(g).sample.task for g in range(n)]

    assert set(tasks(_pipeline(data_dir, "captions"))) == {"caption"}
    everything = _pipeline(data_dir, "captions", fact_share=1.0)
    assert set(tasks(everything)) == set(FACT_TASKS)
    half = tasks(_pipeline(data_dir, "captions", fact_share=0.5), 60)
    assert 15 <= sum(t == "caption" for t in half) <= 45  # a fair coin per sample, 60 draws
    # the caption samples of a mixed stream are those of the captions-only stream when they agree
    prepared = everything.prepare(5)
    tok, ex = everything.tokenizer, prepared.example
    qa, j = everything.records[5]["qa"], prepared.sample.metadata["question_index"]
    assert prepared.sample.answer == qa["answer_text"][j].decode()
    assert tok.decode(ex["input_ids"][ex["loss_mask"] == 1].tolist()) == prepared.sample.answer + "<|im_end|>"
    assert SCENE_TASK_NAMES[ex["task_id"]] == prepared.sample.task
    assert all(t in ("action", "effect", "speed") for t in tasks(_pipeline(data_dir, "scene_qa"), 60))


def test_scene_modes_need_a_labelled_source(tmp_path):
    from sf2t_jax.input.sources import InputSourceError

    with pytest.raises(InputSourceError, match="need a labelled tfds source"):
        InputPipeline(InputConfig(source=str(tmp_path), tokenizer="tiny:1000", mode="scene_qa", max_length=512),
                      process_index=0, process_count=1)


# ---- joint SFT+SF²T: scene QA samples mixed into the fragment stream (data.sft_weight) ------
def _mixed(data_dir, sft_weight, **kw):
    config = InputConfig.from_dict(dict(
        source="tfds:sf2t_corpus", sft_source="tfds:video_sft", sft_weight=sft_weight,
        data_dir=str(layout.DataPaths.from_dir(data_dir).tfds), tokenizer="tiny:1000", batch_size=4, max_length=160,
        resolution=(56, 56), frame_budget=6, scene_frames=6, num_epochs=0,
        weights={"count": 1.0, "consistency": 1.0}, tasks={"count": {"n_frames": (2, 6)}}, **kw))
    return InputPipeline(config, process_index=0, process_count=1)


def test_mixed_stream_has_the_sft_share_and_counts_every_task(data_dir):
    w, batches = 0.3, 12
    pipeline = _mixed(data_dir, w)
    names = pipeline.config.task_names
    assert names == ("count", "consistency", "localize", "disorder", "rearrange", "action", "effect", "speed")
    it = pipeline.iterator()
    tasks = [names[t] for _ in range(batches) for t in next(it)["task_id"]]
    n = len(tasks)
    sft = sum(t in ("action", "effect", "speed") for t in tasks)
    # Within 3 binomial standard deviations of the configured share (grain's interleave is exact,
    # so only skipped samples can move it).
    assert abs(sft / n - w) <= 3 * np.sqrt(w * (1 - w) / n), (sft, n)
    assert {"count", "consistency"} <= set(tasks) and {"action", "effect", "speed"} & set(tasks)
    # Every stream position is counted once, under its task (good or skipped) or as a decode skip.
    rates = it.summary()["rates"]
    assert sum(r["drawn"] for r in rates.values()) == it.get_state()["position"]
    assert set(rates) - {"(decode)"} == set(tasks) | {t for t, r in rates.items() if r["skipped"]}
    # A mixed-in sample is exactly the scene_qa sampler's sample of its video_sft record.
    scene, compared = _pipeline(data_dir, "scene_qa"), 0
    for g in range(10):
        prepared = pipeline.prepare(g)
        record = pipeline.records[g]
        if record.get("sft"):
            compared += 1
            alone = scene.maker.prepare(g, {k: v for k, v in record.items() if k != "sft"})
            assert (alone.sample.question, alone.sample.answer) == (prepared.sample.question, prepared.sample.answer)
            np.testing.assert_array_equal(alone.sample.frames, prepared.sample.frames)
    assert compared == 3  # positions 3, 6 and 9 of grain's 7:3 interleave


def test_mixed_stream_resumes_exactly_with_workers(data_dir):
    reference = _mixed(data_dir, 0.25).iterator()
    for _ in range(3):
        next(reference)
    state = reference.get_state()
    expected = [next(reference) for _ in range(2)]
    restored = _mixed(data_dir, 0.25, workers=2).iterator()  # another worker count, the same stream
    restored.set_state(state)
    got = [next(restored) for _ in range(2)]
    restored.close()
    for a, b in zip(expected, got):
        assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert restored.get_state() == reference.get_state()


@pytest.mark.parametrize("fields, message", [
    (dict(sft_weight=0.5), "data.sft_source='': data.sft_weight=0.5 needs labelled video_sft records"),
    (dict(sft_weight=0.5, sft_source="tfds:video_sft", mode="scene_qa"),
     "data.sft_weight=0.5: mixing scene QA samples in needs input.mode='fragments'"),
    (dict(sft_weight=1.5, sft_source="tfds:video_sft"), "data.sft_weight=1.5: expected a number >= 0 and <= 1"),
])
def test_bad_sft_mix_settings_name_the_field(fields, message):
    from sf2t_jax.input import InputConfigError

    with pytest.raises(InputConfigError) as e:
        InputConfig(tokenizer="tiny:1000", max_length=512, **fields)
    assert str(e.value).startswith(message)
