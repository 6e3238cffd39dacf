"""Drop-downs filtering the text tree by tag (QBA: strategy, question type, answer type, ...)."""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFormLayout, QWidget

from ..filters import filter_choices
from ..model import Case

ANY = "all"


class FilterForm(QWidget):
    """One drop-down per filterable tag of a case; ``changed`` carries the chosen values."""

    changed = Signal(dict)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._form = QFormLayout(self)
        self._form.setContentsMargins(0, 0, 0, 0)
        self.combos: dict[str, QComboBox] = {}

    def set_case(self, case: Case) -> None:
        while self._form.rowCount():
            self._form.removeRow(0)
        self.combos = {}
        for tag, values in filter_choices(case).items():
            combo = QComboBox()
            combo.addItems([ANY, *values])
            combo.currentIndexChanged.connect(lambda _: self.changed.emit(self.chosen()))
            self._form.addRow(tag.replace("_", " "), combo)
            self.combos[tag] = combo
        self.setVisible(bool(self.combos))

    def chosen(self) -> dict[str, str]:
        return {t: c.currentText() for t, c in self.combos.items() if c.currentText() != ANY}

    def set_filter(self, tag: str, value: str) -> None:
        combo = self.combos[tag]
        combo.setCurrentIndex(combo.findText(value))
