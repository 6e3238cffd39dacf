"""Mask statistics against plain numpy, and one shared pass over a 4-D file."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_grounding.metrics import (
    block_profiles,
    case_stats,
    mask_stats,
    mask_stats_many,
    slab_stats,
)
from napari_grounding.model import Deferred, stored
from napari_grounding.readers import open_case


@pytest.mark.parametrize("seed", range(5))
def test_stats_equal_numpy(seed):
    rng = np.random.default_rng(seed)
    mask = (rng.random((17, 13, 11)) > 0.97).astype(np.uint8) * rng.integers(1, 4, (17, 13, 11))
    stats = mask_stats(da.from_array(mask, chunks=(5, 13, 4)))
    where = np.argwhere(mask)
    assert stats.voxels == len(where)
    assert stats.labels == tuple(np.unique(mask[mask > 0]))
    assert stats.bbox == (tuple(where.min(axis=0)), tuple(where.max(axis=0)))
    np.testing.assert_allclose(stats.centroid, where.mean(axis=0))


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.uint16, np.int32, np.float32])
@pytest.mark.parametrize("density", [0.0, 0.001, 0.05, 0.5])
@pytest.mark.parametrize("order", ["C", "F"])
def test_block_profiles_equal_plain_numpy_sums(dtype, density, order):
    """Sparse one-byte blocks are scanned as words, dense ones summed, Fortran-ordered ones
    (NIfTI slabs) read in their own order: always the plain sums and distinct values."""
    rng = np.random.default_rng(int(density * 1000))
    for shape in [(8, 16, 24), (3, 5, 7), (13,), (4, 4)]:
        block = (rng.random(shape) < density) * rng.integers(1, 5, shape)
        block = np.asarray(block.astype(dtype), order=order)
        profiles, labels = block_profiles(block)
        nonzero = block != 0
        axes = range(block.ndim)
        for axis, profile in enumerate(profiles):
            expected = nonzero.sum(axis=tuple(a for a in axes if a != axis), dtype=np.int64)
            assert profile.dtype == np.int64 and np.array_equal(profile, expected)
        expected_labels = np.unique(block[nonzero])
        assert labels.dtype == expected_labels.dtype and np.array_equal(labels, expected_labels)


def test_empty_mask():
    stats = mask_stats(np.zeros((4, 4, 4), np.uint8))
    assert stats.empty and stats.bbox is None and stats.centroid is None and stats.instances == 0


def test_channels_of_one_file_share_reads(sample_root, phantom):
    case = open_case(sample_root)
    masks = [case.annotations[f"mask/{i}"].data for i in range(3)]
    stats = mask_stats_many(masks)
    assert [s.voxels for s in stats] == [int(np.count_nonzero(m)) for m in phantom.masks]
    # each z-slice of the (3, 128, 128, 60) mask file is one chunk, read once for all channels
    reads = case.annotations["mask/0"].reads
    assert reads is case.annotations["mask/2"].reads
    assert reads.chunks == 60
    assert reads.bytes == phantom.masks.nbytes


@pytest.mark.parametrize("max_bytes", [1, 3 * 128 * 128 * 7, 64 << 20])
def test_stats_from_slabs_equal_the_dask_pass(sample_root, phantom, max_bytes):
    """A case's masks measured from their file's slabs, unbuilt (as ``describe`` and ``qc``
    measure them): the numbers of the dask pass over the same masks, for any range size, and
    the file read once for all its channels, front to back."""
    case = open_case(sample_root)
    masks = [case.annotations[f"mask/{i}"] for i in range(3)]
    assert all(isinstance(stored(m), Deferred) and stored(m).built is None for m in masks)
    from_slabs = slab_stats([m.slabs for m in masks], max_bytes=max_bytes)
    reads = masks[0].reads
    assert (reads.bytes, stored(masks[0]).built) == (phantom.masks.nbytes, None)  # no dask graph
    expected = mask_stats_many([m.astype(np.uint8) for m in phantom.masks])
    assert from_slabs == expected
    assert mask_stats_many([m.data for m in masks]) == expected


def test_case_stats_read_masks_by_slabs_only_while_they_stand_for_the_data(sample_root, phantom):
    case = open_case(sample_root)
    stats = case_stats(case)
    assert [stats[f"mask/{i}"].voxels for i in range(3)] == \
        [int(np.count_nonzero(m)) for m in phantom.masks]
    assert stored(case.annotations["mask/0"]).built is None  # measured without building dask
    # data replaced (a prediction set's channel swapped in, say): measured from the new data
    replaced = open_case(sample_root)
    replaced.annotations["mask/0"].data = da.from_array(phantom.masks[2].astype(np.uint8))
    assert case_stats(replaced)["mask/0"].voxels == int(np.count_nonzero(phantom.masks[2]))


def test_stats_in_a_thread_do_not_race_napari_dask_cache():
    """napari slices under a global dask Cache callback; our background stats must not share it."""
    import threading

    from dask.cache import Cache

    rng = np.random.default_rng(0)
    mask = da.from_array(rng.integers(0, 3, (64, 64, 64)), chunks=(64, 64, 1))
    expected = mask_stats(mask.compute())
    errors: list[str] = []

    def background():
        try:
            for _ in range(20):
                assert mask_stats(mask) == expected
        except Exception as err:  # noqa: BLE001 (reported by the assertion below)
            errors.append(repr(err))

    thread = threading.Thread(target=background)
    thread.start()
    cache = Cache(1e8)
    while thread.is_alive():
        with cache:  # what napari's slicing does on the main thread
            (mask[5] + 1).sum().compute()
    thread.join()
    assert errors == []
