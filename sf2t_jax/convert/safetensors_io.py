"""Reading and writing Hugging Face safetensors checkpoints, one tensor at a time.

Reads a single `model.safetensors` or shards listed in `model.safetensors.index.json`; tensors
are memory-mapped and fetched by key, so converting a 7B model never holds a second full copy.
Writes shards no larger than `max_shard_bytes` plus the index, atomically: files go to a
temporary directory that is renamed into place only when complete.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """A Hugging Face checkpoint that cannot be read: the message names the file and key."""


class SafetensorsReader:
    """Lazy access to the tensors of a Hugging Face checkpoint directory."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = os.fspath(directory)
        index_path = os.path.join(self.directory, INDEX_FILE)
        single_path = os.path.join(self.directory, SINGLE_FILE)
        if os.path.exists(index_path):
            with open(index_path) as f:
                try:
                    weight_map = json.load(f)["weight_map"]
                except (json.JSONDecodeError, KeyError) as e:
                    raise CheckpointError(f"{index_path}: expected JSON with a 'weight_map' object ({e})") from None
            self._file_of = {k: os.path.join(self.directory, v) for k, v in weight_map.items()}
        elif os.path.exists(single_path):
            self._file_of = None
            self._single = single_path
        else:
            raise CheckpointError(f"{self.directory}: no {SINGLE_FILE} or {INDEX_FILE}")
        self._handles: dict[str, object] = {}
        if self._file_of is None:
            self._file_of = {k: single_path for k in self._open(single_path).keys()}
        for path in sorted(set(self._file_of.values())):
            if not os.path.exists(path):
                raise CheckpointError(f"{INDEX_FILE} lists {os.path.basename(path)}, which is missing from {self.directory}")
            keys = set(self._open(path).keys())
            missing = [k for k, p in self._file_of.items() if p == path and k not in keys]
            if missing:
                raise CheckpointError(f"{path}: {INDEX_FILE} maps {missing[0]!r} here, but the file does not hold it")

    def _open(self, path: str):
        if path not in self._handles:
            try:
                self._handles[path] = safe_open(path, framework="numpy")
            except (SafetensorError, OSError) as e:
                raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
        return self._handles[path]

    def keys(self) -> list[str]:
        return sorted(self._file_of)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._open(self._file_of[key]).get_slice(key).get_shape())

    def get(self, key: str) -> np.ndarray:
        path = self._file_of[key]
        try:
            return self._open(path).get_tensor(key)
        except SafetensorError as e:
            raise CheckpointError(f"{path}: cannot read tensor {key!r} ({e})") from None


def write_checkpoint(tensors: Iterable[tuple[str, np.ndarray]], out_dir: str | os.PathLike, *,
                     max_shard_bytes: int = 5 * 2**30, extra_files: dict[str, str] | None = None,
                     overwrite: bool = False) -> list[str]:
    """Writes (key, array) pairs as safetensors shards (plus index when more than one).

    Tensors are consumed lazily: at most one shard's worth is held at a time. `extra_files`
    maps file names (e.g. "config.json") to their text. The directory appears complete or not
    at all. Returns the names of the files written.
    """
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; pass overwrite=True to replace it")
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(out_dir) + "-", dir=parent)
    try:
        shard_files = _write_shards(tensors, tmp, max_shard_bytes)
        for name, text in (extra_files or {}).items():
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return shard_files + sorted(extra_files or {})


def _write_shards(tensors: Iterable[tuple[str, np.ndarray]], directory: str, max_shard_bytes: int) -> list[str]:
    shards: list[list[str]] = []
    weight_map: dict[str, int] = {}
    total = 0
    for i, group in enumerate(_group_by_size(tensors, max_shard_bytes)):
        save_file({k: np.ascontiguousarray(v) for k, v in group}, os.path.join(directory, f"shard-{i}"),
                  metadata={"format": "pt"})
        shards.append([k for k, _ in group])
        total += sum(v.nbytes for _, v in group)
    if len(shards) == 1:
        os.replace(os.path.join(directory, "shard-0"), os.path.join(directory, SINGLE_FILE))
        return [SINGLE_FILE]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for i, (name, keys) in enumerate(zip(names, shards)):
        os.replace(os.path.join(directory, f"shard-{i}"), os.path.join(directory, name))
        weight_map.update({k: i for k in keys})
    index = {"metadata": {"total_size": total}, "weight_map": {k: names[i] for k, i in sorted(weight_map.items())}}
    with open(os.path.join(directory, INDEX_FILE), "w") as f:
        json.dump(index, f, indent=2)
    return names + [INDEX_FILE]


def _group_by_size(tensors: Iterable[tuple[str, np.ndarray]], max_bytes: int) -> Iterator[list[tuple[str, np.ndarray]]]:
    group, size = [], 0
    for key, value in tensors:
        if group and size + value.nbytes > max_bytes:
            yield group
            group, size = [], 0
        group.append((key, value))
        size += value.nbytes
    if group:
        yield group
