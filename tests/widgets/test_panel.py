"""The docked panel in a real napari viewer (run under Xvfb with Mesa)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from napari.utils.key_bindings import coerce_keybinding
from napari.utils.notifications import notification_manager
from qtpy.QtCore import Qt

from napari_grounding.layers import grounding_meta
from napari_grounding.metrics import mask_stats
from napari_grounding.readers import open_case, open_dataset
from napari_grounding.sample import CASE, ctrate_volume_path, make_phantom, write_sample
from napari_grounding.stored_array import CHUNKS
from napari_grounding.widgets.canvas import viewer_camera
from napari_grounding.widgets.launch import PANEL, dock_panel, show_case
from tests.widgets.gestures import click_canvas, press

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer_and_panel(make_napari_viewer, qtbot, sample_root):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1100, 800)
    panel = show_case(viewer, open_case(sample_root))
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    # laid out, as the user sees it before a click (a cached case has its statistics at once)
    buttons = panel.display.window_buttons.values()
    qtbot.waitUntil(lambda: not any(b.visibleRegion().isEmpty() for b in buttons), timeout=5000)
    return viewer, panel


def display_centre(case, index: int) -> np.ndarray:
    """The display index of a finding's centre, from the masks as numpy (independent path)."""
    ct = case.images["ct"]
    mask = np.asarray(case.annotations[f"mask/{index}"].data)
    return np.argwhere(ct.orientation.to_display(mask)).mean(axis=0)


def click(viewer, world_position) -> None:
    """A real left click on the canvas pixel showing a world point: its slice, all in view."""
    for axis in range(viewer.dims.ndim):
        if axis not in viewer.dims.displayed:
            viewer.dims.set_point(axis, float(world_position[axis]))
    viewer.reset_view()
    click_canvas(viewer, world_position)


def coloured_pixels(shot: np.ndarray, hue_channel: int) -> int:
    """Pixels where one RGB channel clearly dominates the other two."""
    rgb = shot[..., :3].astype(int)
    others = [c for c in range(3) if c != hue_channel]
    return int(np.sum((rgb[..., hue_channel] > rgb[..., others[0]] + 60)
                      & (rgb[..., hue_channel] > rgb[..., others[1]] + 60)))


def test_panel_lists_the_case_text(viewer_and_panel):
    _, panel = viewer_and_panel
    tree = panel.tree
    top = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
    assert [row.text(0) for row in top[3:]] == ["Clinical information", "Technique", "Findings",
                                               "Impressions"]
    assert top[0].text(1) == "2d · focal" and top[2].text(1) == "1c · non-focal"
    assert top[0].text(2) == "72" and top[2].text(4) == "2"  # voxels, instances
    assert top[0].text(3) == f"{72 * 2.5 * 2.5 * 5 / 1000:.2f}"


@pytest.mark.parametrize("index", [0, 1, 2])
def test_selecting_a_finding_goes_to_its_centre(viewer_and_panel, qtbot, index):
    viewer, panel = viewer_and_panel
    viewer.reset_view()
    whole_zoom = viewer_camera(viewer).zoom
    tree = panel.tree
    row = tree.topLevelItem(index)
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton,
                     pos=tree.visualItemRect(row).center())  # a click in the tree
    assert panel.selected_ids == [f"finding/{index}"]
    centre = display_centre(panel.case, index)
    assert viewer.dims.current_step[0] == round(centre[0])
    ct = panel.case.images["ct"]
    camera = viewer_camera(viewer)
    # the whole finding is on screen, inside the visible window of the volume
    mask = ct.orientation.to_display(np.asarray(panel.case.annotations[f"mask/{index}"].data))
    where = np.argwhere(mask)
    lo = np.asarray(ct.origin) + where.min(axis=0) * np.asarray(ct.spacing)
    hi = np.asarray(ct.origin) + where.max(axis=0) * np.asarray(ct.spacing)
    half = np.asarray(viewer.canvas.size) / camera.zoom / 2
    shown_lo = np.asarray(camera.center[-2:]) - half
    shown_hi = np.asarray(camera.center[-2:]) + half
    assert np.all(shown_lo <= lo[1:]) and np.all(hi[1:] <= shown_hi)
    if panel.case.item(f"finding/{index}").tags["extent"] == "focal":
        assert camera.zoom > 1.5 * whole_zoom
    else:
        assert camera.zoom >= whole_zoom


