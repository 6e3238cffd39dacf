"""The OME-Zarr cache: a case's CT as a chunked multiscale volume, with its masks.

A ``.nii.gz`` must be decompressed from the start to reach a slice; the cache holds the CT in
display order (HU applied) as an NGFF multiscale image in chunks of 32 x 128 x 128, with its
physical scale,
and each mask as an NGFF label image. A cache is written to a temporary folder, stamped with the
source's size and time last, then renamed into place: a half-written or stale cache is never
opened, it is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from ome_zarr.writer import write_labels, write_multiscale
from platformdirs import user_cache_path
from zarr.codecs import BloscCodec

from .metrics import compute_isolated
from .model import Case, Image, MaskAnnotation, Orientation, ReadCounter
from .windows import CT_DEFAULT_WINDOW, window_limits

CACHE_ENV = "NAPARI_GROUNDING_CACHE"
# Flat-ish chunks and a fast codec: an axial slice is 16 chunks, coronal and sagittal ~40, each
# read in ~10 ms (benchmarks/run.py).
CHUNKS = (32, 128, 128)
CODECS = [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
FORMAT = 1
AXES = [{"name": n, "type": "space", "unit": "millimeter"} for n in ("z", "y", "x")]
_STAMP = "napari_grounding"


def cache_root(folder: str | os.PathLike | None = None) -> Path:
    """Where caches live: the folder given, else $NAPARI_GROUNDING_CACHE, else the user cache."""
    if folder:
        return Path(folder)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return user_cache_path("napari-grounding") / "zarr"


def cache_path(source: str | os.PathLike, root: Path) -> Path:
    source = Path(source).resolve()
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:12]
    return root / f"{source.name.split('.')[0]}-{digest}.ome.zarr"


def _file_stamp(path: str) -> dict[str, Any] | None:
    if not path:
        return None  # not read from a file of its own
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def stamp(image: Image) -> dict[str, Any]:
    """What a cache must match to stand for an image: its source file as it is now and the
    way it was read (rescale, spacing) — any change makes the cache stale."""
    source = Path(image.source)
    stat = source.stat()
    return {"format": FORMAT, "source": str(source.resolve()), "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns, "hu": image.meta.get("hu", ""),
            "affine": np.asarray(image.affine).round(6).tolist()}


def find_cache(image: Image, root: Path | None = None) -> Path | None:
    """A complete, current cache for an image, or None."""
    path = cache_path(image.source, cache_root(root))
    try:
        found = zarr.open_group(str(path), mode="r").attrs.get(_STAMP, {})
    except (FileNotFoundError, OSError, ValueError, zarr.errors.GroupNotFoundError):
        return None
    expected = stamp(image)
    return path if {k: found.get(k) for k in expected} == json.loads(json.dumps(expected)) else None


def _pyramid(volume: da.Array) -> list[da.Array]:
    levels = [volume]
    while min(levels[-1].shape[1:]) > 128 and levels[-1].shape[0] >= 2:
        coarse = da.coarsen(np.mean, levels[-1], {0: 2, 1: 2, 2: 2}, trim_excess=True)
        levels.append(coarse.astype(volume.dtype))
    return levels


def write_cache(case: Case, image_id: str = "ct", root: Path | None = None) -> Path:
    """Write (or rewrite) the cache of a case's CT and its masks; returns its path."""
    image = case.images[image_id]
    out = cache_path(image.source, cache_root(root))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"{out.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        _write(case, image, partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a failed write leaves nothing behind
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)  # the cache appears whole or not at all
    return out


def _write(case: Case, image: Image, partial: Path) -> None:
    group = zarr.open_group(str(partial), mode="w")
    scale = dict(zip("zyx", (float(s) for s in image.spacing), strict=True))
    chunks = tuple(min(c, n) for c, n in zip(CHUNKS, image.data.shape, strict=True))
    volume = image.data.rechunk(chunks)
    # compute=False: the writes run below, off napari's global dask callbacks
    pending = write_multiscale(_pyramid(volume), group, axes=AXES, scale=scale,
                               storage_options={"chunks": chunks, "compressors": CODECS},
                               compute=False)
    masks = [a for a in case.annotations.values()  # the dataset's own: not predictions
             if isinstance(a, MaskAnnotation) and a.image == image.id and a.set == case.reference_set]
    for mask in masks:
        shown = image.orientation.to_display(mask.data).rechunk(chunks)
        pending += write_labels(shown, group, name=_label_name(mask.id), axes=AXES, scaler=None,
                                scale_factors=(), scale=scale, compute=False,
                                storage_options={"chunks": chunks, "compressors": CODECS})
    compute_isolated(*pending)
    group.attrs[_STAMP] = {**stamp(image), "origin": list(image.origin),
                           "source_axes": list(image.orientation.source_axes),
                           "flips": list(image.orientation.flips),
                           "source_shape": list(image.orientation.source_shape),
                           "masks": {m.id: _file_stamp(m.source) for m in masks},
                           "meta": image.meta}  # written last: marks the cache complete


def _label_name(annotation_id: str) -> str:
    return annotation_id.replace("/", "_")


class _Counted:
    """A zarr array that counts the chunks dask reads from it."""

    def __init__(self, array: zarr.Array, counter: ReadCounter):
        self.array, self.counter = array, counter
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        block = self.array[key]
        self.counter.add(block.nbytes)
        return block


def _levels(group: zarr.Group, counter: ReadCounter) -> list[da.Array]:
    datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
    out = []
    for dataset in datasets:
        array = group[dataset["path"]]
        out.append(da.from_array(_Counted(array, counter), chunks=array.chunks, asarray=False,
                                 meta=np.empty((0,) * array.ndim, array.dtype),
                                 name=f"zarr-{group.store}-{group.path}-{dataset['path']}"))
    return out


def open_cache(path: Path, image_id: str = "ct") -> tuple[Image, dict[str, Any]]:
    """The cached CT as an Image (geometry as the source gave it) and mask arrays by id, in
    the source's axis order, as the model keeps them."""
    group = zarr.open_group(str(path), mode="r")
    info = dict(group.attrs[_STAMP])
    counter = ReadCounter()
    levels = _levels(group, counter)
    orientation = Orientation(tuple(info["source_axes"]), tuple(info["flips"]),
                              tuple(info["source_shape"]))
    image = Image(id=image_id, data=levels[0], orientation=orientation,
                  affine=np.asarray(info["affine"]), kind="ct",
                  contrast_limits=window_limits(CT_DEFAULT_WINDOW), origin=tuple(info["origin"]),
                  source=info["source"], meta={**info["meta"], "cache": str(path)},
                  reads=counter, pyramid=levels if len(levels) > 1 else [])
    masks = {}
    for mask_id, source in info.get("masks", {}).items():
        if source is not None and _file_stamp(source["path"]) != source:
            continue  # the mask file changed since: read it, not the cache
        label = group["labels"][_label_name(mask_id)]
        (level,) = _levels(label, counter)[:1]
        masks[mask_id] = orientation.to_source(level)
    return image, masks
