"""Gestures as a user makes them: real key and mouse events on napari's canvas widget."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPoint, Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication

from napari_grounding.widgets.canvas import viewer_camera


def canvas_widget(viewer):
    return viewer.window._qt_viewer.canvas.native


def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        QApplication.processEvents()


def press(viewer, key: Qt.Key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    """A key pressed and released on the canvas, with the focus there as after a click, in the
    active window (as a user's is: the window's menu and action shortcuts are live)."""
    canvas = canvas_widget(viewer)
    window = canvas.window()
    if not window.isActiveWindow():
        window.activateWindow()
        window.raise_()
        settle()
    canvas.setFocus()
    QTest.keyClick(canvas, key, modifier)
    settle()


def world_to_canvas(viewer, world) -> QPoint:
    """The canvas pixel showing a world point (2D display)."""
    canvas = canvas_widget(viewer)
    camera = viewer_camera(viewer)
    shown = np.asarray(world, dtype=float)[list(viewer.dims.displayed)]
    centre = np.asarray(camera.center, dtype=float)[-2:]
    row, column = (shown - centre) * camera.zoom + np.array([canvas.height(), canvas.width()]) / 2
    return QPoint(int(round(column)), int(round(row)))


def click_canvas(viewer, world) -> None:
    """A left click on the canvas pixel that shows a world point."""
    QTest.mouseClick(canvas_widget(viewer), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, world_to_canvas(viewer, world))
    settle()
