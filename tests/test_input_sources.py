"""Sources: a tfds corpus of encoded videos (the sf2t_corpus schema), in-memory records,
manifests and single files; the `input` config section."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from sf2t_jax.fragments import FragmentsConfig
from sf2t_jax.input import (
    FileSource,
    InputConfig,
    InputConfigError,
    InputPipeline,
    InputSourceError,
    RecordSource,
    default_section,
    open_source,
)
from sf2t_jax.input.fixture_clips import moving_clip, write_clips
from sf2t_jax.text import Tokenizer, build_tiny_tokenizer
from sf2t_jax.video import encode_video

CLIPS = 4


class TinyVideoCorpus(tfds.core.GeneratorBasedBuilder):
    """`id` text + `video` encoded bytes, like data/sf2t_corpus; one clip is random bytes."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(), "video": tfds.features.Tensor(shape=(), dtype=np.object_)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(CLIPS):
            yield f"clip{i}", {"id": f"clip{i}", "video": encode_video(moving_clip(12, 64, 64, seed=i), container="webm")}
        yield "junk", {"id": "junk", "video": b"\x00junk" * 100}


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(build_tiny_tokenizer(1000), source="tiny")


def _config(source, **kw):
    base = dict(source=source, tokenizer="tiny", batch_size=2, max_length=256, resolution=(56, 56), seed=0)
    return InputConfig(**{**base, **kw})


def test_tfds_source_with_workers(tmp_path, tokenizer):
    TinyVideoCorpus(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    source = open_source("tfds:tiny_video_corpus", split="train", data_dir=str(tmp_path))
    assert isinstance(source, RecordSource) and len(source) == CLIPS + 1
    ids = sorted(source[i]["id"] for i in range(len(source)))
    assert ids == ["clip0", "clip1", "clip2", "clip3", "junk"] and isinstance(source[0]["video"], bytes)
    config = _config("tfds:tiny_video_corpus", data_dir=str(tmp_path), workers=2)
    it = InputPipeline(config, tokenizer=tokenizer, process_index=0, process_count=1).iterator()
    batches = list(it)
    it.close()
    assert it.samples == CLIPS and it.summary()["by_reason"] == {"not_a_video": 1}
    assert sum(int(b["valid"].sum()) for b in batches) == CLIPS
    with pytest.raises(InputSourceError, match="tfds:no_such_corpus"):
        open_source("tfds:no_such_corpus", data_dir=str(tmp_path))


def test_record_source_over_any_indexable(tokenizer):
    records = [{"id": b"a", "video": encode_video(moving_clip(8, 64, 64, seed=1), container="mp4")},
               {"id": "b", "video": np.array(encode_video(moving_clip(8, 64, 64, seed=2), container="mkv"),
                                             dtype=object)}]
    source = RecordSource(records, name="memory")
    assert source[0]["id"] == "a" and source[1]["record_index"] == 1 and isinstance(source[1]["video"], bytes)
    pipeline = InputPipeline(_config("", fragments=FragmentsConfig(weights={"count": 1})), tokenizer=tokenizer,
                             source=source, process_index=0, process_count=1)
    batch = next(pipeline.iterator())
    assert batch["valid"].tolist() == [1, 1]
    with pytest.raises(InputSourceError, match=r"memory record 0: expected fields 'id' and 'video', got \['name'\]"):
        RecordSource([{"name": "x"}], name="memory")[0]


def test_folder_manifest_and_single_file(tmp_path):
    paths = write_clips(tmp_path / "v" / "sub", 2, container="webm") + write_clips(tmp_path / "v", 1, prefix="top")
    (tmp_path / "v" / "labels.json").write_text("{}")
    folder = open_source(str(tmp_path / "v"))
    assert isinstance(folder, FileSource) and sorted(folder.paths) == sorted(paths)
    assert [folder[i]["id"] for i in range(3)] == ["sub/good_000.webm", "sub/good_001.webm", "top_000.mp4"]
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"v/top_000.mp4  # a comment\n\n{paths[0]}\n")
    assert open_source(str(manifest)).paths == (str(tmp_path / "v" / "top_000.mp4"), paths[0])
    assert open_source(paths[1]).paths == (paths[1],)
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(InputSourceError, match="lists no files"):
        open_source(str(tmp_path / "empty.txt"))
    with pytest.raises(InputSourceError, match="input.source is not set"):
        open_source("")


