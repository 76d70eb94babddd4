"""Atomic writes and JSON lines (sf2t_jax.fileio)."""
import json

import pytest

from sf2t_jax import fileio


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "labels.json"
    fileio.atomic_write_json(path, {"a": 1})

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", failing_replace)
    with pytest.raises(OSError):
        fileio.atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["labels.json"]


def test_json_lines_one_record_a_line_and_unicode_kept(tmp_path):
    path = tmp_path / "items.jsonl"
    assert fileio.atomic_write_jsonl(path, ({"q": f"Zoë {i}", "n": i} for i in range(2))) == 2
    assert path.read_bytes() == '{"q": "Zoë 0", "n": 0}\n{"q": "Zoë 1", "n": 1}\n'.encode()
    assert fileio.atomic_write_jsonl(path, []) == 0 and path.read_bytes() == b""


def test_remove_partials_clears_what_a_killed_run_left(tmp_path):
    (tmp_path / ".a.json.123.partial").write_text("{")
    (tmp_path / "a.json").write_text("{}")
    assert fileio.remove_partials(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
