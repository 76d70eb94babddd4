"""FineVidBench construction: from the world and from a small fake SSv2 folder."""
import collections
import json

import numpy as np
import pytest

from sf2t_jax.finevidbench import build as fvb
from sf2t_jax.finevidbench.scene import action_text
from sf2t_jax.finevidbench.schema import LETTERS, SPEEDS, Item, read_jsonl, write_jsonl
from sf2t_jax.finevidbench.source import SSv2FolderError, load_source
from sf2t_jax import ssv2
from sf2t_jax.ssv2 import CATEGORIES, template_tables
from sf2t_jax.world import build as world
from sf2t_jax.world.build import encode_clip
from sf2t_jax.world.config import WorldConfig

WORLD = WorldConfig(train_clips=0, validation_clips=4, test_clips=24, height=64, width=64,
                    num_frames=16, seed=1)
REAL = ["Opening [something]", "Closing [something]", "Putting [something] into [something]",
        "Taking [something] out of [something]", "Pushing [something] from left to right",
        "Pushing [something] from right to left", "Holding [something] next to [something]"]


@pytest.fixture(scope="module")
def world_items(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    world.write_world(root, WORLD, progress=False)
    source = load_source(root, ("validation", "test"))
    return source, fvb.build_items(source, "test")


def _write_fake_ssv2(root, records_by_split, make_videos=True):
    (root / "labels").mkdir(parents=True)
    (root / "videos").mkdir()
    clip = encode_clip(np.full((8, 32, 32, 3), 128, np.uint8), 12, "vp9")
    for split, records in records_by_split.items():
        (root / "labels" / f"{split}.json").write_text(json.dumps(records))
        for r in records:
            if make_videos and "id" in r:
                (root / "videos" / f"{r['id']}.webm").write_bytes(clip)


def _record(cid, template, names=("red cup", "blue box", "green pen")):
    placeholders = list(names[:ssv2.num_slots(template)])
    return {"id": str(cid), "label": ssv2.label(template, placeholders), "template": template,
            "placeholders": placeholders}


def test_statistics_match_the_spec(world_items):
    source, items = world_items
    stats = fvb.benchmark_stats(items)
    assert stats["videos"] == 24 and 22 <= stats["items_per_video"] <= 30
    for letter, share in stats["letters_4way"].items():
        assert abs(share - 0.25) <= 0.05, stats["letters_4way"]
    assert set(stats["categories"]) == set(CATEGORIES)
    assert set(stats["speeds"]) == set(SPEEDS)
    assert set(stats["tasks"]) == {"action", "effect", "speed", "frame_count",
                                   "meaning_of_order", "frame_comparison", "adjust_or_not",
                                   "rearrangement"}
    assert stats["shuffled_fraction"] == 0.5
    two_way = collections.Counter(it.answer for it in items if len(it.options) == 2)
    assert abs(two_way["A"] - two_way["B"]) <= 1


def test_items_are_consistent(world_items):
    source, items = world_items
    tables = template_tables(source.templates)
    assert len({it.item_id for it in items}) == len(items)
    by_conv = collections.defaultdict(list)
    for it in items:
        if it.options:
            assert it.options[LETTERS.index(it.answer)] == it.answer_text
            assert len(it.options) in (2, 4)
        assert it.category == tables.category[it.template]
        if it.task == "action":
            record = next(r for r in source.records["test"] if r.id == it.video_id)
            assert it.answer_text == ssv2.fill(record.template, record.placeholders)
            synonyms = {action_text(record, t) for t in tables.synonyms[it.template]}
            assert synonyms & set(it.options), "no visual synonym among the distractors"
        if it.level == "fragment":
            by_conv[it.conversation].append(it)
    for conv, turns in by_conv.items():
        tasks = [t.task for t in turns]
        assert [t.turn for t in turns] == list(range(1, len(turns) + 1))
        assert tasks[:3] == ["frame_count", "meaning_of_order", "adjust_or_not"]
        first = turns[0]
        frames, perm = first.frames, first.permutation
        assert [sorted(frames)[p] for p in perm] == list(frames)
        assert first.answer_text == str(len(frames))
        shuffled = list(perm) != sorted(perm)
        assert turns[2].answer_text == ("yes" if shuffled else "no")
        assert tasks[3:] == (["frame_comparison", "rearrangement"] if shuffled else [])
        if shuffled:
            comparison = turns[3]
            named = [int(p) for p in comparison.question.split("Of frames ")[1].replace(
                " and", ",").split(",")[:4]]
            ranks = [perm[p - 1] for p in named]
            pick = named[ranks.index(min(ranks) if "earliest" in comparison.question
                                     else max(ranks))]
            assert comparison.answer_text == f"frame {pick}"
            order = turns[-1].order
            assert [frames[p - 1] for p in order] == sorted(frames)
            assert turns[-1].answer == ", ".join(map(str, order)) and not turns[-1].options
        reverse = tables.reverse[first.template]
        if reverse is not None:
            record = next(r for r in source.records["test"] if r.id == first.video_id)
            assert action_text(record, reverse) in turns[1].options


def test_same_seed_same_items_other_seed_other_items(world_items):
    source, items = world_items
    assert fvb.build_items(source, "test") == items
    other = fvb.build_items(source, "test", fvb.BenchConfig(seed=1))
    assert other != items and len(other) > 0


def test_jsonl_round_trip_and_disjoint_splits(world_items, tmp_path):
    source, items = world_items
    stats = fvb.write_benchmark(source, tmp_path, ("validation", "test"))
    test = read_jsonl(tmp_path / "finevidbench_test.jsonl")
    val = read_jsonl(tmp_path / "finevidbench_validation.jsonl")
    assert test == items and stats["test"]["items"] == len(items)
    assert not {it.video_id for it in test} & {it.video_id for it in val}
    assert json.loads((tmp_path / "finevidbench_stats.json").read_text())["skipped"] == {
        "missing_video": 0, "unknown_template": 0, "duplicate_id": 0, "malformed": 0}
    write_jsonl(tmp_path / "one.jsonl", items[:3])
    assert read_jsonl(tmp_path / "one.jsonl") == items[:3]


def test_fake_ssv2_folder_with_real_templates_builds(tmp_path):
    test = [_record(10 + i, t) for i, t in enumerate(REAL)]
    val = [_record(100 + i, t) for i, t in enumerate(REAL[:3])]
    _write_fake_ssv2(tmp_path, {"test": test, "validation": val})
    source = load_source(tmp_path, ("validation", "test"))
    assert source.problems.total == 0
    items = fvb.build_items(source, "test")
    stats = fvb.benchmark_stats(items)
    assert stats["videos"] == len(REAL) and set(stats["speeds"]) == set(SPEEDS)
    opening = [it for it in items if it.video_id == "10" and it.task == "meaning_of_order"]
    assert all("Closing red cup" in it.options for it in opening)  # the reversed action


def test_bad_records_are_counted_and_listed(tmp_path):
    test = [_record(1, REAL[0]), _record(2, REAL[1]), _record(2, REAL[2]),  # duplicate id
            _record(3, "Juggling [something]"),  # not an SSv2 template
            {"id": "4", "label": "x"},  # fields missing
            _record(5, REAL[3])]
    _write_fake_ssv2(tmp_path, {"test": test, "validation": [_record(1, REAL[4])]})
    (tmp_path / "videos" / "5.webm").unlink()  # label points at a missing video
    source = load_source(tmp_path, ("test", "validation"))
    assert source.problems.counts() == {"missing_video": 1, "unknown_template": 1,
                                        "duplicate_id": 2, "malformed": 1}
    assert [r.id for r in source.records["test"]] == ["1", "2"]
    assert source.records["validation"] == []  # id 1 is already a test video
    assert "Juggling" in source.problems.report()
    assert len(fvb.build_items(source, "test")) > 0  # 2 templates: distractors from SSv2


def test_missing_or_broken_label_file_is_an_error(tmp_path):
    _write_fake_ssv2(tmp_path, {"test": [_record(1, REAL[0])]})
    with pytest.raises(SSv2FolderError, match="validation.json"):
        load_source(tmp_path, ("test", "validation"))
    (tmp_path / "labels" / "test.json").write_text("{not json")
    with pytest.raises(SSv2FolderError, match="not valid JSON"):
        load_source(tmp_path, ("test",))


@pytest.mark.parametrize("kwargs", [{"scene_speeds": ("static",)}, {"speed_speeds": ("x3",)},
                                    {"set_size": (3, 8)}, {"shuffled_fraction": 1.5}])
def test_bad_bench_config_is_a_clear_error(kwargs):
    with pytest.raises(ValueError, match="BenchConfig"):
        fvb.BenchConfig(**kwargs)


def test_bad_item_is_refused():
    with pytest.raises(ValueError, match="answer"):
        Item(item_id="1/action/x1", video_id="1", split="test", level="scene", task="action",
             speed="x1", conversation="1/action/x1", turn=1, question="?",
             options=("a", "b", "c", "d"), answer="A", answer_text="b", category="slight",
             template=REAL[0])


def test_an_answer_letter_beyond_the_options_is_a_clear_error(tmp_path):
    import json

    from sf2t_jax.errors import InputError
    from sf2t_jax.finevidbench import read_jsonl

    item = {"item_id": "v1/action", "video_id": "v1", "split": "test", "level": "scene", "task": "action", "conversation": "v1",
            "turn": 0, "speed": "x1", "question": "What happens?", "options": ["a", "b"], "answer": "C",
            "answer_text": "a", "category": "distinctive", "template": "t", "frames": None, "permutation": None,
            "order": None}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(item) + "\n")
    try:
        read_jsonl(path)
    except InputError as e:
        assert "bad.jsonl:1" in str(e) and "'C' is not among the 2 options" in str(e)
    else:
        raise AssertionError("no error")
