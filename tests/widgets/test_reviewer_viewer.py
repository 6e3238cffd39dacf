"""The viewer as a reviewer uses it: keys on the canvas, case switching, lifecycle, read-only
ground truth, the first view and framing. Real key and mouse events, panel docked."""

from __future__ import annotations

import gc
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from napari.utils.key_bindings import coerce_keybinding
from napari.utils.notifications import notification_manager
from qtpy.QtCore import Qt

from napari_grounding.layers import grounding_meta
from napari_grounding.model import Case
from napari_grounding.navigation import item_target
from napari_grounding.readers import open_dataset
from napari_grounding.sample import CASE, ctrate_volume_path, make_phantom, write_sample
from napari_grounding.widgets.canvas import viewer_camera
from napari_grounding.widgets.launch import dock_panel, show_case
from tests.widgets.gestures import click_canvas, press, settle

pytestmark = pytest.mark.gui


def rss_mb() -> float:
    """This process's resident memory in MB (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def errors_since(before: int) -> list[str]:
    return [str(n.message) for n in notification_manager.records[before:]
            if str(n.severity) in ("error", "warning") or "Error" in str(n.message)]


def multi_case_root(root, count: int):
    """The sample dataset with ``count`` cases: copies of the phantom's CT and masks."""
    raw = json.loads((root / "dataset.json").read_text())
    first = raw["train"][0]
    for n in range(2, count + 1):
        name = f"train_{n}_a_1"
        raw["train"].append(dict(first, name=f"{name}.nii.gz"))
        ct = ctrate_volume_path(root, name)
        ct.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ctrate_volume_path(root, CASE), ct)
        shutil.copy(root / "segmentations" / f"{CASE}.nii.gz",
                    root / "segmentations" / f"{name}.nii.gz")
    (root / "dataset.json").write_text(json.dumps(raw))
    return root


@pytest.fixture
def docked(make_napari_viewer, qtbot, sample_root, monkeypatch):
    monkeypatch.setenv("NAPARI_GROUNDING_CACHE_ON_OPEN", "0")
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1200, 850)
    dataset = open_dataset(sample_root)
    panel = show_case(viewer, dataset.open_case(CASE), dataset=dataset)
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    settle()
    return viewer, panel


def test_a_case_opens_on_its_first_finding_framed(docked):
    viewer, panel = docked
    assert panel.selected_ids == ["finding/0"]
    ct = panel.case.images["ct"]
    mask = ct.orientation.to_display(np.asarray(panel.case.annotations["mask/0"].data))
    centre = np.argwhere(mask).mean(axis=0)
    assert viewer.dims.current_step[0] == round(centre[0])
    camera = viewer_camera(viewer)
    layer = viewer.layers["CT"]
    whole = np.ptp(np.asarray(layer.extent.world)[:, 1:], axis=0)
    visible = np.asarray(viewer.canvas.size) / camera.zoom
    assert np.all(visible >= 80 - 1e-6)  # at least 80 mm of context
    assert np.min(visible / whole) < 0.9  # zoomed in on the nodule, not the whole slice
    assert panel.tree.selectedItems()[0].text(0) == panel.case.item("finding/0").text


def test_a_volume_fills_the_canvas_once_the_dock_settles(make_napari_viewer, qtbot, tmp_path,
                                                         phantom):
    """Docking the panel squeezes the canvas for a moment: the first framing must follow the
    canvas's final size, and a camera the user moved is left alone on later resizes."""
    from napari_grounding.readers import open_case
    from tests.conftest import save_nifti

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(900, 700)
    qtbot.waitExposed(viewer.window._qt_window)
    show_case(viewer, open_case(save_nifti(tmp_path / "plain.nii.gz", phantom.hu, phantom.affine)))
    qtbot.wait(300)
    camera = viewer_camera(viewer)
    extent = np.ptp(np.asarray(viewer.layers["CT"].extent.world)[:, 1:], axis=0) + 2.5
    shown = extent * camera.zoom / np.asarray(viewer.canvas.size)
    assert 0.8 <= shown.max() <= 1.0  # the slice fills the canvas along its tighter side
    camera.zoom = zoomed = camera.zoom * 2  # the user zooms in: later resizes keep it
    viewer.window.resize(1100, 800)
    qtbot.wait(300)
    assert camera.zoom == zoomed


