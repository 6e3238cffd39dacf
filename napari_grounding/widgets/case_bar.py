"""Case navigation: the case switcher with its position, the images folder, the view switcher."""

from __future__ import annotations

from collections import Counter
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..model import Case
from ..session import Session
from .keys import key_for

MAX_LISTED_CASES = 5000


def view_names(case: Case) -> dict[str, str]:
    """Image id -> what the view switcher says: the view position (PA, AP, LATERAL) where the
    dataset knows it, numbered when two views share one."""
    labels = {i: image.label for i, image in case.images.items()}
    repeated = Counter(labels.values())
    seen: Counter[str] = Counter()
    names = {}
    for image_id, label in labels.items():
        seen[label] += 1
        names[image_id] = f"{label} {seen[label]}" if repeated[label] > 1 else label
    return names


class CaseBar(QWidget):
    """Which case and which of its images; changes go to the session."""

    images_folder_chosen = Signal(str)
    predictions_chosen = Signal(str)

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.case_box = QComboBox()
        self.case_box.setEditable(True)  # type a case id and press Enter
        self.case_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.case_box.setToolTip(f"Case ({key_for('previous case')} / {key_for('next case')})")
        self.case_box.activated.connect(self._on_case_chosen)
        self.case_box.lineEdit().returnPressed.connect(self._on_case_chosen)
        self.position = QLabel()
        self.images_button = QPushButton("Images folder…")
        self.images_button.setToolTip("Where this dataset's pictures are (as --images)")
        self.images_button.clicked.connect(self._choose_images_folder)
        self.predictions_button = QPushButton("Predictions…")
        self.predictions_button.setToolTip("A model's predictions to compare with the ground "
                                           "truth (as --pred): a folder of <case>.nii.gz, a "
                                           "CheXmask-form CSV or a QBA boxes JSON")
        self.predictions_button.clicked.connect(self._choose_predictions)
        self.view_box = QComboBox()
        self.view_box.setToolTip(f"Image of the case shown ({key_for('next view')}: next)")
        self.view_box.currentIndexChanged.connect(self._on_view_chosen)
        cases = QHBoxLayout()
        cases.setContentsMargins(0, 0, 0, 0)
        cases.addWidget(self.case_box, 1)
        cases.addWidget(self.position)
        cases.addWidget(self.images_button)
        cases.addWidget(self.predictions_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(cases)
        layout.addWidget(self.view_box)
        session.dataset_changed.connect(self._on_dataset)
        session.case_changed.connect(self._on_case)
        session.image_changed.connect(self._on_image)
        self._on_dataset(session.dataset)
        self._on_case(session.case)

    def _on_dataset(self, dataset: Any) -> None:
        ids = self.session.case_ids
        blocked = self.case_box.blockSignals(True)
        self.case_box.clear()
        self.case_box.addItems(ids[:MAX_LISTED_CASES])  # any other id can be typed
        self.case_box.blockSignals(blocked)
        self.case_box.setVisible(len(ids) > 1)
        self.images_button.setVisible(hasattr(dataset, "set_images"))
        self._show_position()

    def _on_case(self, case: Case | None) -> None:
        blocked = self.view_box.blockSignals(True)
        self.view_box.clear()
        if case is not None:
            for image_id, name in view_names(case).items():
                self.view_box.addItem(name, image_id)
                self.view_box.setItemData(self.view_box.count() - 1, image_id, 3)  # tooltip
        self.view_box.blockSignals(blocked)
        self.view_box.setVisible(case is not None and len(case.images) > 1)
        if case is not None:
            blocked = self.case_box.blockSignals(True)
            self.case_box.setCurrentText(case.id)
            self.case_box.blockSignals(blocked)
        self._show_position()

    def _on_image(self, image_id: str | None) -> None:
        index = self.view_box.findData(image_id)
        if index >= 0 and index != self.view_box.currentIndex():
            blocked = self.view_box.blockSignals(True)
            self.view_box.setCurrentIndex(index)
            self.view_box.blockSignals(blocked)

    def _show_position(self) -> None:
        position = self.session.case_position()
        self.position.setText(f"{position[0] + 1} / {position[1]}" if position else "")
        self.position.setVisible(position is not None and position[1] > 1)

    def _on_case_chosen(self, _index: int = -1) -> None:
        case_id = self.case_box.currentText().strip()
        if case_id:
            self.session.request_case(case_id)

    def _on_view_chosen(self, _index: int) -> None:
        image_id = self.view_box.currentData()
        if image_id is not None:
            self.session.show_image(image_id)

    def _choose_predictions(self) -> None:
        case = self.session.case
        if case is not None and any(i.data.ndim == 3 for i in case.images.values()):
            path = QFileDialog.getExistingDirectory(self, "Folder of predicted masks "
                                                    "(<case>.nii.gz)")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Predictions (CSV or JSON)")
        if path:
            self.predictions_chosen.emit(path)

    def _choose_images_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder holding the dataset's images")
        if folder:
            self.images_folder_chosen.emit(folder)
