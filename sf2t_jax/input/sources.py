"""Random-access sources of video records: files on disk, or any indexable dataset of encoded videos.

A source has `__len__` and `__getitem__(i)` and returns a record dict:

    {"record_index": i, "id": str, "path": str}     a video file (FileSource)
    {"record_index": i, "id": str, "video": bytes}  encoded bytes (RecordSource, e.g. tfds)

`record_index` travels with the record so that every sample names the record it came from.
Listing is sorted and deterministic, so every host of a multi-host run sees the same order and
takes its own share by index. Folders, manifests and files may be remote (`gs://...`, through
etils' filesystem layer): every worker of a pod reads the same bucket, no local copy.
"""
from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Sequence
from typing import Any

from sf2t_jax.errors import InputError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
MANIFEST_EXTENSIONS = (".txt", ".lst", ".list", ".manifest")


def is_remote(path: str) -> bool:
    """A URL-style path (gs://bucket/...), read through etils epath rather than the OS."""
    return "://" in os.fspath(path)


class InputSourceError(InputError):
    """A source that cannot be opened, or a record without the expected fields."""


class FileSource:
    """Video files by path. Bad files are not filtered here: the pipeline skips and counts them."""

    def __init__(self, paths: Sequence[str], name: str, root: str | None = None):
        self.paths = tuple(os.fspath(p) for p in paths)
        self.name = name
        self.root = root

    @classmethod
    def from_folder(cls, root: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> "FileSource":
        """Every file under `root` whose extension is in `extensions` (case-insensitive), sorted."""
        root = os.fspath(root)
        extensions = tuple(e.lower() for e in extensions)
        paths, ignored = [], 0
        for path in _walk_files(root):
            name = posixpath.basename(path)
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in extensions:
                paths.append(path)
            else:
                ignored += 1
        paths.sort()
        if not paths:
            raise InputSourceError(f"{root}: no video files found (looked for {', '.join(extensions)}; "
                              f"{ignored} other files)")
        if ignored:
            log.info("%s: %d video files; %d files with other extensions ignored", root, len(paths), ignored)
        return cls(paths, name=root, root=root)

    @classmethod
    def from_manifest(cls, manifest: str | os.PathLike) -> "FileSource":
        """One path per line, relative to the manifest's folder unless absolute; '#' starts a comment."""
        manifest = os.fspath(manifest)
        remote = is_remote(manifest)
        base = posixpath.dirname(manifest) if remote else os.path.dirname(os.path.abspath(manifest))
        paths = []
        from etils import epath

        for line in epath.Path(manifest).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                absolute = is_remote(line) or (not remote and os.path.isabs(line))
                paths.append(line if absolute else (posixpath.join(base, line) if remote else os.path.join(base, line)))
        if not paths:
            raise InputSourceError(f"{manifest}: the manifest lists no files")
        return cls(paths, name=manifest, root=base)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        if self.root and is_remote(path):
            rel = path[len(self.root.rstrip("/")) + 1:] if path.startswith(self.root.rstrip("/") + "/") else path
        else:
            rel = os.path.relpath(path, self.root) if self.root else path
        return {"record_index": int(index), "id": rel, "path": path}

    def __repr__(self) -> str:
        return f"FileSource({self.name!r}, {len(self)} files)"


class RecordSource:
    """Adapts any random-access source of records holding an id and an encoded video.

    `source[i]` must be a mapping with `id_field` (str or bytes) and `video_field` (encoded
    bytes, or a str path). This is the `sf2t_corpus` tfds schema (`id` Text, `video` bytes);
    a tfds data source, an ArrayRecord reader that decodes to dicts, or a list all work.
    """

    def __init__(self, source, name: str, id_field: str = "id", video_field: str = "video",
                 extra_fields: tuple[str, ...] = ()):
        self.source = source
        self.name = name
        self.id_field = id_field
        self.video_field = video_field
        self.extra_fields = tuple(extra_fields)  # passed through as read (e.g. video_sft's caption, qa)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.source[index]
        try:
            key, video = record[self.id_field], record[self.video_field]
        except (KeyError, TypeError, IndexError):
            fields = sorted(record) if hasattr(record, "keys") else type(record).__name__
            raise InputSourceError(f"{self.name} record {index}: expected fields {self.id_field!r} and "
                              f"{self.video_field!r}, got {fields}") from None
        key = key.decode() if isinstance(key, (bytes, bytearray)) else str(key)
        out = {"record_index": int(index), "id": key}
        for field in self.extra_fields:
            if field not in record:
                raise InputSourceError(f"{self.name} record {index} ({key}): missing field {field!r}")
            out[field] = record[field]
        if isinstance(video, (bytes, bytearray, memoryview)):
            out["video"] = bytes(video)
        elif isinstance(video, (str, os.PathLike)):
            out["path"] = os.fspath(video)
        elif hasattr(video, "tobytes"):  # a numpy object/bytes scalar
            out["video"] = video.tobytes() if getattr(video, "dtype", None) != object else bytes(video.item())
        else:
            raise InputSourceError(f"{self.name} record {index} ({key}): field {self.video_field!r} must be encoded "
                              f"bytes or a path, got {type(video).__name__}")
        return out

    def __repr__(self) -> str:
        return f"RecordSource({self.name!r}, {len(self)} records)"


def open_source(spec: str, *, split: str = "train", data_dir: str = "",
                extra_fields: tuple[str, ...] = ()) -> FileSource | RecordSource:
    """The source `spec` names (see `InputConfig.source`); `extra_fields` of tfds records are
    kept (labelled sources only: a folder of files has none)."""
    if not spec:
        raise InputSourceError("input.source is not set: give a folder of videos, a manifest file, a video file, "
                          "or tfds:NAME")
    if spec.startswith("tfds:"):
        import tensorflow_datasets as tfds  # only when used: heavy, and workers unpickle the source anyway

        name = spec[len("tfds:"):]
        try:
            ds = tfds.data_source(name, split=split, data_dir=data_dir or None)
        except Exception as e:  # tfds raises many types (DatasetNotFoundError, ValueError, ...)
            raise InputSourceError(f"{spec} (split {split!r}, data_dir {data_dir or 'default'!r}): {e}") from None
        source = RecordSource(ds, name=f"{spec}[{split}]", extra_fields=extra_fields)
        if not len(source):
            raise InputSourceError(f"{spec}[{split}] has no records")
        return source
    if extra_fields:
        raise InputSourceError(f"input.source {spec!r}: fields {list(extra_fields)} need a labelled tfds source "
                          "(e.g. tfds:video_sft), not video files")
    if is_remote(spec):
        from etils import epath

        path = epath.Path(spec)
        if not path.exists():
            raise InputSourceError(f"input.source {spec!r}: no such file or folder")
        if path.is_dir():
            return FileSource.from_folder(spec)
        kind = os.path.splitext(spec)[1].lower()
        return FileSource.from_manifest(spec) if kind in MANIFEST_EXTENSIONS else FileSource(
            [spec], name=spec, root=posixpath.dirname(spec))
    if os.path.isdir(spec):
        return FileSource.from_folder(spec)
    if not os.path.exists(spec):
        raise InputSourceError(f"input.source {spec!r}: no such file or folder")
    if os.path.splitext(spec)[1].lower() in MANIFEST_EXTENSIONS:
        return FileSource.from_manifest(spec)
    return FileSource([spec], name=spec, root=os.path.dirname(os.path.abspath(spec)))


def _walk_files(root: str):
    """Every file under `root` (a local folder or a gs:// prefix), as path strings."""
    if is_remote(root):  # folder by folder (epath refuses '**' on gs://: one listing per prefix)
        from etils import epath

        def walk(folder):
            for child in sorted(folder.iterdir(), key=str):
                if child.is_dir():
                    yield from walk(child)
                else:
                    yield str(child)

        yield from walk(epath.Path(root))
        return
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for f in files:
            yield os.path.join(folder, f)
