"""The case queue dock: the dataset's cases with their review state; Enter opens one."""

from __future__ import annotations

from itertools import islice
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLineEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..case_queue import ANY_FACET, FILTERS, SORTS, facets, keep, queue_rows, sort_rows
from ..readers import summaries
from ..session import Session
from . import background

MAX_ROWS = 20000  # summaries are read per listed case: a huge CSV lists its first rows
COLUMNS = ("Case", "Decided", "Rejected", "QC", "Summary")


class CaseQueue(QWidget):
    """Lists, filters and sorts the cases; opening goes through the session."""

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.qc_flags: dict[str, list[str]] = {}
        self.scores: dict[str, float] = {}
        self.others: dict[str, Any] = {}  # a second reviewer's decisions (view --other-log)
        self._summaries: dict[str, str] = {}
        self._gone = False
        self.filter = QComboBox()
        self.filter.addItems(FILTERS)
        self.sort = QComboBox()
        self.sort.addItems(SORTS)
        self.facet = QComboBox()  # finding categories and grades the listed cases have
        self.facet.addItem(ANY_FACET)
        self.facet.setVisible(False)
        self.search = QLineEdit()
        self.search.setPlaceholderText("search ids and summaries (e.g. LOW, a category)")
        self.list = QTreeWidget()
        self.list.setHeaderLabels(COLUMNS)
        self.list.setRootIsDecorated(False)
        self.list.itemActivated.connect(self._open)  # Enter or double click
        self.list.destroyed.connect(self._mark_gone)
        for control in (self.filter, self.sort, self.facet):
            control.currentIndexChanged.connect(lambda _: self.refresh())
        self.search.textChanged.connect(lambda _: self.refresh())
        controls = QHBoxLayout()
        controls.addWidget(self.filter)
        controls.addWidget(self.sort)
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.facet)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        session.dataset_changed.connect(self._on_dataset)
        session.case_changed.connect(lambda _case: self.refresh())
        session.verdict_recorded.connect(lambda *_: self.refresh())
        session.review_changed.connect(lambda _log: self.refresh())

    def _mark_gone(self, *_args: Any) -> None:
        self._gone = True

    def _on_dataset(self, dataset: Any) -> None:
        self._summaries = {}
        self._list_facets()
        self.refresh()
        if dataset is not None and len(self.session.case_ids) > 1:
            background.run(_summaries, dataset, desc="Listing the cases",
                           on_done=self._on_summaries_if_shown,
                           failure="could not list the cases")

    def _on_summaries_if_shown(self, summaries: dict[str, str]) -> None:
        if not self._gone:  # the dock may have closed while the cases were listed
            self._on_summaries(summaries)

    def _on_summaries(self, summaries: dict[str, str]) -> None:
        self._summaries = summaries
        self._list_facets()
        self.refresh()

    def _list_facets(self) -> None:
        """The categories and grades of the listed cases, offered as one more filter."""
        found = facets(queue_rows(list(self._summaries), summaries=self._summaries))
        chosen = self.facet.currentText()
        self.facet.blockSignals(True)
        self.facet.clear()
        self.facet.addItems(found)
        self.facet.setCurrentIndex(found.index(chosen) if chosen in found else 0)
        self.facet.blockSignals(False)
        self.facet.setVisible(len(found) > 1)

    def set_facet(self, name: str) -> None:
        self.facet.setCurrentIndex(self.facet.findText(name))

    def set_filter(self, name: str) -> None:
        self.filter.setCurrentIndex(FILTERS.index(name))

    def set_sort(self, name: str) -> None:
        self.sort.setCurrentIndex(SORTS.index(name))

    def shown_ids(self) -> list[str]:
        return [self.list.topLevelItem(i).text(0) for i in range(self.list.topLevelItemCount())]

    def refresh(self) -> None:
        if self._gone:
            return
        log = self.session.review
        rows = queue_rows(self.session.case_ids[:MAX_ROWS], log.decisions() if log else None,
                          self._summaries, self.qc_flags, self.scores, self.others)
        rows = [r for r in rows if keep(r, self.filter.currentText(), self.search.text().strip(),
                                        self.facet.currentText() or ANY_FACET)]
        self.list.clear()
        current = self.session.case.id if self.session.case is not None else None
        for row in sort_rows(rows, self.sort.currentText()):
            summary = row.summary.replace("\t", "  ")
            item = QTreeWidgetItem([row.case_id, str(row.decided or ""), str(row.rejected or ""),
                                    ", ".join(row.qc_flags), summary])
            item.setToolTip(4, summary)
            self.list.addTopLevelItem(item)
            if row.case_id == current:
                item.setSelected(True)
                self.list.setCurrentItem(item)
        for column in range(len(COLUMNS) - 1):
            self.list.resizeColumnToContents(column)

    def _open(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        self.session.request_case(item.text(0))

    def keyPressEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.list.currentItem():
            self._open(self.list.currentItem())
            return
        super().keyPressEvent(event)


def _summaries(dataset: Any) -> dict[str, str]:
    """Case id -> the reader's summary line (as ``napari-grounding cases`` prints it)."""
    found = {}
    for line in islice(summaries(dataset), MAX_ROWS):
        case_id, _, rest = str(line).partition("\t")
        found[case_id] = rest  # fields stay tab-separated: the queue reads categories and grades
    return found
