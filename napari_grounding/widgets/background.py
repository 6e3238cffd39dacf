"""Work off the UI thread: mask statistics and cache writes.

Workers get annotations and arrays, never a Case, and come from superqt directly: napari's
``create_worker`` registers each worker's ``quit`` with the window's task list for good, which
kept every worker (and everything it was given) alive. A failure becomes a notification: a
worker without an ``errored`` handler re-raises on the Qt thread, which aborts the process.

Workers run on a thread pool of our own, never Qt's global one: Qt 5 scales images on the
global pool while the UI thread waits for it (napari's activity indicator does, when a
progress bar appears), and Python workers there wait for the GIL that waiting UI thread holds,
which froze the viewer for good under PyQt5.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from napari.utils import progress
from napari.utils.notifications import show_warning
from qtpy.QtCore import QCoreApplication, QThread, QThreadPool, QTimer
from superqt.utils import create_worker

from ..metrics import annotation_stats
from ..model import Case, Image, MaskAnnotation

CACHE_ON_OPEN_ENV = "NAPARI_GROUNDING_CACHE_ON_OPEN"  # "0": never write caches from the viewer
POOL_NAME = "napari-grounding workers"
_running: dict[int, Any] = {}  # started workers, kept alive until they have finished


def worker_pool() -> QThreadPool:
    """The application's pool for our workers (a child of the application, made once)."""
    app = QCoreApplication.instance()
    pool = app.findChild(QThreadPool, POOL_NAME)
    if pool is None:
        pool = QThreadPool(app)
        pool.setObjectName(POOL_NAME)
        pool.setMaxThreadCount(max(2, QThread.idealThreadCount()))
    return pool


def _forget_later(key: int) -> None:
    # after the finished signal has been delivered everywhere, not from inside it
    QTimer.singleShot(0, lambda: _running.pop(key, None))


def run(func: Callable[..., Any], *args: Any, desc: str, on_done: Callable[[Any], None],
        failure: str) -> Any:
    """Run ``func(*args)`` in a thread with an activity entry; ``on_done`` gets its result."""
    bar = progress(total=0, desc=desc)
    # "errored" given here: superqt re-raises on the Qt thread unless it is, whatever else is
    # connected later
    worker = create_worker(func, *args, _start_thread=False, _connect={
        "returned": on_done, "errored": lambda err: show_warning(f"{failure}: {err}"),
        "finished": bar.close})
    key = id(worker)
    _running[key] = worker
    worker.finished.connect(lambda: _forget_later(key))  # the key, not the worker: no cycle
    worker_pool().start(worker)
    return worker


def start_stats(case: Case, on_done: Callable[[str, dict[str, Any]], None]) -> Any:
    """Measure a case's annotations; ``on_done(case_key, stats)`` (the caller drops stale ones)."""
    key, annotations = case.key, list(case.annotations.values())
    return run(annotation_stats, annotations, desc=f"Measuring the masks of {case.id}",
               on_done=lambda stats: on_done(key, stats),
               failure=f"mask statistics of {case.id} failed")


def start_scores(case: Case, on_done: Callable[[str, dict[str, Any]], None]) -> Any:
    """Score the case's last added set (a model's predictions) against its own, per item."""
    from ..scores import item_scores

    key = case.key
    # the worker gets a shallow copy: same arrays, no tie to the Case the viewer holds
    holder = replace(case, cache={})
    return run(item_scores, holder, desc=f"Scoring the predictions of {case.id}",
               on_done=lambda scores: on_done(key, scores),
               failure=f"scoring the predictions of {case.id} failed")


def start_prefetch(dataset: Any, case_id: str, on_done: Callable[[str, Case], None]) -> Any:
    """Open a case and measure its annotations ahead of time, so moving on is immediate."""
    return run(_open_measured, dataset, case_id, desc=f"Opening {case_id} ahead",
               on_done=lambda case: on_done(case_id, case),
               failure=f"could not open {case_id} ahead")


def _open_measured(dataset: Any, case_id: str) -> Case:
    case = dataset.open_case(case_id)
    case.cache["stats"] = annotation_stats(list(case.annotations.values()))
    return case


def wants_cache(case: Case) -> Image | None:
    """The CT to cache for next time: read from a NIfTI file, not cached yet (a reader marks
    volumes it must not cache with ``meta["cache"] = False``), caching allowed."""
    ct = case.images.get("ct")
    if ct is None or "cache" in ct.meta or not ct.source.endswith((".nii", ".nii.gz")):
        return None
    if os.environ.get(CACHE_ON_OPEN_ENV, "1") == "0":
        return None
    return ct


def start_caching(case: Case, on_done: Callable[[str, Any], None]) -> Any:
    """Write the OME-Zarr cache of a case's CT and its masks, for the next opening."""
    image = wants_cache(case)
    if image is None:
        return None
    masks = [a for a in case.annotations.values()
             if isinstance(a, MaskAnnotation) and a.image == image.id]
    key = case.key
    return run(_write_cache, case.dataset, case.id, image, masks,
               desc=f"Caching {case.id} as OME-Zarr",
               on_done=lambda path: on_done(key, path), failure=f"could not cache {case.id}")


def _write_cache(dataset: str, case_id: str, image: Image, masks: list[MaskAnnotation]) -> Any:
    from ..store import write_cache  # zarr and ome-zarr only when a cache is written

    # a Case of just what the cache holds, living as long as this thread's work
    holder = Case(dataset=dataset, id=case_id, images={image.id: image},
                  annotations={m.id: m for m in masks})
    return write_cache(holder, image.id)
