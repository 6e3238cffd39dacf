"""The panel on chest X-rays: view switching, contours, clicks, quality flags."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_grounding.layers import grounding_meta
from napari_grounding.readers import open_case, open_dataset
from napari_grounding.sample_cxr import DICOM_IDS, write_chexmask_sample, write_rexgradient_sample
from napari_grounding.widgets.launch import dock_panel, show_case
from tests.widgets.gestures import press
from tests.widgets.test_panel import click, coloured_pixels

pytestmark = pytest.mark.gui


@pytest.fixture
def chexmask_panel(make_napari_viewer, qtbot, tmp_path, shared_data):
    csv_path = write_chexmask_sample(tmp_path)
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1280, 900)
    panel = show_case(viewer, open_case(csv_path, DICOM_IDS[0], images=tmp_path / "mimic-cxr-jpg"))
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    return viewer, panel


def layer_of(viewer, annotation_id):
    return next(la for la in viewer.layers
                if (grounding_meta(la) or {}).get("annotation") == annotation_id)


def test_masks_and_contours_become_labels_and_shapes(chexmask_panel):
    viewer, panel = chexmask_panel
    kinds = sorted(la._type_string for la in viewer.layers)
    assert kinds == ["image", "labels", "labels", "labels", "shapes", "shapes", "shapes"]
    heart = layer_of(viewer, "contour/heart")
    assert heart.shape_type == ["polygon"] and len(heart.data[0]) == 26
    np.testing.assert_allclose(heart.data[0], panel.case.annotations["contour/heart"].points)


def test_contour_only_display_outlines_the_masks(chexmask_panel):
    viewer, panel = chexmask_panel
    panel.session.set_display("selected")
    panel.select_items(["structure/right_lung"])  # red, the first colour
    for contour_id in ("contour/right_lung",):
        layer_of(viewer, contour_id).visible = False  # judge the mask alone
    filled = coloured_pixels(viewer.screenshot(canvas_only=True, flash=False), 0)
    panel.display.contours.setChecked(True)
    assert layer_of(viewer, "mask/right_lung").contour == 1
    layer_of(viewer, "contour/right_lung").visible = False
    outlined = coloured_pixels(viewer.screenshot(canvas_only=True, flash=False), 0)
    assert filled > 5000 and 0 < outlined < filled / 5


def test_clicking_inside_a_lung_selects_it(chexmask_panel):
    viewer, panel = chexmask_panel
    contour = panel.case.annotations["contour/left_lung"].points
    centre = contour.mean(axis=0)  # (row, column) inside the left lung: image right
    click(viewer, centre)
    assert panel.selected_ids == ["structure/left_lung"]
    click(viewer, (10.0, 10.0))  # outside the body: nothing changes
    assert panel.selected_ids == ["structure/left_lung"]


def test_low_quality_is_flagged_in_the_header(make_napari_viewer, tmp_path):
    csv_path = write_chexmask_sample(tmp_path)
    viewer = make_napari_viewer()
    panel = show_case(viewer, open_case(csv_path, DICOM_IDS[1]))
    assert "⚠ RCA Dice 0.640 (below 0.7)" in panel.title.text()
    assert not panel.display.window_buttons["lung"].isVisibleTo(panel)


def test_view_switcher_shows_one_view_at_a_time(make_napari_viewer, qtbot, tmp_path):
    root = write_rexgradient_sample(tmp_path)
    viewer = make_napari_viewer(show=True)
    dataset = open_dataset(root)
    panel = show_case(viewer, dataset.open_case(dataset.case_ids()[0]), dataset=dataset)
    assert panel.case_bar.view_box.isVisibleTo(panel) and panel.case_bar.view_box.count() == 2
    assert [panel.case_bar.view_box.itemText(i) for i in range(2)] == ["PA", "LATERAL"]

    def visible():
        return [grounding_meta(la)["image"] for la in viewer.layers if la.visible]

    assert visible() == ["view/0"]
    frontal = viewer.screenshot(canvas_only=True, flash=False)
    panel.case_bar.view_box.setCurrentIndex(1)
    assert visible() == ["view/1"] and panel.session.image == "view/1"
    lateral = viewer.screenshot(canvas_only=True, flash=False)
    assert frontal.shape == lateral.shape and np.abs(frontal.astype(int) - lateral).mean() > 5
    press(viewer, Qt.Key.Key_I, Qt.KeyboardModifier.AltModifier)  # next view wraps around
    assert visible() == ["view/0"]
    assert not panel.display.mode.isVisibleTo(panel)  # a report without annotations: no mask controls


def test_cxr_samples_in_the_menu(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grounding", "cxr-chexmask")
    assert len(viewer.layers) == 7 and "blank" not in dock_panel(viewer).case.images["image"].meta
    viewer.layers.clear()
    viewer.open_sample("napari-grounding", "cxr-rexgradient")
    assert [la._type_string for la in viewer.layers] == ["image", "image"]
    assert dock_panel(viewer).case.dataset == "rexgradient"


def test_images_folder_chosen_in_the_panel(make_napari_viewer, tmp_path):
    csv_path = write_chexmask_sample(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(csv_path), plugin="napari-grounding")
    panel = dock_panel(viewer)
    assert panel.case.images["image"].meta.get("blank")
    assert panel.case_bar.images_button.isVisibleTo(panel)
    panel.set_images_folder(str(tmp_path / "mimic-cxr-jpg"))
    assert "blank" not in panel.case.images["image"].meta
    image_layers = [la for la in viewer.layers if grounding_meta(la)["role"] == "image"]
    assert len(image_layers) == 1 and np.asarray(image_layers[0].data).max() > 100


def test_typing_a_case_id_opens_it(make_napari_viewer, tmp_path):
    csv_path = write_chexmask_sample(tmp_path)
    viewer = make_napari_viewer()
    dataset = open_dataset(csv_path, images=tmp_path / "mimic-cxr-jpg")
    panel = show_case(viewer, dataset.open_case(DICOM_IDS[0]), dataset=dataset)
    panel.case_bar.case_box.lineEdit().setText(DICOM_IDS[1])
    panel.case_bar.case_box.lineEdit().returnPressed.emit()
    assert panel.case.id == DICOM_IDS[1]
    panel.case_bar.case_box.lineEdit().setText("no-such-image")
    panel.case_bar.case_box.lineEdit().returnPressed.emit()
    assert panel.case.id == DICOM_IDS[1]  # an unknown id is a notification, not a crash
