"""CT-RATE: volume layouts, reports, labels, metadata and raw (old-tree) volumes."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from napari_grounding.readers import open_case, open_dataset
from napari_grounding.readers.ctrate import find_volume
from napari_grounding.readers.report import split_sentences
from napari_grounding.sample import CASE, ctrate_volume_path, write_ctrate_tables
from tests.conftest import ct_path, save_nifti


@pytest.fixture
def ctrate_only(tmp_path, sample_root):
    """A CT-RATE root: the sample's dataset/ tree without ReXGroundingCT's files."""
    shutil.copytree(sample_root / "dataset", tmp_path / "dataset")
    return tmp_path


def test_report_sections_and_sentences(sample_root):
    case = open_case(sample_root)
    sections = [i for i in case.items if i.id.startswith("report/")]
    assert [s.title for s in sections] == ["Clinical information", "Technique", "Findings",
                                          "Impressions"]
    findings = case.item("report/findings")
    assert [c.id for c in findings.children][:2] == ["report/findings/0", "report/findings/1"]
    assert findings.children[1].text.startswith("A solid nodule measuring 16 mm")
    assert len(findings.children) == 5


def test_labels_and_metadata_tags(sample_root):
    tags = open_case(sample_root).tags
    positives = sorted(k[6:] for k, v in tags.items() if k.startswith("label:") and v == "1")
    assert positives == ["Emphysema", "Lung nodule", "Pleural effusion"]
    assert sum(k.startswith("label:") for k in tags) == 18
    assert tags["scanner"] == "PHANTOM" and tags["slices"] == "60"
    assert tags["xy_spacing_mm"] == "[2.5, 2.5]"


def test_not_given_sections_are_absent(ctrate_only):
    path = ctrate_only / "dataset" / "radiology_text_reports" / "train_reports.csv"
    rows = list(csv.reader(path.open()))
    rows[1][1] = "Not given."
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    case = open_case(ctrate_only, CASE)
    assert "report/clinical_information" not in [i.id for i in case.items]


def test_ctrate_root_alone_lists_and_opens_volumes(ctrate_only):
    dataset = open_dataset(ctrate_only)
    assert dataset.name == "ct-rate"
    assert dataset.case_ids() == [CASE]
    case = dataset.open_case(CASE)
    assert case.key == f"ct-rate/{CASE}"
    assert "ct" in case.images and case.annotations == {}
    assert case.images["ct"].meta["hu"].startswith("already HU")


def test_rexgroundingct_masks_with_ctrate_images_elsewhere(tmp_path, sample_root, phantom):
    """ReXGroundingCT root without CTs; --images names the CT-RATE folder: both show."""
    rex = tmp_path / "rex"
    rex.mkdir()
    shutil.copy(sample_root / "dataset.json", rex)
    shutil.copytree(sample_root / "segmentations", rex / "segmentations")
    shutil.copytree(sample_root / "dataset", tmp_path / "ctrate" / "dataset")
    case = open_case(rex, CASE, images=tmp_path / "ctrate")
    assert case.dataset == "rexgroundingct"
    assert "ct" in case.images and sorted(case.annotations) == ["mask/0", "mask/1", "mask/2"]
    assert case.item("report/findings").children
    assert case.tags["label:Lung nodule"] == "1"


def test_old_tree_volume_gets_hu_and_spacing_from_metadata(tmp_path, phantom):
    raw = (phantom.hu.astype(np.int32) + 1024).astype(np.int16)
    path = ctrate_volume_path(tmp_path, CASE, fixed=False)
    save_nifti(path, raw, np.diag([-1.0, -1.0, 1.0, 1.0]))  # old headers: no spacing, raw values
    write_ctrate_tables(tmp_path, CASE, phantom.hu.shape, (0.75, 0.75, 1.5), intercept=-1024)
    case = open_case(tmp_path, CASE)
    ct = case.images["ct"]
    assert ct.meta["hu"] == "CT-RATE metadata CSV"
    assert ct.source_spacing == pytest.approx((0.75, 0.75, 1.5))
    assert ct.data.dtype == np.int16
    np.testing.assert_array_equal(ct.data[30].compute(), ct.orientation.to_display(phantom.hu)[30])


def test_old_tree_without_metadata_is_flagged(tmp_path, phantom):
    path = ctrate_volume_path(tmp_path, CASE, fixed=False)
    save_nifti(path, phantom.hu, phantom.affine)
    case = open_case(path)
    assert any("not a *_fixed volume and no metadata row" in p for p in case.problems)


def test_find_volume_layouts(tmp_path, sample_root):
    assert find_volume(CASE, [sample_root]) == ct_path(sample_root)
    flat = tmp_path / f"{CASE}.nii.gz"
    shutil.copy(ct_path(sample_root), flat)
    assert find_volume(CASE, [tmp_path]) == flat
    assert find_volume("valid_53_a_1", [tmp_path, sample_root]) is None


def test_single_file_in_tree_opens_its_dataset_case(sample_root):
    case = open_case(ct_path(sample_root))
    assert case.dataset == "rexgroundingct" and len(case.annotations) == 3
    mask_case = open_case(sample_root / "segmentations" / f"{CASE}.nii.gz")
    assert mask_case.key == case.key and "ct" in mask_case.images


def test_plain_nifti_outside_any_dataset(tmp_path, phantom):
    path = save_nifti(tmp_path / "scan.nii.gz", phantom.hu, phantom.affine)
    case = open_case(path)
    assert case.key == "nifti/scan" and list(case.images) == ["ct"] and case.items == []


def test_sentence_split():
    assert split_sentences("Heart normal. No effusion.  Lungs 3.5 mm nodule.") == [
        "Heart normal.", "No effusion.", "Lungs 3.5 mm nodule."]


def _with_orientation(root, value):
    """Add CT-RATE's ImageOrientationPatient column to the metadata CSV under ``root``."""
    path = root / "dataset" / "metadata" / "train_metadata.csv"
    rows = list(csv.reader(path.open()))
    rows[0].append("ImageOrientationPatient")
    rows[1].append(value)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


