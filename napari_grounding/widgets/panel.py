"""The docked panel: a case's text, and the link between text and what it points at.

Selecting text shows its annotations and moves the view there; clicking the canvas selects the
text whose annotations cover the clicked point. The panel knows Cases only, never a dataset.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_warning
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from skimage.measure import points_in_poly

from ..describe import annotation_summary
from ..filters import filter_choices, kept_items
from ..layers import box_shapes, case_layers, grounding_meta
from ..metrics import (
    AnnotationStats,
    case_stats,
    compute_isolated,
)
from ..model import Case, ContourAnnotation, GroundingError, MaskAnnotation
from ..navigation import item_annotation_ids, item_target, zoom_factor
from ..windows import CT_WINDOWS, window_limits
from .text_tree import TextTree

if TYPE_CHECKING:
    import napari

WINDOW_KEYS = {"lung": "Alt-1", "mediastinum": "Alt-2", "bone": "Alt-3"}
NEXT_VIEW_KEY = "Alt-V"
MAX_LISTED_CASES = 5000
CASE_BADGES = ("split", "source", "scanner", "slices", "masks", "sex", "age")
MASK_MODES = ("all", "selected")


def viewer_camera(viewer: Any) -> Any:
    """The viewer's camera: ``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


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
        self.filter_box = QWidget()
        self.filter_form = QFormLayout(self.filter_box)
        self.filter_form.setContentsMargins(0, 0, 0, 0)
        self.filters: dict[str, QComboBox] = {}
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
                       self.filter_box, self.tree):
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
        self.title.setText(f"<b>{case.dataset}</b> / {case.id}<br>{self._case_badges(case)}")
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
        self._build_filters(case)
        self.details.setText("")
        self._start_stats(case)

    def _build_filters(self, case: Case) -> None:
        """One drop-down per filterable tag the case carries (QBA: strategy, type, ...)."""
        while self.filter_form.rowCount():
            self.filter_form.removeRow(0)
        self.filters = {}
        for tag, values in filter_choices(case).items():
            combo = QComboBox()
            combo.addItems(["all", *values])
            combo.currentIndexChanged.connect(lambda _: self._apply_filters())
            self.filter_form.addRow(tag.replace("_", " "), combo)
            self.filters[tag] = combo
        self.filter_box.setVisible(bool(self.filters))

    def set_filter(self, tag: str, value: str) -> None:
        combo = self.filters[tag]
        combo.setCurrentIndex(combo.findText(value))

    def _apply_filters(self) -> None:
        chosen = {t: c.currentText() for t, c in self.filters.items() if c.currentText() != "all"}
        self.tree.show_only(kept_items(self.case, chosen) if chosen else None)

    @staticmethod
    def _case_badges(case: Case) -> str:
        positive = [k.split(":", 1)[1] for k, v in case.tags.items()
                    if k.startswith("label:") and v == "1"]
        plain = [f"{k}: {v}" for k, v in case.tags.items() if k in CASE_BADGES]
        if "rca_dice_mean" in case.tags:
            rca = f"RCA Dice {case.tags['rca_dice_mean']}"
            flagged = case.tags.get("quality", "").startswith("flagged")
            plain.append(f'<span style="color:#f0a030">⚠ {rca} (below 0.7)</span>' if flagged
                         else rca)
        return " · ".join(plain + positive)

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
        layer = self._image_layer(self.current_image) if self.current_image else None
        if layer is not None:
            self.viewer.fit_to_view(layers=[layer])

    def _key_next_view(self, _viewer: Any) -> None:
        if self.view_box.count() > 1:
            self.view_box.setCurrentIndex((self.view_box.currentIndex() + 1) % self.view_box.count())

    def _selected_annotations(self) -> set[str]:
        if self.case is None:
            return set()
        return {a for i in self.selected_ids for a in item_annotation_ids(self.case.item(i))}

    def _case_layers(self, role: str) -> list[tuple[Any, dict[str, Any]]]:
        if self.case is None:
            return []
        found = []
        for layer in self.viewer.layers:
            meta = grounding_meta(layer)
            if meta and meta["role"] == role and meta["case_key"] == self.case.key:
                found.append((layer, meta))
        return found

    def _annotation_layers(self) -> list[tuple[Any, str]]:
        return [(layer, meta["annotation"]) for layer, meta in self._case_layers("annotation")]

    def _apply_display(self) -> None:
        only_selected = MASK_MODES[self.mode.currentIndex()] == "selected"
        chosen = self._selected_annotations()
        shown_image = self.current_image
        for layer, meta in self._case_layers("image"):
            layer.visible = shown_image is None or meta["image"] == shown_image
        contour = 1 if self.contours.isChecked() else 0
        first_chosen = None
        for layer, annotation in self._annotation_layers():
            on_view = shown_image is None or self.case.annotations[annotation].image == shown_image
            layer.visible = on_view and (not only_selected or annotation in chosen)
            if layer._type_string == "labels":
                layer.contour = contour
            if annotation in chosen and first_chosen is None and on_view:
                first_chosen = layer
        for layer, meta in self._case_layers("boxes"):
            layer.visible = shown_image is None or meta["image"] == shown_image
            shown = [b for b in meta["boxes"] if not only_selected or b in chosen]
            if shown != meta.get("shown", meta["boxes"]):
                self._show_boxes(layer, shown)
                meta["shown"] = shown
        if first_chosen is not None:  # its controls are the ones a reviewer wants
            self.viewer.layers.selection.active = first_chosen

    def _show_boxes(self, layer: Any, box_ids: list[str]) -> None:
        """Draw only these boxes on a per-image boxes layer."""
        shapes = box_shapes(self.case, box_ids)
        layer.data = shapes["data"]
        layer.features = pd.DataFrame(shapes["features"])
        if box_ids:
            layer.edge_color = shapes["edge_color"]
            layer.edge_width = shapes["edge_width"]

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
        dims = self.viewer.dims
        offset = dims.ndim - target.centre.size
        displayed = [a - offset for a in dims.displayed if a >= offset]
        for axis in range(target.centre.size):
            if axis + offset not in dims.displayed:
                dims.set_point(axis + offset, float(target.centre[axis]))
        image_layer = self._image_layer(target.image)
        if image_layer is None or dims.ndisplay != 2:
            return
        self.viewer.fit_to_view(layers=[image_layer])
        extent = np.asarray(image_layer.extent.world)
        scene = (extent[1] - extent[0])[displayed]
        factor = zoom_factor(scene, (target.hi - target.lo)[displayed])
        camera = viewer_camera(self.viewer)
        camera.center = tuple(float(v) for v in target.centre[displayed])
        camera.zoom = camera.zoom * factor

    def _image_layer(self, image_id: str) -> Any:
        layers = [layer for layer, meta in self._case_layers("image") if meta["image"] == image_id]
        return layers[0] if layers else None

    # -- canvas clicks ----------------------------------------------------------------------
    def items_at(self, world_position: Any) -> list[str]:
        """Ids of the items whose annotations (on the shown image) cover a world point."""
        hits: list[str] = []
        for _layer, meta in self._case_layers("boxes"):
            if self.current_image not in (None, meta["image"]):
                continue
            row, column = np.asarray(world_position, dtype=float)[-2:]
            for box_id in meta["boxes"]:
                x1, y1, x2, y2 = self.case.annotations[box_id].xyxy
                if x1 <= column <= x2 and y1 <= row <= y2:
                    hits += [i.id for i in self.case.items_linked_to(box_id) if i.id not in hits]
        for layer, annotation_id in self._annotation_layers():
            annotation = self.case.annotations[annotation_id]
            if self.current_image not in (None, annotation.image):
                continue
            point = np.asarray(layer.world_to_data(world_position))[-layer.ndim:]
            if self._covers(layer, annotation, point):
                hits += [i.id for i in self.case.items_linked_to(annotation_id) if i.id not in hits]
        return hits

    def _covers(self, layer: Any, annotation: Any, point: np.ndarray) -> bool:
        if isinstance(annotation, ContourAnnotation):
            return bool(points_in_poly(point[None, :], np.asarray(annotation.points))[0])
        index = np.round(point).astype(int)
        if np.any(index < 0) or np.any(index >= np.asarray(layer.data.shape)):
            return False
        if self.stats is not None and not self._in_bbox(annotation.id, index):
            return False
        (value,) = compute_isolated(layer.data[tuple(index)])
        return np.asarray(value).item() != 0

    def _in_bbox(self, annotation: str, display_index: np.ndarray) -> bool:
        stats = self.stats.get(annotation) if self.stats else None
        if stats is None or stats.bbox is None:
            return stats is None
        image = self.case.images[self.case.annotations[annotation].image]
        source = image.orientation.index_to_source(display_index)
        return bool(np.all(source >= stats.bbox[0]) and np.all(source <= stats.bbox[1]))

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
        low, high = window_limits(name)
        for layer, meta in self._case_layers("image"):
            if self.case.images[meta["image"]].kind == "ct":
                lo_range, hi_range = layer.contrast_limits_range
                layer.contrast_limits_range = (min(lo_range, low), max(hi_range, high))
                layer.contrast_limits = (low, high)

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
