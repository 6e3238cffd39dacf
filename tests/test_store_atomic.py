"""The cache under concurrency and crashes: readers never see a mixed, partial or stale volume
while `convert` rewrites it, and a `kill -9` anywhere leaves nothing the next run trips on."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import nibabel as nib
import numpy as np
import pytest

from napari_grounding import cache_folders, store
from napari_grounding.metrics import compute_isolated
from napari_grounding.readers import open_case
from napari_grounding.sample import make_phantom, write_sample
from tests.conftest import ct_path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and SIGKILL are POSIX")


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A sample case, two versions of its CT (A and A + 7) and a cache folder of its own."""
    root = write_sample(tmp_path / "sample")
    cache = tmp_path / "cache"
    monkeypatch.setenv(store.CACHE_ENV, str(cache))
    phantom = make_phantom()
    versions = {}
    for shift in (0, 7):
        path = tmp_path / f"ct+{shift}.nii.gz"
        nib.save(nib.Nifti1Image((phantom.hu + shift).astype(np.int16), phantom.affine), path)
        versions[shift] = path
    expected = {shift: np.asarray(nib.load(p).dataobj) for shift, p in versions.items()}
    masks = {mask_id: m.data.compute() for mask_id, m in open_case(root).annotations.items()}
    return root, cache, versions, expected, masks


def _use(root, versions, shift):
    """Swap the CT file atomically to one of the two versions, as a sync tool would."""
    target = ct_path(root)
    shutil.copy(versions[shift], target.with_name("incoming.tmp"))
    os.replace(target.with_name("incoming.tmp"), target)


def _convert(root, cache, crash_at=None):
    env = {**os.environ, store.CACHE_ENV: str(cache)}
    env.pop(cache_folders.CRASH_ENV, None)
    if crash_at:
        env[cache_folders.CRASH_ENV] = crash_at
    return subprocess.Popen([sys.executable, "-m", "napari_grounding.cli", "convert", str(root),
                             "--out", str(cache)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _check_read(root, expected, masks):
    """One opening of the case: its CT is wholly one of the two sources, its masks exact."""
    case = open_case(root)
    ct = case.images["ct"]
    source = compute_isolated(ct.orientation.to_source(ct.data))[0]
    assert any(np.array_equal(source, e) for e in expected.values()), "a mixed or partial CT"
    for mask_id, mask in masks.items():
        np.testing.assert_array_equal(compute_isolated(case.annotations[mask_id].data)[0], mask)
    return "cache" in ct.meta


def _leftovers(cache):
    return sorted(p.name for slot in cache.iterdir() if slot.is_dir() for p in slot.iterdir()
                  if not p.name.startswith("v-") or ".partial-" in p.name)


def test_readers_during_rewrites_see_whole_current_volumes(setup):
    root, cache, versions, expected, masks = setup
    errors, cached_reads, reads = [], [], []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                cached_reads.append(_check_read(root, expected, masks))
            except Exception as err:  # noqa: BLE001 - collected and reported below
                errors.append(repr(err))
            reads.append(1)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for turn in range(8):  # a new source every other turn; convert runs every turn
            if turn % 2 == 0:
                _use(root, versions, 7 * (turn // 2 % 2))
            job = _convert(root, cache)
            _, err = job.communicate(timeout=120)
            assert job.returncode == 0, err.decode()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    assert len(reads) >= 8 and any(cached_reads)  # the loop did read caches while they changed
    job = _convert(root, cache)
    assert job.wait(timeout=120) == 0
    (slot,) = [p for p in cache.iterdir() if p.is_dir()]
    assert len([p for p in slot.iterdir() if p.name.startswith("v-")]) == 1
    assert _leftovers(cache) == []


def test_convert_skips_a_current_cache(setup, capsys):
    from napari_grounding.cli import main

    root, cache, *_ = setup
    assert main(["convert", str(root), "--out", str(cache)]) == 0
    (version,) = cache.glob("*/v-*.ome.zarr")
    before = version.stat().st_mtime_ns
    assert main(["convert", str(root), "--out", str(cache)]) == 0
    assert "0 written, 1 already current" in capsys.readouterr().out
    assert version.stat().st_mtime_ns == before


@pytest.mark.parametrize("crash_at", ["partial", "written", "published", "cleaning"])
def test_kill_9_at_any_point_leaves_a_usable_cache(setup, crash_at):
    root, cache, versions, expected, masks = setup
    assert _convert(root, cache).wait(timeout=120) == 0  # a version to go stale
    _use(root, versions, 7)
    job = _convert(root, cache, crash_at=crash_at)
    assert job.wait(timeout=120) == -signal.SIGKILL
    assert _check_read(root, {7: expected[7]}, masks) == (crash_at in ("published", "cleaning"))
    job = _convert(root, cache)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 0, err.decode()
    assert _leftovers(cache) == []
    assert _check_read(root, {7: expected[7]}, masks)


@pytest.mark.parametrize("delay", [1.0, 2.2])
def test_kill_9_at_a_random_moment(setup, delay):
    root, cache, versions, expected, masks = setup
    assert _convert(root, cache).wait(timeout=120) == 0
    _use(root, versions, 7)
    job = _convert(root, cache)
    time.sleep(delay)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=60)
    _check_read(root, {7: expected[7]}, masks)
    assert _convert(root, cache).wait(timeout=120) == 0
    assert _leftovers(cache) == []
    assert _check_read(root, {7: expected[7]}, masks)


def test_an_unreadable_cache_is_ignored_and_rewritten(setup):
    root, cache, *_ = setup
    path = store.write_cache(open_case(root))
    for chunk in (path / "s0" / "c").rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(b"garbage")  # damaged chunks, intact metadata
    (path / "zarr.json").write_text("{not json")
    assert "cache" not in open_case(root).images["ct"].meta
    again = store.write_cache(open_case(root))
    assert again == path and open_case(root).images["ct"].meta["cache"] == str(path)


def test_a_version_in_use_is_not_deleted(setup):
    root, cache, versions, expected, masks = setup
    store.write_cache(open_case(root))
    held = open_case(root)  # keeps a shared lock on its version while its arrays live
    old = held.images["ct"].meta["cache"]
    _use(root, versions, 7)
    store.write_cache(open_case(root))
    assert os.path.isdir(old)  # in use: kept
    np.testing.assert_array_equal(
        compute_isolated(held.images["ct"].orientation.to_source(held.images["ct"].data))[0],
        expected[0])
    del held
    gc.collect()
    store.write_cache(open_case(root))  # current already: cleaning only
    assert not os.path.isdir(old)


def test_writing_a_cache_runs_nothing_on_global_dask_callbacks(setup):
    """napari registers its chunk cache as a global dask callback; a cache write in a worker
    thread must not run its computes through it (it raced and crashed the viewer)."""
    from dask.callbacks import Callback

    root, *_ = setup
    started = []

    class Spy(Callback):
        def _start(self, dsk):
            started.append(len(dsk))

    case = open_case(root)
    with Spy():  # active for every compute in the process, as napari's Cache.register() is
        store.write_cache(case)
    assert started == []
