"""Dataset-wide jobs as dask graphs: convert to the cache, QC, snapshot galleries.

One task per case; a CSV dataset (CheXmask) goes in blocks of consecutive rows, each block read
in one sequential pass by the task itself. The local threaded scheduler by default, local
processes with ``workers`` > 1, a ``dask.distributed`` cluster when its address is given.
Workers open the dataset themselves (once per process): only paths and ids travel. Each task
keeps its nested work (mask statistics, encoding) to its share of the cores.
"""

from __future__ import annotations

import csv
import html
import math
import os
import sys
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from .model import Case, GroundingError
from .progress import Progress
from .readers import open_dataset
from .readers.paths import inside, safe_name, slug

CONNECT_TIMEOUT_S = 10
BLOCK_ROWS = 500  # most rows of a CSV dataset per task
Opener = Callable[[], Case]


@lru_cache(maxsize=4)
def _dataset(path: str, images: str | None) -> Any:
    return open_dataset(path, images)


def _opener(path: str, images: str | None, case_id: str, opener: Opener | None) -> Opener:
    return opener or partial(_dataset(path, images).open_case, case_id)


def _failed(case_id: str, err: Exception) -> dict[str, Any]:
    reason = str(err) if isinstance(err, GroundingError) else f"cannot write ({err})"
    return {"case": case_id, "error": reason}


def convert_case(path: str, images: str | None, case_id: str, out: str,
                 opener: Opener | None = None) -> dict[str, Any]:
    """Write one case's CT and masks into the OME-Zarr cache under ``out``, unless current.
    A bad case is reported in the result (``error``), not raised: the job goes on."""
    from .store import ensure_cache

    try:
        case = _opener(path, images, case_id, opener)()
        if "ct" not in case.images:
            return {"case": case_id, "result": "skipped: no CT"}
        cache, written = ensure_cache(case, root=Path(out))
    except (GroundingError, OSError) as err:
        return _failed(case_id, err)
    return {"case": case_id, "result": "written" if written else "current", "path": str(cache)}


def qc_one(path: str, images: str | None, case_id: str,
           opener: Opener | None = None) -> list[dict[str, Any]]:
    from .qc import qc_case

    try:
        return qc_case(_opener(path, images, case_id, opener)())
    except GroundingError as err:
        return [{"dataset": _dataset(path, images).name, "case": case_id, "check": "unreadable",
                 "item": "", "detail": str(err)}]


def snapshot_case(path: str, images: str | None, case_id: str, out: str,
                  opener: Opener | None = None) -> dict[str, Any]:
    """One PNG per item with annotations, under a folder of its own per case: the gallery
    entries, and the reason when the case could not be rendered (the job goes on)."""
    from PIL import Image as PILImage

    from .metrics import case_stats
    from .render import render_item

    entries: list[dict[str, str]] = []
    try:
        case = _opener(path, images, case_id, opener)()
        stats = case_stats(case)
        folder = safe_name(case_id)
        used: set[str] = set()
        for item in case.walk():
            if not item.annotations:
                continue
            picture = render_item(case, item, stats)
            if picture is None:
                continue
            name = slug(item.id)  # readable; made distinct below when two items slug alike
            if not name or name in used:
                name = safe_name(f"{item.id}#{len(used)}")
            used.add(name)
            relative = f"{folder}/{name}.png"
            target = inside(out, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            PILImage.fromarray(picture).save(target)
            entries.append({"case": case_id, "item": item.id, "text": item.title or item.text,
                            "png": relative})
    except (GroundingError, OSError) as err:
        return {"case": case_id, "entries": entries, **_failed(case_id, err)}
    return {"case": case_id, "entries": entries}


def _limited(threads: int) -> Any:
    """Nested work of one task on ``threads`` threads (1: the task's own thread): dask's
    computes (ours or a library's; on a cluster worker they would otherwise go back to the
    cluster and ship open file readers), zarr's encoder pool (made once per process, so the
    first task's share holds: a job's tasks all have the same) and blosc's threads."""
    import dask
    import dask.local
    import dask.threaded

    from . import write_behind

    if "numcodecs" in sys.modules:
        from numcodecs import blosc

        blosc.set_nthreads(threads)
    if "zarr" in sys.modules:
        import zarr

        zarr.config.set({"threading.max_workers": threads})
    else:  # read by zarr's config when it is imported
        os.environ["ZARR_THREADING__MAX_WORKERS"] = str(threads)
    # schedulers as functions: by name, each compute would look for (import) distributed first
    share = {write_behind.THREADS_KEY: threads}  # the cache writer's reads and writes overlap
    if threads <= 1:
        return dask.config.set(share, scheduler=dask.local.get_sync)
    return dask.config.set(share, scheduler=dask.threaded.get, num_workers=threads)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def reuse_freed_memory() -> bool:
    """Make this job process (and the workers it forks) keep the memory it frees for its next
    allocations, when its C library is glibc; returns whether it did. By default each slab-sized
    buffer (16-32 MB: a range of a file inflated, a chunk of zarr's) is a fresh mapping, handed
    back when freed, whose pages the kernel faults in and zeroes again for the next slab: two
    convert workers spent a quarter of their time in the kernel. A job's process keeps its peak
    instead. (A dask.distributed nanny turns the same knob the other way, to hand memory back
    under its workers' memory limit: cluster workers are left as they are.)"""
    if not sys.platform.startswith("linux") or \
            not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
        return False
    import ctypes

    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 256 << 20)
                and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))


