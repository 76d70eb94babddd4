"""Reading an SSv2-format folder: label records, their videos, and what is wrong with them.

Layout (real SSv2 or the synthetic world)::

    root/labels/{split}.json   [{"id", "label", "template", "placeholders"}, ...]
    root/videos/{id}.webm      (or .mp4)

Problems are counted and listed, never silently dropped: a record that points at a missing
video, has a template outside the SSv2 vocabulary, repeats an id (within a split or across
splits: the first occurrence is kept, so splits stay disjoint by id), or lacks a field is
skipped and recorded in ``Problems``. A missing or unreadable label file is an error: nothing
sensible can be built from it.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from sf2t_jax import ssv2
from sf2t_jax.errors import InputError

VIDEO_EXTENSIONS = ("webm", "mp4")
_FIELDS = ("id", "label", "template", "placeholders")


class SSv2FolderError(InputError):
    """An SSv2-format folder that cannot be read at all."""


@dataclasses.dataclass(frozen=True)
class Record:
    """One labelled clip."""

    id: str
    label: str
    template: str
    placeholders: tuple[str, ...]
    split: str
    video: Path


@dataclasses.dataclass
class Problems:
    """Skipped records, by reason: lists of (split, id or "#index" if it has none, detail)."""

    missing_video: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    unknown_template: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    duplicate_id: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    malformed: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {f.name: len(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @property
    def total(self) -> int:
        return sum(self.counts().values())

    def report(self, limit: int = 5) -> str:
        lines = []
        for name, n in self.counts().items():
            if n:
                shown = ", ".join(f"{s}/{i} ({d})" for s, i, d in getattr(self, name)[:limit])
                lines.append(f"{name}: {n} skipped, e.g. {shown}")
        return "\n".join(lines) or "no problems"


@dataclasses.dataclass(frozen=True)
class Source:
    root: Path
    records: dict[str, list[Record]]  # split -> records in file order
    problems: Problems

    @property
    def templates(self) -> tuple[str, ...]:
        """Templates used by any record, in first-seen order (the vocabulary)."""
        seen = dict.fromkeys(r.template for rs in self.records.values() for r in rs)
        return tuple(seen)


def _find_video(videos: Path, cid: str) -> Path | None:
    for ext in VIDEO_EXTENSIONS:
        p = videos / f"{cid}.{ext}"
        if p.is_file():
            return p
    return None


def load_source(root: str | Path, splits: Sequence[str] = ("test",)) -> Source:
    """Reads ``labels/{split}.json`` for each split and checks every record.

    Raises:
      SSv2FolderError: a label file is missing, is not JSON, or is not a list of records.
    """
    root = Path(root)
    known = ssv2.known_templates()
    problems = Problems()
    records: dict[str, list[Record]] = {}
    seen: dict[str, str] = {}  # id -> split of its first occurrence
    for split in splits:
        path = root / "labels" / f"{split}.json"
        if not path.is_file():
            raise SSv2FolderError(f"{path}: label file missing (expected SSv2 layout "
                              f"labels/{{split}}.json under {root})")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SSv2FolderError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(raw, list):
            raise SSv2FolderError(f"{path}: expected a JSON list of records, got "
                              f"{type(raw).__name__}")
        records[split] = []
        for k, r in enumerate(raw):
            if not isinstance(r, dict) or any(f not in r for f in _FIELDS):
                missing = [f for f in _FIELDS if not isinstance(r, dict) or f not in r]
                # named by its id when it has one; else by its position ("#3"), which could
                # otherwise be mistaken for an SSv2 id
                name = str(r["id"]) if isinstance(r, dict) and "id" in r else f"#{k}"
                problems.malformed.append((split, name, f"missing {missing}"))
                continue
            cid, template = str(r["id"]), r["template"]
            if cid in seen:
                problems.duplicate_id.append((split, cid, f"first in {seen[cid]}"))
                continue
            seen[cid] = split
            if template not in known:
                problems.unknown_template.append((split, cid, template))
                continue
            placeholders = tuple(r["placeholders"])
            if len(placeholders) != ssv2.num_slots(template):
                problems.malformed.append((split, cid, f"{len(placeholders)} placeholders for "
                                           f"{ssv2.num_slots(template)} slots"))
                continue
            video = _find_video(root / "videos", cid)
            if video is None:
                problems.missing_video.append((split, cid, f"videos/{cid}.webm|mp4"))
                continue
            records[split].append(Record(cid, r["label"], template, placeholders, split, video))
    return Source(root, records, problems)
