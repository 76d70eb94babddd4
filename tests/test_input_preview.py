"""`launch.py preview`: contact sheets of the first samples and a summary with the skips."""
import json
import textwrap

import numpy as np
import pytest
from PIL import Image

import launch
from sf2t_jax.input import contact_sheet as cs
from sf2t_jax.input import InputConfig, InputPipeline
from sf2t_jax.input.fixture_clips import write_broken_files, write_clips

CONFIG = textwrap.dedent("""
    import ml_collections

    from sf2t_jax.input import default_section


    def get_config(arg=None):
        config = ml_collections.ConfigDict()
        config.input = default_section()
        config.input.source = {source!r}
        config.input.tokenizer = "tiny:1000"
        config.input.resolution = (56, 56)
        config.input.max_length = 256
        config.input.seed = 11
        return config
""")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("preview")
    write_clips(root / "videos", 4)
    bad = write_broken_files(root / "videos")
    return root, bad


def test_preview_from_config(folder, tmp_path):
    root, bad = folder
    config_file = tmp_path / "exp.py"
    config_file.write_text(CONFIG.format(source=str(root / "videos")))
    out = tmp_path / "out"
    launch.main(["preview", "--config", str(config_file), "--n", "6", "--out", str(out),
                 "--config.input.weights.count=0.0"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 6 and "count" not in summary["samples_per_task"]
    assert sum(summary["samples_per_task"].values()) == 6
    assert all(sum(a.values()) == summary["samples_per_task"][t] for t, a in summary["answers"].items())
    assert summary["skipped"] == len(summary["skipped_files"]) == summary["tried"] - 6
    assert sum(summary["skipped_by_reason"].values()) == summary["skipped"]
    for entry in summary["skipped_files"]:
        if entry["path"] in bad and entry["reason"] not in ("too_short", "near_static"):
            assert bad[entry["path"]] == entry["reason"]  # decode failures are the file's own
    # Each sheet is the sample as the model sees it: the same frames the pipeline regenerates.
    pipeline = InputPipeline(InputConfig.from_dict({**_section(root), "weights": {
        "consistency": 1.0, "localize": 1.0, "disorder": 1.0, "rearrange": 1.0}}), process_index=0, process_count=1)
    for entry in summary["files"]:
        sheet = Image.open(out / entry["png"])
        assert sheet.mode == "RGB" and sheet.width >= 640
        sample = pipeline.prepare(entry["index"]).sample
        assert (sample.task, sample.question, sample.answer) == (entry["task"], entry["question"], entry["answer"])
        # Tile 1 (56x56 enlarged x2, nearest) holds the first frame's pixels exactly (its lower
        # half: the frame number is drawn over the top-left corner).
        top, left = 2 * cs.MARGIN + 2 * cs.LINE_H, cs.MARGIN
        tile = np.asarray(sheet)[top: top + 112: 2, left: left + 112: 2]
        assert np.array_equal(tile[28:], sample.frames[0][28:])


def _section(root):
    return {"source": str(root / "videos"), "tokenizer": "tiny:1000", "resolution": (56, 56), "max_length": 256,
            "seed": 11}


def test_preview_a_folder_directly(folder, tmp_path):
    root, _ = folder
    out = tmp_path / "out"
    launch.main(["preview", "--source", str(root / "videos"), "--n", "3", "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 3 and len(list(out.glob("*.png"))) == 3
    assert summary["tokens"]["tokenizer"] == "tiny:1000"
    with pytest.raises(SystemExit, match="no video files found"):
        launch.main(["preview", "--source", str(tmp_path / "out"), "--n", "3", "--out", str(tmp_path / "o2")])
