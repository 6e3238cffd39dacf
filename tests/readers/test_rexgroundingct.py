"""ReXGroundingCT: dataset.json records, finding items and their masks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from napari_grounding.metrics import case_stats
from napari_grounding.model import GroundingError
from napari_grounding.readers import open_case, open_dataset
from napari_grounding.readers.rexgroundingct import CATEGORY_NAMES, finding_items, load_records
from napari_grounding.sample import CASE, FINDINGS
from tests.conftest import ct_path, mask_file, save_nifti


@pytest.fixture(scope="module")
def real_records(shared_data):
    return load_records(shared_data / "rexgroundingct" / "dataset.json")


def test_real_dataset_json_counts(real_records):
    splits = [r.split for r in real_records.values()]
    assert len(real_records) == 3142
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (2992, 50, 100)


def test_real_records_are_consistent(real_records):
    for record in real_records.values():
        assert 1 <= len(record.findings) <= 13
        assert len(record.categories) == len(record.findings)
        assert not record.name.endswith(".gz")
        if record.split == "test":
            assert record.entity_counts is None and record.pixels is None
        else:
            assert len(record.pixels) == len(record.findings)
            assert all(n > 0 for n in record.entity_counts)
    codes = {c for r in real_records.values() for c in r.categories}
    assert codes <= set(CATEGORY_NAMES), codes - set(CATEGORY_NAMES)
    assert any(r.name.startswith("valid_") for r in real_records.values() if r.split == "train")


def test_real_training_findings_count_more_entities_than_masked(real_records):
    """Training masks hold up to 3 representative entities; entity_counts may say more."""
    above = [n for r in real_records.values() if r.split == "train" for n in r.entity_counts if n > 3]
    assert len(above) == 209


def test_real_first_record_in_key_order(real_records):
    record = real_records["train_1935_a_1"]
    assert record.findings[0].startswith("Segmental and subsegmental peribronchial thickening")
    assert record.findings[4].startswith("Several subcentimeter")
    assert record.pixels[:2] == (101934, 315619)
    assert record.shape == (512, 512, 264)


def test_finding_items_are_tagged_and_linked(real_records):
    items = finding_items(real_records["train_1741_b_2"])
    assert [i.id for i in items] == ["finding/0"]
    assert items[0].tags == {"category": "2b", "category_name": "atelectasis / consolidation",
                             "extent": "focal", "entities": "1", "voxels": "15571",
                             "entities_max_masked": "3"}
    assert items[0].annotations == ["mask/0"]


def test_real_test_split_record_opens_text_only(tmp_path, shared_data, real_records):
    shutil.copy(shared_data / "rexgroundingct" / "dataset.json", tmp_path / "dataset.json")
    name = next(n for n, r in real_records.items() if r.split == "test")
    case = open_case(tmp_path, name)
    assert case.images == {} and case.annotations == {}
    assert [i.text for i in case.items] == list(real_records[name].findings)
    assert all(i.annotations == [] for i in case.items)
    assert case.tags["masks"] == "withheld (test split)"
    assert any("not found" in p and name in p for p in case.problems)


def test_sample_case_findings_and_masks(sample_root, phantom):
    case = open_case(sample_root)
    assert (case.dataset, case.key) == ("rexgroundingct", f"ct-rate/{CASE}")  # one key space
    findings = [i for i in case.items if i.id.startswith("finding/")]
    assert [(i.text, i.tags["category"]) for i in findings] == list(FINDINGS)
    assert findings[2].tags["extent"] == "non-focal"
    stats = case_stats(case)
    for index, mask in enumerate(phantom.masks):
        assert stats[f"mask/{index}"].voxels == np.count_nonzero(mask)
    assert stats["mask/2"].labels == (1, 2)
    assert case.problems == []


def test_missing_ct_keeps_text_and_mask_numbers(sample_copy, phantom):
    ct_path(sample_copy).unlink()
    case = open_case(sample_copy)
    assert case.images == {}
    assert any(f"CT {CASE}.nii.gz not found" in p for p in case.problems)
    assert case_stats(case)["mask/0"].voxels == np.count_nonzero(phantom.masks[0])


def test_mask_of_wrong_shape_is_reported_not_drawn(sample_copy, phantom):
    save_nifti(mask_file(sample_copy), phantom.masks[:, :, :, :50], np.eye(4))
    case = open_case(sample_copy)
    assert case.annotations == {}
    assert all(i.annotations == [] for i in case.items)
    assert any("mask shape (128, 128, 50) does not match the CT's (128, 128, 60)" in p
               for p in case.problems)


def test_fewer_mask_channels_than_findings(sample_copy, phantom):
    save_nifti(mask_file(sample_copy), phantom.masks[:2], np.eye(4))
    case = open_case(sample_copy)
    assert sorted(case.annotations) == ["mask/0", "mask/1"]
    assert case.item("finding/2").annotations == []
    assert any("2 mask channels for 3 findings" in p for p in case.problems)


def test_float_mask_is_narrowed_not_widened(sample_copy, phantom):
    save_nifti(mask_file(sample_copy), phantom.masks.astype(np.float32), np.eye(4))
    case = open_case(sample_copy)
    data = case.annotations["mask/2"].data
    assert data.dtype == np.uint16
    np.testing.assert_array_equal(data.compute(), phantom.masks[2])


def test_truncated_mask_is_a_problem_not_a_crash(sample_copy):
    path = mask_file(sample_copy)
    path.write_bytes(path.read_bytes()[:300])
    case = open_case(sample_copy)
    assert "ct" in case.images and case.annotations == {}
    assert any("segmentations" in p and "findings shown without masks" in p for p in case.problems)


def test_mask_file_missing(sample_copy):
    mask_file(sample_copy).unlink()
    case = open_case(sample_copy)
    assert case.annotations == {} and "ct" in case.images
    assert any("mask file not found" in p for p in case.problems)


@pytest.mark.parametrize(("content", "message"), [
    ('{"train": [', r"not valid JSON \(line 1, column 12"),
    ("[1, 2]", "expected an object with 'train', 'val' and 'test' lists"),
    ('{"train": [{"findings": {"0": "x"}}]}', r"train\[0\]: record has no 'name'"),
    ('{"train": [{"name": "a.nii.gz", "findings": {"x": "y"}}]}', "not a finding index"),
    ('{"val": [{"name": "a.nii.gz", "findings": {"0": "y"}, "pixels": {"0": "many"}}]}',
     r"val\[0\] \(a.nii.gz\): 'pixels' does not give an integer per finding"),
])
def test_malformed_dataset_json(tmp_path, content, message):
    (tmp_path / "dataset.json").write_text(content)
    with pytest.raises(GroundingError, match=message):
        open_dataset(tmp_path)


def test_unknown_case_names_the_way_out(sample_root):
    with pytest.raises(GroundingError, match=r"no case 'train_9_z_9'.*napari-grounding cases"):
        open_case(sample_root, "train_9_z_9")


def test_case_names_accept_file_names(sample_root):
    assert open_case(sample_root, f"{CASE}.nii.gz").id == CASE


def test_real_and_sample_json_share_a_shape(sample_root):
    raw = json.loads((sample_root / "dataset.json").read_text())
    assert set(raw["train"][0]) == {"name", "findings", "categories", "entity_counts", "pixels",
                                    "shape", "protocol"}


def _resplit(root, split, name="MICCAI_challenge_dataset.json", entity_counts=None):
    """The sample's records file renamed, its record moved to ``split``."""
    records = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").unlink()
    record = records["train"][0]
    if entity_counts is not None:
        record["entity_counts"] = {str(i): n for i, n in enumerate(entity_counts)}
    (root / name).write_text(json.dumps({split: [record]}))
    return root / name


