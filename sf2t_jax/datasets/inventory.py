"""What an SSv2-format folder holds for us: which label split plays which role, the usable
records, what was skipped and why, and a fingerprint that says when a built dataset is stale.

Roles (a label split each; disjoint by video id, so no benchmark video is ever trained on):
  train      SF²T corpus and SFT ``train`` split
  heldout    SF²T corpus and SFT ``validation`` split (held-out loss); may be absent
  benchmark  FineVidBench

"auto" resolves as follows, and the choice is logged:
  benchmark  "test" when ``labels/test.json`` carries labels (the synthetic world), otherwise
             "validation" (real SSv2: its test file has ids only, and the benchmark needs the
             answers)
  heldout    "validation" when it exists and is not the benchmark split, otherwise none
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm import tqdm

from sf2t_jax.finevidbench.source import Record, Source, SSv2FolderError, load_source
from sf2t_jax.video import VideoDecodeError, verify_video

ROLES = ("train", "heldout", "benchmark")
MIN_FRAMES = 2
"""Fewer decodable frames than this and a clip shows no action: skipped as unreadable."""


@dataclasses.dataclass(frozen=True)
class Roles:
    """Label split of each role (``heldout`` None: no held-out split)."""

    train: str
    heldout: str | None
    benchmark: str

    def __post_init__(self):
        used = [s for s in (self.train, self.heldout, self.benchmark) if s]
        if len(set(used)) != len(used):
            raise SSv2FolderError(f"split roles must use different label splits (videos would be "
                              f"shared), got {self}")

    @property
    def label_splits(self) -> tuple[str, ...]:
        """Splits to read, in SSv2 file order: an id repeated across splits is kept in the
        first and counted as a duplicate in the later ones."""
        order = {"train": 0, "validation": 1, "test": 2}
        used = [s for s in (self.train, self.heldout, self.benchmark) if s]
        return tuple(sorted(used, key=lambda s: (order.get(s, 3), s)))

    def split_of(self, role: str) -> str | None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: expected one of {ROLES}")
        return getattr(self, role)


def _has_labels(path: Path) -> bool:
    """Whether a label file's records carry templates (real SSv2 test.json has ids only)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # let load_source report the broken file
    return isinstance(raw, list) and any(isinstance(r, dict) and "template" in r for r in raw)


def resolve_roles(root: str | Path, train: str = "train", heldout: str = "auto",
                  benchmark: str = "auto") -> Roles:
    """Turns the config's split names ("auto", "" for none, or a label split) into Roles."""
    labels = Path(root) / "labels"
    if benchmark == "auto":
        test = labels / "test.json"
        benchmark = "test" if test.is_file() and _has_labels(test) else "validation"
        if benchmark == "validation":
            logging.info("%s has no labelled records (as real SSv2's test file): FineVidBench is "
                         "built from the validation split", test)
    if heldout == "auto":
        heldout = "validation" if (benchmark != "validation"
                                   and (labels / "validation.json").is_file()) else ""
        if not heldout:
            logging.info("no held-out split: the SF2T corpus and SFT set have train only")
    if not train:
        raise SSv2FolderError("the train split name is empty: the corpus needs training videos")
    return Roles(train=train, heldout=heldout or None, benchmark=benchmark)


@dataclasses.dataclass(frozen=True)
class Inventory:
    """The usable records of each role and everything skipped.

    ``fingerprint`` is computed when the labels are read, before any video is opened, so that
    a re-run can tell whether its datasets are current without decoding anything.
    """

    source: Source
    roles: Roles
    label_fingerprints: dict[str, str]  # role -> fingerprint of its labels and video files
    unreadable: tuple[tuple[str, str, str], ...] = ()  # (split, id, reason: detail)
    checked: bool = False  # whether check_videos ran

    @property
    def root(self) -> Path:
        return self.source.root

    def records(self, role: str) -> list[Record]:
        """Usable records of a role in id order (numeric ids numerically); [] if absent."""
        split = self.roles.split_of(role)
        return sorted(self.source.records.get(split, []), key=_sort_key) if split else []

    def fingerprint(self, roles: Iterable[str], **config) -> str:
        """Fingerprint of the given roles' labels and video files plus a config."""
        payload = {"splits": dataclasses.asdict(self.roles),
                   "roles": {r: self.label_fingerprints[r] for r in roles
                             if r in self.label_fingerprints}, "config": config}
        return _sha(payload)

    def problems(self) -> dict[str, list[tuple[str, str, str]]]:
        """Skipped records by reason: (split, id, detail) each."""
        p = self.source.problems
        return {"missing_video": list(p.missing_video),
                "unknown_template": list(p.unknown_template),
                "duplicate_id": list(p.duplicate_id),
                "malformed": list(p.malformed),
                "unreadable_video": list(self.unreadable)}


