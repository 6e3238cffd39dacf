"""Benchmarks against baselines measured in the same run; prints a markdown table.

    python benchmarks/run.py [--workdir DIR] [--csv-gb 1.0] [--workers 2] [--scheduler ADDR]
                             [--stream-mb 1024] [--convert-cases 8]

Data is generated: a 512 x 512 x 300 int16 CT as .nii.gz (the phantom, upsampled) with its
masks, and a CheXmask-form CSV of real rows under new IDs. Memory is measured in fresh
processes (peak RSS), everything else in this one. The CT rows time the readers and the cache
outside any viewer (labelled so); what a user waits for in the viewer is measured by
benchmarks/viewer.py.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dask
import nibabel as nib
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from napari_grounding import store  # noqa: E402
from napari_grounding.readers import open_case  # noqa: E402
from napari_grounding.readers.csv_rows import CsvRows  # noqa: E402
from napari_grounding.readers.rle import rle_decode  # noqa: E402
from napari_grounding.sample import (  # noqa: E402
    CASE,
    Phantom,
    ctrate_volume_path,
    make_phantom,
    write_sample,
)

ROWS: list[tuple[str, str, str, str]] = []  # (measure, value, baseline, target / verdict)


def timed(function, repeat: int = 1) -> float:
    """Median wall time in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def realistic_ct(folder: Path) -> Path:
    """The phantom upsampled to 512 x 512 x 300 (0.7 x 0.7 x 1 mm) in the sample layout."""
    small = make_phantom()
    phantom = Phantom(
        np.repeat(np.repeat(small.hu, 4, 0), 4, 1).repeat(5, 2),
        np.repeat(np.repeat(small.masks, 4, 1), 4, 2).repeat(5, 3),
        np.diag([-0.7, -0.7, 1.0, 1.0]))
    return write_sample(folder, phantom)


def bench_ct(root: Path) -> None:
    volume = ctrate_volume_path(root, CASE)
    middle = 150

    def from_nifti():
        case = open_case(root)
        np.asarray(case.images["ct"].data[middle])

    def baseline():
        import napari

        data = np.asanyarray(nib.load(str(volume)).dataobj)
        napari.layers.Image(data)

    base = timed(baseline)
    lazy = timed(from_nifti)
    start = time.perf_counter()
    store.write_cache(open_case(root))
    cache_write = time.perf_counter() - start
    cached = timed(from_nifti, repeat=3)
    ROWS.append(("outside the viewer: open a case + first slice, from .nii.gz (lazy)",
                 f"{lazy * 1000:.0f} ms",
                 f"{base * 1000:.0f} ms (nibabel full load + Image layer)",
                 f"{base / lazy:.1f}x faster"))
    ROWS.append(("outside the viewer: open a case + first slice, from the OME-Zarr cache",
                 f"{cached * 1000:.0f} ms",
                 f"{base * 1000:.0f} ms", f"{base / cached:.0f}x faster (target >= 10x): "
                 f"{'met' if base / cached >= 10 else 'NOT met'}"))
    ROWS.append(("outside the viewer: write the cache (CT + 3 masks)", f"{cache_write:.1f} s", "", ""))
    image = open_case(root).images["ct"]
    from dask.cache import Cache

    for name, plane in (("axial", lambda i: image.data[i]), ("coronal", lambda i: image.data[:, i]),
                        ("sagittal", lambda i: image.data[:, :, i])):
        cold = timed(lambda p=plane: [np.asarray(p(i)) for i in range(100, 120)], 3) / 20
        # as napari slices: an opportunistic chunk cache, and no task fusion (so chunks are kept)
        with Cache(2e9), dask.config.set({"optimization.fuse.active": False}):
            warm = timed(lambda p=plane: [np.asarray(p(i)) for i in range(120, 160)]) / 40
        ROWS.append((f"outside the viewer: one {name} slice from the cache, dask as napari slices",
                     f"{warm * 1000:.1f} ms", f"{cold * 1000:.1f} ms without the chunk cache",
                     f"target < 20 ms: {'met' if warm < 0.02 else 'NOT met'}"))


PROBE = """
import sys, numpy as np, nibabel as nib, napari
from napari_grounding.readers import open_case
from napari_grounding.layers import case_layers
mode, root, volume = sys.argv[1:4]
if mode == "view":
    case = open_case(root)
    data, kwargs, _ = case_layers(case)[0]
    layer = napari.layers.Image(data, multiscale=kwargs["multiscale"],
                                contrast_limits=kwargs["contrast_limits"])
    depth = case.images["ct"].data.shape[0]
    for z in (depth // 3, depth // 2, 2 * depth // 3):  # planes napari fetches while scrolling
        np.asarray(case.images["ct"].data[z])
elif mode == "full":
    napari.layers.Image(np.asanyarray(nib.load(volume).dataobj))
# VmHWM: this process's own peak (ru_maxrss would carry the parent's over from fork + exec)
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(int(status) * 1024)
"""


