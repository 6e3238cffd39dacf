"""The panel on QBA studies: answers show exactly their boxes; filters; clicks; views."""

from __future__ import annotations

import numpy as np
import pytest

from napari_grounding.layers import box_rectangle, grounding_meta
from napari_grounding.readers import open_dataset
from napari_grounding.sample_qba import FRONTAL, LATERAL, write_qba_sample
from napari_grounding.widgets.canvas import viewer_camera
from napari_grounding.widgets.launch import dock_panel, show_case
from tests.widgets.test_panel import click

pytestmark = pytest.mark.gui


@pytest.fixture
def qba(make_napari_viewer, qtbot, tmp_path):
    root = write_qba_sample(tmp_path)
    dataset = open_dataset(root, images=root / "mimic-cxr-jpg")
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1280, 900)
    panel = show_case(viewer, dataset.open_case(dataset.case_ids()[0]), dataset=dataset)
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    return viewer, panel


def box_layer(viewer, image_id):
    return next(la for la in viewer.layers
                if grounding_meta(la)["role"] == "boxes" and grounding_meta(la)["image"] == image_id)


def test_selecting_an_answer_shows_exactly_its_boxes(qba):
    viewer, panel = qba
    panel.session.set_display("selected")
    panel.select_items(["answer/q0001/1"])  # and its sub-answer 2
    layer = box_layer(viewer, FRONTAL)
    case = panel.case
    expected = [case.annotations[f"box/q0001/{a}/{FRONTAL}/0"] for a in (1, 2)]
    assert len(layer.data) == 2
    for drawn, box in zip(layer.data, expected, strict=True):
        np.testing.assert_allclose(drawn, box_rectangle(box))
    assert list(layer.features["label"]) == ["Pleural effusion", "Layering"]
    # zoomed to fit: the boxes fill a good part of the canvas, and all of them are on it
    lo = np.min([b.corners[0] for b in expected], axis=0)
    hi = np.max([b.corners[1] for b in expected], axis=0)
    zoom = viewer_camera(viewer).zoom
    assert np.all((hi - lo) * zoom <= np.asarray(viewer.canvas.size))
    assert np.max((hi - lo) * zoom / np.asarray(viewer.canvas.size)) > 0.3
    panel.select_items(["answer/q0003/2"])  # an answer without boxes
    assert len(layer.data) == 0
    panel.session.set_display("all")
    assert len(layer.data) == sum(a.image == FRONTAL for a in case.annotations.values())


def test_fallback_boxes_are_drawn_differently(qba):
    viewer, panel = qba
    panel.session.set_display("selected")
    panel.select_items(["answer/q0001/3"])
    layer = box_layer(viewer, FRONTAL)
    assert list(layer.features["label"]) == ["No pneumothorax (fallback)"] * 2
    assert np.all(layer.edge_color[:, 3] < 0.6)
    panel.select_items(["answer/q0002/1"])
    assert np.all(box_layer(viewer, FRONTAL).edge_color[:, 3] == 1.0)


def test_an_answer_on_another_view_switches_to_it(qba):
    viewer, panel = qba
    assert panel.session.image == FRONTAL
    panel.session.set_display("selected")
    panel.session.show_image(LATERAL)
    assert box_layer(viewer, LATERAL).visible and not box_layer(viewer, FRONTAL).visible
    panel.select_items(["answer/q0003/1"])  # its only box is on the frontal view
    assert panel.session.image == FRONTAL and box_layer(viewer, FRONTAL).visible


def test_clicking_a_box_selects_its_answers(qba):
    viewer, panel = qba
    click(viewer, (360.0, 1000.0))  # (row, column) inside the clipped nodule box only
    assert panel.selected_ids == ["answer/q0003/1"]


def test_filters_hide_rows(qba):
    _, panel = qba
    assert list(panel.filter_form.combos) == ["question_strategy", "question_type", "answer_type",
                                   "positiveness"]
    panel.set_filter("positiveness", "pos")
    rows = panel.tree._rows
    assert not rows["answer/q0001/1"].isHidden() and rows["answer/q0001/3"].isHidden()
    assert rows["question/q0002"].isHidden() and not rows["question/q0003"].isHidden()
    panel.set_filter("positiveness", "all")
    assert not any(row.isHidden() for row in rows.values())


def test_qba_sample_in_the_menu(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grounding", "cxr-qba")
    assert [la._type_string for la in viewer.layers] == ["image", "image", "shapes", "shapes"]
    assert dock_panel(viewer).case.dataset == "mimic-ext-cxr-qba"


def test_predicted_boxes_are_dashed_beside_the_truth(qba, qtbot, tmp_path):
    import json

    from napari_grounding.sample_qba import STUDY

    viewer, panel = qba
    pred = tmp_path / "boxes.json"
    pred.write_text(json.dumps({STUDY: {"q0001/1": {FRONTAL: [[100, 120, 300, 260]]}}}))
    panel.load_predictions(str(pred))
    qtbot.waitUntil(lambda: panel.session.scores is not None, timeout=20000)
    predicted = next(la for la in viewer.layers if grounding_meta(la)["role"] == "boxes"
                     and grounding_meta(la)["set"] == "prediction")
    truth = box_layer(viewer, FRONTAL)
    assert predicted.name.endswith("· prediction") and truth is not predicted
    assert set(predicted.shape_type) == {"line"} and len(predicted.data) > 8  # dashes
    ends = np.concatenate(predicted.data)
    assert ends[:, 0].min() >= 120 - 1e-6 and ends[:, 0].max() <= 260 + 1e-6  # rows (y)
    assert ends[:, 1].min() >= 100 - 1e-6 and ends[:, 1].max() <= 300 + 1e-6  # columns (x)
    assert list(predicted.features["label"]).count("") == len(predicted.data) - 1  # one label
    panel.session.set_display("selected")
    panel.select_items(["answer/q0001/1"])
    assert set(predicted.shape_type) == {"line"} and len(predicted.data) > 8
