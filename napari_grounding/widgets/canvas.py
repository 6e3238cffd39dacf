"""One case's layers in a napari viewer: what is shown, where to look, what a click hits.

The session owns the user's choices (selection, view, display mode); this class applies them to
the viewer's layers, found through their ``napari_grounding`` metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from skimage.measure import points_in_poly

from ..layers import box_shapes, grounding_meta
from ..metrics import AnnotationStats, compute_isolated
from ..model import Case, ContourAnnotation
from ..navigation import MIN_FIELD_FRACTION, MIN_FIELD_MM, PLANE_ORDERS, Target, best_plane, frame
from ..windows import takes_ct_windows, window_limits

READ_ONLY_MODES = ("pan_zoom",)  # ground truth: no paint, fill, erase, select or vertex tools


def viewer_camera(viewer: Any) -> Any:
    """The viewer's camera: ``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def canvas_px(viewer: Any) -> tuple[float, float]:
    """The canvas (rows, columns) in screen pixels."""
    canvas = getattr(viewer, "canvas", None)
    if canvas is not None and hasattr(canvas, "viewbox_size"):
        return tuple(float(v) for v in canvas.viewbox_size(viewer.layers))
    return tuple(float(v) for v in viewer._canvas_size)  # napari < 0.9


def plane_of(order: tuple[int, ...]) -> str | None:
    """The anatomical plane a 3D dims order displays."""
    if len(order) != 3:
        return None
    shown = set(order[-2:])
    return next((p for p, o in PLANE_ORDERS.items() if set(o[-2:]) == shown), None)


def make_read_only(layer: Any) -> None:
    """Keep a ground-truth layer from being edited: napari re-enables editing when it
    re-slices, and any tool but pan/zoom would paint into (or move) the annotation."""
    def keep_read_only(_event: Any = None) -> None:
        if layer.editable:
            layer.editable = False
        if getattr(layer, "mode", "pan_zoom") not in READ_ONLY_MODES:
            layer.mode = READ_ONLY_MODES[0]

    keep_read_only()
    layer.events.editable.connect(keep_read_only)
    if hasattr(layer.events, "mode"):
        layer.events.mode.connect(keep_read_only)


@dataclass(frozen=True)
class DisplayState:
    """What the session asks to be shown."""

    chosen: frozenset[str]  # annotations of the selected items
    image: str | None  # the image shown (None: all)
    only_selected: bool
    contour: int  # labels drawn as outlines this thick, 0 filled
    errors: bool = False  # the selection's error map stands in for its masks