def bench_memory(root: Path) -> None:
    volume = str(ctrate_volume_path(root, CASE))

    def peak(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", PROBE, mode, str(root), volume],
                             capture_output=True, text=True, check=True)
        return int(out.stdout.strip().splitlines()[-1])

    baseline, view, full = peak("imports"), peak("view"), peak("full")
    ct_bytes = 512 * 512 * 300 * 2
    ratio = (view - baseline) / ct_bytes
    ROWS.append(("outside the viewer: peak memory of a case's Image layer (cache), above napari's own",
                 f"{(view - baseline) / 2**20:.0f} MiB ({ratio:.2f}x the CT)",
                 f"{(full - baseline) / 2**20:.0f} MiB (full load)",
                 f"target < 1.5x the CT's {ct_bytes / 2**20:.0f} MiB: "
                 f"{'met' if ratio < 1.5 else 'NOT met'}"))


def bench_chexmask(folder: Path, gigabytes: float, shared: Path | None) -> None:
    source = folder / "rows.csv"
    if shared is not None:
        shutil.copy(shared / "chexmask" / "MIMIC-CXR-JPG.csv", source)
    else:
        from napari_grounding.sample_cxr import write_chexmask_sample

        shutil.copy(write_chexmask_sample(folder / "src"), source)
    header, *rows = source.read_text().splitlines()
    path = folder / "MIMIC-CXR-JPG.csv"
    count = 0
    with path.open("w") as f:
        f.write(header + "\n")
        while f.tell() < gigabytes * 2**30:
            row = rows[count % len(rows)]
            f.write(f"img{count:08d}{row[row.index(','):]}\n")
            count += 1
    start = time.perf_counter()
    CsvRows(path, ("dicom_id",))
    build = time.perf_counter() - start
    wanted = [f"img{i:08d}" for i in np.random.default_rng(0).integers(0, count, 20)]
    lookup = statistics.median(
        timed(lambda w=w: CsvRows(path, ("dicom_id",)).row(w)) for w in wanted)
    import pandas as pd

    full = timed(lambda: pd.read_csv(path, dtype=str, keep_default_na=False))
    ROWS.append((f"one CheXmask image lookup in a {path.stat().st_size / 2**30:.1f} GB CSV "
                 f"({count} rows)", f"{lookup * 1000:.1f} ms",
                 f"{full:.1f} s (pandas.read_csv of the file)",
                 f"{full / lookup:.0f}x faster; target < 50 ms and >= 100x: "
                 f"{'met' if lookup < 0.05 and full / lookup >= 100 else 'NOT met'}"))
    ROWS.append(("build that CSV's row index (once)", f"{build:.1f} s", "", ""))
    with source.open(newline="") as f:
        cells = [r["Heart"] for r in csv.DictReader(f)]
    decode = timed(lambda: [rle_decode(c, (1024, 1024)) for c in cells], 3) / len(cells)
    naive = timed(lambda: [_loop_decode(c, (1024, 1024)) for c in cells[:10]]) / 10
    ROWS.append(("RLE decode (1024 x 1024 masks)", f"{1 / decode:.0f} masks/s",
                 f"{1 / naive:.0f} masks/s (per-run Python loop)", f"{naive / decode:.1f}x"))


def _loop_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    values = [int(v) for v in rle.split()]
    for start, length in zip(values[0::2], values[1::2], strict=True):
        mask[start - 1 : start - 1 + length] = 1
    return mask.reshape(shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where to generate data (default: a temp dir)")
    parser.add_argument("--csv-gb", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2, help="jobs: local processes vs 1")
    parser.add_argument("--scheduler", help="jobs: a dask.distributed scheduler vs 1 worker")
    parser.add_argument("--stream-mb", type=float, default=1024.0,
                        help="size of the CheXmask CSV streamed by qc")
    parser.add_argument("--convert-cases", type=int, default=8)
    args = parser.parse_args()
    shared = HERE.parent.parent / "shared" / "data"
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        store_env = folder / "cache"
        os.environ[store.CACHE_ENV] = str(store_env)
        started = time.perf_counter()
        root = realistic_ct(folder / "ct")
        bench_ct(root)
        bench_memory(root)
        bench_chexmask(folder, args.csv_gb, shared if shared.is_dir() else None)
        import jobs  # start-up, streaming, scaling and convert against their floors

        ROWS.extend(jobs.main(["--workdir", str(folder), "--csv-mb", str(args.stream_mb),
                               "--workers", str(args.workers), "--convert-cases",
                               str(args.convert_cases),
                               *(["--scheduler", args.scheduler] if args.scheduler else [])]))
        total = time.perf_counter() - started
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; whole run {total:.0f} s\n")
    print("| measure | result | baseline | target / ratio |\n| --- | --- | --- | --- |")
    for row in ROWS:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
