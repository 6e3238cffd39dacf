"""The OME-Zarr cache: exact round trip, NGFF metadata, stale and half-written caches."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import zarr

from napari_grounding import store
from napari_grounding.metrics import case_stats, mask_stats, stats_known
from napari_grounding.readers import open_case
from napari_grounding.sample import make_phantom, write_sample
from napari_grounding.stored_array import CHUNKS
from tests.conftest import ct_path, mask_file


@pytest.fixture
def root(tmp_path):
    return write_sample(tmp_path / "sample")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(store.CACHE_ENV, str(folder))
    return folder


def test_round_trip_equals_the_source(root, cache):
    first = open_case(root)
    path = store.write_cache(first)
    again = open_case(root)
    ct = again.images["ct"]
    assert ct.meta["cache"] == str(path)
    np.testing.assert_array_equal(ct.data.compute(), first.images["ct"].data.compute())
    for mask_id, mask in first.annotations.items():
        np.testing.assert_array_equal(again.annotations[mask_id].data.compute(), mask.data.compute())
    assert ct.spacing == first.images["ct"].spacing and ct.origin == first.images["ct"].origin
    source = nib.load(ct_path(root))
    np.testing.assert_array_equal(ct.orientation.to_source(ct.data).compute(),
                                  np.asanyarray(source.dataobj))


def test_ngff_multiscale_with_physical_scale(tmp_path, cache):
    root = write_sample(tmp_path / "big", make_phantom((300, 280, 40), (1.0, 1.0, 5.0)))
    path = store.write_cache(open_case(root))
    group = zarr.open_group(str(path), mode="r")
    multiscale = group.attrs["ome"]["multiscales"][0]
    assert [a["unit"] for a in multiscale["axes"]] == ["millimeter"] * 3
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    assert scales[0] == [5.0, 1.0, 1.0] and scales[1] == [10.0, 2.0, 2.0]
    assert [group[d["path"]].shape for d in multiscale["datasets"]] == [
        (40, 280, 300), (20, 140, 150), (10, 70, 75)]
    assert group[multiscale["datasets"][0]["path"]].chunks == (32, 128, 128)
    assert sorted(group["labels"].group_keys()) == ["mask_0", "mask_1", "mask_2"]
    image = open_case(root).images["ct"]
    assert len(image.pyramid) == 3 and image.data.shape == (40, 280, 300)


def test_a_slice_from_the_cache_reads_its_chunks_only(root, cache):
    store.write_cache(open_case(root))
    ct = open_case(root).images["ct"]
    assert ct.reads.chunks == 0
    ct.data[30].compute()
    assert 1 <= ct.reads.chunks <= 4  # the (32, 128, 128)-chunk band through slice 30
    assert ct.reads.bytes <= ct.reads.chunks * 32 * 128 * 128 * 2 < ct.data.nbytes  # decoded


def test_half_written_cache_is_never_used(root, cache):
    case = open_case(root)
    path = store.cache_path(case.images["ct"], cache)
    partial = path.with_name(path.name + ".partial-dead")
    partial.mkdir(parents=True)
    (partial / "zarr.json").write_text("{}")  # a writer killed mid-way
    assert "cache" not in open_case(root).images["ct"].meta
    store.write_cache(case)
    assert open_case(root).images["ct"].meta["cache"] == str(path)


def test_stale_cache_is_rebuilt_not_shown(root, cache):
    path = store.write_cache(open_case(root))
    time.sleep(0.01)
    phantom = make_phantom()
    nib.save(nib.Nifti1Image((phantom.hu + 7).astype(np.int16), phantom.affine), ct_path(root))
    fresh = open_case(root)
    assert "cache" not in fresh.images["ct"].meta  # the CT changed: the cache is stale
    assert int(fresh.images["ct"].data[30, 64, 64].compute()) == int(
        fresh.images["ct"].orientation.to_display(phantom.hu + 7)[30, 64, 64])
    new = store.write_cache(fresh)
    assert new != path and new.parent == path.parent  # a new version in the same slot
    assert open_case(root).images["ct"].meta["cache"] == str(new)
    assert not path.exists()  # the stale version, used by nobody, is cleaned up


def test_changed_mask_file_is_read_again(root, cache, phantom):
    store.write_cache(open_case(root))
    masks = phantom.masks.copy()
    masks[0] = 0
    os.utime(mask_file(root), ns=(1, 1))
    nib.save(nib.Nifti1Image(masks, np.eye(4)), mask_file(root))
    case = open_case(root)
    assert "cache" in case.images["ct"].meta
    assert int(case.annotations["mask/0"].data.sum().compute()) == 0


def test_a_failed_write_leaves_nothing_behind(root, cache):
    import dask
    import dask.array as da

    case = open_case(root)
    mask = case.annotations["mask/0"]

    def disk_full():
        raise OSError("No space left on device")

    mask.data = da.from_delayed(dask.delayed(disk_full)(), shape=mask.data.shape, dtype=np.uint8)
    with pytest.raises(OSError, match="No space left"):
        store.write_cache(case)
    assert list(cache.iterdir()) == []
    assert "cache" not in open_case(root).images["ct"].meta


def test_a_cache_written_from_a_cached_case_still_tracks_the_mask_file(root, cache, tmp_path):
    store.write_cache(open_case(root))
    cached = open_case(root)
    assert "cache" in cached.images["ct"].meta
    again = store.write_cache(cached, root=tmp_path / "elsewhere")
    masks = zarr.open_group(str(again), mode="r").attrs["napari_grounding"]["masks"]
    assert {m["path"] for m in masks.values()} == {str(mask_file(root).resolve())}


@pytest.mark.parametrize("shape", [None, (300, 280, 40)])
def test_the_cache_is_valid_ngff_0_5(tmp_path, cache, shape):
    models = pytest.importorskip("ome_zarr_models.v05.image", reason="ome-zarr-models not installed")
    from ome_zarr_models.v05.image_label import ImageLabel

    root = write_sample(tmp_path / "s", make_phantom(shape, (1.0, 1.0, 5.0)) if shape else None)
    group = zarr.open_group(str(store.write_cache(open_case(root))), mode="r")
    image = models.Image.from_zarr(group)  # its labels too: as many levels as the image
    levels = ["s0"] if shape is None else ["s0", "s1", "s2"]
    assert [d.path for d in image.attributes.ome.multiscales[0].datasets] == levels
    for name in ("mask_0", "mask_1", "mask_2"):
        label = ImageLabel.from_zarr(group["labels"][name])
        assert label.attributes.ome.image_label.source.image == "../../"


def test_ome_zarr_s_reader_finds_the_pyramid_and_its_labels(tmp_path, cache):
    """What napari-ome-zarr sees of a cache: the multiscale CT with its physical scale per
    level, and each mask as a label image of the CT's shape pointing back at it."""
    pytest.importorskip("ome_zarr", reason="ome-zarr not installed")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    root = write_sample(tmp_path / "big", make_phantom((300, 280, 40), (1.0, 1.0, 5.0)))
    path = store.write_cache(open_case(root))
    nodes = {Path(node.zarr.path).relative_to(path).as_posix(): node
             for node in Reader(parse_url(str(path)))()}
    image = nodes["."]
    assert any(isinstance(spec, Multiscales) for spec in image.specs)
    assert [level.shape for level in image.data] == [(40, 280, 300), (20, 140, 150), (10, 70, 75)]
    assert [t[0]["scale"] for t in image.metadata["coordinateTransformations"]] == [
        [5.0, 1.0, 1.0], [10.0, 2.0, 2.0], [20.0, 4.0, 4.0]]
    labels = sorted(name for name in nodes if name.startswith("labels/"))
    assert labels == ["labels/mask_0", "labels/mask_1", "labels/mask_2"]
    for name in labels:  # as many levels as the image (NGFF: MUST), every other voxel
        assert any(isinstance(spec, Label) for spec in nodes[name].specs)
        levels = [np.asarray(level) for level in nodes[name].data]
        assert [level.shape for level in levels] == [level.shape for level in image.data]
        assert levels[0].any()
        for k, level in enumerate(levels[1:], start=1):
            step = 2**k
            expected = levels[0][::step, ::step, ::step][tuple(slice(n) for n in level.shape)]
            np.testing.assert_array_equal(level, expected, err_msg=f"{name} s{k}")