def test_keys_on_the_canvas_with_the_panel_docked(docked):
    viewer, panel = docked
    before = len(notification_manager.records)
    slices = {}
    for expected in ("finding/1", "finding/2"):
        press(viewer, Qt.Key.Key_Down)
        assert panel.selected_ids == [expected]
        slices[expected] = viewer.dims.current_step[0]
    press(viewer, Qt.Key.Key_Up)
    assert panel.selected_ids == ["finding/1"]
    assert viewer.dims.current_step[0] == slices["finding/1"] != slices["finding/2"]
    # the effusion is read in the mediastinum window, and the button says so
    assert panel.session.window == "mediastinum"
    assert panel.display.window_buttons["mediastinum"].isChecked()
    press(viewer, Qt.Key.Key_1, Qt.KeyboardModifier.AltModifier)
    assert tuple(viewer.layers["CT"].contrast_limits) == (-1350.0, 150.0)
    assert panel.display.window_buttons["lung"].isChecked()
    step = viewer.dims.current_step[0]
    press(viewer, Qt.Key.Key_Right)  # napari's own slice stepping still works
    assert viewer.dims.current_step[0] == step + 1
    press(viewer, Qt.Key.Key_Left)
    assert viewer.dims.current_step[0] == step
    # with an annotation layer active the keys still answer, and its paint keys do nothing
    viewer.layers.selection.active = viewer.layers["finding 0"]
    press(viewer, Qt.Key.Key_P)
    assert viewer.layers["finding 0"].mode == "pan_zoom"
    press(viewer, Qt.Key.Key_Down)
    assert panel.selected_ids == ["finding/2"]
    assert errors_since(before) == []


def test_page_keys_move_through_the_cases(make_napari_viewer, qtbot, sample_copy, monkeypatch):
    monkeypatch.setenv("NAPARI_GROUNDING_CACHE_ON_OPEN", "0")
    root = multi_case_root(sample_copy, 3)
    viewer = make_napari_viewer(show=True)
    dataset = open_dataset(root)
    panel = show_case(viewer, dataset.open_case(CASE), dataset=dataset)
    before = len(notification_manager.records)
    press(viewer, Qt.Key.Key_PageDown)
    assert panel.case.id == "train_2_a_1"
    assert panel.case_bar.position.text() == "2 / 3"
    assert viewer.title.endswith("/train_2_a_1")  # the window names the case shown
    assert {grounding_meta(la)["case_key"] for la in viewer.layers} == {panel.case.key}
    press(viewer, Qt.Key.Key_PageDown)
    press(viewer, Qt.Key.Key_PageDown)  # past the last case: stays
    assert panel.case.id == "train_3_a_1"
    press(viewer, Qt.Key.Key_PageUp)
    assert panel.case.id == "train_2_a_1"
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    assert panel.selected_ids == ["finding/0"]  # each case opens on its first finding
    assert errors_since(before) == []


def count_slices(monkeypatch) -> dict[str, int]:
    """Layer name -> how often napari slices it from now on (every layer type's sync path)."""
    from napari.layers.base.base import _LayerSlicingState

    slices: dict[str, int] = {}
    original = _LayerSlicingState.set_view_slice

    def counted(state):
        slices[state.layer.name] = slices.get(state.layer.name, 0) + 1
        return original(state)

    monkeypatch.setattr(_LayerSlicingState, "set_view_slice", counted)
    return slices


def test_opening_slices_each_layer_twice_at_most(make_napari_viewer, qtbot, sample_root,
                                                 monkeypatch):
    """Layers go in hidden and are shown together: sliced once where the dims end up, once
    more at the first finding, not again for every layer added after them."""
    monkeypatch.setenv("NAPARI_GROUNDING_CACHE_ON_OPEN", "0")
    viewer = make_napari_viewer(show=True)
    dataset = open_dataset(sample_root)
    case = dataset.open_case(CASE)
    slices = count_slices(monkeypatch)
    panel = show_case(viewer, case, dataset=dataset)
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    settle()
    assert panel.selected_ids == ["finding/0"]
    assert all(layer.visible for layer in viewer.layers)  # "All masks": every layer shown
    assert set(slices) == {la.name for la in viewer.layers} and max(slices.values()) <= 2, slices


