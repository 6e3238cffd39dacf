"""A stored (zarr) array as the viewer slices it: chunk by chunk through a shared cache of
decoded chunks, counting what it reads.

napari slices a layer with ints and forward or backward slices. Through dask each slice builds
and runs a graph (3-5x the read itself); through zarr alone, each coronal step would decode the
same forty 1 MiB chunks again. Here a slice takes its chunks from a process-wide LRU of decoded
chunks, keyed by the array's path inside an immutable cache version (a changed source is
another version, another path), so neighbouring slices reuse them.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

CHUNK_CACHE_BYTES = 256 * 1024 * 1024


class _ChunkCache:
    """Decoded chunks, least recently used out first, within a byte budget."""

    def __init__(self, budget: int):
        self.budget, self.used = budget, 0
        self._chunks: OrderedDict[tuple[str, tuple[int, ...]], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, tuple[int, ...]]) -> np.ndarray | None:
        with self._lock:
            found = self._chunks.get(key)
            if found is not None:
                self._chunks.move_to_end(key)
            return found

    def put(self, key: tuple[str, tuple[int, ...]], chunk: np.ndarray) -> None:
        with self._lock:
            if key in self._chunks or chunk.nbytes > self.budget:
                return
            self._chunks[key] = chunk
            self.used += chunk.nbytes
            while self.used > self.budget:
                _, dropped = self._chunks.popitem(last=False)
                self.used -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self.used = 0


CHUNKS = _ChunkCache(CHUNK_CACHE_BYTES)


class StoredArray:
    """A zarr array of a cache version, sliced through the chunk cache; counts the chunks it
    decodes (in ``counter``) and holds the version's shared lock while it lives."""

    def __init__(self, array: Any, counter: Any, lock: Any):
        self.array, self.counter = array, counter
        self.lock = lock  # the version stays locked (undeletable) while an array reads it
        self.shape, self.dtype, self.ndim = tuple(array.shape), array.dtype, array.ndim
        self.chunks = tuple(array.chunks)
        self.name = f"{array.store}/{array.path}"  # unique: versions are immutable folders

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[...]
        return whole if dtype is None else whole.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = _full_key(key, self.ndim)
        forward, backward = _forwards(key, self.shape)
        ranges = _ranges(forward, self.shape)
        if ranges is None:  # an index of another kind: zarr's own, uncached
            block = np.asarray(self.array[forward])
            self.counter.add(block.nbytes)
            return block[backward]
        out = np.zeros([stop - start for start, stop, _ in ranges], dtype=self.dtype)
        spans = [range(start // c, -(-stop // c)) if stop > start else range(0)
                 for (start, stop, _), c in zip(ranges, self.chunks, strict=True)]
        for index in itertools.product(*spans):
            chunk = self._chunk(index)
            inside, target = [], []
            for (start, stop, _), c, i in zip(ranges, self.chunks, index, strict=True):
                lo, hi = max(start, i * c), min(stop, (i + 1) * c)
                inside.append(slice(lo - i * c, hi - i * c))
                target.append(slice(lo - start, hi - start))
            out[tuple(target)] = chunk[tuple(inside)]
        picked = tuple(0 if is_int else slice(None) for _, _, is_int in ranges)
        return out[picked][backward]

    def _chunk(self, index: tuple[int, ...]) -> np.ndarray:
        key = (self.name, index)
        chunk = CHUNKS.get(key)
        if chunk is None:
            region = tuple(slice(i * c, min((i + 1) * c, n))
                           for i, c, n in zip(index, self.chunks, self.shape, strict=True))
            chunk = np.asarray(self.array[region])
            self.counter.add(chunk.nbytes)
            CHUNKS.put(key, chunk)
        return chunk


def _full_key(key: Any, ndim: int) -> tuple[Any, ...]:
    """An index as one entry per axis (an Ellipsis and missing trailing axes as ``:``)."""
    key = key if isinstance(key, tuple) else (key,)
    if Ellipsis in key:
        at = key.index(Ellipsis)
        key = key[:at] + (slice(None),) * (ndim - len(key) + 1) + key[at + 1:]
    return key + (slice(None),) * (ndim - len(key))


def _forwards(key: tuple[Any, ...], shape: tuple[int, ...]) -> tuple[tuple[Any, ...], Any]:
    """An index with its backward slices read forwards, and what then turns those around."""
    forward, backward = [], []
    for index, n in zip(key, shape, strict=False):
        if isinstance(index, slice) and (index.step or 1) < 0:
            start, stop, step = index.indices(n)
            count = len(range(start, stop, step))
            low = start + (count - 1) * step
            forward.append(slice(low, start + 1) if count else slice(0, 0))
            backward.append(slice(None, None, step))
        else:
            forward.append(index)
            if not isinstance(index, (int, np.integer)):
                backward.append(slice(None))
    return tuple(forward), tuple(backward)


def _ranges(key: tuple[Any, ...], shape: tuple[int, ...]
            ) -> list[tuple[int, int, bool]] | None:
    """(start, stop, was an int) per axis for an index of ints and unit-step slices; None for
    any other index. An int out of range is an IndexError, as numpy's."""
    if len(key) != len(shape):
        return None
    ranges = []
    for index, n in zip(key, shape, strict=True):
        if isinstance(index, (int, np.integer)):
            at = int(index) + n if index < 0 else int(index)
            if not 0 <= at < n:
                raise IndexError(f"index {index} is out of bounds for an axis of size {n}")
            ranges.append((at, at + 1, True))
        elif isinstance(index, slice) and index.step in (None, 1):
            start, stop, _ = index.indices(n)
            ranges.append((start, max(start, stop), False))
        else:
            return None
    return ranges