class CaseCanvas:
    """The layers of ``case`` in ``viewer``."""

    def __init__(self, viewer: Any, case: Case):
        self.viewer = viewer
        self.case = case

    def layers(self, role: str | None = None) -> list[tuple[Any, dict[str, Any]]]:
        """(layer, metadata) of this case's layers, of one role (image, annotation, boxes)."""
        found = []
        for layer in self.viewer.layers:
            meta = grounding_meta(layer)
            if meta and meta["case"] is self.case and role in (None, meta["role"]):
                found.append((layer, meta))
        return found

    def image_layer(self, image_id: str) -> Any:
        layers = [layer for layer, meta in self.layers("image") if meta["image"] == image_id]
        return layers[0] if layers else None

    # -- what is shown ----------------------------------------------------------------------
    def apply_display(self, state: DisplayState) -> None:
        for layer, meta in self.layers():
            self.apply_to(layer, meta, state)

    def apply_to(self, layer: Any, meta: dict[str, Any], state: DisplayState) -> None:
        """Show or hide one layer as the state asks; touches only what changes (each change
        of a labels layer's ``visible`` or ``contour`` re-slices it)."""
        on_view = state.image is None or meta.get("image") == state.image
        if meta["role"] == "annotation":
            annotation = meta["annotation"]
            shown = not state.only_selected or annotation in state.chosen
            if state.errors and annotation in state.chosen and layer._type_string == "labels":
                shown = False  # the error map shows where these masks agree and differ
            _set(layer, "visible", on_view and shown)
            if layer._type_string == "labels":
                _set(layer, "contour", state.contour)
        elif meta["role"] == "boxes":
            _set(layer, "visible", on_view)
            self._show_boxes(layer, meta, state)
        else:
            _set(layer, "visible", on_view)

    def _show_boxes(self, layer: Any, meta: dict[str, Any], state: DisplayState) -> None:
        shown = [b for b in meta["boxes"] if not state.only_selected or b in state.chosen]
        emphasised = sorted(state.chosen.intersection(shown))
        if (shown, emphasised) == meta.get("drawn"):
            return
        meta["drawn"] = (shown, emphasised)
        shapes = box_shapes(self.case, shown, emphasised=set(emphasised),
                            dashed=meta.get("dashed", False))
        layer.data = [(d, shapes["shape_type"]) for d in shapes["data"]]
        layer.features = pd.DataFrame(shapes["features"])
        if shown:
            layer.edge_color = shapes["edge_color"]
            layer.edge_width = shapes["edge_width"]

    def set_window(self, name: str) -> None:
        """Apply a CT window preset to the case's CT images."""
        low, high = window_limits(name)
        for layer, meta in self.layers("image"):
            if takes_ct_windows(self.case.images[meta["image"]]):
                lo_range, hi_range = layer.contrast_limits_range
                layer.contrast_limits_range = (min(lo_range, low), max(hi_range, high))
                layer.contrast_limits = (low, high)

    # -- where to look ----------------------------------------------------------------------
    def go_to(self, target: Target, plane: str | None) -> None:
        """The slice through the target's centre, in the plane that shows it best, framed
        with context around it."""
        dims = self.viewer.dims
        offset = dims.ndim - target.centre.size
        order = tuple(dims.order)
        if target.centre.size == 3 and offset == 0 and dims.ndisplay == 2:
            order = PLANE_ORDERS[best_plane(target, plane)]
        displayed = order[-dims.ndisplay:]
        sliced = [a + offset for a in range(target.centre.size) if a + offset not in displayed]
        # one event, on whole steps: a point between steps makes napari's slider snap it and set
        # it again, slicing every layer twice
        steps = [_step(dims.range[a], float(target.centre[a - offset])) for a in sliced]
        if order == tuple(dims.order):
            if sliced:
                dims.set_current_step(sliced, steps)
        else:
            _move_to_plane(dims, sliced, steps, order)
        self.frame_on(target)

    def frame_on(self, target: Target) -> None:
        """Centre and zoom the camera on the target in the displayed plane (2D views only)."""
        dims = self.viewer.dims
        offset = dims.ndim - target.centre.size
        image_layer = self.image_layer(target.image)
        if image_layer is None or dims.ndisplay != 2:
            return
        displayed = [a - offset for a in dims.displayed]
        extent = np.asarray(image_layer.extent.world, dtype=float)[:, -target.centre.size:]
        image = self.case.images[target.image]
        min_field = MIN_FIELD_MM if image.data.ndim == 3 else \
            MIN_FIELD_FRACTION * float(np.max(extent[1] - extent[0]))
        view = frame(target, displayed, extent[0], extent[1], canvas_px(self.viewer), min_field)
        camera = viewer_camera(self.viewer)
        camera.center = view.centre
        camera.zoom = view.zoom

    def fit_image(self, image_id: str) -> None:
        layer = self.image_layer(image_id)
        if layer is not None:
            self.viewer.fit_to_view(layers=[layer])

    # -- what a click hits ------------------------------------------------------------------
    def items_at(self, world_position: Any, shown_image: str | None,
                 stats: dict[str, AnnotationStats] | None) -> list[str]:
        """Ids of the items whose annotations (on the shown image) cover a world point."""
        covering: list[str] = []
        for layer, meta in self.layers("boxes"):
            if shown_image in (None, meta["image"]) and layer.visible:
                covering += [b for b in meta["boxes"] if self._in_box(b, world_position)]
        for layer, meta in self.layers("annotation"):
            annotation = self.case.annotations[meta["annotation"]]
            if shown_image not in (None, annotation.image) or not layer.visible:
                continue
            point = np.asarray(layer.world_to_data(world_position))[-layer.ndim:]
            if self._covers(layer, annotation, point, stats):
                covering.append(annotation.id)
        hits: list[str] = []
        for annotation_id in covering:
            hits += [i.id for i in self.case.items_linked_to(annotation_id) if i.id not in hits]
        return hits

    def _in_box(self, box_id: str, world_position: Any) -> bool:
        row, column = np.asarray(world_position, dtype=float)[-2:]
        x1, y1, x2, y2 = self.case.annotations[box_id].xyxy
        return bool(x1 <= column <= x2 and y1 <= row <= y2)

    def _covers(self, layer: Any, annotation: Any, point: np.ndarray,
                stats: dict[str, AnnotationStats] | None) -> bool:
        if isinstance(annotation, ContourAnnotation):
            return bool(points_in_poly(point[None, :], np.asarray(annotation.points))[0])
        index = np.round(point).astype(int)
        if np.any(index < 0) or np.any(index >= np.asarray(layer.data.shape)):
            return False
        found = stats.get(annotation.id) if stats else None
        if found is not None and not self._in_bbox(annotation, found, index):
            return False  # no need to read a chunk
        (value,) = compute_isolated(layer.data[tuple(index)])
        return np.asarray(value).item() != 0

    def _in_bbox(self, annotation: Any, stats: AnnotationStats, display_index: np.ndarray) -> bool:
        if stats.bbox is None:
            return False
        image = self.case.images[annotation.image]
        source = image.orientation.index_to_source(display_index)
        return bool(np.all(source >= stats.bbox[0]) and np.all(source <= stats.bbox[1]))


def _move_to_plane(dims: Any, axes: list[int], steps: list[int], order: tuple[int, ...]) -> None:
    """A new plane and its slice with one slicing of each layer: the steps set silently, the
    order change slices at them, then the steps announced (to the sliders): napari re-slices a
    layer only when its slice changed, so the announcement slices nothing again."""
    current_step, point = dims.events.current_step, dims.events.point
    with current_step.blocker(), point.blocker():
        dims.set_current_step(axes, steps)
    dims.order = order
    current_step(value=tuple(dims.current_step))
    point(value=tuple(dims.point))


def _step(axis_range: Any, value: float) -> int:
    """The dims step nearest a world coordinate along one axis."""
    start, stop, step = float(axis_range.start), float(axis_range.stop), float(axis_range.step)
    last = max(0, int(round((stop - start) / step)))
    return int(min(max(round((value - start) / step), 0), last))


def _set(layer: Any, name: str, value: Any) -> None:
    if getattr(layer, name) != value:
        setattr(layer, name, value)