@pytest.mark.parametrize("dtype", ["int16", "uint8", "int8", "uint16", "int32", "uint32",
                                   "float32"])
def test_a_pyramid_level_holds_the_means_of_2x2x2_blocks(dtype):
    """Each coarser level's voxel is the mean of its 2 x 2 x 2 block, cast back as numpy
    casts a mean (toward zero), at the type's extremes and with odd lengths cut off."""
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
    rng = np.random.default_rng(11)
    block = rng.integers(int(max(info.min, -2**40)), int(min(info.max, 2**40)),
                         size=(9, 14, 7), endpoint=True).astype(dtype)
    block[0, :2, :2], block[2:4, :2, :2] = info.max, info.min  # whole blocks of extremes
    parts = block[:8, :14, :6].reshape(4, 2, 7, 2, 3, 2)
    expected = parts.mean(axis=(1, 3, 5), dtype=np.float64).astype(dtype)
    halved = store._halve(block, np.dtype(dtype))
    assert halved.dtype == np.dtype(dtype) and halved.shape == (4, 7, 3)
    np.testing.assert_array_equal(halved, expected)
    assert halved[1, 0, 0] == info.min


@pytest.mark.parametrize("shape", [(300, 280, 40), (260, 150, 67)])
def test_forward_slab_write_equals_the_dask_write(tmp_path, cache, shape):
    """The writer reads the source forward in slabs (one pass, flipped in memory) and builds
    each pyramid level from the one above in memory: its cache holds exactly what writing
    from the display-ordered dask arrays holds, odd lengths and partial chunks included."""
    root = write_sample(tmp_path / "big", make_phantom(shape, (1.0, 1.0, 5.0)))
    fast = open_case(root)
    assert fast.images["ct"].slabs.stands_for(fast.images["ct"].data)
    written = store.write_cache(fast, root=tmp_path / "fast")
    slow = open_case(root)
    slow.images["ct"].slabs = None
    for mask in slow.annotations.values():
        mask.slabs = None
    reference = store.write_cache(slow, root=tmp_path / "slow")
    a, b = zarr.open_group(str(written), mode="r"), zarr.open_group(str(reference), mode="r")
    names = ["s0", "s1", "s2"] + [f"labels/{n}/s{i}" for n in b["labels"].group_keys()
                                  for i in range(3)]
    assert np.asarray(b["labels/mask_1/s0"]).any()
    for name in names:
        if name in b:
            assert a[name].chunks == b[name].chunks
            np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)
    assert dict(a.attrs) == dict(b.attrs)


