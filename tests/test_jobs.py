"""Whole-dataset jobs: streamed CSV blocks give exactly the per-row results; a job's results
are identical for one worker, two local processes and a dask.distributed LocalCluster; jobs
report progress in numbers and end with a summary line."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest

from napari_grounding import batch
from napari_grounding.cli import main
from napari_grounding.evaluate import evaluate_case
from napari_grounding.readers import open_dataset
from napari_grounding.readers.csv_rows import CsvRows
from napari_grounding.sample_cxr import write_chexmask_rows

ROWS = 14


def chexmask_csv(folder, gz=False, shift=0.0, name="MIMIC-CXR-JPG.csv"):
    """Generated rows, one ID repeated (the first row counts) and one malformed RLE."""
    path = write_chexmask_rows(folder / "plain.csv", ROWS, shift=shift)
    with path.open(newline="") as f:
        header, *rows = list(csv.reader(f))
    repeat = list(rows[3])
    repeat[header.index("Heart")] = "1 5"
    rows[5][header.index("Left Lung")] += " 1048570 100"
    rows.insert(9, repeat)
    target = folder / (name + (".gz" if gz else ""))
    import gzip

    with (gzip.open if gz else open)(target, "wt", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    return target


@pytest.mark.parametrize("gz", [False, True])
def test_rows_in_a_block_are_the_rows_looked_up(tmp_path, gz):
    path = chexmask_csv(tmp_path, gz)
    for threshold in (1 << 40, 0):  # pandas table, byte index
        rows = CsvRows(path, ("dicom_id",), index_dir=tmp_path, threshold=threshold)
        ids = rows.ids()
        assert len(ids) == ROWS
        streamed = rows.rows_in(0, 10) + rows.rows_in(10, ROWS)
        assert streamed == [(i, *rows.row(i)) for i in ids]
        rows.prefetch(ids[4:8])
        assert [rows.row(i) for i in ids[4:8]] == [r[1:] for r in streamed[4:8]]


def per_row(job, path, extra=()):
    """The per-case path: each case looked up and opened on its own, in order."""
    ids = open_dataset(path).case_ids()
    return [job(str(path), None, case_id, *extra) for case_id in ids]


@pytest.fixture(params=[False, True], ids=["table", "indexed"])
def csv_dataset(request, tmp_path, monkeypatch):
    if request.param:  # a large file's path (byte index) without writing 32 MB
        monkeypatch.setattr(CsvRows.__init__, "__defaults__", (None, 0))
    batch._dataset.cache_clear()
    yield chexmask_csv(tmp_path)
    batch._dataset.cache_clear()


def test_streamed_qc_is_the_per_row_qc(csv_dataset):
    ids = open_dataset(csv_dataset).case_ids()
    streamed = batch.run(batch.qc_one, str(csv_dataset), None, ids)
    assert streamed == per_row(batch.qc_one, csv_dataset)
    checks = {r["check"] for rows in streamed for r in rows}
    assert {"low_rca", "rle"} <= checks


def test_streamed_snapshots_are_the_per_row_snapshots(csv_dataset, tmp_path):
    ids = open_dataset(csv_dataset).case_ids()
    streamed = batch.run(batch.snapshot_case, str(csv_dataset), None, ids, str(tmp_path / "a"))
    single = per_row(batch.snapshot_case, csv_dataset, (str(tmp_path / "b"),))
    assert streamed == single and len(streamed) == ROWS
    for entry in (e for r in streamed for e in r["entries"]):
        assert (tmp_path / "a" / entry["png"]).read_bytes() == \
            (tmp_path / "b" / entry["png"]).read_bytes()


def test_streamed_evaluate_is_the_per_row_evaluate(csv_dataset, tmp_path):
    pred = chexmask_csv(tmp_path / "pred", shift=6.0)
    extra = (str(pred), "model", None)
    ids = open_dataset(csv_dataset).case_ids()
    streamed = batch.run(evaluate_case, str(csv_dataset), None, ids, *extra)
    assert streamed == per_row(evaluate_case, csv_dataset, extra)
    dice = [r["dice"] for result in streamed for r in result["rows"] if r["dice"] != ""]
    assert dice and all(0.5 < d < 1.0 for d in dice)


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as running:
        yield running.scheduler_address


def _outputs(tmp_path, tag):
    return [p.read_text() for p in sorted(tmp_path.glob(f"{tag}-*"))]


@pytest.mark.parametrize("verb", ["qc", "evaluate", "convert"])
def test_results_are_the_same_on_every_scheduler(tmp_path, sample_root, cluster, verb, capsys):
    data = chexmask_csv(tmp_path) if verb != "convert" else sample_root
    pred = chexmask_csv(tmp_path / "pred", shift=6.0)
    runs = {"one": [], "one thread": ["--workers", "1", "--threads", "1"],
            "processes": ["--workers", "2"], "cluster": ["--scheduler", cluster]}
    results = {}
    for name, options in runs.items():
        out = tmp_path / f"{verb}-{name}" / ("out.csv" if verb != "convert" else "")
        argv = [verb, str(data), "--out", str(out), *options]
        if verb == "evaluate":
            argv[2:2] = ["--pred", str(pred)]
        assert main(argv) == 0, capsys.readouterr().err
        captured = capsys.readouterr()
        assert "0 failed" in captured.err or verb != "convert"
        results[name] = out.read_text() if verb != "convert" else {  # every byte of the cache
            p.relative_to(out).as_posix(): p.read_bytes() if p.is_file() else None
            for p in out.rglob("*") if "lock" not in p.name}
        if verb == "convert":
            assert any(n.endswith(".ome.zarr") for n in results[name])
            assert sum(n.endswith("/s0/c/0/0/0") for n in results[name]) >= 2  # CT and a mask
            shutil_rm(out)
    assert results["one"] == results["one thread"] == results["processes"] == results["cluster"]


def shutil_rm(folder):
    import shutil

    shutil.rmtree(folder)


def test_progress_prints_numbers_and_a_summary(tmp_path, capsys):
    import io

    from napari_grounding.progress import Progress

    out = io.StringIO()
    progress = Progress(4, out=out, every_s=0.0)
    progress.update([{"case": "a", "result": "written"}, {"case": "b", "error": "bad"}])
    progress.update([{"case": "c", "result": "skipped: no CT"}])
    progress.update([[{"check": "low_rca"}]])
    progress.finish()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("napari-grounding: 2/4 cases, ") and lines[0].endswith(" left")
    assert "cases/s" in lines[0]
    assert lines[-1].endswith("2 done, 1 failed, 1 skipped") and "4 cases in" in lines[-1]


def test_a_job_ends_with_its_summary_line(tmp_path, capsys):
    data = chexmask_csv(tmp_path)
    assert main(["qc", str(data), "--out", str(tmp_path / "qc.csv")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"napari-grounding: {ROWS} cases in ")
    assert err[-1].endswith(f"{ROWS} done, 0 failed, 0 skipped")


def test_local_processes_are_forked_only_from_a_single_thread():
    import threading

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert batch.start_method() == "spawn"  # fork beside a running thread may deadlock
    finally:
        stop.set()
        other.join()


def test_forked_workers_give_the_results_of_one(tmp_path, sample_root):
    """In a fresh process (pytest runs threads of its own, so it would spawn): two forked
    workers, then one, on a CSV's rows (qc, evaluate) and on CT cases (convert)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    data, pred = chexmask_csv(tmp_path), chexmask_csv(tmp_path / "pred", shift=6.0)
    code = f"""
import json, sys
from napari_grounding import batch
from napari_grounding.evaluate import evaluate_case
jobs = (({str(data)!r}, batch.qc_one, ()),
        ({str(data)!r}, evaluate_case, ({str(pred)!r}, "model", None)),
        ({str(sample_root)!r}, batch.convert_case, ({str(tmp_path / "out")!r},)))
runs = {{}}
for workers in (2, 1):  # the forked runs first: one worker leaves dask's thread pool behind
    for number, (path, job, extra) in enumerate(jobs):
        assert workers == 1 or batch.start_method() == "fork"
        ids = batch._dataset(path, None).case_ids()
        done = batch.run(job, path, None, ids, *extra, workers=workers)
        runs.setdefault(number, []).append(json.dumps(done, sort_keys=True, default=str))
print(json.dumps(list(runs.values())))
"""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads(done.stdout.splitlines()[-1])
    for two, one in runs[:2]:
        assert two == one and len(json.loads(two)) == len(open_dataset(data).case_ids())
    written, current = (json.loads(r) for r in runs[2])
    assert [r["result"] for r in written] == ["written"] and [r["result"] for r in current] == ["current"]


