"""Display controls: all masks or the selected only, contours, CT window presets."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..model import Case, MaskAnnotation
from ..session import MASK_MODES, Session
from ..windows import CT_WINDOWS, takes_ct_windows
from .keys import key_for

MODE_NAMES = {"all": "All masks", "selected": "Selected only"}


class DisplayControls(QWidget):
    """Mirrors the session's display mode and window; the active preset stays pressed."""

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.mode = QComboBox()
        self.mode.addItems([MODE_NAMES[m] for m in MASK_MODES])
        self.mode.currentIndexChanged.connect(
            lambda index: session.set_display(mask_mode=MASK_MODES[index]))
        self.contours = QCheckBox("Contours only")
        self.contours.toggled.connect(lambda on: session.set_display(contours=on))
        self.errors = QCheckBox("Errors")
        self.errors.setToolTip("The selected item's true positives, false positives (prediction "
                               f"only) and false negatives (ground truth only) ({key_for('errors')})")
        self.errors.toggled.connect(lambda on: on != session.errors_shown and session.toggle_errors())
        self.worst_first = QCheckBox("Worst first")
        self.worst_first.setToolTip("List and step through the items worst scored first")
        self.worst_first.toggled.connect(session.set_worst_first)
        self.window_group = QButtonGroup(self)
        self.window_group.setExclusive(False)  # none pressed while the user's own limits apply
        self.window_buttons: dict[str, QPushButton] = {}
        masks = QHBoxLayout()
        for widget in (self.mode, self.contours, self.errors, self.worst_first):
            masks.addWidget(widget)
        masks.addStretch(1)
        windows = QHBoxLayout()
        windows.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(masks)
        layout.addLayout(windows)
        for name in CT_WINDOWS:
            button = QPushButton(name.capitalize())
            button.setCheckable(True)
            button.setToolTip(f"CT window {name} ({key_for(f'{name} window')})")
            button.clicked.connect(lambda _checked, name=name: self._on_window_clicked(name))
            self.window_group.addButton(button)
            windows.addWidget(button)
            self.window_buttons[name] = button
        session.case_changed.connect(self._on_case)
        session.display_changed.connect(self._on_display)
        session.window_changed.connect(self._on_window)
        session.errors_changed.connect(self._on_errors)
        self._on_case(session.case)

    def _on_case(self, case: Case | None) -> None:
        has_ct = case is not None and any(takes_ct_windows(i) for i in case.images.values())
        for button in self.window_buttons.values():
            button.setVisible(has_ct)
        has_masks = case is not None and any(isinstance(a, MaskAnnotation)
                                             for a in case.annotations.values())
        self.mode.setVisible(case is not None and bool(case.annotations))
        self.contours.setVisible(has_masks)
        compared = case is not None and bool(case.added_sets)
        self.errors.setVisible(compared)
        self.worst_first.setVisible(compared)
        self._on_window(self.session.window)

    def _on_errors(self, shown: bool) -> None:
        blocked = self.errors.blockSignals(True)
        self.errors.setChecked(shown)
        self.errors.blockSignals(blocked)

    def _on_display(self, mode: str, contours: bool) -> None:
        blocked = self.mode.blockSignals(True), self.contours.blockSignals(True)
        self.mode.setCurrentIndex(MASK_MODES.index(mode))
        self.contours.setChecked(contours)
        self.mode.blockSignals(blocked[0])
        self.contours.blockSignals(blocked[1])

    def _on_window_clicked(self, name: str) -> None:
        self.session.set_window(name)
        self._on_window(self.session.window)  # a second click keeps the preset pressed

    def _on_window(self, name: str | None) -> None:
        for preset, button in self.window_buttons.items():
            button.setChecked(preset == name)
            button.setStyleSheet("font-weight: bold;" if preset == name else "")
