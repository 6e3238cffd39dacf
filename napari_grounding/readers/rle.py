"""CheXmask's run-length encoding and landmark strings.

RLE: space-separated ``start length`` pairs; starts are 1-based offsets into the row-major
flattened Height x Width mask. Landmarks: 120 (x, y) points (x = column, y = row): right lung
44, left lung 50, heart 26, written as ``"x,y,x,y,..."``, numpy's ``"[[x y]\\n [x y] ...]"``
or a JSON array; all three are read by pulling out the numbers.
"""

from __future__ import annotations

import re

import numpy as np

STRUCTURES = ("right_lung", "left_lung", "heart")
MAX_SIDE = 16384  # pixels a side: larger masks or coordinates are refused, not allocated
LANDMARK_COUNTS = {"right_lung": 44, "left_lung": 50, "heart": 26}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class FormatError(ValueError):
    """A malformed RLE or landmark string (the message says what is wrong)."""


def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """A uint8 mask (1 = foreground) from CheXmask RLE; no per-run Python loop."""
    text = (rle or "").strip()
    size = int(shape[0]) * int(shape[1])
    if not text:
        return np.zeros(shape, dtype=np.uint8)
    values = _whole_numbers(text)
    if values.size % 2:
        raise FormatError(f"RLE has an odd number of values ({values.size})")
    starts, lengths = values[0::2] - 1, values[1::2]
    if starts.min() < 0 or lengths.min() < 0:
        raise FormatError("RLE has a start below 1 or a negative length")
    ends = starts + lengths
    if ends.max() > size:
        raise FormatError(f"RLE run ends at pixel {int(ends.max())}, past the end of the "
                          f"{shape[0]} x {shape[1]} mask ({size} pixels)")
    gaps = starts - np.concatenate([[0], ends[:-1]])
    if gaps.min() < 0:  # unsorted or overlapping runs: merge them first (no per-pixel arrays)
        starts, ends = _merged(starts, ends)
        lengths = ends - starts
        gaps = starts - np.concatenate([[0], ends[:-1]])
    # gap, run, gap, run, ..., tail: repeat 0 and 1 by those lengths
    lengths_in_order = np.empty(2 * starts.size + 1, dtype=np.int64)
    lengths_in_order[0:-1:2], lengths_in_order[1::2] = gaps, lengths
    lengths_in_order[-1] = size - ends[-1]
    values = np.zeros(lengths_in_order.size, dtype=np.uint8)
    values[1::2] = 1
    return np.repeat(values, lengths_in_order).reshape(shape)


def _whole_numbers(text: str) -> np.ndarray:
    try:
        return np.array(text.split(), dtype=np.int64)
    except (ValueError, OverflowError):
        raise FormatError("RLE holds something that is not a whole number below 2**63") from None


def _merged(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, non-overlapping runs covering the same pixels."""
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    first = np.ones(starts.size, dtype=bool)
    first[1:] = starts[1:] > reach[:-1]
    at = np.flatnonzero(first)
    return starts[at], np.maximum.reduceat(ends, at)


def rle_encode(mask: np.ndarray) -> str:
    """CheXmask RLE of a 2D mask (nonzero = foreground)."""
    flat = np.concatenate([[False], np.asarray(mask).ravel() != 0, [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])
    starts, ends = edges[0::2], edges[1::2]
    pairs = np.stack([starts + 1, ends - starts], axis=1).ravel()
    return " ".join(str(int(v)) for v in pairs)


def rle_extent(rle: str) -> int:
    """The last pixel (1-based) a run reaches: how large a mask must be to hold it."""
    values = _whole_numbers(rle or "")
    if values.size < 2:
        return 0
    return int((values[0::2] + values[1::2] - 1).max())


def parse_landmarks(text: str) -> np.ndarray:
    """The 120 landmarks as a (120, 2) float array of (x, y) = (column, row)."""
    numbers = _NUMBER.findall(text or "")
    expected = 2 * sum(LANDMARK_COUNTS.values())
    if len(numbers) != expected:
        raise FormatError(f"landmarks need {expected} numbers (120 x, y points), found "
                          f"{len(numbers)}")
    points = np.array(numbers, dtype=float).reshape(-1, 2)
    if not np.all(np.isfinite(points)) or np.abs(points).max() > MAX_SIDE:
        raise FormatError(f"landmark coordinates beyond {MAX_SIDE} px")
    return points


def split_landmarks(points_xy: np.ndarray) -> dict[str, np.ndarray]:
    """Per structure, its closed contour as (row, column) vertices."""
    contours, start = {}, 0
    for structure in STRUCTURES:
        count = LANDMARK_COUNTS[structure]
        contours[structure] = points_xy[start : start + count, ::-1].copy()
        start += count
    return contours
