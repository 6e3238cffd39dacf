"""The docked panel: a case's text, and the link between text and what it points at.

The panel owns a ``Session`` and wires its views to it: the case bar, the filters, the text
pane, the display controls, the canvas link and the keys. It attaches to the viewer when docked
and detaches when napari takes it out (napari calls ``setParent(None)``, not ``close()``).
"""

from __future__ import annotations

import contextlib
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import QDockWidget, QLabel, QVBoxLayout, QWidget

from ..layers import case_layers, grounding_meta
from ..metrics import case_stats, stats_known
from ..model import Case, GroundingError
from ..review import ReviewLog, data_root, default_log_path, remembered_reviewer
from ..session import Session
from . import background
from .case_bar import CaseBar
from .display_controls import DisplayControls
from .filter_form import FilterForm
from .keys import KEYS, KeyBindings, qt_sequence
from .queue_dock import CaseQueue
from .review_form import ReviewForm
from .text_pane import TextPane
from .text_tree import case_badges
from .viewer_link import ViewerLink

if TYPE_CHECKING:
    import napari

# keys the panel answers too while it has the focus (the tree keeps its own Up/Down)
PANEL_KEYS = [k for k in KEYS if k not in ("Up", "Down")]
WINDOW_TITLE = "napari-grounding: "  # + the case shown


