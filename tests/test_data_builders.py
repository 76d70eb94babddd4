"""The three TFDS builders on a small fake SSv2 folder: real SSv2 templates, videos encoded
with PyAV here, SSv2's unlabelled test file, and every kind of bad record."""
import io
import json
import os
import shutil

import av
import numpy as np
import pytest
import tensorflow_datasets as tfds

import launch
from sf2t_jax import ssv2
from sf2t_jax.configuration import load_config
from sf2t_jax.datasets import features, layout, read
from sf2t_jax.datasets.inventory import Roles
from sf2t_jax.finevidbench.schema import LETTERS, SPEED_FACTORS
from sf2t_jax.finevidbench.source import SSv2FolderError
from sf2t_jax.prepare import prepare
from sf2t_jax.validation import check_prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo.py")

# Real SSv2 templates outside the synthetic world's 24: their tables come from the rules.
TEMPLATES = [
    "Opening [something]", "Closing [something]", "Putting [something] into [something]",
    "Taking [something] out of [something]", "Folding [something]", "Unfolding [something]",
    "Tearing [something] into two pieces", "Holding [something] next to [something]",
    "Dropping [something] onto [something]", "Pouring [something] into [something]",
    "Lifting [something] up completely without letting it drop down",
    "Pretending to open [something] without actually opening it",
]
TRAIN = [str(100 + i) for i in range(12)]
VALIDATION = [str(200 + i) for i in range(12)]
TEST = ["300", "301"]
MP4 = "105"  # one clip in MP4/H.264: the format field must say so


def _encode(seed: int, container_format: str, codec: str) -> bytes:
    """8 frames of 32x32: a bright square moving right over grey, through PyAV."""
    frames = np.full((8, 32, 32, 3), 96, np.uint8)
    for t in range(8):
        x = 2 + 3 * t
        frames[t, 10 + seed % 8:18 + seed % 8, x:x + 8] = (250, 40 * (seed % 6), 30)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=12)
        stream.height, stream.width, stream.pix_fmt = 32, 32, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buf.getvalue()


def _record(cid, template):
    placeholders = ["red cup", "blue box"][:ssv2.num_slots(template)]
    return {"id": cid, "label": ssv2.label(template, placeholders), "template": template,
            "placeholders": placeholders}


def _write_fake_ssv2(root):
    (root / "labels").mkdir(parents=True)
    (root / "videos").mkdir()
    for k, cid in enumerate(TRAIN + VALIDATION + TEST):
        ext, data = ("mp4", _encode(k, "mp4", "libx264")) if cid == MP4 else (
            "webm", _encode(k, "webm", "libvpx-vp9"))
        (root / "videos" / f"{cid}.{ext}").write_bytes(data)
    train = [_record(c, TEMPLATES[i % len(TEMPLATES)]) for i, c in enumerate(TRAIN)]
    validation = [_record(c, TEMPLATES[i % len(TEMPLATES)]) for i, c in enumerate(VALIDATION)]
    # bad records, one of each kind
    train.append(_record("9001", "Opening [something]"))  # no video file
    train.append(_record("9002", "Juggling [something] in the air"))  # not an SSv2 template
    train.append(_record(TRAIN[0], "Closing [something]"))  # repeated id within a split
    validation.append(_record(TRAIN[1], "Folding [something]"))  # repeated id across splits
    train.append({"id": "9004", "label": "opening a jar", "template": "Opening [something]"})
    train.append(_record("9003", "Folding [something]"))  # a "video" that is not one
    (root / "videos" / "9003.webm").write_bytes(b"this is not a video file" * 10)
    (root / "labels" / "train.json").write_text(json.dumps(train))
    (root / "labels" / "validation.json").write_text(json.dumps(validation))
    # like real SSv2: the test file has ids only
    (root / "labels" / "test.json").write_text(json.dumps([{"id": c} for c in TEST]))
    (root / "labels" / "labels.json").write_text(json.dumps(ssv2.label_map()))


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssv2")
    _write_fake_ssv2(root)
    data_dir = tmp_path_factory.mktemp("data")
    config = load_config(DEMO, [f"data.dir={data_dir}"])
    return root, data_dir, prepare(check_prepare(config, str(root)), progress=False)


def _ids(source):
    return [features.text(r["id"]) for r in source]


def test_fake_ssv2_builds_all_three_datasets(fake):
    root, _, result = fake
    # real SSv2: the unlabelled test file is passed over, the benchmark comes from validation
    assert result.roles == Roles(train="train", heldout=None, benchmark="validation")
    assert result.world is None and result.source == root
    assert set(result.datasets.values()) == {"built"}
    assert result.examples[layout.CORPUS] == {"train": 12}
    assert result.examples[layout.SFT] == {"train": 12}
    assert result.examples[layout.BENCH_VIDEOS] == {"test": 12}
    assert result.benchmark["videos"] == 12 and result.benchmark["items"] > 12 * 20
    assert set(result.benchmark["categories"]) == {"distinctive", "non_typical", "slight"}


def test_bad_records_are_counted_and_listed(fake):
    _, _, result = fake
    listed = {reason: [(s, i) for s, i, _ in rows] for reason, rows in result.problems.items()}
    assert listed == {"missing_video": [("train", "9001")],
                      "unknown_template": [("train", "9002")],
                      "duplicate_id": [("train", TRAIN[0]), ("validation", TRAIN[1])],
                      "malformed": [("train", "9004")],
                      "unreadable_video": [("train", "9003")]}
    text = result.report()
    assert ("skipped records: missing_video 1, unknown_template 1, duplicate_id 2, "
            "malformed 1, unreadable_video 1") in text
    assert "train/9002: Juggling [something] in the air" in text
    assert "train/9003: not_a_video" in text
    assert "9003" not in _ids(read.corpus_source(fake[1]))


