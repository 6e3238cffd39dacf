"""Lazy NIfTI volumes: dask arrays whose chunks read only their own slices.

Reading goes through nibabel's ``ArrayProxy`` with the file kept open, so for ``.nii.gz``
``indexed_gzip`` builds its seek points once and a slice costs a short decompression, not the
whole file. Dtypes are never widened: HU rescaling uses integer arithmetic per chunk.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model import Deferred, GroundingError, Image, Orientation, ReadCounter
from ..windows import CT_DEFAULT_WINDOW, window_limits
from .inflate import GZIP_ERRORS, open_stream

if TYPE_CHECKING:  # nibabel and dask.array are imported where used: start-up stays fast
    import dask.array as da
    import nibabel as nib

# Axial slices from the top of the chest down, anterior up, patient right on screen left.
DISPLAY_AXCODES = ("I", "P", "L")
# For each display axis code: the RAS world axis it measures and the sign that makes it grow.
_DISPLAY_FRAME = {"I": (2, -1.0), "P": (1, -1.0), "L": (0, -1.0)}
_READ_ERRORS = (*GZIP_ERRORS, OSError, ValueError, OverflowError, MemoryError)
_MAX_GZIP_RATIO = 1100  # deflate cannot compress better than about 1032:1


@dataclass(frozen=True)
class Rescale:
    """Raw-to-HU mapping and where it came from (applied exactly once)."""

    slope: float = 1.0
    inter: float = 0.0
    source: str = "stored values"

    @property
    def is_identity(self) -> bool:
        return self.slope == 1.0 and self.inter == 0.0

    def output_dtype(self, raw: np.dtype) -> np.dtype:
        """Keep 16-bit CTs 16-bit: integral slope/intercept stay in integer arithmetic."""
        if self.is_identity:
            return raw
        whole = float(self.slope).is_integer() and float(self.inter).is_integer()
        small = abs(self.slope) <= 2**15 and abs(self.inter) <= 2**31  # int64 work cannot overflow
        if whole and small and raw.kind in "iu":
            return np.dtype(np.int16) if raw.itemsize <= 2 else np.dtype(np.int32)
        return np.dtype(np.float32)

    def apply(self, raw: np.ndarray, out: np.dtype) -> np.ndarray:
        if self.is_identity:
            return raw
        if out.kind == "f":
            with np.errstate(over="ignore", invalid="ignore"):  # a huge slope saturates to inf
                return raw.astype(out) * out.type(self.slope) + out.type(self.inter)
        work = raw.astype(np.int64) * int(self.slope) + int(self.inter)
        info = np.iinfo(out)
        return np.clip(work, info.min, info.max).astype(out)


def load_header(path: str | os.PathLike) -> nib.Nifti1Image:
    """Open a NIfTI's header and check the file holds all the data it promises."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    if not path.is_file():
        raise GroundingError(f"{path}: file not found")
    try:
        with warnings.catch_warnings(record=True) as caught:  # odd headers: our warnings
            warnings.simplefilter("always")
            img = nib.load(str(path))
    except (*_READ_ERRORS, ImageFileError) as err:
        raise GroundingError(f"{path}: not a readable NIfTI file ({_reason(err)})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise GroundingError(f"{path}: not a NIfTI image ({type(img).__name__})")
    img.extra["warnings"] = [f"{path}: {_reason(w.message)}" for w in caught]
    _check_complete(path, img)
    return img


def _reason(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _expected_bytes(img: nib.Nifti1Image) -> int:
    """Header offset plus data size, in Python integers (numpy's would wrap around)."""
    shape = [int(n) for n in img.shape]
    if any(n < 1 for n in shape):
        return -1
    return int(img.dataobj.offset) + math.prod(shape) * int(img.get_data_dtype().itemsize)


def _check_complete(path: Path, img: nib.Nifti1Image) -> None:
    """Catch truncated files up front instead of failing at some slice later.

    A gzip's trailer stores the uncompressed size (mod 2**32): a cut-off file ends in
    compressed bytes instead. Only when that disagrees do we pay for reading the last byte,
    which also accepts the rare multi-member gzip.
    """
    expected = _expected_bytes(img)
    if expected < 0:
        raise GroundingError(f"{path}: corrupt NIfTI header (a dimension below 1: {img.shape})")
    if path.name.endswith(".gz") and expected > _MAX_GZIP_RATIO * path.stat().st_size:
        raise GroundingError(f"{path}: corrupt NIfTI header (dimensions {tuple(img.shape)} "
                             f"promise {expected} bytes, more than the file could hold)")
    if path.name.endswith(".gz"):
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            isize = int.from_bytes(f.read(4), "little")
        if isize == expected % 2**32:
            return
        from nibabel.arrayproxy import ArrayProxy

        proxy = ArrayProxy(str(path), ((expected,), np.uint8, 0, 1.0, 0.0))
        try:
            complete = proxy[expected - 1 : expected].size == 1
        except _READ_ERRORS:
            complete = False
        if not complete:
            raise GroundingError(
                f"{path}: truncated or corrupt .nii.gz "
                f"(the header promises {expected} bytes of image data; the file ends early)"
            )
    elif path.stat().st_size < expected:
        raise GroundingError(
            f"{path}: truncated NIfTI ({path.stat().st_size} bytes, the header promises {expected})"
        )


class _ChunkSource:
    """Array-like over a NIfTI's stored values that dask slices chunk by chunk."""

    def __init__(self, path: Path, img: nib.Nifti1Image, rescale: Rescale, counter: ReadCounter,
                 out_dtype: np.dtype | None = None):
        from nibabel.arrayproxy import ArrayProxy

        raw_dtype = img.get_data_dtype()
        spec = (img.shape, raw_dtype, img.dataobj.offset, 1.0, 0.0)  # unscaled bytes
        self._proxy = ArrayProxy(str(path), spec, mmap=False, keep_file_open=True)
        self._path = path
        self._rescale = rescale
        self._counter = counter
        self.shape = tuple(img.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(out_dtype or rescale.output_dtype(raw_dtype))

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.finish(lambda: self._proxy[key])

    def finish(self, read: Any) -> np.ndarray:
        """The values ``read()`` returns (stored values), counted, rescaled or narrowed."""
        try:
            raw = np.asarray(read())
        except _READ_ERRORS as err:
            raise GroundingError(f"{self._path}: cannot read image data ({_reason(err)})") from None
        self._counter.add(raw.nbytes)
        if raw.dtype != self.dtype and self._rescale.is_identity:
            return _narrow_labels(raw, self.dtype)
        return self._rescale.apply(raw, self.dtype)


def _narrow_labels(raw: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Labels stored as floats: rounded to whole labels, but a positive value never becomes
    background (0.5 stays labelled) and huge or infinite ones saturate instead of wrapping."""
    if raw.dtype.kind == "f":
        top = np.iinfo(dtype).max
        rounded = np.rint(np.nan_to_num(raw, nan=0.0, posinf=top, neginf=0.0))
        rounded[(raw > 0) & (rounded < 1)] = 1
        raw = np.clip(rounded, 0, top)
    return raw.astype(dtype)


def label_dtype(raw: np.dtype) -> np.dtype:
    """An integer dtype no wider than ``raw`` for a label mask stored as any type."""
    if raw.kind in "iu":
        return raw
    if raw.kind == "b":
        return np.dtype(np.uint8)
    return np.dtype(np.uint8) if raw.itemsize == 1 else np.dtype(np.uint16)


def lazy_array(path: str | os.PathLike, img: nib.Nifti1Image, slice_axis: int,
               rescale: Rescale | None = None, counter: ReadCounter | None = None,
               out_dtype: np.dtype | None = None) -> da.Array:
    """The file's array (nibabel's axis order) as dask, one chunk per index of ``slice_axis``."""
    return deferred_array_and_slabs(path, img, slice_axis, rescale, counter, out_dtype)[0]()


def deferred_array_and_slabs(path: str | os.PathLike, img: nib.Nifti1Image, slice_axis: int,
                             rescale: Rescale | None = None, counter: ReadCounter | None = None,
                             out_dtype: np.dtype | None = None) -> tuple[Deferred, SlabReader]:
    """``lazy_array``, built when first read, and a ``SlabReader`` of the same values along
    ``slice_axis``."""
    source = _ChunkSource(Path(path), img, rescale or Rescale(), counter or ReadCounter(), out_dtype)
    stat = Path(path).stat()

    def build() -> da.Array:
        import dask.array as da
        from dask.base import tokenize

        chunks = tuple(1 if axis == slice_axis else n for axis, n in enumerate(source.shape))
        name = "nifti-" + tokenize(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size,
                                   rescale, source.dtype.str)
        meta = np.empty((0,) * source.ndim, dtype=source.dtype)
        return da.from_array(source, chunks=chunks, name=name, meta=meta, asarray=False)

    return Deferred(build, source.shape, source.dtype), SlabReader(source, slice_axis)


class SlabReader:
    """Slices ``start:stop`` along one axis of a file's array, each range read in one call
    through a file of its own: asked in ascending order, a ``.nii.gz`` is inflated once, front
    to back, by a plain streaming gzip (dask's chunk order and the display flip would seek
    backwards, and ``indexed_gzip`` pays for its seek points). The last range is kept, so
    masks that are channels of one file share its read (``channel``)."""

    def __init__(self, source: _ChunkSource, axis: int):
        self.source, self.axis = source, axis
        self._last: tuple[tuple[int, int], np.ndarray] | None = None
        self._flat: tuple[tuple[int, int], np.ndarray] | None = None
        self._file: Any = None

    def __call__(self, start: int, stop: int) -> np.ndarray:
        if self._last is None or self._last[0] != (start, stop):
            key = [slice(None)] * len(self.source.shape)
            key[self.axis] = slice(start, stop)
            self._last = self._flat = None  # the old range is let go before the new one is read
            self._last = ((start, stop), self.source.finish(lambda: self._read(tuple(key))))
        return self._last[1]

    def flattened(self, start: int, stop: int) -> np.ndarray:
        """Range ``start:stop`` collapsed along the axis to length 1: nonzero wherever a value
        along it is (its bits OR-ed; -0.0 counts as set). One pass over the range serves all
        the channels of a file: testing each channel's strided values took ten times as long."""
        values = self(start, stop)
        if self._flat is None or self._flat[0] != (start, stop):
            size = values.dtype.itemsize
            bits = values.view(f"u{size}") if size in (1, 2, 4, 8) else values != 0
            self._flat = ((start, stop), np.bitwise_or.reduce(bits, axis=self.axis,
                                                              keepdims=True))
        return self._flat[1]

    def _read(self, key: tuple[slice, ...]) -> np.ndarray:
        from nibabel.fileslice import fileslice

        proxy = self.source._proxy
        if self._file is None:
            path = self.source._path
            # kept open from one range to the next (forward reads continue); ``forget`` closes it
            self._file = open_stream(path)
        values = fileslice(self._file, key, proxy.shape, proxy.dtype, proxy.offset, proxy.order)
        at_end = key[self.axis].stop >= proxy.shape[self.axis]
        if at_end and self.source._path.name.endswith(".gz") and self._file.read(1):
            # damage that still inflates can inflate to another length
            raise ValueError("it holds more data than its header promises (damaged?)")
        return values  # at the stream's end the .gz trailer's CRC of all of it was checked

    def fresh(self) -> SlabReader:
        """A reader of the same values through a file of its own (another thread's pass)."""
        return SlabReader(self.source, self.axis)

    def ranges(self, max_bytes: int) -> list[tuple[int, int]]:
        """``start, stop`` along the axis, front to back, each range at most ``max_bytes``
        (one index at least)."""
        shape = self.source.shape
        per_index = math.prod(shape) // max(shape[self.axis], 1) * self.source.dtype.itemsize
        step = max(1, max_bytes // max(per_index, 1))
        return [(start, min(start + step, shape[self.axis]))
                for start in range(0, shape[self.axis], step)]

    def forget(self) -> None:
        """Let go of the last range and close the file (reopened when asked again)."""
        self._last = self._flat = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def view(self, of: Any, index: int | None = None) -> SlabView:
        """The reader for the dask array ``of`` (its values, or channel ``index``'s)."""
        return SlabView(self, index, of)


class SlabView:
    """A ``SlabReader``'s ranges (or one channel of them: first axis) standing for a given
    dask array (or the ``Deferred`` one): a writer uses it only while that array is still the
    one it writes (``of``), so replacing an annotation's ``data`` cannot write stale values."""

    def __init__(self, reader: SlabReader, index: int | None, of: Any):
        self.reader, self.index, self._of = reader, index, of
        self.axis = reader.axis - (index is not None)

    def stands_for(self, array: Any) -> bool:
        if array is self._of:
            return True
        of = self._of.built if isinstance(self._of, Deferred) else self._of
        name = getattr(of, "name", None)
        return name is not None and getattr(array, "name", None) == name

    def __call__(self, start: int, stop: int) -> np.ndarray:
        block = self.reader(start, stop)
        return block if self.index is None else block[self.index]

    def flattened(self, start: int, stop: int) -> np.ndarray:
        block = self.reader.flattened(start, stop)
        return block if self.index is None else block[self.index]

    def forget(self) -> None:
        self.reader.forget()


def display_orientation(affine: np.ndarray, shape: tuple[int, ...]) -> Orientation:
    """How to show a 3D array so the patient appears in radiological display orientation."""
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    start = io_orientation(affine)
    transform = ornt_transform(start, axcodes2ornt(DISPLAY_AXCODES))
    source_axes = tuple(int(a) for a in np.argsort(transform[:, 0]))
    flips = tuple(bool(transform[a, 1] == -1) for a in source_axes)
    return Orientation(source_axes, flips, tuple(int(n) for n in shape))


def with_spacing(affine: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """The affine with its axis directions kept and voxel sizes replaced."""
    out = np.array(affine, dtype=float)
    norms = np.linalg.norm(out[:3, :3], axis=0)
    norms[norms == 0] = 1.0
    out[:3, :3] = out[:3, :3] / norms * np.asarray(spacing, dtype=float)
    return out


def with_direction(affine: np.ndarray, lps_cosines: np.ndarray) -> np.ndarray:
    """The affine with its axes along DICOM (LPS) direction cosines, one column per array
    axis; voxel sizes and origin kept. NIfTI's world is RAS, hence the sign flip of x and y."""
    out = np.array(affine, dtype=float)
    norms = np.linalg.norm(out[:3, :3], axis=0)
    norms[norms == 0] = 1.0
    out[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(lps_cosines, dtype=float) * norms
    return out


def open_volume(path: str | os.PathLike, *, image_id: str = "ct", rescale: Rescale | None = None,
                spacing: tuple[float, float, float] | None = None,
                direction: np.ndarray | None = None, plain: bool = False) -> Image:
    """A 3D CT as a lazily read, radiologically oriented Image.

    ``rescale``, ``spacing`` and ``direction`` (LPS cosines per array axis) come from side
    metadata (old CT-RATE volumes, whose headers lack them); a rescale stored in the NIfTI
    header itself always wins, so it is never applied twice. ``plain``: a volume of no known
    dataset, whose contrast comes from its data unless its values look like HU.
    """
    img = load_header(path)
    if len(img.shape) != 3:
        raise GroundingError(f"{path}: expected a 3D volume, found shape {tuple(img.shape)}")
    affine = np.array(img.affine, dtype=float)
    if direction is not None:
        affine = with_direction(affine, direction)
    if spacing:
        affine = with_spacing(affine, spacing)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise GroundingError(f"{path}: unusable geometry (sform/qform/pixdim give NaN or a zero "
                             "voxel size)")
    effective = _effective_rescale(img, rescale)
    orientation = display_orientation(affine, img.shape)
    counter = ReadCounter()
    source, slabs = deferred_array_and_slabs(path, img, orientation.source_axes[0], effective,
                                             counter)
    from nibabel.orientations import aff2axcodes

    axcodes = "".join(str(c) for c in aff2axcodes(affine))
    data = source.then(orientation.to_display, orientation.display_shape)
    limits, contrast = window_limits(CT_DEFAULT_WINDOW), f"CT {CT_DEFAULT_WINDOW} window"
    if plain:
        limits, contrast = data_contrast(data())
    return Image(
        id=image_id,
        data=data,
        orientation=orientation,
        affine=affine,
        kind="ct",
        contrast_limits=limits,
        origin=display_origin(affine, orientation),
        source=str(path),
        meta={"orientation": axcodes, "hu": effective.source,
              "rescale": f"slope {effective.slope!r} intercept {effective.inter!r}",
              "stored_dtype": str(img.get_data_dtype()), "contrast": contrast,
              **({"warnings": "; ".join(img.extra["warnings"])} if img.extra.get("warnings") else {})},
        reads=counter,
        slabs=slabs.view(of=data),
    )


def looks_like_hu(values: np.ndarray) -> bool:
    """Whole numbers from about -1024 (air, present around any chest) up to bone and metal."""
    if values.size == 0 or not np.all(np.isfinite(values)):
        return False
    if values.dtype.kind == "f" and not np.all(np.mod(values, 1) == 0):
        return False
    low, high = np.percentile(values, [1, 99.5])
    return bool(values.min() >= -3100 and low <= -800 and high <= 3500)


def data_contrast(data: Any) -> tuple[tuple[float, float], str]:
    """Contrast limits for a volume of no known dataset: the CT window when its values look
    like HU, else the 0.5 to 99.5 percentiles of three slices (three chunk reads)."""
    n = data.shape[0]
    picks = sorted({n // 4, n // 2, (3 * n) // 4})
    values = np.concatenate([np.asarray(data[i]).ravel() for i in picks])
    if looks_like_hu(values):
        return window_limits(CT_DEFAULT_WINDOW), f"CT {CT_DEFAULT_WINDOW} window (values look like HU)"
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5])) if values.size else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    return (low, high), "from the data (0.5-99.5th percentile of three slices; not HU)"


def _effective_rescale(img: nib.Nifti1Image, side: Rescale | None) -> Rescale:
    slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)
    if not (np.isfinite(slope) and np.isfinite(inter)) or slope == 0:
        raise GroundingError(f"{img.get_filename()}: unusable scl_slope/scl_inter "
                             f"({slope}, {inter})")
    header = Rescale(slope, inter, "NIfTI header scl_slope/scl_inter")
    if not header.is_identity:
        return header
    return side if side is not None else Rescale()


def display_origin(affine: np.ndarray, orientation: Orientation) -> tuple[float, ...]:
    """World millimetres of display voxel 0, measured along the display axes."""
    corner = orientation.index_to_source(np.zeros(len(orientation.source_axes)))
    world = affine[:3, :3] @ corner + affine[:3, 3]
    return tuple(sign * float(world[axis])
                 for axis, sign in (_DISPLAY_FRAME[c] for c in DISPLAY_AXCODES))
