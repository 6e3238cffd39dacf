"""Progress of a dataset job in numbers: cases done, cases per second, time left, and a
summary line (done, failed, skipped). Plain text on stderr, at most one line every few seconds."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

PROG = "napari-grounding"


def outcome(result: Any) -> str:
    """``done``, ``failed`` or ``skipped`` for one case's result of any job."""
    if isinstance(result, dict):
        if result.get("error"):
            return "failed"
        return "skipped" if str(result.get("result", "")).startswith("skipped") else "done"
    if isinstance(result, list) and any(r.get("check") == "unreadable" for r in result):
        return "failed"  # qc: a case that could not be opened
    return "done"


class Progress:
    """Counts finished cases; ``update`` with each finished task's results."""

    def __init__(self, total: int, out: TextIO | None = None, every_s: float = 2.0):
        self.total, self.out, self.every_s = total, out or sys.stderr, every_s
        self.counts = {"done": 0, "failed": 0, "skipped": 0}
        self.start = self._shown = time.perf_counter()

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def update(self, results: list[Any]) -> None:
        for result in results:
            self.counts[outcome(result)] += 1
        now = time.perf_counter()
        if now - self._shown >= self.every_s and self.finished < self.total:
            self._shown = now
            self._say(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.perf_counter()) - self.start
        rate = self.finished / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.finished) / rate if rate > 0 else float("nan")
        return (f"{PROG}: {self.finished}/{self.total} cases, {rate:.2f} cases/s, "
                f"{_duration(left)} left")

    def summary(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.finished / elapsed if elapsed > 0 else 0.0
        c = self.counts
        return (f"{PROG}: {self.finished} cases in {elapsed:.1f} s ({rate:.2f} cases/s): "
                f"{c['done']} done, {c['failed']} failed, {c['skipped']} skipped")

    def finish(self) -> None:
        self._say(self.summary())

    def _say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def dask_callback(self, sizes: dict[str, int]) -> Any:
        """A callback for dask's local schedulers: each finished task of ``sizes`` (key name ->
        cases) reports its results (run in the scheduling thread, also with processes)."""
        from dask.callbacks import Callback

        progress = self

        class _Posted(Callback):
            def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
                name = key[0] if isinstance(key, tuple) else key
                if name in sizes:
                    progress.update(result)

        return _Posted()


def _duration(seconds: float) -> str:
    if seconds != seconds:  # nan: nothing finished yet
        return "? s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
