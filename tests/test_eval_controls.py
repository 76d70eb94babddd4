"""Controls (eval/controls.py): the frames each view shows, and the report's verdicts on
constructed records. The scorer-level check and `launch.py eval` are in test_eval_runner.py."""
import json

import numpy as np
import pytest

from sf2t_jax.eval import controls
from sf2t_jax.eval.visuals import apply_view


def test_static_holds_the_first_shown_frame_blind_is_constant_real_is_unchanged():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 8, 12, 3), dtype=np.uint8)
    assert apply_view(frames, "real") is frames
    static = apply_view(frames, "static")
    assert static.shape == frames.shape and static.dtype == np.uint8
    for shown in static:
        np.testing.assert_array_equal(shown, frames[0])
    blind = apply_view(frames, "blind")
    assert blind.shape == frames.shape and blind.dtype == np.uint8
    assert (blind == blind.flat[0]).all()
    assert not (frames == frames[0]).all()  # the input moves: static and real differ
    with pytest.raises(ValueError, match="view 'frozen'"):
        apply_view(frames, "frozen")


def _records(correct_by_video: dict[str, list[bool]], task="action", level="scene", method="loglik"):
    return [{"item_id": f"{task}-{v}-{i}", "video_id": v, "task": task, "level": level, "method": method,
             "correct": bool(c)} for v, cs in correct_by_video.items() for i, c in enumerate(cs)]


def _table(real, static, blind=None):
    records = {"real": real, "static": static, **({"blind": blind} if blind is not None else {})}
    return controls.compare_views(records, {"loglik": {"action": 0.25, "effect": 0.25}}, resamples=400, ci=0.95,
                                  seed=0)


def test_uses_motion_verdicts_on_constructed_records():
    videos = [f"v{i}" for i in range(12)]
    always = _records({v: [True] * 4 for v in videos})
    never = _records({v: [False] * 4 for v in videos})
    half = _records({v: [i % 2 == 0] * 4 for i, v in enumerate(videos)})

    table = _table(always, never, never)
    rows = {r["key"]: r for r in table["methods"]["loglik"]}
    assert set(rows) == {"action", "scene", "overall"} and table["views"] == ["real", "static", "blind"]
    action = rows["action"]
    assert action["uses_motion"] == "yes"
    assert action["real"]["value"] == 1.0 and action["static"]["value"] == 0.0 and action["blind"]["value"] == 0.0
    assert action["real_minus_static"]["value"] == 1.0 and action["real_minus_static"]["clusters"] == 12
    assert action["chance"] == 0.25 and action["n"] == 48 and action["videos"] == 12

    assert {r["uses_motion"] for r in _table(never, always)["methods"]["loglik"]} == {"reversed"}
    # Real and static differ on half the videos in each direction: the interval holds 0.
    flipped = _records({v: [i % 2 == 1] * 4 for i, v in enumerate(videos)})
    assert _table(half, flipped)["methods"]["loglik"][0]["uses_motion"] == "no"
    assert _table(half, half)["methods"]["loglik"][0]["uses_motion"] == "no"
    assert controls.uses_motion([None, None]) == "–"
    assert controls.uses_motion([0.01, 0.2]) == "yes" and controls.uses_motion([-0.2, -0.01]) == "reversed"
    assert controls.uses_motion([-0.01, 0.2]) == "no" and controls.uses_motion([0.0, 0.2]) == "no"


def test_real_minus_static_pairs_records_by_method_and_item():
    """Static's records in another order, some missing, and another method's records: each real
    record pairs with its own item's, and only items both runs answered are compared."""
    real = _records({"a": [True, True, True], "b": [False, False, True]})
    static = list(reversed(_records({"b": [False, False, True]})))
    static += _records({"a": [False] * 3, "b": [False] * 3}, method="generate")
    row = _table(real, static)["methods"]["loglik"][0]
    assert row["real_minus_static"]["value"] == 0.0 and row["real_minus_static"]["n"] == 3
    assert row["real_minus_static"]["ci"] == [0.0, 0.0] and row["real_minus_static"]["clusters"] == 1
    assert row["static"]["value"] == pytest.approx(1 / 3) and row["real"]["value"] == pytest.approx(4 / 6)


def test_report_files_levels_and_rows(tmp_path):
    videos = [f"v{i}" for i in range(6)]
    real = _records({v: [True, True] for v in videos}) + _records({v: [True, False] for v in videos}, task="effect")
    static = _records({v: [False, False] for v in videos}) + _records({v: [True, False] for v in videos},
                                                                       task="effect")
    table = controls.write_report(tmp_path, "tiny", {"real": real, "static": static, "blind": static},
                                  {"loglik": {"action": 0.25, "effect": 0.5}}, resamples=200, ci=0.95, seed=0)
    rows = {r["key"]: r for r in table["methods"]["loglik"]}
    assert [r["kind"] for r in table["methods"]["loglik"]] == ["task", "task", "level", "overall"]
    assert rows["action"]["uses_motion"] == "yes" and rows["effect"]["uses_motion"] == "no"
    assert rows["effect"]["real_minus_static"]["value"] == 0.0
    assert rows["overall"]["chance"] == pytest.approx(0.375)
    saved = json.loads((tmp_path / "controls.json").read_text())
    assert saved["name"] == "tiny" and saved["methods"] == json.loads(json.dumps(table["methods"]))
    md = (tmp_path / "controls.md").read_text()
    assert "| uses motion | loglik | real | static | blind | real − static | chance |" in md
    assert "| yes | Action | 100.0 [100.0, 100.0] | 0.0 [0.0, 0.0] | 0.0 [0.0, 0.0] | +100.0 [+100.0, +100.0] |" in md
    assert "| no | Effect |" in md
    assert (tmp_path / "controls.png").stat().st_size > 0


def test_motion_table_has_a_row_per_setting_and_method_and_a_column_per_task():
    videos = [f"v{i}" for i in range(8)]
    moving = _records({v: [True] * 3 for v in videos})
    still = _records({v: [False] * 3 for v in videos})
    tables = {"Base": _table(moving, moving), "SFT": _table(moving, still)}
    text = controls.motion_markdown(tables)
    lines = text.splitlines()
    assert "| setting | scoring | Action | Scene level | Overall |" in lines
    assert "| Base | loglik | +0.0 [+0.0, +0.0] no | +0.0 [+0.0, +0.0] no | +0.0 [+0.0, +0.0] no |" in lines
    assert "| SFT | loglik | +100.0 [+100.0, +100.0] yes | +100.0 [+100.0, +100.0] yes | +100.0 [+100.0, +100.0] yes |" \
        in lines
