"""Faults around the video input, as users meet them (subprocesses of `launch.py`):

  * grain worker processes die with a SIGKILLed trainer instead of lingering for minutes;
  * a clip damaged late in its stream (header and first frames fine) is rejected by `prepare`;
  * a source whose every video is broken is refused in one line by train, preview and prepare.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from sf2t_jax import ssv2
from sf2t_jax.input.fixture_clips import damage_late, moving_clip, write_broken_files, write_clips
from sf2t_jax.video import VideoDecodeError, encode_video, probe_video, verify_video
from test_train_launch import env  # noqa: F401  (the launch tests' fixture: CPU, a module-wide compilation cache)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo.py")
# A tiny model on the fragment pipeline: real videos, tiny tokenizer, short rows.
TRAIN = ["train", "--config", "configs/sf2t.py:frames=4,data=videos", "--config.input.max_length=96",
         "--config.input.tokenizer=tiny:1000", "--config.log.every=1", "--config.export.final=false",
         "--config.log.tensorboard=false", "--config.input.num_epochs=0"]


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A folder in which no video decodes (one file of each kind of damage)."""
    root = tmp_path_factory.mktemp("broken")
    for path, reason in write_broken_files(root).items():
        if reason in ("too_short", "near_static"):  # valid videos that some tasks can use
            os.remove(path)
    return root


def _launch(env, *args, timeout=300):
    return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _assert_refused_in_one_line(proc, expected: str):
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert proc.stderr.rstrip().splitlines()[-1] == errors[0]  # the last word, not buried in logs


# ---- worker processes --------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    """ppid -> pids of every live (non-zombie) process, from /proc."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            state = _stat(int(name))
            if state is not None and state[0] != "Z":
                out.setdefault(state[1], []).append(int(name))
    return out


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[0], int(fields[1])


def _descendants(pid: int) -> set[int]:
    children, found, todo = _children(), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    state = _stat(pid)
    return state is not None and state[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_input_workers_die_with_a_sigkilled_trainer(env, tmp_path):
    clips = write_clips(tmp_path / "clips", 4)
    log_path = tmp_path / "train.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "launch.py"), *TRAIN, "--config.train.steps=10000",
             "--config.input.workers=2", f"--config.input.source={os.path.dirname(clips[0])}",
             "--workdir", str(tmp_path / "run")],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while "step 2/10000" not in log_path.read_text():
            assert proc.poll() is None and time.time() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
        run = _descendants(proc.pid)
        # two workers (plus multiprocessing's resource tracker), all started by the trainer
        assert len([p for p in run if "spawn_main" in open(f"/proc/{p}/cmdline").read()]) == 2, run
        os.kill(proc.pid, signal.SIGKILL)  # the trainer only, not its process group
        proc.wait(timeout=30)
        killed = time.time()
        while any(_alive(p) for p in run) and time.time() < killed + 10:
            time.sleep(0.2)
        survivors = {p: open(f"/proc/{p}/cmdline").read().replace("\0", " ")[:120] for p in run if _alive(p)}
        assert survivors == {}
    finally:  # never leave a test's processes behind, whatever failed above
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)


# ---- late damage -------------------------------------------------------------------------
def test_verify_video_finds_damage_late_in_the_stream_that_probing_misses():
    good = encode_video(moving_clip(32, 64, 64, seed=3), container="mp4")
    damaged = damage_late(good)
    assert len(damaged) == len(good) and probe_video(damaged).num_frames == 32  # opens, header intact
    assert verify_video(good).num_frames == 32
    with pytest.raises(VideoDecodeError) as e:
        verify_video(damaged, name="late.mp4")
    assert e.value.reason == "corrupt" and e.value.path == "late.mp4"


def _write_ssv2(root, videos: dict[str, dict[str, bytes]]):
    """An SSv2-format folder: split -> {id: mp4 bytes}, every record a real SSv2 template."""
    (root / "labels").mkdir(parents=True)
    (root / "videos").mkdir()
    for split, clips in videos.items():
        records = []
        for cid, data in clips.items():
            (root / "videos" / f"{cid}.mp4").write_bytes(data)
            records.append({"id": cid, "template": "Opening [something]", "placeholders": ["a jar"],
                            "label": ssv2.label("Opening [something]", ["a jar"])})
        (root / "labels" / f"{split}.json").write_text(json.dumps(records))


def _clip(seed: int) -> bytes:
    return encode_video(moving_clip(16, 64, 64, seed=seed), container="mp4")


