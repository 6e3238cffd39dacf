"""Putting a case in front of the user: dock the panel, add the layers, select an item."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..case_queue import read_case_scores, read_qc_flags
from ..model import Case
from ..review import latest, read_log

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
              dataset: Any = None, log: str | Path | None = None,
              resume: bool = False, qc: str | Path | None = None,
              other_log: str | Path | None = None,
              scores: str | Path | None = None) -> GroundingPanel:
    """Dock the panel and show a case; ``log`` is the review log to use (else the default
    beside the data); ``resume`` goes on where the reviewer's log left off instead; ``qc`` a
    ``napari-grounding qc`` CSV whose flagged cases the queue can filter."""
    panel = dock_panel(viewer)
    if log is not None:
        panel.log_path = Path(log).expanduser()
    if qc is not None:
        panel.queue.qc_flags = read_qc_flags(qc)
    if scores is not None:  # an evaluate CSV: the queue can list the worst cases first
        panel.queue.scores = read_case_scores(scores)
    if other_log is not None:  # another reviewer's: where the two disagree is a queue filter
        decisions, _problems = read_log(other_log)
        panel.queue.others = latest(decisions)
    if dataset is not None:
        panel.set_dataset(dataset)
    panel.show_case(case)
    if item:
        panel.select_items([item])
    elif resume:
        panel.resume()
    return panel