def _sort_key(record: Record) -> tuple[int, int | str]:
    return (0, int(record.id)) if record.id.isdigit() else (1, record.id)


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _records_fingerprint(records: Sequence[Record]) -> str:
    # File names and sizes, not contents: hashing every video of real SSv2 would take longer
    # than building from it. A clip re-encoded to the very same size goes unnoticed.
    return _sha([(r.id, r.label, r.template, list(r.placeholders), r.video.name,
                  r.video.stat().st_size) for r in sorted(records, key=_sort_key)])


def _split_problems(source: Source, split: str, limit: int = 3) -> str:
    """"missing_video 12 (e.g. 200: videos/200.webm|mp4, ...)" for one split."""
    parts = []
    p = source.problems
    for reason, rows in (("missing_video", p.missing_video),
                         ("unknown_template", p.unknown_template),
                         ("duplicate_id", p.duplicate_id), ("malformed", p.malformed)):
        rows = [(i, d) for s, i, d in rows if s == split]
        if rows:
            shown = ", ".join(f"{i}: {d}" for i, d in rows[:limit])
            parts.append(f"{reason} {len(rows)} (e.g. {shown})")
    return "; ".join(parts) or "none (the file lists no records)"


def take_inventory(root: str | Path, roles: Roles) -> Inventory:
    """Reads the label files of every role and checks each record (not yet the videos).

    Raises:
      SSv2FolderError: a label file is missing or unreadable, or a role has no usable record.
    """
    source = load_source(root, roles.label_splits)
    fingerprints = {}
    for role in ROLES:
        split = roles.split_of(role)
        if split is None:
            continue
        if not source.records[split]:
            raise SSv2FolderError(
                f"{Path(root) / 'labels' / f'{split}.json'}: no usable record for the {role} "
                f"role; its skipped records: {_split_problems(source, split)}")
        fingerprints[role] = _records_fingerprint(source.records[split])
    return Inventory(source, roles, fingerprints)


def check_videos(inventory: Inventory, *, progress: bool = True) -> Inventory:
    """Decodes every frame of every video once and skips those that do not decode (or have
    < MIN_FRAMES).

    Every frame, not just the first: a clip damaged late in its stream would otherwise enter the
    training set and be skipped as corrupt in every epoch. A broken clip in the benchmark would
    make its items unanswerable, and one in a training set would fail late inside the input
    pipeline; here it is counted and listed instead.
    """
    records = [r for split in inventory.roles.label_splits
               for r in inventory.source.records[split]]

    def problem(r) -> tuple[str, str, str] | None:
        try:
            frames = verify_video(r.video).num_frames
        except VideoDecodeError as e:
            return r.split, r.id, f"{e.reason}: {e.detail}"
        return (r.split, r.id, f"too_short: {frames} frame(s)") if frames < MIN_FRAMES else None

    # Decoding releases the GIL: threads overlap it (the order of `bad` is the records').
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        found = list(tqdm(pool.map(problem, records), total=len(records), desc="checking videos", unit="video",
                          disable=not progress))
    bad = [p for p in found if p is not None]
    dropped = {(s, i) for s, i, _ in bad}
    kept = {split: [r for r in rs if (split, r.id) not in dropped]
            for split, rs in inventory.source.records.items()}
    for role in ROLES:
        split = inventory.roles.split_of(role)
        if split is not None and not kept[split]:
            raise SSv2FolderError(f"no video of the {role} split {split!r} under "
                              f"{inventory.root / 'videos'} decodes, e.g. {bad[:3]}")
    return dataclasses.replace(
        inventory, source=Source(inventory.source.root, kept, inventory.source.problems),
        unreadable=tuple(bad), checked=True)
