"""CheXmask RLE and landmarks on every real row, and a round-trip property."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.draw import polygon2mask

from napari_grounding.metrics import mask_stats, run_stats
from napari_grounding.readers.rle import (
    FormatError,
    parse_landmarks,
    rle_decode,
    rle_encode,
    rle_runs,
    run_moments,
    split_landmarks,
)

COLUMNS = {"right_lung": "Right Lung", "left_lung": "Left Lung", "heart": "Heart"}
REAL_FILES = ("MIMIC-CXR-JPG.csv", "ChestX-Ray8.csv", "MIMIC-CXR-JPG_julia_annotations.csv")


def real_rows(shared_data):
    for name in REAL_FILES:
        table = pd.read_csv(shared_data / "chexmask" / name, dtype=str, keep_default_na=False)
        for number, row in enumerate(table.to_dict("records"), start=1):
            yield f"{name} row {number}", row


def test_every_real_mask_matches_its_landmark_polygon(shared_data):
    checked = 0
    for where, row in real_rows(shared_data):
        # model output masks are their filled polygons; the physician edited masks and
        # landmarks separately, so their boxes may differ by a few pixels
        tolerance = 8 if "julia" in where else 1
        shape = (int(float(row.get("Height") or 1024)), int(float(row.get("Width") or 1024)))
        contours = split_landmarks(parse_landmarks(row["Landmarks"]))
        for structure, column in COLUMNS.items():
            mask = rle_decode(row[column], shape).astype(bool)
            polygon = polygon2mask(shape, contours[structure])
            dice = 2 * (mask & polygon).sum() / (mask.sum() + polygon.sum())
            assert dice > 0.95, (where, structure, dice)
            rows, cols = np.nonzero(mask)
            prow, pcol = np.nonzero(polygon)
            box = np.array([rows.min(), rows.max(), cols.min(), cols.max()])
            polygon_box = np.array([prow.min(), prow.max(), pcol.min(), pcol.max()])
            assert np.abs(box - polygon_box).max() <= tolerance, (where, structure)
            checked += 1
    assert checked == 3 * (49 + 50 + 49)


def test_real_rle_strings_round_trip_exactly(shared_data):
    for where, row in real_rows(shared_data):
        for column in COLUMNS.values():
            assert rle_encode(rle_decode(row[column], (1024, 1024))) == row[column].strip(), where


def test_right_lung_is_on_the_image_left(shared_data):
    for where, row in real_rows(shared_data):
        right = np.nonzero(rle_decode(row["Right Lung"], (1024, 1024)))[1].mean()
        left = np.nonzero(rle_decode(row["Left Lung"], (1024, 1024)))[1].mean()
        assert right < left, where


@settings(max_examples=200, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40)),
              elements=st.integers(0, 1)))
def test_rle_round_trip_property(mask):
    assert np.array_equal(rle_decode(rle_encode(mask), mask.shape), mask)


def test_decoding_is_one_based_and_row_major():
    mask = rle_decode("1 2 6 1", (2, 3))
    np.testing.assert_array_equal(mask, [[1, 1, 0], [0, 0, 1]])


@pytest.mark.parametrize(("rle", "message"), [
    ("1 2 3", "odd number of values (3)"),
    ("5 3", "run ends at pixel 7, past the end of the 2 x 3 mask (6 pixels)"),
    ("0 2", "start below 1"),
    ("1 x", "not a whole number"),
    ("1 99999999999999999999999", "below 2\\*\\*63"),  # numpy's C parser saturates: refused
    ("1 -99999999999999999999999", "below 2\\*\\*63"),
])
def test_malformed_rle(rle, message):
    with pytest.raises(FormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rle_decode(rle, (2, 3))


def test_three_landmark_serialisations_agree():
    points = np.arange(240, dtype=float).reshape(120, 2) * 1.5
    flat = ",".join(f"{v:g}" for v in points.ravel())
    numpy_style = np.array2string(points, threshold=10_000)
    as_json = json.dumps(points.tolist())
    for text in (flat, numpy_style, as_json):
        np.testing.assert_array_equal(parse_landmarks(text), points)
    contours = split_landmarks(points)
    assert [len(c) for c in contours.values()] == [44, 50, 26]
    np.testing.assert_array_equal(contours["heart"][0], points[94, ::-1])  # (row, column)


@pytest.mark.parametrize("text", ["", "1,2,3", "[[1 2]\n [3", "abc"])
def test_bad_landmarks(text):
    with pytest.raises(FormatError, match="landmarks need 240 numbers"):
        parse_landmarks(text)


def test_unsorted_and_overlapping_runs_still_decode():
    np.testing.assert_array_equal(rle_decode("5 2 1 3", (2, 3)), [[1, 1, 1], [0, 1, 1]])
    np.testing.assert_array_equal(rle_decode("1 4 2 2", (2, 3)), [[1, 1, 1], [1, 0, 0]])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.data())
def test_stats_from_runs_equal_stats_from_pixels(height, width, data):
    """qc of a CheXmask CSV takes mask statistics from the runs (no decoding): they must be
    the ones a pass over the decoded pixels gives, for unsorted and overlapping runs too."""
    size = height * width
    runs = data.draw(st.lists(st.tuples(st.integers(1, size), st.integers(0, size)), max_size=8))
    runs = [(start, min(length, size - start + 1)) for start, length in runs]
    text = " ".join(f"{start} {length}" for start, length in runs)
    shape = (height, width)
    assert run_stats(shape, run_moments(*rle_runs(text, shape), shape)) == \
        mask_stats(rle_decode(text, shape))


def test_real_mask_stats_from_runs(shared_data):
    for where, row in list(real_rows(shared_data))[:20]:
        for column in COLUMNS.values():
            shape = (1024, 1024)
            assert run_stats(shape, run_moments(*rle_runs(row[column], shape), shape)) == \
                mask_stats(rle_decode(row[column], shape)), where
