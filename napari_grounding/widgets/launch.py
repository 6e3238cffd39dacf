"""Putting a case in front of the user: dock the panel, add the layers, select an item."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..model import Case

if TYPE_CHECKING:
    import napari

    from .panel import GroundingPanel

PLUGIN = "napari-grounding"
PANEL = "Grounding panel"


def dock_panel(viewer: napari.viewer.Viewer) -> GroundingPanel:
    """The viewer's grounding panel, docked on first use (napari keeps one per viewer)."""
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, PANEL)
    return panel


def show_case(viewer: napari.viewer.Viewer, case: Case, item: str | None = None,
              dataset: Any = None) -> GroundingPanel:
    panel = dock_panel(viewer)
    panel.show_case(case)
    if dataset is not None:
        panel.set_dataset(dataset)
    if item:
        panel.select_items([item])
    return panel