class GroundingPanel(QWidget):
    """Text items of the open case, linked both ways to their annotations in the viewer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session = Session()
        self.log_path: Path | None = None  # --log FILE; else beside the data, per reviewer
        self.link = ViewerLink(napari_viewer, self.session)
        self.keys = KeyBindings(napari_viewer, self.session)
        self._build()
        self._gone = False  # Qt has deleted the panel: late background results are dropped
        self.destroyed.connect(lambda *_, session=self.session: session.disconnect_all())
        self.session.case_requested.connect(self.open_case_id)
        self.session.notice.connect(show_info)
        self.session.case_changed.connect(self._on_case)
        self.attach()
        for layer in list(self.viewer.layers):
            self._adopt_case_of(layer)

    def _build(self) -> None:
        self.case_bar = CaseBar(self.session)
        self.case_bar.images_folder_chosen.connect(self.set_images_folder)
        self.case_bar.predictions_chosen.connect(self.load_predictions)
        self.title = QLabel("No case open. Open a dataset folder or File > Open Sample.")
        self.title.setWordWrap(True)
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #f0a030;")
        self.problems.setVisible(False)
        self.filter_form = FilterForm()
        self.filter_form.changed.connect(self.session.set_filters)
        self.text = TextPane(self.session)
        self.display = DisplayControls(self.session)
        self.review = ReviewForm(self.session, self)
        self.review.reviewer_named.connect(self.open_review)
        self.queue = CaseQueue(self.session)
        self._queue_docked = False
        self._ahead: tuple[str, Case] | None = None  # the next case, opened in the background
        self.setMinimumWidth(520)  # room for the sentence next to its badges, numbers, verdict
        layout = QVBoxLayout(self)
        for widget in (self.case_bar, self.title, self.problems, self.filter_form):
            layout.addWidget(widget)
        layout.addWidget(self.text, 1)  # the panel's height goes to the text
        layout.addWidget(self.display)
        layout.addWidget(self.review)
        for key in PANEL_KEYS:
            shortcut = QShortcut(QKeySequence(qt_sequence(key)), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda key=key: KEYS[key][1](self.session))

    # -- lifecycle --------------------------------------------------------------------------
    def attach(self) -> None:
        """Hook into the viewer (idempotent): layer events, mouse, keys."""
        self.link.attach()
        self.keys.attach()
        self._dock_queue()
        if self._adopt_inserted not in self.viewer.layers.events.inserted.callbacks:
            self.viewer.layers.events.inserted.connect(self._adopt_inserted)

    def _while_shown(self, callback: Any) -> Any:
        """``callback`` for a background result, dropped once the panel is closed."""
        def deliver(*args: Any) -> None:
            if not self._gone:
                callback(*args)

        return deliver

    def detach(self) -> None:
        """Undo everything the panel hooked into the viewer; the keys bound before come back."""
        if self.session.review is not None:
            self.session.review.close()
        self.link.detach()
        self.keys.detach()
        self._undock_queue()
        self.viewer.layers.events.inserted.disconnect(self._adopt_inserted)

    def _dock_queue(self) -> None:
        """The queue as a tab behind the panel: the panel's height stays the text's."""
        if len(self.session.case_ids) > 1 and not self._queue_docked:
            self.viewer.window.add_dock_widget(self.queue, name="Case queue", area="right",
                                               tabify=True)
            self._queue_docked = True
            dock = self.parent()
            while dock is not None and not isinstance(dock, QDockWidget):
                dock = dock.parent()
            if dock is not None:
                dock.raise_()  # the panel's tab in front

    def _undock_queue(self) -> None:
        """The queue leaves with the panel: alone it would open cases with no text shown."""
        if not self._queue_docked:
            return
        self._queue_docked = False
        # the window may be closing: its docks go with it
        with contextlib.suppress(LookupError, RuntimeError, AttributeError):
            self.viewer.window.remove_dock_widget(self.queue)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is None:
                self.detach()  # napari removed the dock widget
            else:
                self.attach()  # docked (again)
        return super().event(event)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        self._gone = True
        self.detach()
        super().closeEvent(event)

    # -- cases ------------------------------------------------------------------------------
    @property
    def case(self) -> Case | None:
        return self.session.case

    @property
    def stats(self) -> dict[str, Any] | None:
        return self.session.stats

    def set_dataset(self, dataset: Any) -> None:
        """Offer the dataset's cases (switcher, PageUp/PageDown, the case queue dock)."""
        self.session.set_dataset(dataset)
        self._dock_queue()
        if self.session.case is not None and self.session.stats is not None:
            self._open_next_ahead()  # else once the statistics are in (``_on_stats``)

    def open_case_id(self, case_id: str) -> None:
        """Open another case of the dataset, replacing the one shown."""
        if self.session.dataset is None:
            return
        ahead, self._ahead = self._ahead, None
        try:
            case = ahead[1] if ahead and ahead[0] == case_id else \
                self.session.dataset.open_case(case_id)
        except GroundingError as err:
            show_error(str(err))
            return
        self.show_case(case)

    def set_images_folder(self, folder: str) -> None:
        """Pair the dataset's rows with pictures in ``folder`` and reopen the case."""
        dataset, case = self.session.dataset, self.session.case
        if dataset is None or case is None:
            return
        try:
            dataset.set_images(Path(folder))
            reopened = dataset.open_case(case.id)
        except GroundingError as err:
            show_error(str(err))
            return
        self.show_case(reopened)

    def load_predictions(self, path: str, name: str = "prediction",
                         threshold: float | None = None) -> None:
        """Compare a model's predictions with the ground truth on this case and every case
        opened after it (as ``--pred``)."""
        from ..predictions import WithPredictions, add_predictions, check_predictions

        case = self.session.case
        if case is None:
            return
        try:
            check_predictions(path)
            if self.session.dataset is not None:
                dataset = WithPredictions(self.session.dataset, path, name, threshold)
                self.session.dataset = dataset
                reopened = dataset.open_case(case.id)
            else:
                reopened = case
                add_predictions(reopened, path, name, threshold)
        except GroundingError as err:
            show_error(str(err))
            return
        self.show_case(reopened)

    def show_case(self, case: Case) -> None:
        """Show the case's layers (another case's are updated in place where they match,
        else replaced) and list its text."""
        in_place = self.link.update_in_place(case)
        self.set_case(case)
        if not in_place:
            with self.link.adding_layers():
                for data, kwargs, layer_type in case_layers(case):
                    getattr(self.viewer, f"add_{layer_type}")(data, **kwargs, visible=False)
                # framed and moved to the first item while hidden: each layer is then sliced
                # once, where the user first sees it
                self.link.fit_all()
                self._select_first()
        self.link.keep_picture_active()
        self._select_first()

    def set_case(self, case: Case) -> None:
        """List a case whose layers are (or are about to be) in the viewer; the layers of
        any other grounding case leave."""
        self.remove_other_layers(case)
        self.session.set_case(case)

    def remove_other_layers(self, case: Case) -> None:
        """Layers of any other opening (even of a case with the same key) leave the viewer."""
        for layer in [la for la in self.viewer.layers if grounding_meta(la)]:
            if grounding_meta(layer)["case"] is not case:
                self.viewer.layers.remove(layer)

    # -- review -----------------------------------------------------------------------------
    def review_log_path(self, reviewer: str) -> Path | None:
        """--log FILE, else ``.napari-grounding/`` beside the data (or the user data folder)."""
        if self.log_path is not None:
            return self.log_path
        case = self.session.case
        if case is None:
            return None
        root = data_root(self.session.dataset, case)
        return default_log_path(root, case.key.split("/")[0], reviewer)

    def open_review(self, reviewer: str | None = None) -> None:
        """Open (or switch to) the reviewer's log for the open dataset."""
        reviewer = reviewer or remembered_reviewer()
        path = self.review_log_path(reviewer) if reviewer else None
        current = self.session.review
        if path is None or (current is not None and current.path == path
                            and current.reviewer == reviewer):
            return
        try:
            log = ReviewLog(path, reviewer)
        except GroundingError as err:
            show_error(str(err))
            return
        if current is not None:
            current.close()
        self.session.set_review(log)

    def carry_earlier_decisions(self) -> None:
        """Into the default log, the decisions a reviewer left in the open study's own log."""
        if self.log_path is not None:
            return  # --log FILE: the reviewer chose the log
        try:
            count, earlier = self.session.carry_earlier_decisions()
        except GroundingError as err:
            show_error(str(err))
            return
        if count:
            show_info(f"{count} earlier decision{'s' * (count != 1)} of this study carried from "
                      f"{earlier} into {self.session.review.path}")

    def resume(self) -> None:
        """Go to the case of the reviewer's latest decision in this dataset (it opens on its
        first item still to review)."""
        case_id = self.session.resume_case()
        if case_id is not None:
            self.session.request_case(case_id)

    def _on_case(self, case: Case | None) -> None:
        if case is None:
            return
        self.open_review()
        self.carry_earlier_decisions()
        self.title.setText(f"<b>{html.escape(case.dataset)}</b> / {html.escape(case.id)}<br>"
                           f"{case_badges(case)}")
        self.title.setToolTip("\n".join(f"{k}: {v}" for k, v in case.tags.items()))
        if self.viewer.title == "napari" or self.viewer.title.startswith(WINDOW_TITLE):
            self.viewer.title = f"{WINDOW_TITLE}{case.dataset}/{case.id}"  # the case shown
        self.problems.setText("\n".join(f"⚠ {p}" for p in case.problems))
        self.problems.setVisible(bool(case.problems))
        for problem in case.problems:
            show_warning(problem)
        self.filter_form.set_case(case)
        if stats_known(case):  # measured ahead, or kept by the cache: no pixel is read
            self.session.set_stats(case.key, case_stats(case))
        # background work starts once the layers are in, not while napari adds them: its
        # threads would take the GIL from the UI thread for the whole opening
        QTimer.singleShot(0, self._while_shown(lambda: self._start_background(case)))

    def _start_background(self, case: Case) -> None:
        """The case's statistics, cache and scores; then the next case, opened ahead."""
        if case is not self.session.case:
            return  # already left
        if self.session.stats is None:
            background.start_stats(case, self._while_shown(self._on_stats))
        background.start_caching(case, self._while_shown(self._on_cached))
        if case.added_sets:
            background.start_scores(case, self._while_shown(self.session.set_scores))
        if self.session.stats is not None:
            self._open_next_ahead()

    def _on_stats(self, case_key: str, stats: dict[str, Any]) -> None:
        self.session.set_stats(case_key, stats)
        if self.session.case is not None and self.session.case.key == case_key:
            self._open_next_ahead()  # one background read at a time: the next case after this

    def _open_next_ahead(self) -> None:
        self._ahead = None
        following = self.session.neighbour_case(1)
        if following is not None and self.session.dataset is not None:
            background.start_prefetch(self.session.dataset, following,
                                      self._while_shown(self._on_ahead))

    def _on_ahead(self, case_id: str, case: Case) -> None:
        if case_id == self.session.neighbour_case(1):
            self._ahead = (case_id, case)

    def _on_cached(self, case_key: str, path: Any) -> None:
        """The cache of the open case is written: its layers read from it from now on (a
        ``.nii.gz`` must be inflated from its start for every slice; the cache need not)."""
        case = self.session.case
        if case is None or case.key != case_key:
            return
        from ..store import open_cache

        try:
            cached, masks = open_cache(Path(path), "ct")
        except (GroundingError, OSError, KeyError, ValueError) as err:
            show_warning(f"{case.id}: cache written but not readable ({err}); reading the source")
            return
        ct = case.images["ct"]
        if cached.data.shape != ct.data.shape or cached.data.dtype != ct.data.dtype:
            return
        ct.data, ct.reads, ct.display_levels = cached.data, cached.reads, cached.display_levels
        ct.meta["cache"] = str(path)
        for mask_id, cached_mask in masks.items():
            annotation = case.annotations.get(mask_id)
            if annotation is not None and cached_mask.data.shape == annotation.data.shape:
                annotation.data, annotation.display_data = cached_mask.data, cached_mask.display
                annotation.stats = annotation.stats or cached_mask.stats
        self.link.reload_data()

    def _select_first(self) -> None:
        """A case opens on its first item still to review, else its first grounded item."""
        if self.session.selected:
            return
        first = self.session.first_grounded_item()
        log, case = self.session.review, self.session.case
        if log is not None and case is not None:
            ids = [i.id for i in self.session.reviewable_items()]
            key = log.first_unreviewed([case.item_key(case.item(i)) for i in ids])
            first = ids[[case.item_key(case.item(i)) for i in ids].index(key)] if key else first
        if first is not None:
            self.session.select([first])

    def _adopt_inserted(self, event: Any) -> None:
        self._adopt_case_of(event.value)

    def _adopt_case_of(self, layer: Any) -> None:
        """Take up the case of a layer added by napari's reader or the sample menu."""
        meta = grounding_meta(layer)
        if meta and meta["case"] is not self.session.case:
            self.set_case(meta["case"])
            self.link.adopt(layer)
        if meta and not self.session.selected and not self.link.adding:
            self._select_first()  # (``show_case`` selects once its layers are in and framed)
        if meta:  # napari makes each added layer active: the picture takes the keys back
            QTimer.singleShot(0, self._while_shown(self.link.keep_picture_active))

    # -- for scripts and tests --------------------------------------------------------------
    @property
    def tree(self) -> Any:
        return self.text.tree

    @property
    def selected_ids(self) -> list[str]:
        return list(self.session.selected)

    def select_items(self, item_ids: list[str], navigate: bool = True) -> None:
        """Select text items by id (unknown ids are a GroundingError) and go there."""
        self.session.select(item_ids, navigate)

    def set_filter(self, tag: str, value: str) -> None:
        self.filter_form.set_filter(tag, value)

    def set_window(self, name: str) -> None:
        self.session.set_window(name)
