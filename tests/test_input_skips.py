"""Bad input: broken files are skipped and counted exactly by reason (also across workers and a
restore), logged once with their path; a source with nothing usable is a clear error."""
import collections
import dataclasses
import logging
import os

import pytest

from sf2t_jax.fragments import FragmentsConfig
from sf2t_jax.input import (
    FileSource,
    InputConfig,
    InputConfigError,
    InputPipeline,
    InputSourceError,
    NoUsableVideoError,
)
from sf2t_jax.input.fixture_clips import write_broken_files, write_clips
from sf2t_jax.text import Tokenizer, build_tiny_tokenizer

GOOD = 3


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(build_tiny_tokenizer(1000), source="tiny")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A manifest over good clips, every kind of broken file, and a path that does not exist."""
    root = tmp_path_factory.mktemp("mixed")
    good = write_clips(root / "videos", GOOD)
    expected = write_broken_files(root / "videos")
    missing = str(root / "videos" / "deleted.mp4")
    expected[missing] = "missing"
    manifest = root / "train.txt"
    manifest.write_text("# clips\n" + "\n".join(os.path.relpath(p, root) for p in good + list(expected)) + "\n")
    return str(manifest), good, expected


def _config(source, **kw):
    # The order tasks: a one-frame clip is too short and a still clip near static for both.
    base = dict(source=source, tokenizer="tiny", batch_size=2, max_length=256, resolution=(56, 56), seed=5,
                num_epochs=2, fragments=FragmentsConfig(weights={"disorder": 1, "rearrange": 1}))
    return InputConfig(**{**base, **kw})


def _run(config, tokenizer, state=None, stop_after=None):
    it = InputPipeline(config, tokenizer=tokenizer, process_index=0, process_count=1).iterator()
    if state is not None:
        it.set_state(state)
    records = []
    for batch in it:
        records += [int(r) for r in it.last_meta["record_index"] if r >= 0]
        if stop_after is not None and it.batches == stop_after:
            return it.get_state(), records
    it.close()
    return it.summary(), records


def test_broken_files_are_skipped_and_counted_exactly(corpus, tokenizer, caplog):
    manifest, good, expected = corpus
    source = FileSource.from_manifest(manifest)
    good_records = {i for i, p in enumerate(source.paths) if p in good}
    epochs = 2
    want = dict(collections.Counter(expected.values()))
    want = {k: epochs * v for k, v in sorted(want.items())}

    with caplog.at_level(logging.WARNING, logger="sf2t_jax.input"):
        summary, records = _run(_config(manifest, workers=2), tokenizer)  # counted across worker processes
    assert set(records) == good_records and len(records) == epochs * GOOD  # only good samples
    assert summary["by_reason"] == want and summary["skipped"] == epochs * len(expected)
    assert summary["by_task"].keys() <= {"disorder", "rearrange"}
    assert sum(sum(c.values()) for c in summary["by_task"].values()) == epochs * 2  # too_short + near_static
    # Each bad file logged once, with its path, although it is skipped in both epochs.
    logged = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(logged) == len(expected)
    for path, reason in expected.items():
        assert sum(path in m and reason in m for m in logged) == 1, (path, reason)

    # Interrupted and restored mid-way (0 workers), the counts continue exactly.
    state, first = _run(_config(manifest), tokenizer, stop_after=1)
    resumed, rest = _run(_config(manifest), tokenizer, state=state)
    assert resumed == summary and sorted(first + rest) == sorted(records)


def test_no_usable_video_is_an_error(tmp_path, tokenizer):
    write_broken_files(tmp_path / "bad")
    # A finite pass; and forever, which stops after two epochs' worth of skips in a row.
    for epochs, passes in ((1, 1), (0, 2)):
        with pytest.raises(NoUsableVideoError, match="no usable video") as e:
            _run(_config(str(tmp_path / "bad"), num_epochs=epochs), tokenizer)
        assert f"corrupt {passes}," in str(e.value) and f"not_a_video {2 * passes}" in str(e.value)
    # Valid clips whose text cannot fit: counted as too_long, and nothing is usable either.
    write_clips(tmp_path / "ok", 2)
    tight = dataclasses.replace(_config(str(tmp_path / "ok"), num_epochs=1), max_length=40)
    with pytest.raises(NoUsableVideoError, match="too_long 2"):
        _run(tight, tokenizer)


def test_bad_sources_and_configs_are_refused(tmp_path, tokenizer):
    (tmp_path / "notes.txt").write_text("no videos here")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    with pytest.raises(InputSourceError, match="no video files found"):
        InputPipeline(_config(str(empty)), tokenizer=tokenizer, process_index=0, process_count=1)
    with pytest.raises(InputSourceError, match="no such file or folder"):
        InputPipeline(_config(str(tmp_path / "nope")), tokenizer=tokenizer, process_index=0, process_count=1)
    with pytest.raises(InputConfigError, match=r"input.fragments.disorder: shows up to 16 frames.*frame_budget=8"):
        _config(str(tmp_path), frame_budget=8)
    with pytest.raises(InputConfigError, match="max_length=30 cannot hold the largest sample"):
        _config(str(tmp_path), max_length=30)
    with pytest.raises(InputConfigError, match="input.resolution"):
        _config(str(tmp_path), resolution=(50, 56))
    with pytest.raises(InputConfigError, match="unknown key.*'batchsize'"):
        InputConfig.from_dict({"batchsize": 4})


# ---- skip shares per task and reason -------------------------------------------------------
def _counter(samples, skips):
    """samples: {task: good samples}; skips: [(task, reason, tokens)]."""
    from sf2t_jax.input.examples import Skipped
    from sf2t_jax.input.skips import SkipCounter

    counter = SkipCounter()
    for task, n in samples.items():
        for _ in range(n):
            counter.add_sample(task)
    for i, (task, reason, tokens) in enumerate(skips):
        counter.add(Skipped(i, i, f"clip{i}", reason, task, "", tokens))
    return counter


def test_skip_shares_per_task_and_reason_and_the_length_needed():
    from sf2t_jax.input.skips import MIN_DRAWN_MID_RUN, SkipShareError

    skips = [("action", "too_long", 120), ("action", "too_long", 131), ("action", "too_long", 99),
             ("speed", "too_short", None), (None, "corrupt", None)]
    counter = _counter({"action": 7, "speed": 19}, skips)
    rates = counter.rates()
    assert rates["action"] == {"drawn": 10, "samples": 7, "skipped": {"too_long": 3}, "share": {"too_long": 0.3},
                               "longest_too_long": 131}
    assert rates["speed"] == {"drawn": 20, "samples": 19, "skipped": {"too_short": 1}, "share": {"too_short": 0.05}}
    assert rates["(decode)"] == {"drawn": 31, "skipped": {"corrupt": 1}, "share": {"corrupt": 1 / 31}}
    names = dict(limit_name="train.max_skip_share", length_name="input.max_length")
    counter.check_share(0.3, final=True, **names)  # at the limit is allowed; speed's 5% too
    counter.check_share(0.05, final=False, **names)  # mid-run: too few drawn to judge
    with pytest.raises(SkipShareError) as e:
        counter.check_share(0.05, final=True, **names)
    assert str(e.value) == ("input: task 'action' lost 30.0% of its samples to too_long (3 of 10 drawn), more than "
                            "train.max_skip_share=0.05; the longest had 131 tokens: set input.max_length >= 131")
    with pytest.raises(SkipShareError, match=r"task 'speed' lost 5.0% of its samples to too_short .* the first "):
        _counter({"speed": 19}, [("speed", "too_short", None)]).check_share(0.04, final=True, **names)
    # mid-run, a task is judged once it has MIN_DRAWN_MID_RUN drawn
    big = _counter({"count": MIN_DRAWN_MID_RUN - 6}, [("count", "too_long", 70)] * 6)
    with pytest.raises(SkipShareError, match="task 'count' lost 6.0%"):
        big.check_share(0.05, final=False, **names)
    # the counts survive a state round trip (the iterator state carries them)
    restored = _counter({}, [])
    restored.set_state(counter.state())
    assert restored.rates() == rates
