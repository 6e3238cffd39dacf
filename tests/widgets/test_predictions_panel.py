"""A model's predictions against the ground truth in the viewer: scores per item, worst first,
and the error colours on the canvas."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_grounding.readers import open_dataset
from napari_grounding.sample import CASE
from napari_grounding.widgets.launch import show_case
from tests.test_predictions import numpy_dice, shifted, write_prediction
from tests.widgets.gestures import press, settle

pytestmark = pytest.mark.gui


def hue_pixels(shot: np.ndarray) -> dict[str, int]:
    """Pixels of the three error colours (Okabe-Ito, blended over the CT at 0.7 opacity)."""
    r, g, b = (shot[..., c].astype(int) for c in range(3))
    return {"true positive": int(np.sum((g > r + 60) & (g > b + 10))),  # bluish green
            "false positive": int(np.sum((r > b + 80) & (g > b + 50))),  # orange
            "false negative": int(np.sum((b > r + 60) & (b > g + 20)))}  # blue


@pytest.fixture
def compared(make_napari_viewer, qtbot, sample_root, phantom, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_GROUNDING_CACHE_ON_OPEN", "0")
    pred = write_prediction(tmp_path / "pred", shifted(phantom.masks))
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1200, 850)
    dataset = open_dataset(sample_root)
    panel = show_case(viewer, dataset.open_case(CASE), dataset=dataset)
    panel.load_predictions(str(pred))  # what the Predictions… button does with the path
    qtbot.waitUntil(lambda: panel.session.scores is not None and panel.stats is not None,
                    timeout=30000)
    settle()
    return viewer, panel, phantom


def test_scores_per_item_match_numpy_and_sort_worst_first(compared):
    viewer, panel, phantom = compared
    expected = {f"finding/{i}": numpy_dice(phantom.masks[i], shifted(phantom.masks)[i])
                for i in range(3)}
    for row, item_id in enumerate(expected):
        text = panel.tree.topLevelItem(row).text(7)
        assert text == f"{expected[item_id]:.2f}"
        assert panel.tree.topLevelItem(row).toolTip(7).startswith(f"Dice {expected[item_id]:.3f}")
    assert panel.tree.topLevelItem(0).text(3) == f"{72 * 2.5 * 2.5 * 5 / 1000:.2f}"  # own set only
    panel.display.worst_first.setChecked(True)
    worst = sorted(expected, key=expected.get)
    assert [panel.tree.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole) for i in range(3)] == worst
    press(viewer, Qt.Key.Key_Down)  # the keys follow the new order
    assert panel.selected_ids[0] == worst[1]


def test_error_colours_on_the_canvas(compared):
    viewer, panel, _ = compared
    panel.session.set_display("selected")
    panel.select_items(["finding/1"])  # the effusion, moved 3 voxels by the "model"
    settle()
    before = hue_pixels(viewer.screenshot(canvas_only=True, flash=False))
    press(viewer, Qt.Key.Key_E, Qt.KeyboardModifier.AltModifier)
    assert panel.display.errors.isChecked()
    assert [la.name for la in viewer.layers if "errors" in la.name] == ["finding 1 errors · prediction"]
    shot = viewer.screenshot(canvas_only=True, flash=False)
    found = hue_pixels(shot)
    assert found["true positive"] > 500
    assert found["false positive"] > 50 and found["false negative"] > 50
    assert found["false positive"] > before["false positive"] + 50
    press(viewer, Qt.Key.Key_E, Qt.KeyboardModifier.AltModifier)  # back to the masks
    assert not any("errors" in la.name for la in viewer.layers)
