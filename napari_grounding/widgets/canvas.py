"""One case's layers in a napari viewer: what is shown, where to look, what a click hits.

The panel owns the user's choices (selection, view, display mode); this class applies them to
the viewer's layers, found through their ``napari_grounding`` metadata.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from skimage.measure import points_in_poly

from ..layers import box_shapes, grounding_meta
from ..metrics import AnnotationStats, compute_isolated
from ..model import Case, ContourAnnotation
from ..navigation import Target, zoom_factor
from ..windows import window_limits


def viewer_camera(viewer: Any) -> Any:
    """The viewer's camera: ``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


class CaseCanvas:
    """The layers of ``case`` in ``viewer``."""

    def __init__(self, viewer: Any, case: Case):
        self.viewer = viewer
        self.case = case

    def layers(self, role: str) -> list[tuple[Any, dict[str, Any]]]:
        """(layer, metadata) of this case's layers with a role: image, annotation, boxes."""
        found = []
        for layer in self.viewer.layers:
            meta = grounding_meta(layer)
            if meta and meta["role"] == role and meta["case_key"] == self.case.key:
                found.append((layer, meta))
        return found

    def image_layer(self, image_id: str) -> Any:
        layers = [layer for layer, meta in self.layers("image") if meta["image"] == image_id]
        return layers[0] if layers else None

    # -- what is shown ----------------------------------------------------------------------
    def apply_display(self, chosen: set[str], shown_image: str | None, only_selected: bool,
                      contour: int) -> Any:
        """Show one image's layers, the chosen annotations (or all); returns the first
        chosen annotation layer, whose controls a reviewer wants."""
        for layer, meta in self.layers("image"):
            layer.visible = shown_image is None or meta["image"] == shown_image
        first_chosen = None
        for layer, meta in self.layers("annotation"):
            annotation = meta["annotation"]
            on_view = shown_image is None or self.case.annotations[annotation].image == shown_image
            layer.visible = on_view and (not only_selected or annotation in chosen)
            if layer._type_string == "labels":
                layer.contour = contour
            if annotation in chosen and first_chosen is None and on_view:
                first_chosen = layer
        for layer, meta in self.layers("boxes"):
            layer.visible = shown_image is None or meta["image"] == shown_image
            shown = [b for b in meta["boxes"] if not only_selected or b in chosen]
            if shown != meta.get("shown", meta["boxes"]):
                self.show_boxes(layer, shown)
                meta["shown"] = shown
        return first_chosen

    def show_boxes(self, layer: Any, box_ids: list[str]) -> None:
        """Draw only these boxes on a per-image boxes layer."""
        shapes = box_shapes(self.case, box_ids)
        layer.data = shapes["data"]
        layer.features = pd.DataFrame(shapes["features"])
        if box_ids:
            layer.edge_color = shapes["edge_color"]
            layer.edge_width = shapes["edge_width"]

    def set_window(self, name: str) -> None:
        """Apply a CT window preset to the case's CT images."""
        low, high = window_limits(name)
        for layer, meta in self.layers("image"):
            if self.case.images[meta["image"]].kind == "ct":
                lo_range, hi_range = layer.contrast_limits_range
                layer.contrast_limits_range = (min(lo_range, low), max(hi_range, high))
                layer.contrast_limits = (low, high)

    # -- where to look ----------------------------------------------------------------------
    def go_to(self, target: Target) -> None:
        """The slice through the target's centre, zoomed to its extent."""
        dims = self.viewer.dims
        offset = dims.ndim - target.centre.size
        displayed = [a - offset for a in dims.displayed if a >= offset]
        for axis in range(target.centre.size):
            if axis + offset not in dims.displayed:
                dims.set_point(axis + offset, float(target.centre[axis]))
        image_layer = self.image_layer(target.image)
        if image_layer is None or dims.ndisplay != 2:
            return
        self.viewer.fit_to_view(layers=[image_layer])
        extent = np.asarray(image_layer.extent.world)
        scene = (extent[1] - extent[0])[displayed]
        factor = zoom_factor(scene, (target.hi - target.lo)[displayed])
        camera = viewer_camera(self.viewer)
        camera.center = tuple(float(v) for v in target.centre[displayed])
        camera.zoom = camera.zoom * factor

    # -- what a click hits ------------------------------------------------------------------
    def items_at(self, world_position: Any, shown_image: str | None,
                 stats: dict[str, AnnotationStats] | None) -> list[str]:
        """Ids of the items whose annotations (on the shown image) cover a world point."""
        covering: list[str] = []
        for _layer, meta in self.layers("boxes"):
            if shown_image in (None, meta["image"]):
                covering += [b for b in meta["boxes"] if self._in_box(b, world_position)]
        for layer, meta in self.layers("annotation"):
            annotation = self.case.annotations[meta["annotation"]]
            if shown_image not in (None, annotation.image):
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