def test_clicking_a_mask_voxel_selects_its_finding(viewer_and_panel):
    viewer, panel = viewer_and_panel
    case = panel.case
    ct = case.images["ct"]
    effusion = ct.orientation.to_display(np.asarray(case.annotations["mask/1"].data))
    voxel = np.argwhere(effusion)[len(np.argwhere(effusion)) // 2]
    world = np.asarray(ct.origin) + voxel * np.asarray(ct.spacing)
    click(viewer, world)
    assert panel.selected_ids == ["finding/1"]
    emphysema = ct.orientation.to_display(np.asarray(case.annotations["mask/2"].data))
    voxel = np.argwhere(emphysema == 2)[0]  # the second entity selects the same finding
    click(viewer, np.asarray(ct.origin) + voxel * np.asarray(ct.spacing))
    assert panel.selected_ids == ["finding/2"]
    click(viewer, np.asarray(ct.origin))  # air in a corner: selection stays
    assert panel.selected_ids == ["finding/2"]


def test_only_selected_and_contours_change_the_picture(viewer_and_panel, qtbot):
    viewer, panel = viewer_and_panel
    panel.session.set_display("selected")
    panel.select_items(["finding/0"])
    visible = {grounding_meta(la)["annotation"]: la.visible for la in viewer.layers
               if grounding_meta(la)["role"] == "annotation"}
    assert visible == {"mask/0": True, "mask/1": False, "mask/2": False}
    filled = viewer.screenshot(canvas_only=True, flash=False)
    red_filled = coloured_pixels(filled, 0)
    assert red_filled > 200  # the nodule, zoomed in, in the first finding's red
    assert coloured_pixels(filled, 1) == 0
    panel.display.contours.setChecked(True)
    assert all(la.contour == 1 for la in viewer.layers if grounding_meta(la)["role"] == "annotation")
    outline = coloured_pixels(viewer.screenshot(canvas_only=True, flash=False), 0)
    assert 0 < outline < red_filled * 0.8
    panel.display.contours.setChecked(False)
    panel.select_items(["finding/1"])
    effusion = viewer.screenshot(canvas_only=True, flash=False)
    assert coloured_pixels(effusion, 0) == 0 and coloured_pixels(effusion, 1) > 200
    panel.session.set_display("all")
    assert all(la.visible for la in viewer.layers)


def test_window_presets_by_button_and_key(viewer_and_panel, qtbot):
    viewer, panel = viewer_and_panel
    ct_layer = viewer.layers[0]
    assert tuple(ct_layer.contrast_limits) == (-1350.0, 150.0)
    qtbot.mouseClick(panel.display.window_buttons["mediastinum"], Qt.MouseButton.LeftButton)
    assert tuple(ct_layer.contrast_limits) == (-160.0, 240.0)
    assert panel.display.window_buttons["mediastinum"].isChecked()
    press(viewer, Qt.Key.Key_3, Qt.KeyboardModifier.AltModifier)
    assert tuple(ct_layer.contrast_limits) == (-500.0, 1300.0)
    assert [n for n, b in panel.display.window_buttons.items() if b.isChecked()] == ["bone"]
    ct_layer.contrast_limits = (-300.0, 300.0)  # the user's own limits: no preset is marked
    assert not any(b.isChecked() for b in panel.display.window_buttons.values())
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot[..., :3].std() > 5  # a real picture, not a black canvas


def test_lazy_viewing_reads_few_slices(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_GROUNDING_CACHE_ON_OPEN", "0")  # measure viewing alone
    root = write_sample(tmp_path, make_phantom((96, 96, 200), (3.0, 3.0, 1.5)))
    case = open_case(root)
    viewer = make_napari_viewer(show=True)
    panel = show_case(viewer, case, item="finding/0")
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    viewer.screenshot(canvas_only=True, flash=False)
    reads = case.images["ct"].reads
    volume_bytes = 96 * 96 * 200 * 2
    assert 1 <= reads.chunks <= 6
    assert reads.bytes <= 0.03 * volume_bytes
    assert viewer.dims.current_step[0] == round(display_centre(case, 0)[0])


def test_lps_and_ras_files_look_the_same(make_napari_viewer, qtbot, tmp_path, phantom):
    from napari_grounding.sample import ras_copy
    from tests.conftest import save_nifti

    lps = save_nifti(tmp_path / "lps.nii.gz", phantom.hu, phantom.affine)
    ras = save_nifti(tmp_path / "ras.nii.gz", *ras_copy(phantom.hu, phantom.affine))
    shots = []
    for path in (lps, ras):
        viewer = make_napari_viewer(show=True)
        viewer.window.resize(900, 700)
        qtbot.waitExposed(viewer.window._qt_window)
        panel = show_case(viewer, open_case(path))
        qtbot.wait(300)  # framed once the dock has settled
        viewer.window.remove_dock_widget(panel)  # the same canvas size in both windows
        viewer.dims.set_current_step(0, 20)
        qtbot.wait(100)
        shots.append(viewer.screenshot(canvas_only=True, flash=False))
    assert shots[0].shape == shots[1].shape
    assert shots[0][..., :3].std() > 5
    np.testing.assert_array_equal(shots[0], shots[1])


def test_reader_plugin_opens_case_and_docks_panel(make_napari_viewer, qtbot, sample_root):
    viewer = make_napari_viewer()
    viewer.open(str(sample_root), plugin="napari-grounding")
    assert [la._type_string for la in viewer.layers] == ["image", "labels", "labels", "labels"]
    assert PANEL in " ".join(viewer.window.dock_widgets)
    panel = dock_panel(viewer)
    assert panel.case is not None and panel.case.id == CASE
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    qtbot.waitUntil(lambda: viewer.layers.selection.active is viewer.layers["CT"], timeout=2000)
    panel.select_items(["finding/1"])
    assert viewer.dims.current_step[0] == round(display_centre(panel.case, 1)[0])


def test_dataset_json_opens_without_naming_the_plugin(make_napari_viewer, sample_root):
    viewer = make_napari_viewer()
    viewer.open(str(sample_root / "dataset.json"), plugin=None)  # as `napari PATH` does
    assert len(viewer.layers) == 4
    assert dock_panel(viewer).case.dataset == "rexgroundingct"


def test_reader_bad_input_is_a_notification(make_napari_viewer, tmp_path):
    (tmp_path / "dataset.json").write_text('{"train": [}')
    viewer = make_napari_viewer()
    before = len(notification_manager.records)
    viewer.open(str(tmp_path), plugin="napari-grounding")
    assert len(viewer.layers) == 0
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any("dataset.json: not valid JSON (line 1, column 12" in m for m in messages)


def test_text_only_case_shows_its_findings(make_napari_viewer, tmp_path, shared_data):
    shutil.copy(shared_data / "rexgroundingct" / "dataset.json", tmp_path / "dataset.json")
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path), plugin="napari-grounding")
    panel = dock_panel(viewer)
    assert len(viewer.layers) == 0
    assert panel.case.id == "train_1741_b_2"
    assert panel.tree.topLevelItem(0).text(0).startswith("Irregularly circumscribed nodular")
    assert panel.problems.isVisibleTo(panel) and "not found" in panel.problems.text()


