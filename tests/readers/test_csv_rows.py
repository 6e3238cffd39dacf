"""Row lookup in large CSVs goes through a persistent index and reads one row."""

from __future__ import annotations

import gzip
import os
import shutil

import pytest

from napari_grounding.readers.csv_rows import CsvRows
from napari_grounding.readers.rle import parse_landmarks

ID = ("dicom_id",)


@pytest.fixture(scope="module")
def large_csv(tmp_path_factory, shared_data):
    """A CheXmask-form CSV of at least 200 MB: real rows under new IDs."""
    lines = (shared_data / "chexmask" / "MIMIC-CXR-JPG.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    path = tmp_path_factory.mktemp("large") / "MIMIC-CXR-JPG.csv"
    with path.open("w") as f:
        f.write(header + "\n")
        count = 0
        while f.tell() < 200 * 2**20:
            row = rows[count % len(rows)]
            f.write(f"img{count:07d}{row[row.index(','):]}\n")
            count += 1
    return path, count, rows


def test_lookup_in_a_200_mb_csv_reads_one_row(large_csv):
    path, count, rows = large_csv
    assert path.stat().st_size >= 200 * 2**20
    CsvRows(path, ID)  # builds the index once
    assert (path.parent / f"{path.name}.rows.npy").is_file()
    table = CsvRows(path, ID)  # a new session: loads the index, parses nothing
    assert table.indexed and table.stats.rows_parsed == 0
    number, row = table.row("img0007777")
    expected_line = f"img0007777{rows[7777 % len(rows)][rows[7777 % len(rows)].index(','):]}"
    assert number == 7778
    assert row["dicom_id"] == "img0007777"
    assert table.stats.rows_parsed == 1
    assert table.stats.bytes_read == len(expected_line)
    assert table.stats.bytes_read < path.stat().st_size / 5000
    assert parse_landmarks(row["Landmarks"]).shape == (120, 2)
    assert table.row("img9999999") is None
    assert len(table) == count


def test_index_is_rebuilt_when_the_csv_changes(tmp_path, shared_data):
    path = tmp_path / "rows.csv"
    shutil.copy(shared_data / "chexmask" / "MIMIC-CXR-JPG.csv", path)
    first = CsvRows(path, ID, threshold=1)
    some_id = first.ids()[3]
    assert first.row(some_id)[0] == 4
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0], text[4], *text[1:4], *text[5:]]) + "\n")
    again = CsvRows(path, ID, threshold=1)
    assert again.row(some_id)[0] == 1  # moved to the first data row: the index followed
    assert again.ids()[0] == some_id


def test_gzipped_csv_is_indexed_with_seek_points(tmp_path, shared_data):
    source = shared_data / "chexmask" / "ChestX-Ray8.csv"
    path = tmp_path / "ChestX-Ray8.csv.gz"
    path.write_bytes(gzip.compress(source.read_bytes()))
    table = CsvRows(path, ("Image Index",), threshold=1)
    assert (tmp_path / "ChestX-Ray8.csv.gz.gzidx").is_file()
    plain = CsvRows(source, ("Image Index",))
    for row_id in plain.ids()[::7]:
        assert table.row(row_id) == plain.row(row_id)


def test_quoted_newlines_stay_in_their_row(tmp_path):
    """Original-resolution files may hold numpy-style landmarks with newlines inside quotes."""
    path = tmp_path / "multi.csv"
    path.write_text('dicom_id,Landmarks,Heart\n'
                    'a,"[[1 2]\n [3 4]]",1 2\n'
                    '\n'
                    'b,"[[5 6]\n [7 8]]","3 4"\n')
    table = CsvRows(path, ID, threshold=1)
    assert table.ids() == ["a", "b"]
    assert table.row("b") == (2, {"dicom_id": "b", "Landmarks": "[[5 6]\n [7 8]]", "Heart": "3 4"})


def test_index_can_live_in_another_folder(tmp_path, shared_data):
    path = tmp_path / "data" / "rows.csv"
    path.parent.mkdir()
    shutil.copy(shared_data / "chexmask" / "MIMIC-CXR-JPG.csv", path)
    CsvRows(path, ID, index_dir=tmp_path / "cache", threshold=1)
    assert os.listdir(path.parent) == ["rows.csv"]
    assert (tmp_path / "cache" / "rows.csv.rows.npy").is_file()


def test_small_files_need_no_index(tmp_path, shared_data):
    table = CsvRows(shared_data / "chexmask" / "MIMIC-CXR-JPG.csv", ID)
    assert not table.indexed and len(table) == 49
    assert not list((shared_data / "chexmask").glob("*.rows.npy"))
