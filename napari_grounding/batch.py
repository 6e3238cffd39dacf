"""Dataset-wide jobs as dask graphs: convert to the cache, QC, snapshot galleries.

One task per case; the local threaded scheduler by default, a ``dask.distributed`` cluster
when its address is given. Workers open the dataset themselves (once per process).
"""

from __future__ import annotations

import csv
import html
import re
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
from .render import render_item
from .store import write_cache


@lru_cache(maxsize=4)
def _dataset(path: str, images: str | None) -> Any:
    return open_dataset(path, images)


def convert_case(path: str, images: str | None, case_id: str, out: str) -> dict[str, str]:
    """Write one case's CT and masks into the OME-Zarr cache under ``out``."""
    case = _dataset(path, images).open_case(case_id)
    if "ct" not in case.images:
        return {"case": case_id, "result": "skipped: no CT"}
    return {"case": case_id, "result": str(write_cache(case, root=Path(out)))}


def qc_one(path: str, images: str | None, case_id: str) -> list[dict[str, Any]]:
    try:
        return qc_case(_dataset(path, images).open_case(case_id))
    except GroundingError as err:
        return [{"dataset": _dataset(path, images).name, "case": case_id, "check": "unreadable",
                 "item": "", "detail": str(err)}]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def snapshot_case(path: str, images: str | None, case_id: str, out: str) -> list[dict[str, str]]:
    """One PNG per item with annotations; returns the gallery entries."""
    case = _dataset(path, images).open_case(case_id)
    stats = case_stats(case)
    entries = []
    for item in case.walk():
        if not item.annotations:
            continue
        picture = render_item(case, item, stats)
        if picture is None:
            continue
        relative = Path(_slug(case_id)) / f"{_slug(item.id)}.png"
        (Path(out) / relative).parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(picture).save(Path(out) / relative)
        entries.append({"case": case_id, "item": item.id, "text": item.title or item.text,
                        "png": relative.as_posix()})
    return entries


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

        with Client(scheduler) as client:
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


def write_gallery(entries: list[list[dict[str, str]]], out: Path) -> int:
    flat = [e for case_entries in entries for e in case_entries]
    figures = "\n".join(
        f'<figure><img src="{html.escape(e["png"])}" loading="lazy"><figcaption>'
        f'<b>{html.escape(e["case"])}</b> · {html.escape(e["item"])}<br>'
        f'{html.escape(e["text"])}</figcaption></figure>' for e in flat)
    (out / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>napari-grounding snapshots</title>"
        "<style>body{font-family:sans-serif;background:#222;color:#eee}"
        "figure{display:inline-block;width:260px;margin:6px;vertical-align:top}"
        "img{width:256px;image-rendering:pixelated}figcaption{font-size:12px}</style>\n"
        f"<h1>{len(flat)} annotated items</h1>\n{figures}\n", encoding="utf-8")
    return len(flat)
