"""The OME-Zarr cache: a case's CT as a chunked multiscale volume, with its masks.

A ``.nii.gz`` must be decompressed from the start to reach a slice; the cache holds the CT in
display order (HU applied) as an NGFF multiscale image in chunks of 32 x 128 x 128, with its
physical scale, and each mask as an NGFF label image.

A cache is immutable once published. Each source file has a slot folder; each version in it is
named by a hash of its stamp (the source's path, size, time and sampled content, and the rescale
and geometry applied), written to a ``*.partial-*`` folder and published by one atomic rename.
A reader looks up the version its source calls for and holds a shared lock on it while reading,
so a concurrent writer or cleaner never changes or deletes what it reads; stale versions and
leftovers of killed writers are removed later by whoever writes next (``cache_folders``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import cache_folders as folders
from . import write_behind
from .metrics import MaskStats, block_profiles, combine_profiles, compute_isolated
from .model import Case, Image, MaskAnnotation, Orientation, ReadCounter, stored
from .stored_array import StoredArray
from .windows import CT_DEFAULT_WINDOW, window_limits

if TYPE_CHECKING:  # zarr and dask.array are imported where used: start-up stays fast
    import dask.array as da
    import zarr

CACHE_ENV = "NAPARI_GROUNDING_CACHE"
# Flat-ish chunks and a fast codec: an axial slice is 16 chunks, coronal and sagittal ~40, each
# read in ~10 ms (benchmarks/run.py).
CHUNKS = (32, 128, 128)
CODEC = {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"}  # blosc
FORMAT = 2
NGFF = "0.5"
AXES = [{"name": n, "type": "space", "unit": "millimeter"} for n in ("z", "y", "x")]
_STAMP = "napari_grounding"
# content identity: the first and last blocks (header, gzip CRC and size trailer) and blocks
# sampled in between, so a rewrite keeping size and time (cp -p, rsync -t) is still noticed
_SAMPLE_BLOCK = 64 * 1024
_SAMPLES = 16


def cache_root(folder: str | os.PathLike | None = None) -> Path:
    """Where caches live: the folder given, else $NAPARI_GROUNDING_CACHE, else the user cache."""
    if folder:
        return Path(folder)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    from platformdirs import user_cache_path

    return user_cache_path("napari-grounding") / "zarr"


def slot_path(source: str | os.PathLike, root: Path) -> Path:
    """The folder holding every cached version of one source file."""
    source = Path(source).resolve()
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:12]
    return root / f"{source.name.split('.')[0]}-{digest}"


def content_id(path: str | os.PathLike) -> str:
    """A cheap fingerprint of a file's bytes: its size and sampled blocks."""
    size = os.path.getsize(path)
    last = max(0, size - _SAMPLE_BLOCK)
    offsets = sorted({0, last, *(last * k // (_SAMPLES + 1) for k in range(1, _SAMPLES + 1))})
    digest = hashlib.sha1(str(size).encode())
    with open(path, "rb") as f:
        for offset in offsets:
            f.seek(offset)
            digest.update(f.read(_SAMPLE_BLOCK))
    return digest.hexdigest()[:20]


def _file_stamp(path: str) -> dict[str, Any] | None:
    if not path:
        return None  # not read from a file of its own
    try:
        stat = Path(path).stat()
        content = content_id(path)
    except OSError:
        return None
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "content": content}


def stamp(image: Image) -> dict[str, Any]:
    """What a cache must match to stand for an image: its source file as it is now and the
    values it was read with (rescale, dtype, geometry); any change makes it another version."""
    source = _file_stamp(image.source) or {}
    return {"format": FORMAT, "source": source.get("path"), "size": source.get("size"),
            "mtime_ns": source.get("mtime_ns"), "content": source.get("content"),
            "rescale": image.meta.get("rescale", image.meta.get("hu", "")),
            "dtype": str(image.dtype), "shape": list(image.orientation.source_shape),
            "affine": np.asarray(image.affine).round(6).tolist()}


def _version_name(expected: dict[str, Any]) -> str:
    text = json.dumps(expected, sort_keys=True)
    return f"v-{hashlib.sha1(text.encode()).hexdigest()[:16]}.ome.zarr"


def cache_path(image: Image, root: Path | None = None) -> Path:
    """Where the current version of an image's cache is (or would be) published."""
    return slot_path(image.source, cache_root(root)) / _version_name(stamp(image))


def _stamp_matches(path: Path, expected: dict[str, Any]) -> bool:
    if not path.is_dir():
        return False  # no cache yet: not worth importing zarr for
    import zarr

    try:
        found = zarr.open_group(str(path), mode="r").attrs.get(_STAMP, {})
    except (FileNotFoundError, OSError, ValueError, KeyError, TypeError,
            zarr.errors.GroupNotFoundError):
        return False
    if not isinstance(found, dict):
        return False
    return {k: found.get(k) for k in expected} == json.loads(json.dumps(expected))


def find_cache(image: Image, root: Path | None = None) -> Path | None:
    """A complete, current cache for an image, or None."""
    if not image.source:
        return None
    expected = stamp(image)
    path = slot_path(image.source, cache_root(root)) / _version_name(expected)
    return path if _stamp_matches(path, expected) else None


class CachedMask(NamedTuple):
    """A mask as the cache holds it: its array (source axis order) and the statistics the
    cache writer measured in its pass over it."""

    data: Any
    stats: MaskStats | None
    display: Any = None  # the stored array itself, display order: what the viewer slices


def open_current(image: Image, root: Path | None = None
                 ) -> tuple[Image, dict[str, CachedMask]] | None:
    """The image and its masks from its current cache, or None when there is no usable one
    (missing, stale, being deleted, unreadable: the caller reads the source instead)."""
    path = find_cache(image, root)
    if path is None:
        return None
    import zarr

    try:
        cached, masks = open_cache(path)
    except (OSError, ValueError, KeyError, TypeError, zarr.errors.BaseZarrError):
        return None
    cached.source = image.source  # the file as the reader named it (the stamp holds it resolved)
    return cached, masks


def level_chunks(shape: tuple[int, ...], chunks: tuple[int, ...] = CHUNKS) -> tuple[int, ...]:
    """The cache's chunks for an array of ``shape``: none larger than the array."""
    return tuple(min(c, n) for c, n in zip(chunks, shape, strict=True))


def _pyramid_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    shapes = [tuple(shape)]
    while min(shapes[-1][1:]) > 128 and shapes[-1][0] >= 2:
        shapes.append(tuple(n // 2 for n in shapes[-1]))
    return shapes


def is_current(case: Case, image_id: str = "ct", root: Path | None = None) -> Path | None:
    """The cache of a case's image when it is current and holds all its masks as they are now."""
    image = case.images[image_id]
    path = find_cache(image, root)
    if path is None:
        return None
    import zarr

    masks = zarr.open_group(str(path), mode="r").attrs[_STAMP].get("masks", {})
    wanted = {m.id: m for m in _masks(case, image)}
    if set(masks) != set(wanted):
        return None
    fresh = all(masks[i] is None or masks[i] == _file_stamp(masks[i]["path"]) for i in wanted)
    return path if fresh else None


def ensure_cache(case: Case, image_id: str = "ct", root: Path | None = None) -> tuple[Path, bool]:
    """The case's current cache, written only when missing or stale: (path, written)."""
    current = is_current(case, image_id, root)
    if current is not None:
        folders.clean_slot(current.parent, keep=current)
        return current, False
    return write_cache(case, image_id, root), True


def write_cache(case: Case, image_id: str = "ct", root: Path | None = None) -> Path:
    """Write a new version of the cache of a case's CT and its masks; returns its path."""
    image = case.images[image_id]
    expected = stamp(image)
    slot = slot_path(image.source, cache_root(root))
    out = slot / _version_name(expected)
    slot.mkdir(parents=True, exist_ok=True)
    partial = slot / f"{out.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    lock = folders.hold(partial, exclusive=True, create=True)
    try:
        folders.crash_point("partial")
        _write(case, image, partial, expected)
        folders.crash_point("written")
        _publish(partial, out, expected)
        folders.crash_point("published")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a failed write leaves nothing behind
        with contextlib.suppress(OSError):  # unless other versions live there
            slot.rmdir()
        raise
    finally:
        if partial.exists():  # the same version was published meanwhile by another writer
            shutil.rmtree(partial, ignore_errors=True)
        if lock is not None:
            lock.close()
    folders.clean_slot(slot, keep=out)
    if root is None:  # the viewer's cache; a `convert --out` folder is marked and never evicted
        folders.evict(cache_root(), folders.max_bytes(), keep=out)
    return out


def _publish(partial: Path, out: Path, expected: dict[str, Any]) -> None:
    """Rename the finished version into place: atomic, and never over a version in use."""
    try:
        os.rename(partial, out)
        return
    except OSError:
        if _stamp_matches(out, expected):
            return  # the same version, published meanwhile by another writer
    folders.remove(out)  # there but unreadable: replace it
    os.rename(partial, out)


def _masks(case: Case, image: Image) -> list[MaskAnnotation]:
    return [a for a in case.annotations.values()  # the dataset's own: not predictions
            if isinstance(a, MaskAnnotation) and a.image == image.id
            and a.set == case.reference_set]


def _create(group: zarr.Group, name: str, shape: tuple[int, ...], dtype: np.dtype,
            chunks: tuple[int, ...], store_empty: bool = True) -> zarr.Array:
    from zarr.codecs import BloscCodec

    # every chunk given is stored: zarr's own test of each chunk for all-zero (an equal_nan
    # array_equal) cost more than encoding it. The mask writer leaves out the background
    # beyond each chunk row's extent itself (the few empty chunks within it are stored), and
    # zarr leaves out the empty ones within it on its coarser levels (few chunks).
    return group.create_array(name, shape=shape, dtype=dtype, chunks=chunks,
                              compressors=[BloscCodec(**CODEC)], fill_value=0,
                              dimension_names=("z", "y", "x"),
                              config={"write_empty_chunks": store_empty})


def _halve(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The next pyramid level's rows of a block of whole row pairs: means of 2 x 2 x 2."""
    n = [s // 2 for s in block.shape]
    block = block[: 2 * n[0], : 2 * n[1], : 2 * n[2]]
    if block.dtype.kind in "iu" and block.dtype.itemsize <= 4:
        # the same numbers as mean() (a float64 sum of 8 integers is exact, and so is / 8),
        # summed as integers pairwise along each axis in turn, each sum half the size of
        # the last, in a type just wide enough for 8 values: several times faster
        total = block[0::2].astype(np.int32 if block.dtype.itemsize <= 2 else np.int64)
        total += block[1::2]
        total = total[:, 0::2] + total[:, 1::2]
        total = total[:, :, 0::2] + total[:, :, 1::2]
        return (total / 8).astype(dtype)
    block = block.reshape(n[0], 2, n[1], 2, n[2], 2)
    return block.mean(axis=(1, 3, 5), dtype=np.float64).astype(dtype)  # float32 max: no inf


class _Slabs:
    """Display rows ``z0:z1`` of an array in source order (an image's or a mask's), from its
    ``slabs`` reader when it has one along the display's first axis: each range one forward
    read, flipped and transposed in memory; else from its dask array (``source()``, built
    only then: building a graph imports dask.array, half a second of a job process's start)."""

    def __init__(self, orientation: Orientation, source: Callable[[], Any], reader: Any,
                 owner: Any):
        self.orientation, self.source = orientation, source
        usable = reader is not None and reader.axis == orientation.source_axes[0] \
            and reader.stands_for(owner)  # not when the owner's data was replaced since
        self.reader = reader if usable else None

    def __call__(self, z0: int, z1: int) -> np.ndarray:
        return np.ascontiguousarray(self.rows(z0, z1))

    def rows(self, z0: int, z1: int) -> np.ndarray:
        """The rows in display order: a view of the read range when there is a reader."""
        o = self.orientation
        if self.reader is None:
            return np.asarray(compute_isolated(o.to_display(self.source())[z0:z1])[0])
        return o.to_display(self.reader(*self._range(z0, z1)))

    def plane(self, z0: int, z1: int, rows: np.ndarray) -> np.ndarray:
        """The (y, x) plane of ``rows`` that is nonzero wherever a row is."""
        if self.reader is None:
            return rows.any(axis=0)
        return self.orientation.to_display(self.reader.flattened(*self._range(z0, z1)))[0]

    def _range(self, z0: int, z1: int) -> tuple[int, int]:
        o = self.orientation
        n = o.source_shape[o.source_axes[0]]
        return (n - z1, n - z0) if o.flips[0] else (z0, z1)


def _forget(reader: Any) -> None:
    if reader is not None and hasattr(reader, "forget"):
        reader.forget()  # its last slab is not kept alive with the case


def _slab_order(rows: int, step: int, flipped: bool) -> list[tuple[int, int]]:
    """Display row ranges of ``step`` rows, in the order that reads the source forward."""
    ranges = [(z0, min(rows, z0 + step)) for z0 in range(0, rows, step)]
    return ranges[::-1] if flipped else ranges


def _pyramid_step(levels: int, chunks: tuple[int, ...]) -> int:
    """Rows of level 0 per slab: whole row pairs down to the coarsest level, in whole chunk
    rows of level 0."""
    return chunks[0] * max(1, math.ceil(2 ** (levels - 1) / chunks[0]))


def _write_image(group: zarr.Group, image: Image, shapes: list[tuple[int, ...]],
                 chunks: tuple[int, ...]) -> None:
    """Every pyramid level in one pass over the source: each slab of level 0 is written,
    halved in memory into the next level's rows, and so on (no level is read back)."""
    dtype = image.dtype
    levels = [_create(group, f"s{i}", shape, dtype, level_chunks(shape, chunks))
              for i, shape in enumerate(shapes)]
    step = _pyramid_step(len(shapes), chunks)
    slabs = _Slabs(image.orientation, lambda: image.orientation.to_source(image.data),
                   image.slabs, stored(image))

    rows = [_ChunkRows(level) for level in levels]

    def store_levels(block: np.ndarray, start: int) -> None:
        for index, level in enumerate(rows):
            if index:
                block, start = _halve(block, dtype), start // 2
            level.add(start, block)

    with write_behind.WriteBehind(write_behind.allowed()) as behind:
        for z0, z1 in _slab_order(shapes[0][0], step, image.orientation.flips[0]):
            behind.submit(functools.partial(store_levels, slabs(z0, z1), z0))
    for level in rows:
        level.close()


class _ChunkRows:
    """Rows of one array given in runs of any length, front to back or back to front, each
    stored once its chunk row is whole: a chunk written in parts is read back, merged and
    encoded again for every part (a coarser level's slab is a half, a quarter... of one).
    Unless ``store_empty``, only the chunks of a row's extent are stored (the others read as
    zeros)."""

    def __init__(self, array: zarr.Array, store_empty: bool = True):
        self.array, self.step, self.store_empty = array, array.chunks[0], store_empty
        self._pending: dict[int, list[tuple[int, np.ndarray]]] = {}

    def add(self, start: int, block: np.ndarray) -> None:
        stop = start + block.shape[0]
        while start < stop:  # a run crossing chunk rows: its part in each
            row = start // self.step
            end = min(stop, (row + 1) * self.step)
            parts = self._pending.setdefault(row, [])
            parts.append((start, block[: end - start]))
            block, start = block[end - start :], end
            if sum(len(part) for _, part in parts) == self._rows(row):
                self._store(row)

    def close(self) -> None:
        """Store whatever is left, each run where it goes (nothing, when every row was given)."""
        for parts in self._pending.values():
            for start, block in parts:
                self._write(start, block)
        self._pending.clear()

    def _rows(self, row: int) -> int:
        return min(self.step, self.array.shape[0] - row * self.step)

    def _store(self, row: int) -> None:
        parts = sorted(self._pending.pop(row), key=lambda part: part[0])  # whole: contiguous
        start = parts[0][0]
        block = parts[0][1] if len(parts) == 1 else np.concatenate([p for _, p in parts])
        self._write(start, block)

    def _write(self, start: int, block: np.ndarray) -> None:
        rows = slice(start, start + block.shape[0])
        if self.store_empty:
            self.array[rows] = block
            return
        region = _chunks_touched(block.any(axis=0), self.array.chunks)
        if region is not None:  # only the chunks holding a value: the rest reads as zeros
            self.array[(rows, *region)] = block[(slice(None), *region)]


def _write_masks(labels: zarr.Group, masks: list[MaskAnnotation], image: Image,
                 shapes: list[tuple[int, ...]], chunks: tuple[int, ...]) -> dict[str, MaskStats]:
    """Each label's levels (as many as the image's: NGFF asks for it), slab by slab for all of
    them at once in the CT's forward order: the channels of one mask file share each read of
    it. Returns each mask's statistics (source axis order), measured in the same pass, so an
    opening from the cache reads none."""
    shape = shapes[0]
    arrays = [[_create(labels[_label_name(m.id)], f"s{i}", level, np.dtype(stored(m).dtype),
                       level_chunks(level, chunks), store_empty=i == 0)
               for i, level in enumerate(shapes)] for m in masks]
    coarser = [[_ChunkRows(level, store_empty=False) for level in levels[1:]]
               for levels in arrays]
    slabs = [_Slabs(image.orientation, lambda m=m: m.data, m.slabs, stored(m)) for m in masks]
    partials: list[list[tuple[tuple[int, ...], Any]]] = [[] for _ in masks]
    step = _pyramid_step(len(shapes), chunks)

    def touched(z0: int, z1: int) -> list[tuple[tuple[slice, slice], np.ndarray] | None]:
        """Each mask's region of these rows holding its voxels, in whole chunks, copied."""
        out = []
        for slab in slabs:  # the channels of one file: one read, one flattening
            rows = slab.rows(z0, z1)
            region = _chunks_touched(slab.plane(z0, z1, rows), chunks)
            out.append(None if region is None else
                       (region, np.ascontiguousarray(rows[(slice(None), *region)])))
        return out

    def store(z0: int, z1: int, regions: list[tuple[tuple[slice, slice], np.ndarray] | None]
              ) -> None:
        for levels, rows, touched_region, found in zip(arrays, coarser, regions, partials,
                                                       strict=True):
            if touched_region is not None:  # the background beyond it is not stored
                region, inside = touched_region
                levels[0][(slice(z0, z1), *region)] = inside
                found.append(((z0, region[0].start, region[1].start), block_profiles(inside)))
            _store_coarser(rows, shapes, z0, z1, touched_region)

    with write_behind.WriteBehind(write_behind.allowed()) as behind:
        for z0, z1 in _slab_order(shape[0], step, image.orientation.flips[0]):
            behind.submit(functools.partial(store, z0, z1, touched(z0, z1)))
    for rows in coarser:
        for level in rows:
            level.close()
    return {m.id: _source_stats(shape, found, image.orientation)
            for m, found in zip(masks, partials, strict=True)}


def _store_coarser(rows: list[_ChunkRows], shapes: list[tuple[int, ...]], z0: int, z1: int,
                   touched: tuple[tuple[slice, slice], np.ndarray] | None) -> None:
    """A mask slab's rows of each coarser level: every other voxel of the level above
    (labels are not averaged), its region placed in rows of the level's whole plane (all
    zero where the slab holds none: chunk rows with no voxel are not stored)."""
    start, count = z0, z1 - z0
    region, block = touched if touched is not None else (None, None)
    for level, level_shape in zip(rows, shapes[1:], strict=True):
        start, count = start // 2, count // 2
        plane = np.zeros((count, *level_shape[1:]), dtype=level.array.dtype)
        if block is not None:
            block = block[: 2 * count : 2, ::2, ::2]
            region = tuple(slice(r.start // 2, r.start // 2 + n)
                           for r, n in zip(region, block.shape[1:], strict=True))
            fits = tuple(slice(0, max(0, n - r.start))
                         for r, n in zip(region, level_shape[1:], strict=True))
            plane[(slice(None), *region)] = block[(slice(None), *fits)]
        level.add(start, plane)


def _source_stats(shape: tuple[int, ...], found: list[tuple[tuple[int, ...], Any]],
                  orientation: Orientation) -> MaskStats:
    """A mask's statistics from its blocks' profiles (display order), in the source's axis
    order: the same numbers, to the last bit, as a pass over the source array gives."""
    display = [np.zeros(n, dtype=np.int64) for n in shape]
    labels: list[np.ndarray] = []
    for offset, (profiles, block_labels) in found:
        for axis, profile in enumerate(profiles):
            display[axis][offset[axis] : offset[axis] + profile.size] += profile
        labels.append(np.asarray(block_labels))
    source: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(shape)
    for axis, (source_axis, flip) in enumerate(zip(orientation.source_axes, orientation.flips,
                                                   strict=True)):
        source[source_axis] = display[axis][::-1] if flip else display[axis]
    return combine_profiles(orientation.source_shape, [(0,) * len(shape)],
                            [(source, np.unique(np.concatenate(labels)) if labels else ())])


def _stats_json(stats: MaskStats) -> dict[str, Any]:
    return {"voxels": stats.voxels, "labels": list(stats.labels),
            "bbox": None if stats.bbox is None else [list(c) for c in stats.bbox],
            "centroid": None if stats.centroid is None else list(stats.centroid)}


def _stats_from_json(found: dict[str, Any], shape: tuple[int, ...]) -> MaskStats:
    bbox = found["bbox"]
    return MaskStats(tuple(shape), int(found["voxels"]), tuple(found["labels"]),
                     None if bbox is None else (tuple(bbox[0]), tuple(bbox[1])),
                     None if found["centroid"] is None else tuple(found["centroid"]))


def _chunks_touched(plane: np.ndarray, chunks: tuple[int, ...]) -> tuple[slice, slice] | None:
    """The (y, x) extent of a block's nonzero voxels (``plane``: nonzero where any row of it
    is), widened to whole chunks; None when empty. Masks are mostly background: zarr need not
    look at the chunks outside it."""
    extent = []
    for axis in (1, 2):
        hits = np.flatnonzero(plane.any(axis=2 - axis))
        if not hits.size:
            return None
        step = chunks[axis]
        extent.append(slice(hits[0] // step * step,
                            min(plane.shape[axis - 1], -(-(hits[-1] + 1) // step) * step)))
    return extent[0], extent[1]


def _multiscales(name: str, levels: int, scale: list[float]) -> dict[str, Any]:
    """The NGFF attributes of a multiscale image whose level ``i`` is ``s{i}``, halved
    ``i`` times (written by hand: ome-zarr's writer took 0.8 s to import in every job process,
    scipy and scikit-image with it; tests check them with ome-zarr's reader and models)."""
    return {"version": NGFF, "multiscales": [{"datasets": _datasets(levels, scale),
                                              "name": name, "axes": AXES}]}


def _datasets(levels: int, scale: list[float]) -> list[dict[str, Any]]:
    return [{"path": f"s{level}", "coordinateTransformations": [
        {"type": "scale", "scale": [s * 2**level for s in scale]},
        {"type": "translation", "translation": [0.0, 0.0, 0.0]}]} for level in range(levels)]


def _write(case: Case, image: Image, partial: Path, expected: dict[str, Any]) -> None:
    import zarr

    from .unpublished_store import UnpublishedStore

    group = zarr.open_group(UnpublishedStore(partial), mode="a")  # fresh: only our lock file
    scale = [float(s) for s in image.spacing]
    shape = tuple(int(n) for n in stored(image).shape)
    chunks = level_chunks(shape)
    shapes = _pyramid_shapes(shape)
    try:
        _write_image(group, image, shapes, chunks)
    finally:
        _forget(image.slabs)
    masks = _masks(case, image)
    stats: dict[str, MaskStats] = {}
    if masks:
        names = [_label_name(m.id) for m in masks]
        labels = group.create_group("labels", attributes={"ome": {"version": NGFF,
                                                                  "labels": names}})
        for name in names:
            labels.create_group(name, attributes={"ome": {
                **_multiscales(name, len(shapes), scale),
                "image-label": {"version": NGFF, "source": {"image": "../../"}}}})
        try:
            stats = _write_masks(labels, masks, image, shapes, chunks)
        finally:
            for mask in masks:
                _forget(mask.slabs)
    group.attrs.update({"ome": _multiscales("/", len(shapes), scale), _STAMP: {
        **expected, "origin": list(image.origin),
        "source_axes": list(image.orientation.source_axes),
        "flips": list(image.orientation.flips),
        "source_shape": list(image.orientation.source_shape),
        "masks": {m.id: _file_stamp(m.source) for m in masks},
        "mask_stats": {i: _stats_json(st) for i, st in stats.items()},
        "meta": {k: v for k, v in image.meta.items() if k != "cache"}}})
    # the stamp is written last (with the image's NGFF attributes): a version without it is
    # never used


def _label_name(annotation_id: str) -> str:
    return annotation_id.replace("/", "_")


def _levels(group: zarr.Group, counter: ReadCounter, lock: folders.Hold
            ) -> tuple[list[da.Array], list[StoredArray]]:
    """Each level of a multiscale group: as a dask array, and as the counted zarr array."""
    import dask.array as da

    datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
    lazy, direct = [], []
    for dataset in datasets:
        array = StoredArray(group[dataset["path"]], counter, lock)
        direct.append(array)
        lazy.append(da.from_array(array, chunks=array.chunks, asarray=False,
                                  meta=np.empty((0,) * array.ndim, array.dtype),
                                  name=f"zarr-{group.store}-{group.path}-{dataset['path']}"))
    return lazy, direct


def open_cache(path: Path, image_id: str = "ct") -> tuple[Image, dict[str, CachedMask]]:
    """The cached CT as an Image (geometry as the source gave it) and its masks by id, in
    the source's axis order as the model keeps them, with their statistics. The version stays
    locked against deletion as long as any of the arrays is alive."""
    lock = folders.hold(path, exclusive=False)
    if lock is None:
        raise FileNotFoundError(f"{path}: gone or being deleted")
    folders.touch(path)
    import zarr

    group = zarr.open_group(str(path), mode="r")
    info = dict(group.attrs[_STAMP])
    counter = ReadCounter()
    levels, direct = _levels(group, counter, lock)
    orientation = Orientation(tuple(info["source_axes"]), tuple(info["flips"]),
                              tuple(info["source_shape"]))
    image = Image(id=image_id, data=levels[0], orientation=orientation,
                  affine=np.asarray(info["affine"]), kind="ct",
                  contrast_limits=window_limits(CT_DEFAULT_WINDOW), origin=tuple(info["origin"]),
                  source=info["source"], meta={**info["meta"], "cache": str(path)},
                  reads=counter, pyramid=levels if len(levels) > 1 else [],
                  display_levels=direct)
    masks = {}
    stats = info.get("mask_stats", {})  # absent in versions written before they were kept
    for mask_id, source in info.get("masks", {}).items():
        if source is not None and _file_stamp(source["path"]) != source:
            continue  # the mask file changed since: read it, not the cache
        label = group["labels"][_label_name(mask_id)]
        lazy, direct = _levels(label, counter, lock)
        known = stats.get(mask_id)
        masks[mask_id] = CachedMask(orientation.to_source(lazy[0]), None if known is None else
                                    _stats_from_json(known, orientation.source_shape), direct[0])
    return image, masks