def test_sample_menu_opens_the_phantom(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grounding", "ct-phantom")
    assert len(viewer.layers) == 4
    assert (tmp_path / "napari-grounding" / "sample" / "ct-phantom" / "dataset.json").is_file()
    panel = dock_panel(viewer)
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    assert panel.tree.topLevelItemCount() == 7


def test_case_switcher(make_napari_viewer, qtbot, sample_copy):
    raw = json.loads((sample_copy / "dataset.json").read_text())
    second = dict(raw["train"][0], name="train_2_a_1.nii.gz",
                  findings={"0": "Only the nodule."}, categories={"0": "2d"},
                  entity_counts={"0": 1}, pixels={"0": 72})
    raw["train"].append(second)
    (sample_copy / "dataset.json").write_text(json.dumps(raw))
    second_ct = ctrate_volume_path(sample_copy, "train_2_a_1")
    second_ct.parent.mkdir(parents=True)
    shutil.copy(ctrate_volume_path(sample_copy, CASE), second_ct)
    viewer = make_napari_viewer()
    dataset = open_dataset(sample_copy)
    panel = show_case(viewer, dataset.open_case(CASE), dataset=dataset)
    assert panel.case_bar.case_box.isVisibleTo(panel) and panel.case_bar.case_box.count() == 2
    panel.case_bar.case_box.setCurrentIndex(1)
    panel.case_bar.case_box.activated.emit(1)
    assert panel.case.id == "train_2_a_1"
    assert panel.tree.topLevelItem(0).text(0) == "Only the nodule."
    assert [grounding_meta(la)["case_key"] for la in viewer.layers] == [
        "ct-rate/train_2_a_1"]  # its CT; its mask file is missing
    assert any("mask file not found" in p for p in panel.case.problems)


def test_closing_the_panel_unhooks_the_viewer(make_napari_viewer, sample_root):
    viewer = make_napari_viewer()
    panel = show_case(viewer, open_case(sample_root))
    assert panel.link._on_mouse in viewer.mouse_drag_callbacks
    panel.close()
    assert panel.link._on_mouse not in viewer.mouse_drag_callbacks
    assert coerce_keybinding("Alt-1") not in viewer.keymap


def test_mask_stats_match_between_panel_and_numpy(viewer_and_panel):
    _, panel = viewer_and_panel
    for annotation_id, stats in panel.stats.items():
        direct = mask_stats(np.asarray(panel.case.annotations[annotation_id].data))
        assert stats == direct


def test_view_command_opens_the_case_at_the_item(monkeypatch, qtbot, sample_root):
    import napari

    from napari_grounding.cli import main

    monkeypatch.setattr(napari, "run", lambda: None)  # keep the window, skip the event loop
    assert main(["view", str(sample_root), "--item", "finding/1"]) == 0
    viewer = napari.current_viewer()
    try:
        panel = dock_panel(viewer)
        qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
        assert panel.selected_ids == ["finding/1"]
        assert viewer.dims.current_step[0] == round(display_centre(panel.case, 1)[0])
        assert viewer.title == f"napari-grounding: rexgroundingct/{CASE}"
    finally:
        viewer.close()


def test_first_opening_writes_the_cache_for_the_next(make_napari_viewer, qtbot, tmp_path,
                                                     monkeypatch):
    monkeypatch.setenv("NAPARI_GROUNDING_CACHE", str(tmp_path / "cache"))
    root = write_sample(tmp_path / "s")
    viewer = make_napari_viewer()
    first = show_case(viewer, open_case(root))
    assert "cache" not in first.case.images["ct"].meta
    qtbot.waitUntil(lambda: any((tmp_path / "cache").glob("*/v-*.ome.zarr")), timeout=60000)
    # once written, the open case's layers read from the cache
    qtbot.waitUntil(lambda: "cache" in first.case.images["ct"].meta, timeout=20000)
    viewer.screenshot(canvas_only=True, flash=False)
    assert first.case.images["ct"].reads.chunks >= 1
    again = open_case(root)
    assert again.images["ct"].meta["cache"].endswith(".ome.zarr")
    CHUNKS.clear()  # else the first case's decoded chunks (the same version) serve it all
    panel = show_case(viewer, again, item="finding/0")
    assert panel.stats is not None  # kept by the cache: no pass over the masks, at once
    # the reopened case's layers slice its cache's arrays directly (no dask graph per slice)
    ct_layer = next(la for la in viewer.layers if grounding_meta(la)["role"] == "image")
    assert ct_layer.data is again.images["ct"].display_levels[0]
    mask_layer = next(la for la in viewer.layers if grounding_meta(la)["role"] == "annotation")
    assert mask_layer.data is again.annotations["mask/0"].display_data
    viewer.screenshot(canvas_only=True, flash=False)
    assert again.images["ct"].reads.chunks >= 1
    assert viewer.dims.current_step[0] == round(display_centre(again, 0)[0])
