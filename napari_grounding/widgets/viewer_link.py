"""The session and a napari viewer kept in step, both ways.

Session changes become layer visibility, slices, camera moves and contrast; gestures on the
canvas (a click, a plane chosen by hand, contrast set by hand) become session changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ..layers import META_KEY, case_layers, grounding_meta, mask_display
from ..model import Case
from ..navigation import item_target
from ..session import Session
from ..windows import takes_ct_windows, window_limits
from .canvas import CaseCanvas, DisplayState, make_read_only, plane_of, viewer_camera


class ViewerLink:
    """Subscribes a viewer to a session; ``attach``/``detach`` hook and unhook everything."""

    def __init__(self, viewer: Any, session: Session):
        self.viewer, self.session = viewer, session
        self.attached = False
        self._pending: str | None = None  # an item to go to once the statistics are in
        self._moving = False  # our own dims and contrast changes are not the user's
        self._order: tuple[int, ...] = tuple(viewer.dims.order)
        # the camera as we last framed it, and how to frame it again: while the user has not
        # moved it, a canvas that changes size (the dock settling, the window maximised) is
        # framed again rather than leaving the picture small or cut off
        self._framed: tuple[Any, Callable[[], None]] | None = None
        self._adding = False  # layers going in hidden, shown together afterwards

    @property
    def canvas(self) -> CaseCanvas | None:
        case = self.session.case
        return CaseCanvas(self.viewer, case) if case is not None else None

    # -- lifecycle --------------------------------------------------------------------------
    def _connections(self) -> list[tuple[Any, Any]]:
        s = self.session
        return [(s.case_changed, self._on_case), (s.selection_changed, self._on_selection),
                (s.image_changed, self._on_image), (s.display_changed, self._on_display),
                (s.window_changed, self._on_window), (s.stats_changed, self._on_stats),
                (s.errors_changed, self._on_errors)]

    def attach(self) -> None:
        if self.attached:
            return
        for signal, slot in self._connections():
            signal.connect(slot)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.dims.events.order.connect(self._on_order)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        self._canvas_size_event().connect(self._on_canvas_size)
        self.attached = True

    def detach(self) -> None:
        if not self.attached:
            return
        for signal, slot in self._connections():
            signal.disconnect(slot)
        self.viewer.layers.events.inserted.disconnect(self._on_inserted)
        self.viewer.dims.events.order.disconnect(self._on_order)
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        self._canvas_size_event().disconnect(self._on_canvas_size)
        self.attached = False

    def _canvas_size_event(self) -> Any:
        canvas = getattr(self.viewer, "canvas", None)  # napari >= 0.9
        return canvas.events.size if canvas is not None else self.viewer.events._canvas_size

    # -- framing ----------------------------------------------------------------------------
    def _camera_now(self) -> tuple[float, tuple[float, ...]]:
        camera = viewer_camera(self.viewer)
        return float(camera.zoom), tuple(float(v) for v in camera.center)

    def _framing(self, frame: Callable[[], None]) -> None:
        """Frame the camera now, and again when the canvas resizes before the user moves it."""
        frame()
        self._framed = (self._camera_now(), frame)

    def fit_all(self) -> None:
        """The whole scene in view (a case with nothing to select)."""
        self._framing(self.viewer.reset_view)

    def _on_canvas_size(self, _event: Any = None) -> None:
        if self._framed is not None and self._framed[0] == self._camera_now():
            self._framing(self._framed[1])

    # -- session -> viewer ------------------------------------------------------------------
    def display_state(self) -> DisplayState:
        s = self.session
        return DisplayState(frozenset(s.selected_annotations()), s.image,
                            s.mask_mode == "selected", 1 if s.contours else 0,
                            s.errors_shown and bool(s.selected))

    def apply_display(self) -> None:
        if self.canvas is not None and not self._adding:  # (applied once they are all in)
            self.canvas.apply_display(self.display_state())

    def adopt(self, layer: Any) -> None:
        """A layer of the open case: read-only if it is an annotation, shown as asked."""
        meta = grounding_meta(layer)
        if meta is None or meta["case"] is not self.session.case:
            return
        if meta["role"] != "image" and not meta.get("read_only"):
            make_read_only(layer)
            meta["read_only"] = True
        elif meta["role"] == "image" and takes_ct_windows(self.session.case.images[meta["image"]]):
            layer.events.contrast_limits.connect(self._on_contrast)
            if self.session.window is not None:
                self._apply_window(self.session.window)
        if not self._adding:
            self.canvas.apply_to(layer, meta, self.display_state())

    @property
    def adding(self) -> bool:
        """Whether the panel is adding a case's layers (inside ``adding_layers``)."""
        return self._adding

    @contextlib.contextmanager
    def adding_layers(self) -> Iterator[None]:
        """For layers added hidden: shown together at the end, so each is sliced once, at the
        dims it ends with, not again as every later layer changes the dims."""
        self._adding = True
        try:
            yield
        finally:
            self._adding = False
        self.apply_display()

    def update_in_place(self, case: Case) -> bool:
        """Give the shown case's image and mask layers the next case's data, when the two
        have the same layers (a CT and its findings' masks): no layer is removed or re-added,
        so napari keeps its canvas state and the switch costs a re-slice. False when they differ."""
        current = [(la, m) for la in self.viewer.layers if (m := grounding_meta(la))]
        wanted = case_layers(case)
        if not current or len(current) != len(wanted):
            return False
        for (layer, meta), (data, kwargs, kind) in zip(current, wanted, strict=True):
            if (kind not in ("image", "labels") or kind != layer._type_string
                    or meta["role"] != kwargs["metadata"][META_KEY]["role"]
                    or getattr(layer, "multiscale", False) != kwargs.get("multiscale", False)
                    or (data[0] if isinstance(data, list) else data).ndim != layer.ndim):
                return False
        for (layer, _), (data, kwargs, kind) in zip(current, wanted, strict=True):
            # each of these changes would re-slice the layer through dask: one slicing after all
            with _refresh_once(layer):
                layer.metadata = kwargs["metadata"]
                layer.data = data
                layer.scale, layer.translate = kwargs["scale"], kwargs["translate"]
                layer.name = kwargs["name"]
                if kind == "labels":
                    layer.colormap = kwargs["colormap"]
        return True

    def reload_data(self) -> None:
        """Point the case's image and mask layers at the arrays the case now holds (its cache)."""
        if self.canvas is None:
            return
        case = self.session.case
        for layer, meta in self.canvas.layers():
            if meta["role"] == "image" and not layer.multiscale:
                image = case.images[meta["image"]]
                layer.data = (image.display_levels or [image.data])[0]
            elif meta["role"] == "annotation" and layer._type_string == "labels":
                mask = case.annotations[meta["annotation"]]
                layer.data = mask_display(case.images[mask.image], mask)

    def _on_inserted(self, event: Any) -> None:
        self.adopt(event.value)

    def keep_picture_active(self) -> None:
        """Keys and clicks go to the picture shown: one of the case's layers made active
        (napari activates each layer it adds) gives way to the shown image."""
        active = self.viewer.layers.selection.active
        meta = grounding_meta(active) if active is not None else None
        if meta is None or self.canvas is None:
            return
        images = [la for la, m in self.canvas.layers("image")
                  if self.session.image in (None, m["image"])]
        if images and active is not images[0]:
            self.viewer.layers.selection.active = images[0]

    def _on_case(self, case: Case | None) -> None:
        self._pending = None
        self._framed = None  # another case's framing (and the case it holds) is not redone
        if case is None:
            return
        for layer, _ in self.canvas.layers():
            self.adopt(layer)
        self.keep_picture_active()

    def _on_errors(self, _shown: bool) -> None:
        self.show_errors()
        self.apply_display()

    def show_errors(self) -> None:
        """The selected item's error map (true/false positives, false negatives) as the one
        errors layer, computed by napari slice by slice; none when errors are off."""
        if self.canvas is None:
            return
        for layer, _ in self.canvas.layers("errors"):
            self.viewer.layers.remove(layer)
        s = self.session
        if not (s.errors_shown and s.selected):
            return
        from ..error_layers import error_layer

        found = error_layer(s.case, s.selected[0])
        if found is not None:
            data, kwargs, _ = found
            make_read_only(self.viewer.add_labels(data, **kwargs))
            self.keep_picture_active()

    def _on_selection(self, ids: tuple[str, ...], navigate: bool) -> None:
        if self.session.errors_shown:
            self.show_errors()
        self.apply_display()
        self.keep_picture_active()
        if navigate and ids:
            self.go_to(ids[0])

    def _on_image(self, image_id: str | None) -> None:
        self.apply_display()
        self.keep_picture_active()
        if image_id is not None and self.canvas is not None:
            canvas = self.canvas
            self._framing(lambda: canvas.fit_image(image_id))

    def _on_display(self, _mode: str, _contours: bool) -> None:
        self.apply_display()

    def _on_window(self, name: str | None) -> None:
        if name is not None:
            self._apply_window(name)

    def _apply_window(self, name: str) -> None:
        self._moving = True
        try:
            self.canvas.set_window(name)
        finally:
            self._moving = False

    def _on_stats(self, _stats: Any) -> None:
        if self._pending is not None:
            self.go_to(self._pending)

    def go_to(self, item_id: str) -> None:
        """Move to the item: its image, the slice through its centre, framed."""
        s = self.session
        if s.case is None:
            return
        if s.stats is None:
            self._pending = item_id
            return
        self._pending = None
        target = item_target(s.case, s.case.item(item_id), s.stats)
        if target is None:
            return
        if s.image is not None and s.image != target.image:
            s.show_image(target.image)
        self._moving = True
        try:
            canvas = self.canvas
            canvas.go_to(target, s.plane)
            self._framed = (self._camera_now(), lambda: canvas.frame_on(target))
        finally:
            self._moving = False

    # -- viewer -> session ------------------------------------------------------------------
    def _on_order(self, _event: Any = None) -> None:
        """A plane the user picked (transpose, roll) is kept for the next items; napari's own
        reorder when the number of dimensions changes is not a choice."""
        order = tuple(self.viewer.dims.order)
        previous, self._order = self._order, order
        if not self._moving and len(order) == 3 and len(previous) == 3 and order != previous:
            self.session.set_plane(plane_of(order))

    def _on_contrast(self, event: Any) -> None:
        window = self.session.window
        if self._moving or window is None:
            return
        limits = tuple(float(v) for v in event.source.contrast_limits)
        if limits != window_limits(window):
            self.session.set_window(None)  # the user's own limits: no preset is active

    def _on_mouse(self, viewer: Any, event: Any):
        if event.button != 1 or viewer.dims.ndisplay != 2:
            return
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = True
            yield
        if not dragged and self.canvas is not None:
            hits = self.canvas.items_at(event.position, self.session.image, self.session.stats)
            if hits:
                self.session.select(hits, navigate=False)


@contextlib.contextmanager
def _refresh_once(layer: Any) -> Iterator[None]:
    """Changes to a layer with its refreshes held back (napari's ``_block_refresh``, where
    this napari has it), then one refresh."""
    block = getattr(layer, "_block_refresh", None)
    with block() if block is not None else contextlib.nullcontext():
        yield
    if block is not None:
        layer.refresh()
