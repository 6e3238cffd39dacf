"""Dataset-wide jobs as dask graphs: convert to the cache, QC, snapshot galleries.

One task per case; the local threaded scheduler by default, a ``dask.distributed`` cluster
when its address is given. Workers open the dataset themselves (once per process).
"""

from __future__ import annotations

import csv
import html
import sys
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import dask
from dask import delayed
from dask.diagnostics import ProgressBar
from PIL import Image as PILImage

from .metrics import case_stats
from .model import GroundingError
from .qc import qc_case
from .readers import open_dataset
from .readers.paths import inside, safe_name, slug
from .render import render_item
from .store import ensure_cache

CONNECT_TIMEOUT_S = 10


@lru_cache(maxsize=4)
def _dataset(path: str, images: str | None) -> Any:
    return open_dataset(path, images)


def _failed(case_id: str, err: Exception) -> dict[str, Any]:
    reason = str(err) if isinstance(err, GroundingError) else f"cannot write ({err})"
    return {"case": case_id, "error": reason}


def convert_case(path: str, images: str | None, case_id: str, out: str) -> dict[str, Any]:
    """Write one case's CT and masks into the OME-Zarr cache under ``out``, unless current.
    A bad case is reported in the result (``error``), not raised: the job goes on."""
    try:
        case = _dataset(path, images).open_case(case_id)
        if "ct" not in case.images:
            return {"case": case_id, "result": "skipped: no CT"}
        cache, written = ensure_cache(case, root=Path(out))
    except (GroundingError, OSError) as err:
        return _failed(case_id, err)
    return {"case": case_id, "result": "written" if written else "current", "path": str(cache)}


def qc_one(path: str, images: str | None, case_id: str) -> list[dict[str, Any]]:
    try:
        return qc_case(_dataset(path, images).open_case(case_id))
    except GroundingError as err:
        return [{"dataset": _dataset(path, images).name, "case": case_id, "check": "unreadable",
                 "item": "", "detail": str(err)}]


def snapshot_case(path: str, images: str | None, case_id: str, out: str) -> dict[str, Any]:
    """One PNG per item with annotations, under a folder of its own per case: the gallery
    entries, and the reason when the case could not be rendered (the job goes on)."""
    entries: list[dict[str, str]] = []
    try:
        case = _dataset(path, images).open_case(case_id)
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


def _in_one_task(job: Callable[..., Any], *args: Any) -> Any:
    """Run a job with the dask work inside it on the task's own threads: on a cluster worker,
    a nested compute (ours or a library's) would otherwise go back to the cluster and ship
    open file readers between workers."""
    with dask.config.set(scheduler="threads"):
        return job(*args)


def run(job: Callable[..., Any], path: str, images: str | None, case_ids: Sequence[str],
        *extra: str, scheduler: str | None = None, workers: int | None = None) -> list[Any]:
    """``job(path, images, case_id, *extra)`` for every case, with progress on stderr."""
    tasks = [delayed(_in_one_task, pure=False)(job, str(path), images, case_id, *extra)
             for case_id in case_ids]
    if scheduler:
        from distributed import Client, progress

        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError, TypeError) as err:
            raise GroundingError(f"--scheduler {scheduler}: cannot connect ({err})") from None
        with client:
            futures = client.compute(tasks)
            progress(futures, notebook=False)
            return client.gather(futures)
    # several local workers are processes: decompression and encoding hold the GIL
    local = "processes" if workers and workers > 1 else "threads"
    with ProgressBar(out=sys.stderr):
        return list(dask.compute(*tasks, scheduler=local, num_workers=workers))


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
