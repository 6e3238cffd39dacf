"""Chest X-ray images (PNG 8/16-bit, JPEG) as lazily decoded, multiscale Images.

Shape and dtype come from the file header, so opening reads no pixels. PNG and JPEG are not
tiled, so the first look decodes the whole picture once (kept in a small cache); the pyramid
then hands napari the level that fits the canvas.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model import GroundingError, Image, Orientation, ReadCounter

if TYPE_CHECKING:  # PIL and dask.array are imported where used: start-up stays fast
    import dask.array as da

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_SIDE = 16384  # pixels a side; larger pictures are refused before decoding
PYRAMID_ABOVE = 2048  # images larger than this on a side get coarser levels
_MODE_DTYPES = {"1": np.uint8, "L": np.uint8, "P": np.uint8, "RGB": np.uint8, "RGBA": np.uint8,
                "LA": np.uint8, "I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16,
                "I": np.int32, "F": np.float32}
_TO_GREY = {"1", "P", "RGB", "RGBA", "LA"}


def image_header(path: Path) -> tuple[tuple[int, int], np.dtype]:
    """(rows, columns) and dtype of a picture, from its header only."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL's decompression-bomb warning: refused below
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as img:
                mode, (width, height) = img.mode, img.size
    except (OSError, UnidentifiedImageError, PILImage.DecompressionBombError) as err:
        raise GroundingError(f"{path}: not a readable PNG or JPEG ({err})") from None
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise GroundingError(f"{path}: {width} x {height} pixels; pictures up to {MAX_SIDE} a "
                             "side are read")
    if mode not in _MODE_DTYPES:
        raise GroundingError(f"{path}: unsupported image mode {mode}")
    return (height, width), np.dtype(_MODE_DTYPES[mode])


@lru_cache(maxsize=8)
def _decode_cached(path: str, mtime_ns: int) -> np.ndarray:
    from PIL import Image as PILImage

    with warnings.catch_warnings():  # sizes are checked by image_header
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        img = PILImage.open(path)
    with img:
        if img.mode in _TO_GREY:
            img = img.convert("L")  # CXRs are grey; colour JPEGs become luminance
        return np.asarray(img)


def _decode(path: str, counter: ReadCounter) -> np.ndarray:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        pixels = _decode_cached(path, os.stat(path).st_mtime_ns)
    except (OSError, UnidentifiedImageError, PILImage.DecompressionBombError) as err:
        raise GroundingError(f"{path}: cannot decode ({err})") from None
    counter.add(pixels.nbytes)
    return pixels


def _pyramid(level0: da.Array) -> list[da.Array]:
    levels = [level0]
    while max(levels[-1].shape) > PYRAMID_ABOVE // 2 and max(level0.shape) > PYRAMID_ABOVE:
        levels.append(levels[-1][::2, ::2])
    return levels


def display_range(pixels: np.ndarray) -> tuple[float, float]:
    """Contrast limits from the data: 0.5th to 99.5th percentile of a subsample."""
    step = max(1, max(pixels.shape) // 512)
    low, high = np.percentile(pixels[::step, ::step], [0.5, 99.5])
    if high <= low:
        high = low + 1
    return float(low), float(high)


def open_xray(path: str | os.PathLike, image_id: str = "image", **meta: str) -> Image:
    """A CXR as an Image in pixel units; ``meta`` (view position, ...) is kept with it."""
    path = Path(path)
    if not path.is_file():
        raise GroundingError(f"{path}: file not found")
    import dask.array as da
    from dask import delayed

    shape, dtype = image_header(path)
    counter = ReadCounter()
    level0 = da.from_delayed(delayed(_decode, pure=True)(str(path), counter), shape, dtype)
    levels = _pyramid(level0)
    # the display range needs the pixels once; the decode is cached for the first display
    limits = display_range(_decode(str(path), counter))
    return Image(id=image_id, data=level0, orientation=Orientation.identity(shape),
                 affine=np.eye(3), kind="xray", contrast_limits=limits, origin=(0.0, 0.0),
                 source=str(path), meta={"bit_depth": str(dtype.itemsize * 8), **meta},
                 reads=counter, pyramid=levels if len(levels) > 1 else [])


@lru_cache(maxsize=8)
def _zeros(height: int, width: int) -> Any:
    """One (immutable) dask array of zeros per size: building one costs more than a CSV row."""
    import dask.array as da

    return da.zeros((height, width), dtype=np.uint8, chunks=(height, width),
                    name=f"blank-{height}x{width}")


def blank_image(shape: tuple[int, int], image_id: str = "image", reason: str = "") -> Image:
    """An empty canvas of a given size, for annotations whose picture is not at hand."""
    return Image(id=image_id, data=_zeros(int(shape[0]), int(shape[1])),
                 orientation=Orientation.identity(shape), affine=np.eye(3), kind="xray",
                 contrast_limits=(0.0, 255.0), origin=(0.0, 0.0), meta={"blank": reason or "no image"})
