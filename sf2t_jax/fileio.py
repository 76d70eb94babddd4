"""Atomic file writes and JSON lines.

Every file is written under a hidden temporary name in its final folder and renamed into
place (``os.replace`` is atomic on POSIX), so a run killed at any point leaves either the
whole file or no file under the final name; ``remove_partials`` clears the temporaries a
killed run left behind.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_TMP_SUFFIX = ".partial"


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}{_TMP_SUFFIX}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    """One JSON document, UTF-8, non-ASCII characters kept as they are."""
    atomic_write_bytes(path, json.dumps(obj, indent=indent, ensure_ascii=False).encode("utf-8"))


def atomic_write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """JSON lines: one compact JSON object per line, each line ending in a newline (an empty
    file for no records). Returns how many records were written."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    atomic_write_bytes(path, ("\n".join(lines) + "\n" if lines else "").encode("utf-8"))
    return len(lines)


def remove_partials(folder: str | os.PathLike) -> int:
    """Deletes temporaries left by an interrupted run in ``folder``; returns how many."""
    n = 0
    for p in Path(folder).glob(f".*{_TMP_SUFFIX}"):
        p.unlink(missing_ok=True)
        n += 1
    return n
