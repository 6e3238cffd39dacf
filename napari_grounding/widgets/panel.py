"""The docked panel: a case's text, and the link between text and what it points at.

Selecting text shows its annotations and moves the view there; clicking the canvas selects the
text whose annotations cover the clicked point. The panel knows Cases only, never a dataset.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..describe import annotation_summary
from ..filters import kept_items
from ..layers import case_layers, grounding_meta
from ..metrics import (
    AnnotationStats,
    case_stats,
)
from ..model import Case, GroundingError, MaskAnnotation
from ..navigation import item_annotation_ids, item_target
from ..store import write_cache
from ..windows import CT_WINDOWS
from .canvas import CaseCanvas
from .filter_form import FilterForm
from .text_tree import TextTree, case_badges

if TYPE_CHECKING:
    import napari

WINDOW_KEYS = {"lung": "Alt-1", "mediastinum": "Alt-2", "bone": "Alt-3"}
NEXT_VIEW_KEY = "Alt-V"
MAX_LISTED_CASES = 5000
CACHE_ON_OPEN_ENV = "NAPARI_GROUNDING_CACHE_ON_OPEN"  # "0": never write caches from the viewer
MASK_MODES = ("all", "selected")


class GroundingPanel(QWidget):
    """Text items of the open case, linked both ways to their annotations in the viewer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.case: Case | None = None
        self.dataset: Any = None
        self.stats: dict[str, AnnotationStats] | None = None
        self._pending_target: str | None = None
        self._build()
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        for name, key in WINDOW_KEYS.items():
            self.viewer.bind_key(key, partial(self._key_window, name), overwrite=True)
        self.viewer.bind_key(NEXT_VIEW_KEY, self._key_next_view, overwrite=True)
        for layer in list(self.viewer.layers):
            self._adopt(layer)

    # -- construction -----------------------------------------------------------------------
    def _build(self) -> None:
        self.case_box = QComboBox()
        self.case_box.setEditable(True)  # type a case id and press Enter
        self.case_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.case_box.setVisible(False)
        self.case_box.activated.connect(self._on_case_chosen)
        self.case_box.lineEdit().returnPressed.connect(lambda: self._on_case_chosen(-1))
        self.images_button = QPushButton("Images folder…")
        self.images_button.setToolTip("Where this dataset's pictures are (as --images)")
        self.images_button.clicked.connect(self._choose_images_folder)
        self.images_button.setVisible(False)
        self.title = QLabel("No case open. Open a dataset folder or File > Open Sample.")
        self.title.setWordWrap(True)
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #f0a030;")
        self.problems.setVisible(False)
        self.view_box = QComboBox()
        self.view_box.setToolTip("Image of the case shown (Alt-V: next)")
        self.view_box.setVisible(False)
        self.view_box.currentIndexChanged.connect(self._on_view_changed)
        self.filter_form = FilterForm()
        self.filter_form.changed.connect(self._apply_filters)
        self.tree = TextTree()
        self.tree.itemSelectionChanged.connect(self._on_tree_selection)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.mode = QComboBox()
        self.mode.addItems(["All masks", "Selected only"])
        self.mode.currentIndexChanged.connect(lambda _: self._apply_display())
        self.contours = QCheckBox("Contours only")
        self.contours.toggled.connect(lambda _: self._apply_display())
        display = QHBoxLayout()
        display.addWidget(self.mode)
        display.addWidget(self.contours)
        windows = QHBoxLayout()
        self.window_buttons = {}
        for name in CT_WINDOWS:
            button = QPushButton(name.capitalize())
            button.setToolTip(f"CT window {name} ({WINDOW_KEYS[name]})")
            button.clicked.connect(partial(self.set_window, name))
            windows.addWidget(button)
            self.window_buttons[name] = button
        self.setMinimumWidth(480)  # room for the sentence next to its badges and numbers
        layout = QVBoxLayout(self)
        for widget in (self.case_box, self.images_button, self.title, self.problems, self.view_box,
                       self.filter_form, self.tree):
            layout.addWidget(widget)
        layout.addLayout(display)
        layout.addLayout(windows)
        layout.addWidget(self.details)

    # -- cases ------------------------------------------------------------------------------
    def set_dataset(self, dataset: Any) -> None:
        """Offer the dataset's cases in a switcher (shown when there are several)."""
        self.dataset = dataset
        ids = dataset.case_ids()
        self.case_box.clear()
        self.case_box.addItems(ids[:MAX_LISTED_CASES])  # any other id can be typed
        self.case_box.setVisible(len(ids) > 1)
        if self.case is not None:
            self.case_box.setCurrentText(self.case.id)
        self.images_button.setVisible(hasattr(dataset, "set_images"))

    def _choose_images_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder holding the dataset's images")
        if folder:
            self.set_images_folder(folder)

    def set_images_folder(self, folder: str) -> None:
        """Pair the dataset's rows with pictures in ``folder`` and reopen the case."""
        if self.dataset is None or self.case is None:
            return
        try:
            self.dataset.set_images(Path(folder))
            case = self.dataset.open_case(self.case.id)
        except GroundingError as err:
            show_error(str(err))
            return
        self.show_case(case)

    def _on_case_chosen(self, _index: int) -> None:
        case_id = self.case_box.currentText().strip()
        if self.dataset is None or (self.case is not None and case_id == self.case.id):
            return
        try:
            case = self.dataset.open_case(case_id)
        except GroundingError as err:
            show_error(str(err))
            return
        self.show_case(case)

    def show_case(self, case: Case) -> None:
        """Add the case's layers (replacing another case's) and list its text."""
        for layer in [la for la in self.viewer.layers if grounding_meta(la)]:
            self.viewer.layers.remove(layer)
        self.set_case(case)
        for data, kwargs, layer_type in case_layers(case):
            getattr(self.viewer, f"add_{layer_type}")(data, **kwargs)
        self.viewer.reset_view()

    def set_case(self, case: Case) -> None:
        """List a case whose layers are (or will be) in the viewer."""
        self.case = case
        self.stats = None
        self._pending_target = None
        self.title.setText(f"<b>{case.dataset}</b> / {case.id}<br>{case_badges(case)}")
        self.title.setToolTip("\n".join(f"{k}: {v}" for k, v in case.tags.items()))
        self.problems.setText("\n".join(f"⚠ {p}" for p in case.problems))
        self.problems.setVisible(bool(case.problems))
        for problem in case.problems:
            show_warning(problem)
        blocked = self.view_box.blockSignals(True)
        self.view_box.clear()
        for image in case.images.values():
            self.view_box.addItem(image.label, image.id)
        self.view_box.blockSignals(blocked)
        self.view_box.setVisible(len(case.images) > 1)
        has_ct = any(i.kind == "ct" for i in case.images.values())
        for button in self.window_buttons.values():
            button.setVisible(has_ct)
        has_masks = any(isinstance(a, MaskAnnotation) for a in case.annotations.values())
        self.mode.setVisible(bool(case.annotations))
        self.contours.setVisible(has_masks)
        three_d = any(i.data.ndim == 3 for i in case.images.values())
        for column in range(2, self.tree.columnCount()):
            ct_only = column in (3, 5)  # mL and slice range
            self.tree.setColumnHidden(column, not has_masks or (ct_only and not three_d))
        self.tree.populate(case)
        self.filter_form.set_case(case)
        self.details.setText("")
        self._start_stats(case)
        self._start_caching(case)

    @property
    def filters(self) -> dict[str, QComboBox]:
        return self.filter_form.combos

    def set_filter(self, tag: str, value: str) -> None:
        self.filter_form.set_filter(tag, value)

    def _apply_filters(self, chosen: dict[str, str]) -> None:
        self.tree.show_only(kept_items(self.case, chosen) if chosen else None)

    def _on_layer_inserted(self, event: Any) -> None:
        self._adopt(event.value)

    def _adopt(self, layer: Any) -> None:
        """Take up the case of a layer added by the reader or the sample menu."""
        meta = grounding_meta(layer)
        if meta and (self.case is None or meta["case_key"] != self.case.key):
            self.set_case(meta["case"])
        if meta:
            self._apply_display()

    # -- statistics (off the UI thread) -----------------------------------------------------
    def _start_stats(self, case: Case) -> None:
        progress = {"total": 0, "desc": f"Measuring the masks of {case.id}"}
        worker = create_worker(case_stats, case, _start_thread=False, _progress=progress)
        worker.returned.connect(partial(self._on_stats, case))
        worker.errored.connect(lambda err: show_error(f"mask statistics failed: {err}"))
        worker.start()

    def _start_caching(self, case: Case) -> None:
        """Write the OME-Zarr cache of a CT read from NIfTI, for the next opening."""
        ct = case.images.get("ct")
        if ct is None or "cache" in ct.meta or not ct.source.endswith((".nii", ".nii.gz")):
            return
        if os.environ.get(CACHE_ON_OPEN_ENV, "1") == "0":
            return
        progress = {"total": 0, "desc": f"Caching {case.id} as OME-Zarr"}
        worker = create_worker(write_cache, case, _start_thread=False, _progress=progress)
        worker.returned.connect(lambda path: show_info(f"{case.id} cached in {path}"))
        worker.errored.connect(lambda err: show_warning(f"could not cache {case.id}: {err}"))
        worker.start()

    def _on_stats(self, case: Case, stats: dict[str, AnnotationStats]) -> None:
        if case is not self.case:
            return
        self.stats = stats
        self.tree.set_stats(case, stats)
        self._show_details()
        if self._pending_target is not None:
            self._go_to(self._pending_target)

    # -- selection --------------------------------------------------------------------------
    @property
    def selected_ids(self) -> list[str]:
        return self.tree.selected_ids()

    def select_items(self, item_ids: list[str], navigate: bool = True) -> None:
        """Select text items by id, show their annotations and (optionally) go there."""
        if self.case is None:
            return
        for item_id in item_ids:
            self.case.item(item_id)  # unknown ids raise a GroundingError
        self.tree.select_ids(item_ids)
        self._on_selection(navigate)

    def _on_tree_selection(self) -> None:
        self._on_selection(navigate=True)

    def _on_selection(self, navigate: bool) -> None:
        self._apply_display()
        self._show_details()
        ids = self.selected_ids
        if navigate and ids:
            self._go_to(ids[0])

    @property
    def current_image(self) -> str | None:
        """The image shown (one at a time when a case has several views)."""
        return self.view_box.currentData()

    def show_image(self, image_id: str) -> None:
        self.view_box.setCurrentIndex(self.view_box.findData(image_id))

    def _on_view_changed(self, _index: int) -> None:
        self._apply_display()
        layer = self.canvas.image_layer(self.current_image) if self.current_image else None
        if layer is not None:
            self.viewer.fit_to_view(layers=[layer])

    def _key_next_view(self, _viewer: Any) -> None:
        if self.view_box.count() > 1:
            self.view_box.setCurrentIndex((self.view_box.currentIndex() + 1) % self.view_box.count())

    def _selected_annotations(self) -> set[str]:
        if self.case is None:
            return set()
        return {a for i in self.selected_ids for a in item_annotation_ids(self.case.item(i))}

    @property
    def canvas(self) -> CaseCanvas | None:
        return CaseCanvas(self.viewer, self.case) if self.case is not None else None

    def _apply_display(self) -> None:
        if self.case is None:
            return
        first_chosen = self.canvas.apply_display(
            self._selected_annotations(), self.current_image,
            only_selected=MASK_MODES[self.mode.currentIndex()] == "selected",
            contour=1 if self.contours.isChecked() else 0)
        if first_chosen is not None:
            self.viewer.layers.selection.active = first_chosen

    def set_mask_mode(self, mode: str, contours: bool | None = None) -> None:
        self.mode.setCurrentIndex(MASK_MODES.index(mode))
        if contours is not None:
            self.contours.setChecked(contours)

    # -- navigation -------------------------------------------------------------------------
    def _go_to(self, item_id: str) -> None:
        """Move to the slice through the item's centre and zoom to its extent."""
        if self.case is None:
            return
        if self.stats is None:
            self._pending_target = item_id  # done when the statistics arrive
            return
        self._pending_target = None
        target = item_target(self.case, self.case.item(item_id), self.stats)
        if target is None:
            return
        if self.current_image not in (None, target.image):
            self.show_image(target.image)
        self.canvas.go_to(target)

    # -- canvas clicks ----------------------------------------------------------------------
    def items_at(self, world_position: Any) -> list[str]:
        """Ids of the items whose annotations (on the shown image) cover a world point."""
        if self.case is None:
            return []
        return self.canvas.items_at(world_position, self.current_image, self.stats)

    def _on_mouse(self, viewer: Any, event: Any):
        if event.button != 1 or viewer.dims.ndisplay != 2:
            return
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = True
            yield
        if not dragged:
            hits = self.items_at(event.position)
            if hits:
                self.select_items(hits, navigate=False)

    # -- display ----------------------------------------------------------------------------
    def set_window(self, name: str) -> None:
        """Apply a CT window preset to the case's CT images."""
        if self.case is not None:
            self.canvas.set_window(name)

    def _key_window(self, name: str, _viewer: Any) -> None:
        self.set_window(name)

    def _show_details(self) -> None:
        if self.case is None or not self.selected_ids:
            self.details.setText("")
            return
        item = self.case.item(self.selected_ids[0])
        lines = [f"<b>{item.title or item.id}</b>: {item.text}"]
        lines += [f"{k}: {v}" for k, v in item.tags.items()]
        for annotation in self.case.annotations_of(item):
            lines.append(annotation_summary(self.case, annotation.id, self.stats))
        self.details.setText("<br>".join(lines))

    # -- teardown ---------------------------------------------------------------------------
    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        self.disconnect_viewer()
        super().closeEvent(event)

    def disconnect_viewer(self) -> None:
        """Undo everything the panel hooked into the viewer."""
        self.viewer.layers.events.inserted.disconnect(self._on_layer_inserted)
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        for key in (*WINDOW_KEYS.values(), NEXT_VIEW_KEY):
            self.viewer.bind_key(key, None, overwrite=True)
