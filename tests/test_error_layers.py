"""Layer data of prediction sets: the lazy error map of an item, and boxes per set."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from napari_grounding.colours import ERROR_COLOURS
from napari_grounding.error_layers import error_layer
from napari_grounding.layers import case_layers
from napari_grounding.predictions import add_predictions
from napari_grounding.readers import open_case
from napari_grounding.sample import CASE
from napari_grounding.sample_qba import write_qba_sample
from napari_grounding.scores import error_labels


def test_error_layer_is_computed_per_displayed_slice(tmp_path, sample_root, phantom):
    pred = np.roll(phantom.masks, 3, axis=1)
    (tmp_path / "pred").mkdir()
    nib.save(nib.Nifti1Image(pred, np.eye(4)), tmp_path / "pred" / f"{CASE}.nii.gz")
    case = open_case(sample_root)
    add_predictions(case, tmp_path / "pred", "model")
    data, kwargs, kind = error_layer(case, "finding/1")
    image = case.images["ct"]
    assert kind == "labels" and data.shape == image.data.shape
    assert kwargs["colormap"][3] == ERROR_COLOURS[3]
    assert kwargs["metadata"]["napari_grounding"]["role"] == "errors"
    expected = image.orientation.to_display(error_labels(phantom.masks[1], pred[1]))
    counter = case.annotations["mask/1"].reads
    before = counter.chunks
    row = int(np.argmax((expected == 3).sum(axis=(1, 2))))  # a slice with missed voxels
    shown = np.asarray(data[row])
    assert counter.chunks - before == 1  # one slice of the ground-truth file, not the volume
    np.testing.assert_array_equal(shown, expected[row])
    assert {1, 2, 3} <= set(np.unique(np.asarray(data)).tolist())
    assert error_layer(case, "report/findings") is None


def test_predicted_boxes_get_their_own_layer(tmp_path):
    root = write_qba_sample(tmp_path / "qba")
    case = open_case(root, images=root / "mimic-cxr-jpg")
    frontal = "0a0b0c0d-11111111-frontal0-phantom0-00000001"
    (tmp_path / "boxes.json").write_text(json.dumps({case.id: {"q0001/1": {frontal: [[1, 2, 30, 40]]}}}))
    add_predictions(case, tmp_path / "boxes.json", "model")
    layers = [(data, kw["metadata"]["napari_grounding"], kw["name"]) for data, kw, _ in case_layers(case)]
    boxes = {(meta["image"], meta["set"]): (data, meta, name) for data, meta, name in layers
             if meta["role"] == "boxes"}
    data, meta, name = boxes[(frontal, "model")]
    assert name == f"boxes {frontal} · model"
    # drawn dashed (line segments) on the outline of rows 2..40, columns 1..30
    ends = np.concatenate(data)
    assert all(len(d) == 2 for d in data) and len(data) > 4 and meta["dashed"]
    on_edge = (np.isclose(ends[:, 0], 2) | np.isclose(ends[:, 0], 40)
               | np.isclose(ends[:, 1], 1) | np.isclose(ends[:, 1], 30))
    assert on_edge.all() and ends.min(axis=0).tolist() == [2, 1]
    assert ends.max(axis=0).tolist() == [40, 30]
    assert meta["boxes"] == [f"box/q0001/1/{frontal}/p0@model"]
    own = boxes[(frontal, "QBA (silver)")]
    assert own[2] == f"boxes {frontal}" and not any("@model" in b for b in own[1]["boxes"])
