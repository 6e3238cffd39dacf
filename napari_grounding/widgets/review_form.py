"""The review form: who reviews, one button (and key) per verdict, a comment saved on Enter,
and what is left to do. Every decision goes through the session to the crash-safe log."""

from __future__ import annotations

import html

from napari.utils.notifications import show_error
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..model import Case, GroundingError
from ..review import VERDICTS, Decision, remember_reviewer, remembered_reviewer
from ..session import Session
from .keys import key_for

VERDICT_NAMES = {"accept": "Accept", "reject": "Reject", "needs_fix": "Needs fix",
                 "unsure": "Unsure"}
VERDICT_COLOURS = {"accept": "#3cb44b", "reject": "#e6194b", "needs_fix": "#f58231",
                   "unsure": "#a0a0a0"}


class ReviewForm(QWidget):
    """Verdicts on the selected item; ``reviewer_named`` asks the panel to open the log."""

    reviewer_named = Signal(str)

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.reviewer = QLineEdit(remembered_reviewer() or "")
        self.reviewer.setPlaceholderText("your name (asked once, remembered)")
        self.reviewer.editingFinished.connect(self._on_reviewer)
        self.target = QComboBox()
        self.target.setToolTip("What the verdict is on: the selected item, or one of its "
                               "annotations (a mask, a contour, a box)")
        self.target.currentIndexChanged.connect(self._on_target_chosen)
        self.buttons: dict[str, QPushButton] = {}
        verdicts = QHBoxLayout()
        verdicts.setContentsMargins(0, 0, 0, 0)
        for verdict in VERDICTS:
            key = key_for(verdict.replace("_", " "))
            button = QPushButton(VERDICT_NAMES[verdict])
            button.setToolTip(f"{VERDICT_NAMES[verdict]} the selected item ({key})")
            button.clicked.connect(lambda _c=False, v=verdict: self._record(v))
            verdicts.addWidget(button)
            self.buttons[verdict] = button
        self.next_button = QPushButton("Next")
        self.next_button.setToolTip(f"Next unreviewed item, then the next case "
                                    f"({key_for('next unreviewed')})")
        self.next_button.clicked.connect(lambda: self.session.next_unreviewed())
        verdicts.addWidget(self.next_button)
        self.comment = QLineEdit()
        self.comment.setPlaceholderText(f"comment on the selected item ({key_for('comment')}), "
                                        "saved on Enter")
        self.comment.returnPressed.connect(self._save_comment)
        self.status = QLabel()
        self.status.setWordWrap(True)
        keys = " · ".join(f"{key_for(d)} {d}" for d in ("accept", "reject", "needs fix", "unsure",
                                                      "next unreviewed", "comment"))
        self.keys_hint = QLabel(f"<small>Keys: {keys}</small>")
        self.keys_hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Reviewer"))
        row.addWidget(self.reviewer, 1)
        row.addWidget(QLabel("on"))
        row.addWidget(self.target, 1)
        layout.addLayout(row)
        layout.addLayout(verdicts)
        layout.addWidget(self.comment)
        layout.addWidget(self.keys_hint)
        layout.addWidget(self.status)
        session.selection_changed.connect(self._on_selection)
        session.verdict_recorded.connect(self._on_recorded)
        session.case_changed.connect(self._on_case)
        session.review_changed.connect(lambda _log: self._show_progress())
        session.comment_requested.connect(self._focus_comment)
        session.reviewer_needed.connect(lambda: self.reviewer.setFocus())
        session.review_target_changed.connect(self._on_target)

    def _focus_comment(self) -> None:
        self.comment.setFocus()
        self.comment.selectAll()

    def _on_reviewer(self) -> None:
        name = self.reviewer.text().strip()
        if name and (self.session.review is None or self.session.review.reviewer != name):
            try:
                remember_reviewer(name)
            except GroundingError as err:
                show_error(str(err))
            self.reviewer_named.emit(name)

    def _record(self, verdict: str) -> None:
        try:
            self.session.record(verdict)
        except GroundingError as err:
            show_error(str(err))

    def _save_comment(self) -> None:
        try:
            saved = self.session.comment(self.comment.text())
        except GroundingError as err:
            show_error(str(err))
            return
        if saved is not None and self.parent() is not None:
            self.parent().setFocus()  # back to the panel, where the review keys work

    def _on_case(self, _case: Case | None) -> None:
        self._show_progress()

    def _on_selection(self, ids: tuple[str, ...], _navigate: bool) -> None:
        blocked = self.target.blockSignals(True)
        self.target.clear()
        case = self.session.case
        if ids and case is not None:
            item = case.item(ids[0])
            self.target.addItem(f"{item.id} (the item)", None)
            for annotation in case.annotations_of(item):
                self.target.addItem(f"{annotation.id} ({annotation.kind}, {annotation.set})",
                                    annotation.id)
        self.target.blockSignals(blocked)
        self._show_comment()
        self._show_progress()

    def _on_target_chosen(self, _index: int) -> None:
        if self.session.selected:
            self.session.set_review_target(self.target.currentData())

    def _on_target(self, annotation_id: str | None) -> None:
        index = self.target.findData(annotation_id)
        if index >= 0 and index != self.target.currentIndex():
            blocked = self.target.blockSignals(True)
            self.target.setCurrentIndex(index)
            self.target.blockSignals(blocked)
        self._show_comment()

    def _show_comment(self) -> None:
        key, log = self.session.review_key(), self.session.review
        decision = log.decisions().get(key) if key and log is not None else None
        self.comment.setText(decision.comment if decision is not None else "")

    def _on_recorded(self, key: str, decision: Decision) -> None:
        if key == self.session.review_key():
            self.comment.setText(decision.comment)
        self._show_progress(saved=decision)

    def _show_progress(self, saved: Decision | None = None) -> None:
        log = self.session.review
        if log is None:
            self.status.setText("Name the reviewer to record verdicts." if self.session.case
                                else "")
            self.setEnabled(self.session.case is not None)
            return
        done, total = self.session.review_progress()
        space = (self.session.case_key or "").split("/")[0]
        decided = [k for k in log.decisions() if k.startswith(f"{space}/")]
        cases = {k.split("/")[1] for k in decided}
        listed = len(self.session.case_ids) or 1
        lines = [f"This case: {done} / {total} reviewed · dataset: {len(cases)} / {listed} cases "
                 f"with decisions, {len(decided)} decisions ({html.escape(log.path.name)})"]
        if saved is not None:
            colour = VERDICT_COLOURS[saved.verdict]
            item = saved.key.removeprefix(f"{self.session.case_key}/")
            lines.append(f'Saved <b style="color:{colour}">{VERDICT_NAMES[saved.verdict]}</b> '
                         f"for {html.escape(item)} at {saved.time[11:19]} UTC")
        self.status.setText("<br>".join(lines))
        self.status.setToolTip(str(log.path))
