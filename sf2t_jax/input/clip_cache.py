"""Decoded clips kept in memory between epochs (`input.clip_cache_mb`).

A stage that repeats its source (the demo trains ten passes over 1920 clips) would otherwise
decode and resize every clip once per pass; on a CPU that is most of a step's time. The cache
holds what `ExampleMaker` makes of a clip before any sampling: its frames at the bucket
resolution and the stream's info. A sample is a function of (seed, index, clip), so a cached
clip gives the sample a fresh decode gives, bit for bit. The frames are stored read-only: a task
that wrote into its input would fail loudly instead of changing later samples.

Bounded by bytes, least recently used out first. One cache per process (`process_cache`), so
pipelines over the same source in one process (the demo's stages one after another: SF²T and
SFT+SF²T both read sf2t_corpus) share it; the maker's keys name the source, split and bucket.
Pickling (grain workers) keeps the bound and drops the contents: each worker fills its own.
"""
from __future__ import annotations

import collections
import threading
from typing import Any, Hashable

import numpy as np


class ClipCache:
    """An LRU of `(frames uint8 (T, H, W, 3), info)` by key, at most `max_bytes` of frames.

    A clip larger than the whole bound is not kept. Safe to share between reader threads.
    """

    def __init__(self, max_bytes: int):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"ClipCache: max_bytes must be an integer >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._entries: collections.OrderedDict[Hashable, tuple[np.ndarray, Any]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> tuple[np.ndarray, Any] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: Hashable, frames: np.ndarray, info: Any) -> np.ndarray:
        """Keeps `frames` (made read-only, not copied) under `key`; returns the array kept."""
        frames.flags.writeable = False
        if frames.nbytes > self.max_bytes:
            return frames
        with self._lock:
            if key in self._entries:
                return self._entries[key][0]
            self._entries[key] = (frames, info)
            self.bytes += frames.nbytes
            while self.bytes > self.max_bytes:
                _, (old, _) = self._entries.popitem(last=False)
                self.bytes -= old.nbytes
        return frames

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_bytes"])


_PROCESS_CACHE: ClipCache | None = None


def process_cache(max_bytes: int) -> ClipCache:
    """This process's cache, its bound raised to `max_bytes` if that is more (never lowered: a
    pipeline asking for less shares what another kept)."""
    global _PROCESS_CACHE
    if _PROCESS_CACHE is None:
        _PROCESS_CACHE = ClipCache(max_bytes)
    elif max_bytes > _PROCESS_CACHE.max_bytes:
        _PROCESS_CACHE.max_bytes = max_bytes
    return _PROCESS_CACHE
