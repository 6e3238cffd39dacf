"""CheXmask's run-length encoding and landmark strings.

RLE: space-separated ``start length`` pairs; starts are 1-based offsets into the row-major
flattened Height x Width mask. Landmarks: 120 (x, y) points (x = column, y = row): right lung
44, left lung 50, heart 26, written as ``"x,y,x,y,..."``, numpy's ``"[[x y]\\n [x y] ...]"``
or a JSON array; all three are read by pulling out the numbers.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

STRUCTURES = ("right_lung", "left_lung", "heart")
MAX_SIDE = 16384  # pixels a side: larger masks or coordinates are refused, not allocated
LANDMARK_COUNTS = {"right_lung": 44, "left_lung": 50, "heart": 26}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class FormatError(ValueError):
    """A malformed RLE or landmark string (the message says what is wrong)."""


def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """A uint8 mask (1 = foreground) from CheXmask RLE; no per-run Python loop."""
    return runs_to_mask(*rle_runs(rle, shape), shape)


def rle_runs(rle: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The foreground as sorted, non-overlapping runs ``[start, end)`` of flat 0-based pixel
    offsets (empty arrays for an empty cell), checked against the mask's size."""
    text = (rle or "").strip()
    size = int(shape[0]) * int(shape[1])
    if not text:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
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
    return starts, ends


def runs_to_mask(starts: np.ndarray, ends: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The uint8 mask of sorted, non-overlapping runs (from ``rle_runs``)."""
    size = int(shape[0]) * int(shape[1])
    if not starts.size:
        return np.zeros(shape, dtype=np.uint8)
    gaps = starts - np.concatenate([[0], ends[:-1]])
    # gap, run, gap, run, ..., tail: repeat 0 and 1 by those lengths
    lengths_in_order = np.empty(2 * starts.size + 1, dtype=np.int64)
    lengths_in_order[0:-1:2], lengths_in_order[1::2] = gaps, ends - starts
    lengths_in_order[-1] = size - ends[-1]
    values = np.zeros(lengths_in_order.size, dtype=np.uint8)
    values[1::2] = 1
    return np.repeat(values, lengths_in_order).reshape(shape)


def run_moments(starts: np.ndarray, ends: np.ndarray, shape: tuple[int, int]
                ) -> tuple[int, tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    """What the statistics of the mask ``runs_to_mask`` would make need, from the runs
    alone (no pass over the pixels): foreground pixels, the sums of their row and column
    indices, and the (lo, hi) rows and columns they reach; None when empty."""
    if (ends > starts).sum() < starts.size:  # runs of length 0 hold no pixel
        starts, ends = starts[ends > starts], ends[ends > starts]
    if not starts.size:
        return None
    width = int(shape[1])
    lengths = ends - starts
    voxels = int(lengths.sum())

    def rows_before(x: np.ndarray) -> np.ndarray:  # sum of p // width over pixels p < x
        q, r = np.divmod(x, width)
        return width * q * (q - 1) // 2 + q * r

    row_sum = int((rows_before(ends) - rows_before(starts)).sum())
    flat_sum = int(((starts + ends - 1) * lengths // 2).sum())
    first_row, last_row = starts // width, (ends - 1) // width
    if np.any(first_row != last_row):  # a run crossing a row's end reaches both sides
        columns = (0, width - 1)
    else:
        columns = (int((starts % width).min()), int(((ends - 1) % width).max()))
    return (voxels, (row_sum, flat_sum - width * row_sum),
            (int(first_row[0]), int(last_row[-1])), columns)


def _whole_numbers(text: str) -> np.ndarray:
    tokens = text.split()
    with warnings.catch_warnings():  # numpy's C parser, 5x faster; it stops at a bad token
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            fast = np.fromstring(text, dtype=np.int64, sep=" ")
        except ValueError:
            fast = None
    limits = np.iinfo(np.int64)
    if fast is not None and fast.size == len(tokens) and fast.size \
            and limits.min < fast.min() and fast.max() < limits.max:  # the C parser saturates
        return fast
    try:  # a bad token somewhere: found (and refused) by the strict path
        return np.array(tokens, dtype=np.int64)
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
    expected = 2 * sum(LANDMARK_COUNTS.values())
    with warnings.catch_warnings():  # "x,y,x,y,...": numpy's C parser, else the regex below
        warnings.simplefilter("error", DeprecationWarning)
        try:
            fast = np.fromstring(text or "", dtype=float, sep=",")
        except (ValueError, DeprecationWarning):
            fast = None
    if fast is not None and fast.size == expected and np.all(np.isfinite(fast)) \
            and np.abs(fast).max() <= MAX_SIDE:
        return fast.reshape(-1, 2)
    numbers = _NUMBER.findall(text or "")
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