@pytest.mark.parametrize("name", ["MICCAI_challenge_dataset.json", "my_scans.json"])
def test_challenge_file_and_any_same_schema_json_open(sample_copy, name):
    from napari_grounding._reader import napari_get_reader

    path = _resplit(sample_copy, "val", name)
    case = open_case(path)
    assert case.key == f"ct-rate/{CASE}" and case.dataset == "rexgroundingct"
    assert case.tags["split"] == "val"
    assert sorted(case.annotations) == ["mask/0", "mask/1", "mask/2"]
    assert "masks" not in case.tags  # validation masks are exhaustive
    if name.startswith("MICCAI"):
        assert open_dataset(sample_copy).case_ids() == [CASE]  # the root finds it too
        assert napari_get_reader(str(path)) is not None


def test_reports_dataset_adds_the_full_report(sample_copy):
    shutil.rmtree(sample_copy / "dataset" / "radiology_text_reports")
    (sample_copy / "reports_dataset.json").write_text(json.dumps({"train": [
        {"name": f"{CASE}.nii.gz", "findings": "A nodule in the right upper lobe. Small effusion.",
         "impressions": "Nodule."}]}))
    case = open_case(sample_copy)
    findings = case.item("report/findings")
    assert [c.text for c in findings.children] == ["A nodule in the right upper lobe.",
                                                   "Small effusion."]
    assert case.item("report/impressions").text == "Nodule."
    assert open_case(sample_copy / "reports_dataset.json").key == case.key


def test_training_masks_are_representative_and_qc_accepts_more_entities(sample_copy):
    from napari_grounding.qc import qc_case

    counts = [len(np.unique(m)) - 1 for m in (
        np.asarray(open_case(sample_copy).annotations[f"mask/{i}"].data) for i in range(3))]
    too_many = [5, *counts[1:]]  # the report describes five, the mask shows a few of them
    records = json.loads((sample_copy / "dataset.json").read_text())
    records["train"][0]["entity_counts"] = {str(i): n for i, n in enumerate(too_many)}
    (sample_copy / "dataset.json").write_text(json.dumps(records))
    case = open_case(sample_copy)
    assert case.tags["masks"] == "up to 3 representative entities per finding (training split)"
    assert case.item("finding/0").tags["entities_max_masked"] == "3"
    assert [r for r in qc_case(case) if r["check"] == "entity_count"] == []
    _resplit(sample_copy, "val", entity_counts=too_many)  # exhaustive there: a defect
    rows = [r for r in qc_case(open_case(sample_copy)) if r["check"] == "entity_count"]
    assert [r["item"] for r in rows] == ["finding/0"]
