"""Writes one step behind the reads: order, errors, and nothing left running."""

from __future__ import annotations

import threading
import time

import dask
import pytest

from napari_grounding import batch, write_behind
from napari_grounding.write_behind import WriteBehind


@pytest.mark.parametrize("enabled", [True, False])
def test_writes_run_in_order_one_behind(enabled):
    done, threads = [], set()

    def write(i):
        time.sleep(0.01 * (i % 2))  # a slow write never lets the next one overtake it
        threads.add(threading.get_ident())
        done.append(i)

    with WriteBehind(enabled) as behind:
        for i in range(6):
            behind.submit(lambda i=i: write(i))
            assert len(done) >= i  # at most one write is still pending
    assert done == list(range(6))
    assert (threading.get_ident() in threads) is not enabled


def test_a_write_s_error_reaches_the_reader():
    def fail():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), WriteBehind(True) as behind:
        behind.submit(fail)
        behind.submit(lambda: None)  # raised here, before anything more is handed over
    with pytest.raises(OSError, match="disk full"), WriteBehind(True) as behind:
        behind.submit(fail)  # or at the end of the block


def test_a_read_error_waits_for_the_write_in_flight():
    """The caller's own error wins, and the block ends only after the write it handed over
    (which a failed cache write's clean-up must not race)."""
    finished = threading.Event()

    def slow():
        time.sleep(0.2)
        finished.set()

    with pytest.raises(ValueError, match="bad slab"), WriteBehind(True) as behind:
        behind.submit(slow)
        raise ValueError("bad slab")
    assert finished.is_set()


def test_a_one_thread_job_task_writes_in_its_own_thread():
    assert write_behind.allowed()
    with batch._limited(1):
        assert not write_behind.allowed()
    with batch._limited(2):
        assert write_behind.allowed()
    with dask.config.set({write_behind.THREADS_KEY: 1}):
        assert not write_behind.allowed()