def test_a_case_switch_slices_each_layer_twice_at_most(make_napari_viewer, qtbot, sample_copy,
                                                      monkeypatch):
    """Layers take the next case's data in place: one slicing for the new data, one for the
    first finding's slice; and the picture is the new case's."""
    import nibabel as nib

    monkeypatch.setenv("NAPARI_GROUNDING_CACHE_ON_OPEN", "0")
    root = multi_case_root(sample_copy, 2)
    second = ctrate_volume_path(root, "train_2_a_1")
    volume = nib.load(second)
    brighter = np.asarray(volume.dataobj) + 600  # the same anatomy, 600 HU brighter
    nib.save(nib.Nifti1Image(brighter.astype(np.int16), volume.affine), second)
    viewer = make_napari_viewer(show=True)
    dataset = open_dataset(root)
    panel = show_case(viewer, dataset.open_case(CASE), dataset=dataset)
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    qtbot.waitUntil(lambda: panel._ahead is not None, timeout=20000)  # opened ahead
    settle()
    before = viewer.screenshot(canvas_only=True, flash=False)[..., :3].mean()
    slices = count_slices(monkeypatch)
    press(viewer, Qt.Key.Key_PageDown)
    assert panel.case.id == "train_2_a_1" and panel.selected_ids == ["finding/0"]
    assert slices and max(slices.values()) <= 2, slices
    after = viewer.screenshot(canvas_only=True, flash=False)[..., :3].mean()
    assert after > before + 20  # the brighter CT is what is shown


def test_the_case_queue_leaves_with_the_panel(make_napari_viewer, sample_copy, monkeypatch):
    monkeypatch.setenv("NAPARI_GROUNDING_CACHE_ON_OPEN", "0")
    root = multi_case_root(sample_copy, 3)
    viewer = make_napari_viewer(show=True)
    dataset = open_dataset(root)

    def queues():
        return [name for name in viewer.window.dock_widgets if "Case queue" in name]

    panel = show_case(viewer, dataset.open_case(CASE), dataset=dataset)
    settle()
    assert len(queues()) == 1
    # a tab behind the panel: the panel's height stays the text's
    assert not panel.visibleRegion().isEmpty() and panel.queue.visibleRegion().isEmpty()
    viewer.window.remove_dock_widget(panel)  # the dock's close button
    settle()
    assert queues() == []  # alone it would open cases whose text nobody shows
    again = show_case(viewer, dataset.open_case(CASE), dataset=dataset)
    settle()
    assert len(queues()) == 1 and again.isVisible()


def test_no_key_of_ours_is_one_napari_s_window_takes(make_napari_viewer):
    """Menu letters (Alt-V opens View) and menu actions (Alt-C copies a screenshot) win over
    the canvas's bindings in an active window: none of our keys may be one of them."""
    from napari._app_model import get_app_model

    from napari_grounding.widgets.keys import KEYS, qt_sequence

    window = make_napari_viewer().window._qt_window
    taken = {str(binding.keybinding) for binding in get_app_model().keybindings}
    for menu in window.menuBar().actions():
        text = menu.text()
        if "&" in text[:-1]:
            taken.add("Alt+" + text[text.index("&") + 1].upper())
    assert {"Alt+V", "Alt+F", "Alt+C"} <= taken  # what napari takes is seen
    assert not {qt_sequence(k) for k in KEYS} & taken


def test_removing_the_dock_widget_unhooks_and_restores_keys(make_napari_viewer, sample_root):
    viewer = make_napari_viewer(show=True)

    def mine(_viewer):
        mine.pressed += 1

    mine.pressed = 0
    viewer.bind_key("PageDown", mine)
    callbacks = len(viewer.mouse_drag_callbacks)
    panel = dock_panel(viewer)
    show_case(viewer, open_dataset(sample_root).open_case(CASE))
    assert len(viewer.mouse_drag_callbacks) == callbacks + 1
    viewer.window.remove_dock_widget(panel)
    settle()
    assert len(viewer.mouse_drag_callbacks) == callbacks
    assert coerce_keybinding("Alt-1") not in viewer.keymap
    press(viewer, Qt.Key.Key_PageDown)
    assert mine.pressed == 1  # the binding the panel found is back
    viewer.window.add_dock_widget(panel, name="again")
    settle()
    assert len(viewer.mouse_drag_callbacks) == callbacks + 1  # one callback, not two
    press(viewer, Qt.Key.Key_Down)
    assert panel.selected_ids  # keys work again