def test_writing_behind_the_reads_stores_what_writing_in_turn_does(tmp_path, cache):
    """The viewer's writer (reads overlap writes) and a one-thread job task's (each slab
    written before the next is read) leave the same bytes and statistics."""
    import dask

    from napari_grounding import write_behind

    root = write_sample(tmp_path / "big", make_phantom((300, 280, 40), (1.0, 1.0, 5.0)))
    behind = store.write_cache(open_case(root), root=tmp_path / "behind")
    with dask.config.set({write_behind.THREADS_KEY: 1}):
        in_turn = store.write_cache(open_case(root), root=tmp_path / "in-turn")

    written = _files(behind)
    assert sum("/c/" in name for name in written) > 10  # chunks of every level and mask
    assert written == _files(in_turn)


def _files(folder):
    """Every file of a cache version by its path inside it, with its bytes (no lock file)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and "lock" not in p.name}


@pytest.mark.parametrize("shape", [(300, 280, 40), (260, 150, 67)])
def test_every_chunk_of_every_level_is_stored_once(tmp_path, cache, monkeypatch, shape):
    """A coarser level's rows come in halves and quarters of a chunk row: each chunk is still
    stored once, whole (a chunk stored in parts is read back, merged and encoded per part)."""
    from napari_grounding.unpublished_store import UnpublishedStore

    stored: list[str] = []
    original = UnpublishedStore.set

    async def counted(self, key, value):
        stored.append(key)
        await original(self, key, value)

    monkeypatch.setattr(UnpublishedStore, "set", counted)
    root = write_sample(tmp_path / "big", make_phantom(shape, (1.0, 1.0, 5.0)))
    path = store.write_cache(open_case(root))
    chunks = [key for key in stored if "/c/" in key]
    assert len(chunks) == len(set(chunks))
    group = zarr.open_group(str(path), mode="r")
    levels = [d["path"] for d in group.attrs["ome"]["multiscales"][0]["datasets"]]
    assert len(levels) >= 2
    for level in levels:
        grid = [-(-n // c) for n, c in zip(group[level].shape, group[level].chunks, strict=True)]
        assert sum(key.startswith(f"{level}/c/") for key in chunks) == np.prod(grid), level
    assert set(chunks) == {name for name in _files(path) if "/c/" in name}


def test_the_cache_s_files_are_what_zarr_s_own_store_writes(cache, tmp_path, monkeypatch):
    """The unpublished version's store writes each file straight into place: the same files,
    byte for byte, as zarr's LocalStore (temporary file and rename per chunk), and no other."""
    from zarr.storage import LocalStore

    from napari_grounding import unpublished_store

    root = write_sample(tmp_path / "big", make_phantom((300, 280, 40), (1.0, 1.0, 5.0)))
    ours = store.write_cache(open_case(root), root=tmp_path / "ours")
    monkeypatch.setattr(unpublished_store, "UnpublishedStore", LocalStore)
    zarrs = store.write_cache(open_case(root), root=tmp_path / "zarr")
    assert ours.name == zarrs.name
    written = _files(ours)
    assert sum("/c/" in name for name in written) > 10
    assert written == _files(zarrs)


