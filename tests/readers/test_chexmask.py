"""CheXmask: real rows as cases, quality flags, comparisons, sizes, pairing, broken rows."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from napari_grounding.metrics import case_stats
from napari_grounding.model import ContourAnnotation, GroundingError, MaskAnnotation
from napari_grounding.readers import open_case, open_dataset
from napari_grounding.readers.chexmask import MODEL_SET, CheXmaskDataset
from napari_grounding.readers.rle import rle_decode
from napari_grounding.sample_cxr import DICOM_IDS, write_chexmask_sample
from napari_grounding.scores import item_scores

STRUCTURES = ("right_lung", "left_lung", "heart")


def rewrite(source: Path, target: Path, edit) -> Path:
    """A copy of a CSV with ``edit(header, rows)`` applied."""
    with source.open(newline="") as f:
        header, *rows = list(csv.reader(f))
    header, rows = edit(header, rows)
    with target.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return target


@pytest.mark.parametrize("name", ["MIMIC-CXR-JPG.csv", "ChestX-Ray8.csv"])
def test_every_real_row_opens_cleanly(shared_data, name):
    dataset = open_dataset(shared_data / "chexmask" / name)
    assert dataset.name == "chexmask"
    for case_id in dataset.case_ids():
        case = dataset.open_case(case_id)
        assert case.problems == [], case_id
        assert [i.id for i in case.items] == [f"structure/{s}" for s in STRUCTURES]
        masks = [a for a in case.annotations.values() if isinstance(a, MaskAnnotation)]
        contours = [a for a in case.annotations.values() if isinstance(a, ContourAnnotation)]
        assert len(masks) == 3 and [len(c.points) for c in contours] == [44, 50, 26]
        assert case.images["image"].orientation.source_shape == (1024, 1024)
        assert case.images["image"].meta["blank"]


def test_rca_quality_is_tagged_and_flagged(shared_data):
    path = shared_data / "chexmask" / "MIMIC-CXR-JPG.csv"
    dataset = open_dataset(path)
    flags = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            case = dataset.open_case(row["dicom_id"])
            assert case.tags["rca_dice_mean"] == f"{float(row['Dice RCA (Mean)']):.3f}"
            flags[row["dicom_id"]] = case.tags["quality"].startswith("flagged")
            assert flags[row["dicom_id"]] == (float(row["Dice RCA (Mean)"]) < 0.7)
    assert any(flags.values()) and not all(flags.values())
    lines = list(dataset.summaries())
    assert lines[1] == "fbf3310d-fb72728b-9ff85384-1e950d0f-e27ad88c\tRCA 0.694 LOW"


def test_physician_comparison_gives_dice_per_structure(shared_data):
    folder = shared_data / "chexmask"
    dataset = open_dataset(folder / "MIMIC-CXR-JPG.csv",
                           compare=folder / "MIMIC-CXR-JPG_julia_annotations.csv")
    case_id = "66049acc-ee1e6b29-1298f53b-32d453b3-41377f10"
    case = dataset.open_case(case_id)
    with (folder / "MIMIC-CXR-JPG_julia_annotations.csv").open(newline="") as f:
        theirs = next(r for r in csv.DictReader(f) if r["ImageID"] == case_id)
    scores = item_scores(case, MODEL_SET, "MIMIC-CXR-JPG_julia_annotations")
    for structure, column in zip(STRUCTURES, ("Right Lung", "Left Lung", "Heart"), strict=True):
        item = case.item(f"structure/{structure}")
        assert f"mask/{structure}@compare" in item.annotations
        mine = case.annotations[f"mask/{structure}"].data.astype(bool)
        other = rle_decode(theirs[column], (1024, 1024)).astype(bool)
        expected = 2 * (mine & other).sum() / (mine.sum() + other.sum())
        score = scores[f"structure/{structure}"]
        assert score.dice == pytest.approx(expected)
        assert score.iou == pytest.approx((mine & other).sum() / (mine | other).sum())
        assert not any(k.startswith("dice") for k in item.tags)  # Dice left the reader
    assert case.annotations["mask/heart@compare"].set == "MIMIC-CXR-JPG_julia_annotations"
    assert case.sets() == [MODEL_SET, "MIMIC-CXR-JPG_julia_annotations"]
    assert case.counterpart("mask/heart", case.sets()[1]).id == "mask/heart@compare"


def test_column_order_does_not_matter(tmp_path, shared_data):
    source = shared_data / "chexmask" / "MIMIC-CXR-JPG.csv"

    def reverse(header, rows):
        return header[::-1], [r[::-1] for r in rows]

    shuffled = rewrite(source, tmp_path / "reversed.csv", reverse)
    one = open_dataset(source).open_case(open_dataset(source).case_ids()[0])
    two = open_dataset(shuffled).open_case(open_dataset(source).case_ids()[0])
    for structure in STRUCTURES:
        np.testing.assert_array_equal(one.annotations[f"mask/{structure}"].data,
                                      two.annotations[f"mask/{structure}"].data)


def blank_sizes(header, rows, value=""):
    h, w = header.index("Height"), header.index("Width")
    for row in rows:
        row[h] = row[w] = value
    return header, rows


def test_empty_size_without_image_is_inferred_1024(tmp_path, shared_data):
    path = rewrite(shared_data / "chexmask" / "ChestX-Ray8.csv", tmp_path / "c.csv", blank_sizes)
    case = open_case(path)
    assert case.tags["size_source"].startswith("inferred 1024 x 1024")
    assert case.annotations["mask/heart"].data.shape == (1024, 1024)


def test_empty_size_takes_the_image_size(tmp_path, shared_data):
    path = rewrite(shared_data / "chexmask" / "ChestX-Ray8.csv", tmp_path / "c.csv", blank_sizes)
    first = open_dataset(path).case_ids()[0]
    images = tmp_path / "images" / "images_001" / "images"
    images.mkdir(parents=True)
    PILImage.fromarray(np.zeros((1024, 1024), np.uint8)).save(images / first)
    case = open_case(path, first, images=tmp_path / "images")
    assert case.tags["size_source"] == "image (Height/Width empty)"
    assert case.images["image"].source.endswith(first) and "blank" not in case.images["image"].meta


def test_float_looking_sizes(tmp_path, shared_data):
    path = rewrite(shared_data / "chexmask" / "ChestX-Ray8.csv", tmp_path / "c.csv",
                   lambda h, r: blank_sizes(h, r, "1024.0"))
    case = open_case(path)
    assert case.tags["size_source"] == "CSV Height/Width" and case.problems == []


def test_masks_that_do_not_fit_1024_are_not_guessed(tmp_path, shared_data):
    def grow(header, rows):
        header, rows = blank_sizes(header, rows)
        rows[0][header.index("Heart")] += " 1048570 100"
        return header, rows

    path = rewrite(shared_data / "chexmask" / "ChestX-Ray8.csv", tmp_path / "c.csv", grow)
    case = open_case(path)
    assert case.annotations == {}
    assert any("do not fit 1024 x 1024" in p for p in case.problems)


@pytest.mark.parametrize(("column", "value", "message"), [
    ("Heart", "12 3 4", "column 'Heart': RLE has an odd number of values (3)"),
    ("Left Lung", "1048570 100", "column 'Left Lung': RLE run ends at pixel 1048669, past the end"),
    ("Landmarks", "1,2,3", "column 'Landmarks': landmarks need 240 numbers"),
])
def test_malformed_cells_name_row_and_column(tmp_path, shared_data, column, value, message):
    def spoil(header, rows):
        rows[2][header.index(column)] = value
        return header, rows

    path = rewrite(shared_data / "chexmask" / "ChestX-Ray8.csv", tmp_path / "bad.csv", spoil)
    dataset = open_dataset(path)
    broken_id = dataset.case_ids()[2]
    case = dataset.open_case(broken_id)
    assert any(p.startswith(f"bad.csv: row 3 ({broken_id}), {message}") for p in case.problems)
    # the rest of the row remains: the other masks and the contours, or the masks alone
    assert len(case.annotations) == (3 if column == "Landmarks" else 5)
    assert all(dataset.open_case(i).problems == [] for i in dataset.case_ids()[:2])


def test_missing_column_is_named_and_the_rest_opens(tmp_path, shared_data):
    def drop_heart(header, rows):
        at = header.index("Heart")
        return header[:at] + header[at + 1:], [r[:at] + r[at + 1:] for r in rows]

    path = rewrite(shared_data / "chexmask" / "MIMIC-CXR-JPG.csv", tmp_path / "c.csv", drop_heart)
    case = open_case(path)
    assert "c.csv: no 'Heart' column" in case.problems
    assert "mask/heart" not in case.annotations and "contour/heart" in case.annotations
    assert "mask/left_lung" in case.annotations


def test_unknown_image_and_unreadable_file(tmp_path, shared_data):
    with pytest.raises(GroundingError, match="no image 'nope' among its 49 rows"):
        open_case(shared_data / "chexmask" / "MIMIC-CXR-JPG.csv", "nope")
    bad = tmp_path / "x.csv"
    bad.write_text("dicom_id,Landmarks\n")
    assert CheXmaskDataset.matches(bad)
    (tmp_path / "y.csv").write_text("VolumeName,Findings_EN\n")
    assert not CheXmaskDataset.matches(tmp_path / "y.csv")


def test_gzipped_csv(tmp_path, shared_data):
    source = shared_data / "chexmask" / "ChestX-Ray8.csv"
    path = tmp_path / "ChestX-Ray8.csv.gz"
    path.write_bytes(gzip.compress(source.read_bytes()))
    dataset = open_dataset(path)
    assert dataset.case_ids() == open_dataset(source).case_ids()
    assert open_case(path).problems == []


def test_mimic_layout_pairs_rows_with_images(tmp_path):
    csv_path = write_chexmask_sample(tmp_path)
    case = open_case(csv_path, DICOM_IDS[0], images=tmp_path / "mimic-cxr-jpg")
    image = case.images["image"]
    assert "blank" not in image.meta and image.data.dtype == np.uint8
    assert Path(image.source).parts[-4:-1] == ("p10", "p10000032", "s50414267")
    # the lungs are dark in the picture: inside the right-lung mask darker than the heart
    pixels = np.asarray(image.data)
    lung = pixels[case.annotations["mask/right_lung"].data.astype(bool)].mean()
    heart = pixels[case.annotations["mask/heart"].data.astype(bool)].mean()
    assert lung < heart - 50


def test_missing_image_gives_a_blank_canvas_and_a_note(tmp_path):
    csv_path = write_chexmask_sample(tmp_path)
    (tmp_path / "empty").mkdir()
    case = open_case(csv_path, DICOM_IDS[1], images=tmp_path / "empty")
    assert case.images["image"].meta["blank"] and case.images["image"].data.shape == (1024, 1024)
    assert any(f"image {DICOM_IDS[1]} not found" in p for p in case.problems)
    assert case_stats(case)["mask/heart"].voxels > 0


def test_chexpert_relative_paths(tmp_path, shared_data):
    def as_chexpert(header, rows):
        header[header.index("dicom_id")] = "Path"
        for number, row in enumerate(rows):
            row[0] = f"CheXpert-v1.0/train/patient{number:05d}/study1/view1_frontal.jpg"
        return header, rows

    path = rewrite(shared_data / "chexmask" / "MIMIC-CXR-JPG.csv", tmp_path / "CheXpert.csv",
                   as_chexpert)
    target = tmp_path / "chexpert" / "train" / "patient00001" / "study1" / "view1_frontal.jpg"
    target.parent.mkdir(parents=True)
    PILImage.fromarray(np.full((1024, 1024), 90, np.uint8)).save(target)
    dataset = open_dataset(path, images=tmp_path / "chexpert")
    case = dataset.open_case(dataset.case_ids()[1])
    assert dataset.source == "CheXpert" and case.images["image"].source == str(target)
    assert any("not found" in p for p in dataset.open_case(dataset.case_ids()[0]).problems)


def test_preprocessed_masks_on_an_image_of_another_size(tmp_path):
    csv_path = write_chexmask_sample(tmp_path)
    folder = tmp_path / "other"
    folder.mkdir()
    PILImage.fromarray(np.zeros((2000, 1600), np.uint8)).save(folder / f"{DICOM_IDS[0]}.jpg")
    case = open_case(csv_path, DICOM_IDS[0], images=folder)
    assert case.images["image"].data.shape == (1024, 1024) and case.images["image"].meta["blank"]
    assert any("the image is 2000 x 1600 but the masks 1024 x 1024" in p for p in case.problems)


def test_compare_only_for_chexmask(tmp_path, sample_root, shared_data):
    with pytest.raises(GroundingError, match="--compare works with CheXmask CSVs"):
        open_dataset(sample_root, compare=shared_data / "chexmask" / "ChestX-Ray8.csv")
    shutil.copy(shared_data / "chexmask" / "ChestX-Ray8.csv", tmp_path / "c.csv")
    case = open_case(tmp_path / "c.csv", compare=shared_data / "chexmask" / "ChestX-Ray8.csv")
    scores = item_scores(case)
    assert set(scores) == {f"structure/{s}" for s in STRUCTURES}
    assert all(s.dice == 1.0 and s.iou == 1.0 for s in scores.values())


def test_v101_image_id_header_on_a_real_file(shared_data, tmp_path):
    """v1.0.1's card names the ID column ``Image ID``; the source comes from the file name."""
    real = shared_data / "chexmask" / "MIMIC-CXR-JPG.csv"
    renamed = rewrite(real, tmp_path / "MIMIC-CXR-JPG.csv",
                      lambda header, rows: (["Image ID" if h == "dicom_id" else h for h in header], rows))
    before, after = open_dataset(real), open_dataset(renamed)
    assert after.case_ids() == before.case_ids()
    case = after.open_case(after.case_ids()[0])
    assert case.tags["source"] == "MIMIC-CXR-JPG"
    assert {a.set for a in case.annotations.values()} == {"HybridGNet model output"}
