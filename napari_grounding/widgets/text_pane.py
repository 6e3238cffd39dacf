"""The text of a case: the tree of items and the details of the selected one."""

from __future__ import annotations

import html
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QScrollArea, QSplitter, QWidget

from ..describe import annotation_summary
from ..filters import kept_items
from ..model import Case
from ..session import Session
from .review_form import VERDICT_COLOURS
from .text_tree import REVIEW_COLUMN, SCORE_COLUMN, STATS_COLUMNS, TextTree


def score_badge(score: Any) -> tuple[str, str]:
    """The Score column's text and tooltip for an ItemScore."""
    if score.missing:
        return "missing", "the prediction has nothing for this item"
    if score.dice is not None:
        tip = f"Dice {score.dice:.3f}, IoU {score.iou:.3f}, hit {'yes' if score.hit else 'no'}"
        if score.instance_f1 is not None:
            tip += (f"; instances {score.matched}/{score.gt_instances} matched of "
                    f"{score.pred_instances} predicted, F1 {score.instance_f1:.3f}")
        return f"{score.dice:.2f}", tip
    if score.instance_f1 is not None:
        ious = ", ".join(f"{v:.2f}" for v in score.box_ious)
        return f"{score.instance_f1:.2f}", f"box F1 {score.instance_f1:.3f}; box IoUs: {ious}"
    return "", ""


class TextPane(QSplitter):
    """Tree above, details below (a draggable split); selection goes through the session."""

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(Qt.Orientation.Vertical, parent)
        self.session = session
        self._selected_by_click = False
        self.tree = TextTree()
        self.tree.itemSelectionChanged.connect(self._on_tree_selection)
        self.tree.itemClicked.connect(self._on_tree_click)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.details)
        self.addWidget(self.tree)
        self.addWidget(scroll)
        self.setStretchFactor(0, 4)
        self.setStretchFactor(1, 1)
        session.case_changed.connect(self._on_case)
        session.stats_changed.connect(self._on_stats)
        session.selection_changed.connect(self._on_selection)
        session.filters_changed.connect(self._on_filters)
        session.verdict_recorded.connect(self._show_verdicts)
        session.scores_changed.connect(self._show_scores)
        session.order_changed.connect(lambda _on: self._on_case(self.session.case))
        session.review_changed.connect(self._show_verdicts)

    def _on_case(self, case: Case | None) -> None:
        blocked = self.tree.blockSignals(True)  # re-listing is no selection by the user
        try:
            self._list(case)
        finally:
            self.tree.blockSignals(blocked)

    def _list(self, case: Case | None) -> None:
        self.tree.clear()
        self.details.setText("")
        if case is None:
            return
        has_masks = any(a.kind == "mask" for a in case.annotations.values())
        three_d = any(i.data.ndim == 3 for i in case.images.values())
        for column in STATS_COLUMNS:
            ct_only = column in (3, 5)  # mL and slice range
            pixels_only = column == 2  # a CT shows mL; its voxel count is in the details
            self.tree.setColumnHidden(column, not has_masks or (ct_only and not three_d)
                                      or (pixels_only and three_d))
        self.tree.populate(case, self.session.ranked_items() if self.session.worst_first else None)
        self._show_verdicts()
        self._fill_scores(self.session.scores)
        if self.session.stats is not None:
            self.tree.set_stats(case, self.session.stats)
        if self.session.selected:
            self.tree.select_ids(list(self.session.selected))
            self._show_details()

    def _show_verdicts(self, *_args: Any) -> None:
        case, log = self.session.case, self.session.review
        if case is None:
            return
        self.tree.setColumnHidden(REVIEW_COLUMN, log is None)
        decisions = log.decisions() if log is not None else {}
        for item in case.walk():
            decision = decisions.get(case.item_key(item))
            verdict = decision.verdict if decision is not None else None
            self.tree.set_verdict(item.id, verdict, VERDICT_COLOURS.get(verdict or "", ""))

    def _show_scores(self, scores: dict[str, Any] | None) -> None:
        if scores and self.session.worst_first:
            self._on_case(self.session.case)  # re-listed worst first, scores filled in
        else:
            self._fill_scores(scores)

    def _fill_scores(self, scores: dict[str, Any] | None) -> None:
        """Each item's score against the predictions: Dice (F1 for boxes)."""
        self.tree.setColumnHidden(SCORE_COLUMN, not scores)
        for item_id, score in (scores or {}).items():
            self.tree.set_score(item_id, *score_badge(score))

    def _on_stats(self, stats: dict[str, Any]) -> None:
        if self.session.case is not None:
            self.tree.set_stats(self.session.case, stats)
            self._show_details()

    def _on_selection(self, ids: tuple[str, ...], _navigate: bool) -> None:
        if tuple(self.tree.selected_ids()) != ids:
            self.tree.select_ids(list(ids))
        self._show_details()

    def _on_filters(self, chosen: dict[str, str]) -> None:
        case = self.session.case
        self.tree.show_only(kept_items(case, chosen) if chosen and case is not None else None)

    def _on_tree_selection(self) -> None:
        self._selected_by_click = True  # Qt selects on press, reports the click on release
        self.session.select(self.tree.selected_ids())

    def _on_tree_click(self, *_args: Any) -> None:
        """A click on the item already selected goes back to it (after the user scrolled)."""
        if self._selected_by_click:
            self._selected_by_click = False
            return
        ids = tuple(self.tree.selected_ids())
        if ids and ids == self.session.selected:
            self.session.select(ids)

    def _show_details(self) -> None:
        case, ids = self.session.case, self.session.selected
        if case is None or not ids:
            self.details.setText("")
            return
        item = case.item(ids[0])
        lines = [f"<b>{html.escape(item.title or item.id)}</b>: {html.escape(item.text)}"]
        lines += [html.escape(f"{k}: {v}") for k, v in item.tags.items()]
        for annotation in case.annotations_of(item):
            lines.append(html.escape(annotation_summary(case, annotation.id, self.session.stats)))
        self.details.setText("<br>".join(lines))