def test_a_file_written_into_place_replaces_the_old_and_makes_its_folders(tmp_path):
    from napari_grounding.unpublished_store import write_file

    path = tmp_path / "a" / "c" / "0" / "1"
    write_file(path, b"first, longer")
    write_file(path, memoryview(b"second"))
    assert path.read_bytes() == b"second"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["1"]


@pytest.mark.parametrize("shape", [None, (260, 150, 67)])
def test_the_cache_keeps_each_mask_s_statistics(tmp_path, cache, shape):
    """The writer measures each mask in its one pass (flips and partial chunks included):
    a case opened from the cache knows them exactly as a pass over the source gives them,
    so its opening reads no mask chunk for them."""
    root = write_sample(tmp_path / "s", make_phantom(shape, (1.0, 1.0, 5.0)) if shape else None)
    source = open_case(root)
    store.write_cache(source)
    again = open_case(root)
    assert again.images["ct"].meta["cache"]
    for mask_id, mask in source.annotations.items():
        kept, measured = again.annotations[mask_id].stats, mask_stats(mask.data)
        assert kept == measured, mask_id  # to the last bit: the centroid too
        assert [type(v) for v in kept.labels] == [type(v) for v in measured.labels]
    assert stats_known(again)
    before = again.images["ct"].reads.chunks
    case_stats(again)
    assert again.images["ct"].reads.chunks == before  # cache reads (CT and masks) share it


def test_a_mask_s_cache_stores_the_chunks_of_its_extent_only(root, cache):
    """Masks are mostly background: a mask's cache holds every chunk with a voxel of it and
    none outside its extent (no chunk row without one, none beyond its bounding box), so its
    size follows the finding's, not the scan's; the image's levels hold every chunk."""
    case = open_case(root)
    path = store.write_cache(case)
    group = zarr.open_group(str(path), mode="r")

    def stored(name):
        folder = path / name / "c"
        return {tuple(int(i) for i in f.relative_to(folder).parts) for f in folder.rglob("*")
                if f.is_file()}

    image = group["s0"]
    grid = [-(-n // c) for n, c in zip(image.shape, image.chunks, strict=True)]
    assert len(stored("s0")) == np.prod(grid)
    for mask_id in case.annotations:
        name = f"labels/{store._label_name(mask_id)}/s0"
        values, chunks = group[name][:], group[name].chunks
        inside = np.argwhere(values)
        low, high = inside.min(axis=0) // chunks, inside.max(axis=0) // chunks
        holding = {tuple(int(i) for i in at) for at in np.unique(inside // chunks, axis=0)}
        kept = stored(name)
        assert holding <= kept, mask_id
        assert all(np.all(low <= np.array(k)) and np.all(np.array(k) <= high) for k in kept)
        assert {k[0] for k in kept} == {k[0] for k in holding}


def test_the_viewer_s_direct_arrays_show_what_the_dask_arrays_hold(tmp_path, cache):
    """The stored arrays the viewer slices directly are the display-ordered CT and masks, and
    they count the chunks each slice reaches, as the dask path does."""
    root = write_sample(tmp_path / "big", make_phantom((300, 280, 40), (1.0, 1.0, 5.0)))
    store.write_cache(open_case(root))
    case = open_case(root)
    ct = case.images["ct"]
    assert [d.shape for d in ct.display_levels] == [p.shape for p in ct.pyramid]
    direct = ct.display_levels[0]
    CHUNKS.clear()
    before = ct.reads.chunks
    np.testing.assert_array_equal(direct[17], ct.data[17].compute())
    assert ct.reads.chunks - before == 3 * 3  # one band of 3 x 3 chunks, decoded once
    before = ct.reads.chunks
    direct[18]  # the same chunks: from the chunk cache
    assert ct.reads.chunks == before
    np.testing.assert_array_equal(direct[:, 5, ::-1], ct.data[:, 5, ::-1].compute())
    assert ct.reads.chunks - before == 3  # 40 slices deep: the second band's 3 chunks only
    for mask in case.annotations.values():
        shown = ct.orientation.to_display(mask.data).compute()
        np.testing.assert_array_equal(mask.display_data[...], shown)
    whole = direct[...]
    for key in [(slice(30, 2, -3), 7), (slice(None, None, -1), slice(5, 2, -1), slice(None, 9)),
                (Ellipsis, slice(-1, None, -2)), (slice(3, 3),), (4, slice(10, 0, -1), -1)]:
        np.testing.assert_array_equal(direct[key], whole[key], err_msg=str(key))
