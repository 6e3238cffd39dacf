"""Writes one step behind the reads: the cache writer inflates the next slab while the last
one is halved, encoded and stored (inflate, numpy and zarr's encoders release the GIL)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# dask config key a job's task sets to its share of the cores; 1 keeps its writes in its thread
THREADS_KEY = "napari_grounding.threads"


def allowed() -> bool:
    """Whether this thread may hand writes to a second one (not in a one-thread job task)."""
    import dask

    return int(dask.config.get(THREADS_KEY, 2)) > 1


class WriteBehind:
    """``submit`` runs a write after the one before it, behind the caller (in the caller's
    thread when not ``enabled``); a write's error is raised by the next ``submit`` or at the
    end of the ``with`` block, which never returns while a write still runs."""

    def __init__(self, enabled: bool):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cache-writer") if enabled else None
        self._pending: Future | None = None

    def submit(self, write: Callable[[], Any]) -> None:
        self.wait()
        if self._pool is None:
            write()
        else:
            self._pending = self._pool.submit(write)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=True)  # nothing is written after the block ends
        finally:
            if kind is None:
                self.wait()  # else the block's own error is the one to see