def test_records_read_back_through_tfds_data_source_equal_what_was_written(fake):
    root, data_dir, result = fake
    tfds_dir = layout.DataPaths.from_dir(data_dir).tfds
    labels = {}
    for split in ("train", "validation"):
        for r in json.loads((root / "labels" / f"{split}.json").read_text()):
            labels.setdefault(r["id"], r)  # a repeated id keeps its first record

    corpus = tfds.data_source("sf2t_corpus", split="train", data_dir=tfds_dir, download=False)
    assert _ids(corpus) == TRAIN  # id order
    for r in corpus:
        assert set(r) == {"id", "video", "format"}  # no labels, on purpose
        cid = features.text(r["id"])
        ext = "mp4" if cid == MP4 else "webm"
        assert features.text(r["format"]) == ext
        assert r["video"] == (root / "videos" / f"{cid}.{ext}").read_bytes()

    sft = tfds.data_source("video_sft", split="train", data_dir=tfds_dir, download=False)
    assert _ids(sft) == TRAIN
    for r in sft:
        assert set(r) == {"id", "video", "format", "caption", "template", "category", "qa"}
        assert set(r["qa"]) == {"task", "speed", "speed_factor", "question", "options",
                                "answer", "answer_text"}
        label = labels[features.text(r["id"])]
        assert features.text(r["caption"]) == ssv2.fill(label["template"], label["placeholders"])
        assert features.text(r["template"]) == label["template"]
        qa = r["qa"]
        tasks = [features.text(t) for t in qa["task"]]
        assert tasks == ["action"] * 4 + ["effect"] * 4 + ["speed"] * 5
        for options, answer, answer_text, speed, factor in zip(
                qa["options"], qa["answer"], qa["answer_text"], qa["speed"],
                qa["speed_factor"]):
            assert options.shape == (4,)
            assert options[LETTERS.index(features.text(answer))] == answer_text
            assert factor == SPEED_FACTORS[features.text(speed)]
        assert qa["answer_text"][0] == r["caption"]  # the action answer is the caption

    items = tfds.data_source("finevidbench/items", split="test", data_dir=tfds_dir,
                             download=False)
    videos = tfds.data_source("finevidbench/videos", split="test", data_dir=tfds_dir,
                              download=False)
    assert _ids(videos) == VALIDATION
    assert set(items[0]) == {
        "item_id", "video_id", "split", "level", "task", "speed", "conversation", "turn",
        "question", "options", "answer", "answer_text", "category", "template", "frames",
        "frames_per_clip", "permutation", "order", "speed_factor", "video_index"}
    as_items = [features.item_from_example(r) for r in items]
    assert {it.split for it in as_items} == {"validation"}  # the label split it came from
    assert as_items == read.benchmark_items(data_dir)  # the JSON-lines export, in order
    for record, item in zip(items, as_items):
        video = videos[int(record["video_index"])]
        assert features.text(video["id"]) == item.video_id
        assert video["video"] == (root / "videos" / f"{item.video_id}.webm").read_bytes()
        assert record["speed_factor"] == SPEED_FACTORS[item.speed]
    joined = read.benchmark_source(data_dir)
    assert joined[5]["video"] == videos[int(items[5]["video_index"])]["video"]
    some = VALIDATION[3]
    assert joined.video(some) == ((root / "videos" / f"{some}.webm").read_bytes(), "webm")


def test_splits_are_disjoint_by_video_id(fake):
    _, data_dir, _ = fake
    training = set(_ids(read.corpus_source(data_dir))) | set(_ids(read.sft_source(data_dir)))
    bench = {it.video_id for it in read.benchmark_items(data_dir)}
    bench_videos = set(_ids(read.data_source(data_dir, layout.BENCH_VIDEOS, "test")))
    assert bench == bench_videos == set(VALIDATION)
    assert not training & bench
    assert TRAIN[1] in training  # the id repeated in validation stays with its first split
    with pytest.raises(FileNotFoundError, match="no split 'validation'"):
        read.corpus_source(data_dir, "validation")  # no held-out split: validation is the bench


def test_missing_label_file_is_a_clear_error(fake, tmp_path):
    root = tmp_path / "ssv2"
    shutil.copytree(fake[0], root)
    (root / "labels" / "train.json").unlink()
    with pytest.raises(SystemExit, match=r"error: .*train\.json: label file missing"):
        launch.main(["prepare", "--config", DEMO, "--source", str(root), "--no-progress",
                     f"--config.data.dir={tmp_path / 'data'}"])
    assert not (tmp_path / "data" / "tfds").exists()


def test_a_split_without_usable_videos_is_a_clear_error(fake, tmp_path):
    root = tmp_path / "ssv2"
    shutil.copytree(fake[0], root)
    for cid in VALIDATION:
        (root / "videos" / f"{cid}.webm").unlink()
    config = load_config(DEMO, [f"data.dir={tmp_path / 'data'}"])
    with pytest.raises(SSv2FolderError, match=r"validation\.json: no usable record for the "
                                          r"benchmark role; its skipped records: missing_video 12"):
        prepare(check_prepare(config, str(root)), progress=False)


def test_unlabelled_test_file_cannot_be_the_benchmark(fake, tmp_path):
    config = load_config(DEMO, [f"data.dir={tmp_path}", "data.benchmark_split=test"])
    with pytest.raises(SSv2FolderError, match=r"test\.json: no usable record for the benchmark "
                                          r"role; its skipped records: malformed 2 \(e\.g\. "
                                          r"300: missing \['label', 'template'"):
        prepare(check_prepare(config, str(fake[0])), progress=False)