def test_config_section():
    section = default_section()
    assert InputConfig.from_dict(section) == InputConfig()
    section.update(source="x", weights={"count": 2.0, "rearrange": 1.0}, present="images", resolution=[112, 112],
                   tasks={"count": {"n_frames": [2, 8]}}, max_length=2048)
    config = InputConfig.from_dict(section)
    assert dict(config.fragments.weights) == {"count": 2.0, "consistency": 0.0, "localize": 0.0, "disorder": 0.0,
                                              "rearrange": 1.0}
    assert config.fragments.count.n_frames == (2, 8) and config.resolution == (112, 112)
    assert {config.task_config().task_config(t).present for t in ("count", "rearrange")} == {"images"}
    # images: 8 frames -> 8 slices of 64 tokens (+ 2 markers each).
    g = config.geometry
    assert (g.slices, g.grid_hw, g.tokens_per_slice, g.max_vision_tokens) == (8, (8, 8), 16, 8 * 16 + 16)
    with pytest.raises(InputConfigError, match="input.tasks: unknown task 'counting'"):
        InputConfig.from_dict({"tasks": {"counting": {}}})
    with pytest.raises(InputConfigError, match="input.tasks.count"):
        InputConfig.from_dict({"tasks": {"count": {"frames": 3}}})
    with pytest.raises(InputConfigError, match="unknown fragment task 'spin'"):
        InputConfig.from_dict({"weights": {"spin": 1.0}})
    # A task's own presentation under an input.present that applies to every task would be
    # overwritten unseen: refused; with input.present='' it is the task's.
    with pytest.raises(InputConfigError, match=r"input.tasks.rearrange.present='images' conflicts with "
                                               r"input.present='video'"):
        InputConfig.from_dict({"present": "video", "tasks": {"rearrange": {"present": "images"}}})
    config = InputConfig.from_dict({"present": "", "tasks": {"rearrange": {"present": "images"}}})
    assert [config.task_config().task_config(t).present for t in ("count", "rearrange")] == ["video", "images"]
    agreeing = {"present": "images", "resolution": [56, 56], "tasks": {"rearrange": {"present": "images"}}}
    assert InputConfig.from_dict(agreeing).present == "images"


def test_gs_folder_and_manifest_give_the_batches_of_the_local_copy(tmp_path, tokenizer, monkeypatch):
    """Every worker of a pod reads the same bucket: a gs:// folder (loopback emulator) lists the
    same ids as its local copy and the pipeline makes byte-identical batches; a gs:// manifest
    resolves relative lines against its own prefix; a missing object is skipped and counted."""
    from etils import epath

    from gcs_emulator import storage_emulator

    local = tmp_path / "v"
    write_clips(local / "sub", 2, container="webm")
    write_clips(local, 1, prefix="top")
    with storage_emulator(tmp_path) as (bucket, env):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        root = f"gs://{bucket}/videos"
        for path in sorted(local.rglob("*.*")):
            epath.Path(f"{root}/{path.relative_to(local).as_posix()}").write_bytes(path.read_bytes())
        remote, copy = open_source(root), open_source(str(local))
        assert [remote[i]["id"] for i in range(len(remote))] == [copy[i]["id"] for i in range(len(copy))] == [
            "sub/good_000.webm", "sub/good_001.webm", "top_000.mp4"]
        config = dict(fragments=FragmentsConfig(weights={"count": 1}), batch_size=3)
        ours = next(InputPipeline(_config(root, **config), tokenizer=tokenizer, process_index=0,
                                  process_count=1).iterator())
        theirs = next(InputPipeline(_config(str(local), **config), tokenizer=tokenizer, process_index=0,
                                    process_count=1).iterator())
        assert ours.keys() == theirs.keys()
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
        epath.Path(f"{root}/list.txt").write_text("top_000.mp4\nsub/gone.webm  # deleted\n")
        listed = open_source(f"{root}/list.txt")
        assert listed.paths == (f"{root}/top_000.mp4", f"{root}/sub/gone.webm")
        it = InputPipeline(_config(f"{root}/list.txt", **{**config, "batch_size": 1}), tokenizer=tokenizer,
                           process_index=0, process_count=1).iterator()
        assert sum(int(b["valid"].sum()) for b in it) == 1 and it.summary()["by_reason"] == {"missing": 1}
        with pytest.raises(InputSourceError, match="no such file or folder"):
            open_source(f"gs://{bucket}/nothing_here")
