"""ReXGradient-160K: studies of several views with four-section reports."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from napari_grounding.model import GroundingError
from napari_grounding.readers import open_case, open_dataset
from napari_grounding.readers.report import present
from napari_grounding.sample_cxr import REXGRADIENT_STUDY, write_rexgradient_sample


@pytest.fixture
def study_root(tmp_path):
    return write_rexgradient_sample(tmp_path / "rexgradient")


def metadata_file(root):
    return root / "metadata" / "train_metadata_view_position.json"


def test_a_study_with_two_views(study_root):
    case = open_case(study_root)
    assert case.key == f"rexgradient/{REXGRADIENT_STUDY}"
    views = list(case.images.values())
    assert [v.id for v in views] == ["view/0", "view/1"]
    assert [v.meta["view"] for v in views] == ["PA", "LATERAL"]
    assert [v.label for v in views] == ["PA", "LATERAL"]
    assert views[0].data.shape == (1024, 1024) and views[1].data.shape == (1024, 880)
    assert views[0].data.dtype == "uint16" and views[0].meta["bit_depth"] == "16"
    assert case.tags["age"] == "064Y" and case.tags["split"] == "train"


def test_report_sections_skip_absent_ones(study_root):
    case = open_case(study_root)
    assert [i.title for i in case.items] == ["Indication", "Findings", "Impression"]  # "None"
    assert [c.text for c in case.item("report/findings").children] == [
        "The lungs are clear.", "The cardiomediastinal silhouette is normal.",
        "No pleural effusion or pneumothorax."]


@pytest.mark.parametrize("value", [None, float("nan"), "None", "  ", "nan"])
def test_absent_values(value):
    assert present(value) is None
    assert present("Clear lungs.") == "Clear lungs."


def test_nan_in_json_is_absent(study_root):
    text = metadata_file(study_root).read_text().replace('"Shortness of breath."', "NaN")
    metadata_file(study_root).write_text(text)
    case = open_case(study_root)
    assert "report/indication" not in [i.id for i in case.items]
    assert math.isnan(json.loads(text)[REXGRADIENT_STUDY]["Indication"])


def test_images_elsewhere_with_images_option(tmp_path, study_root):
    shutil.move(study_root / "deid_png", tmp_path / "pictures")
    case = open_case(study_root)
    assert case.images == {} and len(case.problems) == 2 and case.items
    assert "view 0 (PA): image ../deid_png/" in case.problems[0]
    moved = open_case(study_root, images=tmp_path / "pictures")
    assert list(moved.images) == ["view/0", "view/1"] and moved.problems == []


def test_cases_and_errors(study_root, tmp_path):
    dataset = open_dataset(study_root / "metadata")
    assert dataset.case_ids() == [REXGRADIENT_STUDY]
    assert dataset.summary(REXGRADIENT_STUDY) == f"{REXGRADIENT_STUDY}\ttrain\t2 images\tPA LATERAL"
    with pytest.raises(GroundingError, match="no study 'x'"):
        dataset.open_case("x")
    metadata_file(study_root).write_text("{")
    with pytest.raises(GroundingError, match=r"not valid JSON \(line 1, column 2"):
        open_dataset(study_root)


def test_per_study_csv_fills_in_studies(study_root):
    (study_root / "metadata" / "valid_metadata.csv").write_text(
        "StudyID,PatientID,PatientSex,Findings,Impression\n"
        "pX_aX_s9,X,F,Heart size normal. Lungs clear.,None\n")
    dataset = open_dataset(study_root)
    assert dataset.case_ids() == [REXGRADIENT_STUDY, "pX_aX_s9"]
    case = dataset.open_case("pX_aX_s9")
    assert case.images == {} and case.tags["split"] == "valid" and case.tags["sex"] == "F"
    assert [i.title for i in case.items] == ["Findings"]


def test_cases_line_names_a_view_without_position(study_root):
    document = json.loads(metadata_file(study_root).read_text())
    document[REXGRADIENT_STUDY]["ImageViewPosition"] = ["PA", None]
    metadata_file(study_root).write_text(json.dumps(document))
    line = open_dataset(study_root).summary(REXGRADIENT_STUDY)
    assert line == f"{REXGRADIENT_STUDY}\ttrain\t2 images\tPA unknown" and "None" not in line
