"""Writing the world as an SSv2-format folder: schema, determinism, resume, atomic writes."""
import collections
import json

import av
import pytest

from sf2t_jax import ssv2
from sf2t_jax.world import build
from sf2t_jax.world.config import SPLITS, WorldConfig
from sf2t_jax.world.templates import world_templates

TINY = WorldConfig(train_clips=6, validation_clips=2, test_clips=2, height=64, width=64,
                   num_frames=16, seed=3)


def _read(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    summary = build.write_world(root, TINY, progress=False, workers=2)
    return root, summary


def test_folder_has_the_ssv2_layout_and_schema(world):
    root, summary = world
    assert summary.rendered == 10 and summary.skipped == 0
    ids = []
    for split in SPLITS:
        records = _read(root / "labels" / f"{split}.json")
        assert len(records) == TINY.clips(split)
        for r in records:
            assert set(r) == {"id", "label", "template", "placeholders"}
            assert r["template"] in ssv2.ssv2_templates()
            assert r["label"] == ssv2.label(r["template"], r["placeholders"])
            assert r["label"][0].islower()
            assert (root / "videos" / f"{r['id']}.webm").stat().st_size > 0
            tracks = _read(root / "tracks" / f"{r['id']}.json")
            assert tracks["template"] == r["template"]
            assert tracks["num_frames"] == 16 and len(tracks["objects"][0]["x"]) == 16
            ids.append(r["id"])
    assert len(ids) == len(set(ids)), "ids must be unique across splits"
    label_map = _read(root / "labels" / "labels.json")
    assert len(label_map) == 174 and label_map["Holding something next to something"] == "19"


def test_video_files_decode_to_the_configured_size(world):
    root, _ = world
    record = _read(root / "labels" / "train.json")[0]
    with av.open(str(root / "videos" / f"{record['id']}.webm")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 16 and frames[0].shape == (64, 64, 3)


def test_same_seed_same_folder_byte_for_byte_whatever_the_rendering_processes(world, tmp_path):
    root, _ = world  # rendered by two processes
    other = tmp_path / "again"
    build.write_world(other, TINY, progress=False, workers=1)
    for split in SPLITS:
        assert (other / "labels" / f"{split}.json").read_bytes() == (
            root / "labels" / f"{split}.json").read_bytes()
    for sub in ("tracks", "videos"):
        paths = sorted((root / sub).iterdir())
        assert [p.name for p in paths] == sorted(p.name for p in (other / sub).iterdir())
        for path in paths:
            assert (other / sub / path.name).read_bytes() == path.read_bytes(), path.name


def test_another_seed_gives_another_world():
    a = [build.scene_for(TINY, "train", i).placeholders for i in range(6)]
    b = [build.scene_for(WorldConfig(**{**TINY.__dict__, "seed": 4}), "train", i).placeholders
         for i in range(6)]
    assert a != b


def test_templates_come_in_balanced_rounds():
    n = 3 * len(world_templates())
    counts = collections.Counter(build.template_for(TINY, "train", i) for i in range(n))
    assert set(counts) == set(world_templates()) and set(counts.values()) == {3}
    # clip i keeps its template when the split grows
    assert build.template_for(TINY, "train", 5) == build.template_for(
        WorldConfig(**{**TINY.__dict__, "train_clips": 100}), "train", 5)


def test_rerun_skips_finished_clips_and_renders_missing_ones(tmp_path):
    config = WorldConfig(train_clips=3, validation_clips=1, test_clips=1, height=64, width=64,
                         num_frames=16)
    build.write_world(tmp_path, config, progress=False)
    before = (tmp_path / "tracks" / "2.json").read_bytes()
    (tmp_path / "videos" / "2.webm").unlink()
    (tmp_path / "videos" / ".3.webm.999.partial").write_bytes(b"half a video")
    again = build.write_world(tmp_path, config, progress=False)
    assert (again.rendered, again.skipped) == (1, 4)
    assert (tmp_path / "tracks" / "2.json").read_bytes() == before
    assert not list((tmp_path / "videos").glob(".*"))
    grown = build.write_world(tmp_path, WorldConfig(**{**config.__dict__, "train_clips": 5}),
                              progress=False)
    assert (grown.rendered, grown.skipped) == (2, 5)


def test_interrupted_run_leaves_no_half_written_file(tmp_path, monkeypatch):
    config = WorldConfig(train_clips=4, validation_clips=0, test_clips=0, height=64, width=64,
                         num_frames=16)
    real_encode, calls = build.encode_clip, []

    def failing_encode(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-run
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(build, "encode_clip", failing_encode)
    with pytest.raises(KeyboardInterrupt):
        build.write_world(tmp_path, config, progress=False, workers=1)  # in this process: the patch applies
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["1.webm", "2.webm"]
    assert not (tmp_path / "labels" / "train.json").exists()  # labels come last
    monkeypatch.setattr(build, "encode_clip", real_encode)
    summary = build.write_world(tmp_path, config, progress=False)
    assert (summary.rendered, summary.skipped) == (2, 2)
    assert len(_read(tmp_path / "labels" / "train.json")) == 4


def test_folder_rendered_with_other_settings_is_refused(tmp_path):
    build.write_world(tmp_path, WorldConfig(train_clips=1, validation_clips=0, test_clips=0,
                                            height=64, width=64, num_frames=16),
                      progress=False)
    with pytest.raises(ValueError, match="height"):
        build.write_world(tmp_path, WorldConfig(train_clips=1, validation_clips=0,
                                                test_clips=0, height=96, width=64,
                                                num_frames=16), progress=False)


@pytest.mark.parametrize("field,value", [("height", 63), ("num_frames", 4), ("codec", "av1"),
                                         ("train_clips", -1), ("max_objects", 4)])
def test_bad_config_is_a_clear_error(field, value):
    with pytest.raises(ValueError, match=field):
        WorldConfig(**{field: value})


def test_h264_writes_mp4(tmp_path):
    summary = build.write_world(tmp_path, WorldConfig(
        train_clips=1, validation_clips=0, test_clips=0, height=64, width=64, num_frames=16,
        codec="h264"), progress=False)
    assert summary.rendered == 1 and (tmp_path / "videos" / "1.mp4").exists()