def _case_task(job: Callable[..., Any], threads: int, path: str, images: str | None,
               case_id: str, *extra: Any) -> list[Any]:
    with _limited(threads):
        return [job(path, images, case_id, *extra)]


def _block_task(job: Callable[..., Any], threads: int, path: str, images: str | None,
                start: int, stop: int, *extra: Any) -> list[Any]:
    """The cases at ``start:stop`` of a CSV dataset: their rows read in one pass."""
    dataset = _dataset(path, images)
    with _limited(threads):
        rows = dataset.block_rows(start, stop)
        prepare = getattr(job, "before_block", None)
        if prepare is not None:  # e.g. evaluate: the block's prediction rows, in one pass too
            prepare([case_id for case_id, _, _ in rows], *extra)
        return [job(path, images, case_id, *extra,
                    opener=partial(dataset.case_from_row, case_id, number, row))
                for case_id, number, row in rows]


def _units(dataset: Any, case_ids: Sequence[str], parallel: int) -> list[tuple[str, Any, int]]:
    """(kind, what, cases) per task: blocks of rows for a whole CSV dataset, else one case."""
    if hasattr(dataset, "block_rows") and list(case_ids) == dataset.case_ids():
        size = max(1, min(BLOCK_ROWS, math.ceil(len(case_ids) / (4 * parallel))))
        return [("block", (a, b), b - a) for a, b in dataset.blocks(size)]
    return [("case", case_id, 1) for case_id in case_ids]


def run(job: Callable[..., Any], path: str, images: str | None, case_ids: Sequence[str],
        *extra: Any, scheduler: str | None = None, workers: int | None = None,
        threads: int | None = None) -> list[Any]:
    """``job(path, images, case_id, *extra)`` for every case, in case order, with progress
    (cases done, cases/s, time left) and a summary line on stderr. Each task's own work runs
    on ``threads`` threads (default: its share of the cores)."""
    from dask import delayed

    path = str(path)
    cores = os.cpu_count() or 1
    parallel = workers or (cores if scheduler else 1)
    # a cluster's worker threads each run a case; local processes share the cores
    threads = threads or (1 if scheduler else max(1, cores // (workers or 1)))
    units = _units(_dataset(path, images), case_ids, parallel)
    tasks = []
    for kind, what, _ in units:
        task = _block_task if kind == "block" else _case_task
        args = what if kind == "block" else (what,)
        tasks.append(delayed(task, pure=False)(job, threads, path, images, *args, *extra))
    sizes = {t.key: n for t, (_, _, n) in zip(tasks, units, strict=True)}
    progress = Progress(len(case_ids))
    if scheduler:
        parts = _on_cluster(scheduler, tasks, progress)
    else:
        with progress.dask_callback(sizes):
            parts = _compute_locally(tasks, workers)
    progress.finish()
    return [result for part in parts for result in part]


def _compute_locally(tasks: list[Any], workers: int | None) -> tuple[Any, ...]:
    """Several local workers are processes (decompression and encoding hold the GIL), else
    threads. The scheduler is given as its function: by name, dask would import distributed
    (0.5 s) to look for a client first."""
    import dask

    if workers and workers > 1:
        import dask.multiprocessing

        # one task at a time to each process: dask's default hands out 6, so 4 cases went to
        # one process while the other sat idle
        with dask.config.set({"multiprocessing.context": start_method()}):
            return dask.compute(*tasks, scheduler=dask.multiprocessing.get, num_workers=workers,
                                chunksize=1)
    import dask.threaded

    return dask.compute(*tasks, scheduler=dask.threaded.get, num_workers=workers)


def start_method() -> str:
    """How local worker processes start: forked on Linux while this process runs no other
    Python thread (they start in milliseconds, with the modules and the dataset already open,
    where a spawned one imports for a second or two); else spawned, dask's default, which is
    safe beside threads and on every system."""
    import threading

    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


def _on_cluster(address: str, tasks: list[Any], progress: Progress) -> list[Any]:
    from distributed import Client, as_completed

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        raise GroundingError(f"--scheduler {address}: cannot connect ({err})") from None
    with client:
        futures = client.compute(tasks)
        for future in as_completed(futures):
            progress.update(future.result())
        return client.gather(futures)


def write_qc(rows: list[list[dict[str, Any]]], out: Path) -> int:
    flat = [row for case_rows in rows for row in case_rows]
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["dataset", "case", "check", "item", "detail"])
        writer.writeheader()
        writer.writerows(flat)
    return len(flat)


def write_gallery(results: list[dict[str, Any]], out: Path) -> int:
    """``index.html``: every picture made, then the cases that could not be rendered."""
    flat = [e for result in results for e in result["entries"]]
    failed = "".join(f"<li><b>{html.escape(r['case'])}</b>: {html.escape(r['error'])}</li>"
                     for r in results if r.get("error"))
    figures = "\n".join(
        f'<figure><img src="{html.escape(e["png"])}" loading="lazy"><figcaption>'
        f'<b>{html.escape(e["case"])}</b> · {html.escape(e["item"])}<br>'
        f'{html.escape(e["text"])}</figcaption></figure>' for e in flat)
    (out / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>napari-grounding snapshots</title>"
        "<style>body{font-family:sans-serif;background:#222;color:#eee}"
        "figure{display:inline-block;width:260px;margin:6px;vertical-align:top}"
        "img{width:256px;image-rendering:pixelated}figcaption{font-size:12px}</style>\n"
        f"<h1>{len(flat)} annotated items</h1>\n{figures}\n"
        + (f"<h2>Not rendered</h2><ul>{failed}</ul>\n" if failed else ""), encoding="utf-8")
    return len(flat)