def test_prepare_rejects_a_clip_damaged_late_and_counts_it(env, tmp_path):
    source = tmp_path / "ssv2"
    _write_ssv2(source, {"train": {"100": _clip(0), "101": damage_late(_clip(1)), "102": _clip(2)},
                         "validation": {"200": _clip(3), "201": _clip(4)}})
    proc = _launch(env, "prepare", "--config", DEMO, "--source", str(source), "--no-progress",
                   f"--config.data.dir={tmp_path / 'data'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "unreadable_video 1" in proc.stdout and "train/101: corrupt: decoding failed" in proc.stdout, proc.stdout
    summary = json.loads((tmp_path / "data" / "prepare.json").read_text())
    assert [row[:2] for row in summary["problems"]["unreadable_video"]] == [["train", "101"]]
    assert summary["examples"]["sf2t_corpus"] == {"train": 2}


# ---- a source with no usable video -------------------------------------------------------
def test_train_refuses_a_folder_of_broken_videos_in_one_line(env, broken, tmp_path):
    proc = _launch(env, *TRAIN, "--config.train.steps=4", f"--config.input.source={broken}",
                   "--workdir", str(tmp_path / "run"))
    _assert_refused_in_one_line(proc, f"error: no usable video in FileSource('{broken}', 5 files): the first 10 "
                                      "samples of this host's share were all skipped (corrupt 2, empty_file 2, "
                                      "not_a_video 4, unsupported_codec 2)")
    run = tmp_path / "run"  # refused before the model is built: no config.json, no checkpoints
    assert not (run / "config.json").exists() and not (run / "checkpoints").exists()


def test_preview_refuses_a_folder_of_broken_videos_in_one_line(env, broken, tmp_path):
    proc = _launch(env, "preview", "--source", str(broken), "--n", "2", "--out", str(tmp_path / "out"))
    _assert_refused_in_one_line(proc, "no usable sample in the first 5 of")


def test_prepare_refuses_a_source_of_broken_videos_in_one_line(env, tmp_path):
    source = tmp_path / "ssv2"
    _write_ssv2(source, {"train": {"100": damage_late(_clip(0)), "101": b"not a video"},
                         "validation": {"200": _clip(3)}})
    proc = _launch(env, "prepare", "--config", DEMO, "--source", str(source), "--no-progress",
                   f"--config.data.dir={tmp_path / 'data'}")
    _assert_refused_in_one_line(proc, "error: no video of the train split 'train' under")
    assert not (tmp_path / "data" / "prepare.json").exists()


# ---- too many samples of one task skipped --------------------------------------------------
def test_train_stops_when_a_task_loses_samples_to_length_and_the_length_it_names_is_enough(env, tmp_path):
    """At max_length 64 some tasks' samples (rearrange, consistency, localize: 40-90 tokens here)
    are too long: the run stops in one line naming the task, the reason and the length that
    holds the longest; rerun with the longest length of any task, the same stream trains with
    nothing skipped. Each run writes its rates per task and reason to input_skips.json."""
    source = os.path.dirname(write_clips(tmp_path / "clips", 4)[0])
    common = [*TRAIN, "--config.train.steps=3", f"--config.input.source={source}"]
    short = _launch(env, *common, "--config.input.max_length=64", "--workdir", str(tmp_path / "short"))
    _assert_refused_in_one_line(short, "error: input: task '")
    line = short.stderr.rstrip().splitlines()[-1]
    match = re.fullmatch(r"error: input: task '(\w+)' lost (\d+\.\d)% of its samples to too_long \((\d+) of (\d+) "
                         r"drawn\), more than train.max_skip_share=0.05; the longest had (\d+) tokens: set "
                         r"input.max_length >= (\d+)", line)
    assert match, line
    task, share, skipped, drawn, longest, needed = match.groups()
    report = json.loads((tmp_path / "short" / "input_skips.json").read_text())
    assert report["stopped"] is True and report["limit"] == 0.05
    rates = report["tasks"][task]
    assert (rates["skipped"]["too_long"], rates["drawn"]) == (int(skipped), int(drawn))
    assert rates["longest_too_long"] == int(longest) == int(needed) > 64
    assert f"{100 * rates['share']['too_long']:.1f}" == share
    assert not (tmp_path / "short" / "export").exists()

    enough = max(r.get("longest_too_long", 0) for r in report["tasks"].values())
    ok = _launch(env, *common, f"--config.input.max_length={enough}", "--workdir", str(tmp_path / "ok"))
    assert ok.returncode == 0, ok.stderr[-3000:]
    report = json.loads((tmp_path / "ok" / "input_skips.json").read_text())
    assert report["stopped"] is False
    assert {t: r["skipped"] for t, r in report["tasks"].items()} == {t: {} for t in report["tasks"]}
    assert sum(r["samples"] for r in report["tasks"].values()) == 3 * 8  # 3 steps x batch 8, none skipped
    assert "input skips: rearrange: none skipped of" in ok.stderr
