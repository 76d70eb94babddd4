"""Reading and writing Hugging Face safetensors checkpoints, one tensor at a time.

Reads a single `model.safetensors` or shards listed in `model.safetensors.index.json`; each
tensor is read by key when it is needed, so converting a 7B model never holds a second full
copy. (The reader is ours, not `safetensors.safe_open`: see `_SafetensorsFile`.)
Writes shards no larger than `max_shard_bytes` plus the index, atomically: files go to a
temporary directory that is renamed into place only when complete.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterable, Iterator

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

from sf2t_jax.errors import InputError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class CheckpointError(InputError):
    """A Hugging Face checkpoint that cannot be read: the message names the file and key."""


# safetensors dtype names -> numpy dtypes (bfloat16 via ml_dtypes, which jax ships).
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")  # what a weight may be stored as
_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


class _SafetensorsFile:
    """One .safetensors file: its header parsed once, each tensor read with one positioned read.

    Reading with `np.fromfile` instead of memory-mapping keeps only the tensor being converted
    in memory: pages of an mmap stay resident (and count in RSS) until the file is closed.
    """

    def __init__(self, path: str):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: {size} bytes, too short for a safetensors header")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > size - 8:
                raise CheckpointError(f"{path}: header of {header_len} bytes does not fit in a {size}-byte file (truncated?)")
            try:
                header = json.loads(f.read(header_len))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise CheckpointError(f"{path}: not a safetensors file (header is not JSON: {e})") from None
        header.pop("__metadata__", None)
        self.data_start = 8 + header_len
        self.entries = header
        for key, entry in header.items():
            if entry.get("dtype") not in _DTYPES:
                raise CheckpointError(f"{path}: tensor {key!r} has unsupported dtype {entry.get('dtype')!r}")
            begin, end = entry["data_offsets"]
            expected = int(np.prod(entry["shape"], dtype=np.int64)) * np.dtype(_DTYPES[entry["dtype"]]).itemsize
            if end - begin != expected:
                raise CheckpointError(f"{path}: tensor {key!r} has {end - begin} bytes, its shape needs {expected}")
            if self.data_start + end > size:
                raise CheckpointError(f"{path}: tensor {key!r} ends at byte {self.data_start + end}, past the end of "
                                      f"the {size}-byte file (truncated?)")

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.entries[key]["shape"])

    def read(self, key: str) -> np.ndarray:
        entry = self.entries[key]
        dtype = np.dtype(_DTYPES[entry["dtype"]])
        count = int(np.prod(entry["shape"], dtype=np.int64))
        with open(self.path, "rb") as f:
            array = np.fromfile(f, dtype=dtype, count=count, offset=self.data_start + entry["data_offsets"][0])
        return array.reshape(entry["shape"])


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
            file_names = sorted(set(weight_map.values()))
        elif os.path.exists(single_path):
            weight_map, file_names = None, [SINGLE_FILE]
        else:
            raise CheckpointError(f"{self.directory}: no {SINGLE_FILE} or {INDEX_FILE}")
        self._files: dict[str, _SafetensorsFile] = {}
        for name in file_names:
            path = os.path.join(self.directory, name)
            if not os.path.exists(path):
                raise CheckpointError(f"{INDEX_FILE} lists {name}, which is missing from {self.directory}")
            self._files[name] = _SafetensorsFile(path)
        if weight_map is None:
            weight_map = {k: SINGLE_FILE for k in self._files[SINGLE_FILE].entries}
        for key, name in weight_map.items():
            if key not in self._files[name].entries:
                raise CheckpointError(f"{os.path.join(self.directory, name)}: {INDEX_FILE} maps {key!r} here, "
                                      "but the file does not hold it")
        self._file_of = {k: self._files[name] for k, name in weight_map.items()}

    def keys(self) -> list[str]:
        return sorted(self._file_of)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._file_of[key].shape(key)

    def get(self, key: str) -> np.ndarray:
        return self._file_of[key].read(key)

    def dtype(self, key: str) -> str:
        """The tensor's safetensors dtype name ("BF16", "F32", "I64", ...)."""
        return self._file_of[key].entries[key]["dtype"]

    def path(self, key: str) -> str:
        """The file that holds the tensor."""
        return self._file_of[key].path


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