@pytest.mark.parametrize("orientation", ["[1, 0, 0, 0, 1, 0]", "['-1', '0', '0', '0', '-1', '0']"])
def test_old_volume_shows_the_same_side_as_its_fixed_copy(tmp_path, orientation):
    """The old tree's header has no orientation (identity affine): the metadata's
    ImageOrientationPatient says how the array lies, as the fixed copy's header does."""
    hu = np.full((40, 36, 12), -1000, dtype=np.int16)
    hu[4:9, 10:14, 5:7] = 700  # a marker near the start of array axis 0
    cosines = np.array([float(v) for v in orientation.strip("[]").replace("'", "").split(",")])
    lps_axes = np.column_stack([cosines[:3], cosines[3:], np.cross(cosines[:3], cosines[3:])])
    fixed_affine = np.eye(4)
    fixed_affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ lps_axes @ np.diag([0.75, 0.75, 1.5])
    fixed_root, old_root = tmp_path / "fixed", tmp_path / "old"
    save_nifti(ctrate_volume_path(fixed_root, CASE), hu, fixed_affine)
    save_nifti(ctrate_volume_path(old_root, CASE, fixed=False), (hu + 1024).astype(np.int16),
               np.eye(4))
    for root in (fixed_root, old_root):
        write_ctrate_tables(root, CASE, hu.shape, (0.75, 0.75, 1.5), intercept=-1024)
        _with_orientation(root, orientation)
    fixed, old = (open_case(r, CASE).images["ct"] for r in (fixed_root, old_root))
    assert old.meta["orientation"] == fixed.meta["orientation"]
    assert old.meta["orientation_from"] == "CT-RATE metadata ImageOrientationPatient"
    np.testing.assert_array_equal(old.data.compute(), fixed.data.compute())
    marker = np.argwhere(fixed.data.compute() == 700).mean(axis=0)
    side = "left" if marker[2] < fixed.data.shape[2] / 2 else "right"
    assert side == ("left" if cosines[0] > 0 else "right")  # patient right on screen left


def test_old_volume_without_orientation_in_metadata_says_so(tmp_path, phantom):
    raw = (phantom.hu.astype(np.int32) + 1024).astype(np.int16)
    save_nifti(ctrate_volume_path(tmp_path, CASE, fixed=False), raw, np.eye(4))
    write_ctrate_tables(tmp_path, CASE, phantom.hu.shape, (0.75, 0.75, 1.5), intercept=-1024)
    case = open_case(tmp_path, CASE)
    assert "orientation_from" not in case.images["ct"].meta
    assert any("no ImageOrientationPatient" in p and "left and right may swap" in p
               for p in case.problems)


def test_weak_label_note_and_kernel_tags(tmp_path, phantom):
    save_nifti(ctrate_volume_path(tmp_path, CASE), phantom.hu, phantom.affine)
    write_ctrate_tables(tmp_path, CASE, phantom.hu.shape, (0.75, 0.75, 1.5))
    path = tmp_path / "dataset" / "metadata" / "train_metadata.csv"
    rows = list(csv.reader(path.open()))
    rows[0] += ["ConvolutionKernel", "SeriesDescription"]
    rows[1] += ["B70f", "Thorax 1.0 B70f"]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    tags = open_case(tmp_path, CASE).tags
    assert tags["kernel"] == "B70f" and tags["series_description"] == "Thorax 1.0 B70f"
    assert tags["labels"] == "predicted from the report text (weak labels)"