def test_opening_another_case_through_the_reader_replaces_the_first(make_napari_viewer, qtbot,
                                                                  tmp_path):
    first = write_sample(tmp_path / "a")
    second = write_sample(tmp_path / "b", make_phantom((48, 48, 30), (3.0, 3.0, 4.0)))
    viewer = make_napari_viewer()
    viewer.open(str(first), plugin="napari-grounding")
    viewer.open(str(second / "dataset.json"), plugin="napari-grounding")
    panel = dock_panel(viewer)
    shapes = {la.data.shape for la in viewer.layers}
    assert len(viewer.layers) == 4 and shapes == {panel.case.images["ct"].data.shape}
    assert panel.case.images["ct"].data.shape[1:] == (48, 48)


def test_ground_truth_cannot_be_painted(docked):
    viewer, panel = docked
    layer = viewer.layers["finding 0"]
    before = np.asarray(layer.data).copy()
    assert not layer.editable
    viewer.layers.selection.active = layer
    layer.mode = "paint"  # as the paint button would
    assert layer.mode == "pan_zoom"
    viewer.dims.ndisplay = 3
    viewer.dims.ndisplay = 2  # napari re-enables editing when it re-slices
    assert not layer.editable
    ct = panel.case.images["ct"]
    nodule = np.argwhere(before[viewer.dims.current_step[0]])[0]
    click_canvas(viewer, np.asarray(ct.origin) + np.asarray(ct.spacing) * np.array(
        [viewer.dims.current_step[0], *nodule]))  # a click on the nodule, "paint mode" asked
    np.testing.assert_array_equal(np.asarray(layer.data), before)
    assert panel.selected_ids == ["finding/0"]
    assert viewer.layers.selection.active is viewer.layers["CT"]  # selection gives no brush


