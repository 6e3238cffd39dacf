"""Chest X-rays stored as DICOM (VinDr-CXR's ``*.dicom``), lazily decoded like the PNG reader.

Opening reads the header only: shape, dtype, photometric interpretation and the display window
come from it, so no pixel is decoded until napari shows the picture. Stored values are never
widened: MONOCHROME1 (white = low) is inverted within its own bit depth, and a linear VOI
window is expressed as contrast limits in stored units; only a non-linear VOI LUT is applied to
the pixels. Pixel spacing (mm) is kept as metadata; boxes and masks stay in pixel units.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..model import GroundingError, Image, Orientation, ReadCounter
from .xray import _pyramid, display_range

DICOM_SUFFIXES = (".dicom", ".dcm")


def _apply_voi_lut(pixels: np.ndarray, ds: Any) -> np.ndarray:
    try:  # pydicom 3
        from pydicom.pixels import apply_voi_lut
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_voi_lut
    return apply_voi_lut(pixels, ds, prefer_lut=True)


def _first(value: Any) -> float | None:
    """A DICOM number that may be multi-valued (several windows): the first one."""
    if value is None:
        return None
    from pydicom.multival import MultiValue

    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _read_header(path: Path) -> Any:
    import pydicom  # here, not at import: start-up stays fast
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except (OSError, InvalidDicomError, EOFError) as err:
        raise GroundingError(f"{path}: not a readable DICOM file ({err})") from None


def _stored(ds: Any) -> tuple[tuple[int, int], np.dtype, int]:
    """(rows, columns), the stored dtype and the bits stored, from the header."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        allocated = int(ds.BitsAllocated)
    except AttributeError as err:
        raise GroundingError(f"DICOM without pixel description ({err})") from None
    if int(getattr(ds, "SamplesPerPixel", 1)) != 1:
        raise GroundingError("colour DICOM: a chest X-ray is expected to be greyscale")
    signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
    dtype = np.dtype(f"{'i' if signed else 'u'}{max(1, allocated // 8)}")
    return (rows, cols), dtype, int(getattr(ds, "BitsStored", allocated))


def _window(ds: Any) -> tuple[float, float] | None:
    """The file's linear VOI window as (low, high) in stored units, or None."""
    centre, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if centre is None or not width:
        return None
    slope = _first(ds.get("RescaleSlope")) or 1.0
    intercept = _first(ds.get("RescaleIntercept")) or 0.0
    low, high = ((centre - width / 2 - intercept) / slope, (centre + width / 2 - intercept) / slope)
    return (min(low, high), max(low, high))


@lru_cache(maxsize=8)
def _decode_cached(path: str, mtime_ns: int) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    _, dtype, bits = _stored(ds)
    if _uses_lut(ds):
        pixels = _apply_voi_lut(pixels, ds)
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        dtype = pixels.dtype
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        top = (1 << bits) - 1 if dtype.kind in "iu" else float(pixels.max())
        pixels = (top - pixels).astype(dtype) if dtype.kind == "u" else top - pixels
    return np.ascontiguousarray(pixels)


def _uses_lut(ds: Any) -> bool:
    return _window(ds) is None and "VOILUTSequence" in ds


def _decode(path: str, counter: ReadCounter) -> np.ndarray:
    from pydicom.errors import InvalidDicomError

    try:
        pixels = _decode_cached(path, os.stat(path).st_mtime_ns)
    except (OSError, InvalidDicomError, AttributeError, ValueError, RuntimeError,
            NotImplementedError) as err:  # no decoder for its transfer syntax, bad data
        raise GroundingError(f"{path}: cannot decode the DICOM pixels ({err})") from None
    counter.add(pixels.nbytes)
    return pixels


def open_dicom(path: str | os.PathLike, image_id: str = "image", **meta: str) -> Image:
    """A DICOM CXR as an Image in pixel units, decoded on first display."""
    path = Path(path)
    ds = _read_header(path)
    try:
        shape, dtype, bits = _stored(ds)
    except GroundingError as err:
        raise GroundingError(f"{path}: {err}") from None
    photometric = str(ds.get("PhotometricInterpretation", ""))
    info = {"bit_depth": str(bits), "photometric": photometric, **meta}
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if spacing is not None and len(spacing) == 2:
        info["pixel_spacing_mm"] = f"{float(spacing[0]):g} x {float(spacing[1]):g}"
    counter = ReadCounter()
    if _uses_lut(ds):
        dtype = np.dtype(np.uint16 if int(ds.VOILUTSequence[0].LUTDescriptor[2]) > 8 else np.uint8)
    import dask.array as da
    from dask import delayed

    level0 = da.from_delayed(delayed(_decode, pure=True)(str(path), counter), shape, dtype)
    window = _window(ds)
    if window is not None:
        info["contrast"] = "window from the file (WindowCenter/WindowWidth)"
        if photometric == "MONOCHROME1":  # the pixels are inverted: so is the window
            top = (1 << bits) - 1
            window = (top - window[1], top - window[0])
        limits = window
    else:  # no window in the file: from the (decoded, cached) pixels, as for PNG
        info["contrast"] = "VOI LUT from the file" if _uses_lut(ds) else "from the data"
        limits = display_range(_decode(str(path), counter))
    levels = _pyramid(level0)
    return Image(id=image_id, data=level0, orientation=Orientation.identity(shape),
                 affine=np.eye(3), kind="xray", contrast_limits=limits, origin=(0.0, 0.0),
                 source=str(path), meta=info, reads=counter,
                 pyramid=levels if len(levels) > 1 else [])