GLIBC = sys.platform.startswith("linux") and \
    (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")


@pytest.mark.skipif(not GLIBC, reason="the reuse of freed memory is set through glibc's mallopt")
@pytest.mark.parametrize("verb", ["qc", "evaluate"])  # convert and snapshot go the way of qc
def test_a_local_job_process_reuses_the_memory_it_frees(tmp_path, cluster, verb):
    """After a job on this machine (its workers are forked from it), a slab-sized buffer freed
    and asked for again costs no page faults: by default each is a new mapping, faulted in and
    zeroed afresh by the kernel. A job on a cluster leaves its process as it is."""
    import subprocess

    data = chexmask_csv(tmp_path)
    job = [verb, str(data), "--out", str(tmp_path / "out.csv")]
    if verb == "evaluate":
        job += ["--pred", str(chexmask_csv(tmp_path / "pred", shift=6.0))]
    code = f"""
import resource
from napari_grounding.cli import main

def refaults():
    buffer = b"x" * (32 << 20); del buffer  # a range of a mask file, read and let go
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = b"x" * (32 << 20); del buffer
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = refaults()
main({job!r} + ["--scheduler", {cluster!r}])
on_cluster = refaults()
main({job!r})
refaults()  # the buffer's first use from the kept memory
print(default, on_cluster, refaults())
"""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    default, on_cluster, after_job = map(int, done.stdout.split()[-3:])
    assert default >= 4000 and on_cluster >= 4000  # 8192 pages of 4 KiB
    assert after_job < 100