def test_an_elongated_finding_is_shown_in_the_plane_of_its_length(make_napari_viewer, qtbot,
                                                                    tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_GROUNDING_CACHE_ON_OPEN", "0")
    from napari_grounding.readers import open_case
    from tests.conftest import save_nifti

    root = write_sample(tmp_path)
    mask_path = root / "segmentations" / f"{CASE}.nii.gz"
    import nibabel as nib

    masks = np.asarray(nib.load(mask_path).dataobj).copy()
    masks[0] = 0
    masks[0, 60:66, 56:62, 5:55] = 1  # a tube 50 slices long: an aorta
    save_nifti(mask_path, masks, np.eye(4))
    viewer = make_napari_viewer(show=True)
    panel = show_case(viewer, open_case(root))
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    settle()
    assert panel.selected_ids == ["finding/0"]
    assert tuple(viewer.dims.order) in ((1, 0, 2), (2, 0, 1))  # coronal or sagittal
    assert panel.session.plane is None  # our choice, not the user's
    slices = count_slices(monkeypatch)
    press(viewer, Qt.Key.Key_Down)  # the effusion: wide, not long
    assert tuple(viewer.dims.order) == (0, 1, 2)
    # the plane and the slice change together: each layer sliced once, at the effusion
    assert set(slices) == {la.name for la in viewer.layers} and set(slices.values()) == {1}, slices
    effusion = item_target(panel.case, panel.case.item("finding/1"), panel.stats)
    assert abs(viewer.dims.point[0] - effusion.centre[0]) <= viewer.dims.range[0].step  # its centre
    slider = viewer.window._qt_viewer.dims.slider_widgets[0].slider
    assert slider.value() == viewer.dims.current_step[0]  # the slider says where the slice is
    viewer.dims.order = (2, 0, 1)  # the reviewer picks sagittal: it sticks
    assert panel.session.plane == "sagittal"
    press(viewer, Qt.Key.Key_Up)
    assert tuple(viewer.dims.order) == (2, 0, 1) and panel.selected_ids == ["finding/0"]


def test_thirty_case_switches_keep_one_case_alive(make_napari_viewer, qtbot, sample_copy,
                                                  monkeypatch):
    monkeypatch.setenv("NAPARI_GROUNDING_CACHE_ON_OPEN", "0")
    root = multi_case_root(sample_copy, 2)
    viewer = make_napari_viewer(show=True)
    dataset = open_dataset(root)
    panel = show_case(viewer, dataset.open_case(CASE), dataset=dataset)

    def switch(times: int) -> None:
        for n in range(times):
            press(viewer, Qt.Key.Key_PageDown if n % 2 == 0 else Qt.Key.Key_PageUp)
            qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
        settle(20)
        gc.collect()

    switch(2)  # warm up: napari's first layers of each kind
    start = rss_mb()
    switch(30)
    ours = rss_mb() - start
    alive = [o for o in gc.get_objects() if isinstance(o, Case)
             and any(str(root) in image.source for image in o.images.values())]
    assert 1 <= len(alive) <= 2  # the case shown, and the next one opened ahead
    assert len(viewer.layers) == 4
    # napari alone adding and removing the same layers as numpy arrays, in the same viewer
    case = panel.case
    ct = case.images["ct"]
    arrays = [np.asarray(ct.data)] + [np.asarray(ct.orientation.to_display(m.data))
                                      for m in case.annotations.values()]

    def plain(times: int) -> None:
        for _ in range(times):
            viewer.layers.clear()
            viewer.add_image(arrays[0])
            for mask in arrays[1:]:
                viewer.add_labels(mask)
            settle()
        gc.collect()

    plain(2)
    start = rss_mb()
    plain(30)
    napari_alone = rss_mb() - start
    assert ours <= napari_alone + 40, (ours, napari_alone)


def test_the_binding_asked_for_is_the_one_used(make_napari_viewer):
    """CI runs these tests under PyQt6 and again with QT_API=pyqt5."""
    import os

    import qtpy

    make_napari_viewer()
    wanted = os.environ.get("QT_API", "pyqt6")
    assert qtpy.API_NAME.lower() == wanted.lower()


def test_open_layers_switch_to_the_cache_once_written(make_napari_viewer, qtbot, tmp_path,
                                                      monkeypatch):
    from napari_grounding.readers import open_case

    monkeypatch.setenv("NAPARI_GROUNDING_CACHE", str(tmp_path / "cache"))
    root = write_sample(tmp_path / "s")
    viewer = make_napari_viewer(show=True)
    panel = show_case(viewer, open_case(root))
    source_ct = panel.case.images["ct"].data
    source_mask = panel.case.annotations["mask/1"].data
    qtbot.waitUntil(lambda: "cache" in panel.case.images["ct"].meta, timeout=30000)
    ct_layer = viewer.layers["CT"]
    assert ct_layer.data is panel.case.images["ct"].display_levels[0]  # the stored array
    assert panel.case.images["ct"].data is not source_ct
    reads = panel.case.images["ct"].reads
    start = reads.chunks
    viewer.dims.set_current_step(0, 55)  # a slice in a cache chunk not read yet
    viewer.screenshot(canvas_only=True, flash=False)
    assert reads.chunks > start  # slices now come from the cache
    np.testing.assert_array_equal(np.asarray(ct_layer.data[55]), np.asarray(source_ct[55]))
    ct = panel.case.images["ct"]
    np.testing.assert_array_equal(np.asarray(viewer.layers["finding 1"].data),
                                  np.asarray(ct.orientation.to_display(source_mask)))


def test_a_failing_background_job_is_a_notification(make_napari_viewer, qtbot, sample_root,
                                                    tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("NAPARI_GROUNDING_CACHE", str(blocker / "zarr"))  # the write must fail
    viewer = make_napari_viewer(show=True)
    before = len(notification_manager.records)
    panel = show_case(viewer, open_dataset(sample_root).open_case(CASE))
    qtbot.waitUntil(lambda: any("could not cache" in m for m in errors_since(before)),
                    timeout=20000)
    press(viewer, Qt.Key.Key_Down)  # the viewer goes on
    assert panel.selected_ids == ["finding/1"]
    assert "cache" not in panel.case.images["ct"].meta


def test_a_selection_slices_each_layer_once(docked):
    viewer, panel = docked
    points = []
    viewer.dims.events.point.connect(lambda _event: points.append(tuple(viewer.dims.point)))
    press(viewer, Qt.Key.Key_Down)
    assert panel.selected_ids == ["finding/1"]
    assert len(points) == 1  # one move of the slice, on a whole step (no snap-and-move-again)
