"""Predictions as an annotation set: the three file forms, what does not fit, and the CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_grounding.cli import main
from napari_grounding.model import GroundingError, MaskAnnotation
from napari_grounding.predictions import WithPredictions, add_predictions
from napari_grounding.readers import open_case, open_dataset
from napari_grounding.readers.chexmask import MODEL_SET
from napari_grounding.sample import CASE
from napari_grounding.sample_cxr import DICOM_IDS, write_chexmask_sample
from napari_grounding.sample_qba import write_qba_sample
from napari_grounding.scores import item_scores

SHIFT = 3  # voxels along the first axis


def shifted(masks: np.ndarray) -> np.ndarray:
    return np.roll(masks, SHIFT, axis=1)


def numpy_dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a != 0, b != 0
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def write_prediction(folder: Path, data: np.ndarray, name: str = CASE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), folder / f"{name}.nii.gz")
    return folder


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_shifted_prediction_scores_as_numpy_says(tmp_path, sample_root, phantom):
    pred = write_prediction(tmp_path / "pred", shifted(phantom.masks))
    case = open_case(sample_root)
    add_predictions(case, pred, "model")
    assert case.sets() == ["ground truth", "model"] and case.reference_set == "ground truth"
    assert case.item("finding/0").annotations == ["mask/0", "mask/0@model"]
    assert case.counterpart("mask/2", "model").id == "mask/2@model"
    assert case.annotation_in("model", "mask/1").set == "model"
    scores = item_scores(case)
    for index in range(3):
        expected = numpy_dice(phantom.masks[index], shifted(phantom.masks)[index])
        assert scores[f"finding/{index}"].dice == pytest.approx(expected)
        assert 0.0 < expected < 1.0
    # emphysema: two apices, both found after a 3-voxel shift
    assert (scores["finding/2"].gt_instances, scores["finding/2"].matched) == (2, 2)


def test_scores_with_a_threshold(tmp_path, sample_root, phantom):
    probabilities = phantom.masks.astype(np.float32) * 0.4  # every finding at 0.4
    pred = write_prediction(tmp_path / "pred", probabilities)
    case = open_case(sample_root)
    add_predictions(case, pred, "above zero")
    add_predictions(case, pred, "above half", threshold=0.5)
    assert item_scores(case, pred_set="above zero")["finding/1"].dice == 1.0
    assert item_scores(case, pred_set="above half")["finding/1"].dice == 0.0
    mask = case.annotations["mask/1@above half"]
    assert isinstance(mask, MaskAnnotation) and mask.data.dtype == np.uint8


@pytest.mark.parametrize(("data", "message"), [
    (np.zeros((3, 128, 128, 59), np.uint8), "does not match the CT's (128, 128, 60)"),
    (np.zeros((2, 128, 128, 60), np.uint8), "2 channels for 3 findings"),
    (np.zeros((128, 128, 60), np.uint8), "expected a 4-D mask"),
])
def test_a_prediction_that_does_not_fit_is_one_problem_and_not_drawn(tmp_path, sample_root, data, message):
    pred = write_prediction(tmp_path / "pred", data)
    case = open_case(sample_root)
    add_predictions(case, pred)
    assert case.sets() == ["ground truth"]
    (problem,) = case.problems
    assert message in problem and problem.endswith("not drawn")
    assert all(s.missing for s in item_scores(case, pred_set="prediction").values())


def test_no_prediction_file_for_the_case(tmp_path, sample_root):
    (tmp_path / "pred").mkdir()
    case = open_case(sample_root)
    add_predictions(case, tmp_path / "pred")
    assert case.problems == [f"--pred {tmp_path / 'pred'}: no {CASE}.nii.gz; no prediction for this case"]


def test_every_case_opened_through_the_wrapper_has_the_predictions(tmp_path, sample_root, phantom):
    pred = write_prediction(tmp_path / "pred", shifted(phantom.masks))
    dataset = WithPredictions(open_dataset(sample_root), pred, "m")
    assert dataset.name == "rexgroundingct" and dataset.case_ids() == [CASE]
    assert dataset.open_case(CASE).sets() == ["ground truth", "m"]


def test_a_set_name_is_used_once(tmp_path, sample_root, phantom):
    pred = write_prediction(tmp_path / "pred", shifted(phantom.masks))
    case = open_case(sample_root)
    add_predictions(case, pred)
    with pytest.raises(GroundingError, match="already has an annotation set named 'prediction'"):
        add_predictions(case, pred)


def test_describe_pred_json_from_the_cli(capsys, tmp_path, sample_root, phantom):
    pred = write_prediction(tmp_path / "pred", shifted(phantom.masks))
    code, out, err = run(capsys, "describe", str(sample_root), "--pred", str(pred), "--pred-name", "m",
                         "--json")
    assert (code, err) == (0, "")
    described = json.loads(out)
    assert described["sets"] == ["ground truth", "m"]
    assert list(described["scores"]) == ["finding/0", "finding/1", "finding/2"]
    for index in range(3):
        expected = numpy_dice(phantom.masks[index], shifted(phantom.masks)[index])
        assert described["scores"][f"finding/{index}"]["dice"] == pytest.approx(expected, abs=1e-6)
    finding = described["items"][0]
    assert [a["set"] for a in finding["annotations"]] == ["ground truth", "m"]


def test_describe_text_lists_sets_and_scores(capsys, tmp_path, sample_root, phantom):
    pred = write_prediction(tmp_path / "pred", shifted(phantom.masks))
    code, out, _ = run(capsys, "describe", str(sample_root), "--pred", str(pred))
    expected = numpy_dice(phantom.masks[1], shifted(phantom.masks)[1])
    assert code == 0 and "annotation sets: ground truth, prediction" in out
    iou = expected / (2 - expected)
    assert (f"finding/1: Dice {expected:.3f}, IoU {iou:.3f}, instances 1/1 matched, 1 predicted, "
            "F1 1.000") in out


def test_cli_warns_about_a_prediction_of_the_wrong_shape(capsys, tmp_path, sample_root):
    pred = write_prediction(tmp_path / "pred", np.zeros((3, 4, 4, 4), np.uint8))
    code, out, err = run(capsys, "describe", str(sample_root), "--pred", str(pred))
    assert code == 0
    assert err.count("\n") == 1 and err.startswith("napari-grounding: warning: prediction ")
    assert "does not match the CT's (128, 128, 60); not drawn" in err
    assert "finding/0: no prediction" in out


def test_cli_errors_on_a_missing_prediction_path(capsys, tmp_path, sample_root):
    code, _, err = run(capsys, "describe", str(sample_root), "--pred", str(tmp_path / "nope"))
    assert code == 2
    assert err == f"napari-grounding: error: --pred {tmp_path / 'nope'}: no such file or folder\n"


# -- CheXmask-form CSV -------------------------------------------------------------------------
def test_chexmask_csv_prediction(tmp_path):
    csv_path = write_chexmask_sample(tmp_path / "cxr")
    pred = tmp_path / "pred.csv"
    shutil.copy(csv_path, pred)
    case = open_case(csv_path, DICOM_IDS[0])
    add_predictions(case, pred, "model")
    assert case.sets() == [MODEL_SET, "model"]
    scores = item_scores(case)
    assert set(scores) == {"structure/right_lung", "structure/left_lung", "structure/heart"}
    assert all(s.dice == 1.0 and s.iou == 1.0 and s.hit for s in scores.values())


def test_chexmask_csv_of_another_size_is_not_drawn(tmp_path):
    csv_path = write_chexmask_sample(tmp_path / "cxr")
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["Height"] = row["Width"] = "2048"
    pred = tmp_path / "pred.csv"
    with pred.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    case = open_case(csv_path, DICOM_IDS[0])
    add_predictions(case, pred)
    assert case.sets() == [MODEL_SET]
    assert case.problems[-1] == ("prediction pred.csv: row 1 is 2048 x 2048, the case 1024 x 1024; "
                                 "not drawn")


def test_a_chexmask_csv_does_not_fit_a_ct_case(capsys, tmp_path, sample_root):
    csv_path = write_chexmask_sample(tmp_path / "cxr")
    code, _, err = run(capsys, "describe", str(sample_root), "--pred", str(csv_path))
    assert code == 2 and "a CheXmask-form CSV fits CheXmask cases, not rexgroundingct" in err


# -- QBA boxes JSON ----------------------------------------------------------------------------
FRONTAL = "0a0b0c0d-11111111-frontal0-phantom0-00000001"
STUDY = "s50414267"


@pytest.fixture(scope="module")
def qba_root(tmp_path_factory) -> Path:
    return write_qba_sample(tmp_path_factory.mktemp("qba"))


def qba_case(root: Path):
    return open_case(root, images=root / "mimic-cxr-jpg")


def test_boxes_json_prediction(tmp_path, qba_root):
    pred = tmp_path / "boxes.json"
    # the gt box of answer q0001/1 is (180, 640, 470, 820)
    pred.write_text(json.dumps({STUDY: {"q0001/1": {FRONTAL: [[180, 640, 470, 820], [100, 500, 300, 700]]}}}))
    case = qba_case(qba_root)
    add_predictions(case, pred, "model")
    assert case.sets()[-1] == "model"
    assert "box/q0001/1/" + FRONTAL + "/p0@model" in case.item("answer/q0001/1").annotations
    scores = item_scores(case)
    assert all(i.startswith("answer/") for i in scores)  # the prediction speaks for answers only
    first = scores["answer/q0001/1"]
    # second box: overlap 120 x 60 = 7200, union 290*180 + 200*200 - 7200 = 85000
    assert first.box_ious == pytest.approx((1.0, 7200 / 85000))
    assert (first.matched, first.instance_precision, first.instance_recall) == (1, 0.5, 1.0)
    other = scores["answer/q0002/1"]  # left out of the JSON: predicted no box, missed
    assert (other.missing, other.pred_instances, other.instance_recall) == (False, 0, 0.0)


def test_boxes_on_unknown_images_are_one_problem(tmp_path, qba_root):
    pred = tmp_path / "boxes.json"
    pred.write_text(json.dumps({STUDY: {"q0001/1": {"no-such-image": [[0, 0, 5, 5]]}}}))
    case = qba_case(qba_root)
    before = len(case.problems)
    add_predictions(case, pred)
    assert "prediction" not in case.sets()
    assert case.problems[before:] == [f"prediction boxes.json, study {STUDY}: unknown image "
                                      "'no-such-image' (answer q0001/1); not drawn"]


def test_garbage_json_is_one_line_and_exit_2(capsys, tmp_path, qba_root):
    pred = tmp_path / "boxes.json"
    pred.write_text("{not json")
    code, out, err = run(capsys, "describe", str(qba_root), "--pred", str(pred))
    assert code == 2 and out == ""
    assert err.startswith(f"napari-grounding: error: --pred {pred}: not a readable JSON file")
    assert err.count("\n") == 1
    pred.write_text("[1, 2]")
    code, _, err = run(capsys, "describe", str(qba_root), "--pred", str(pred))
    assert code == 2 and "expected {study: {question/answer: {image:" in err


def test_describe_compare_prints_the_scores_of_the_second_set(capsys, tmp_path):
    csv_path = write_chexmask_sample(tmp_path / "cxr")
    code, out, _ = run(capsys, "describe", str(csv_path), "--case", DICOM_IDS[0], "--compare", str(csv_path))
    assert code == 0 and f"annotation sets: {MODEL_SET}, MIMIC-CXR-JPG" in out
    assert "structure/heart: Dice 1.000, IoU 1.000, instances 1/1 matched, 1 predicted, F1 1.000" in out
