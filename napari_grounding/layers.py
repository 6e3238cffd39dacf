"""A Case as napari layer data: ``(data, kwargs, layer_type)`` tuples, no viewer needed.

Every layer carries ``metadata["napari_grounding"]`` naming its case, role and image or
annotation, which is how the panel finds the layers of a case however they were added.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .colours import box_colour, colour_slots, finding_colour, label_colormap
from .model import Annotation, BoxAnnotation, Case, ContourAnnotation, Image, MaskAnnotation
from .windows import takes_ct_windows

META_KEY = "napari_grounding"
# planes larger than this (pixels) are shown from the pyramid, level by zoom
PYRAMID_ABOVE_PIXELS = 2048 * 2048
LayerData = tuple[Any, dict[str, Any], str]
def drawable(case: Case) -> list[Annotation]:
    """Annotations whose image is present, in case order."""
    return [a for a in case.annotations.values()
            if isinstance(a, MaskAnnotation | ContourAnnotation) and a.image in case.images]


def _meta(case: Case, role: str, **ids: str) -> dict[str, Any]:
    return {META_KEY: {"case": case, "case_key": case.key, "role": role, **ids}}


def _geometry(image: Image) -> dict[str, Any]:
    three_d = image.data.ndim == 3
    return {"scale": image.spacing, "translate": image.origin,
            "units": "mm" if three_d else "pixel",
            "axis_labels": ("S→I", "A→P", "R→L") if three_d else ("row", "column")}


def short_name(identifier: str) -> str:
    """A layer name that stays readable in napari's narrow layer list: "finding/0" ->
    "finding 0", "structure/right_lung" -> "right lung" (the full id is in the metadata)."""
    parts = identifier.split("/")
    if len(parts) > 1 and not parts[-1].isdigit():
        parts = parts[1:]
    return " ".join(parts).replace("_", " ")


def image_name(image: Image) -> str:
    """"CT", a view position ("PA") or the image's short id."""
    if image.label != image.id:
        return image.label
    if image.kind == "ct":
        return "CT" if takes_ct_windows(image) else "volume"
    return short_name(image.id)


def mask_display(image: Image, mask: MaskAnnotation) -> Any:
    """A mask as the viewer shows it: display order, straight from the cache when there."""
    if mask.display_data is not None:
        return mask.display_data
    return image.orientation.to_display(mask.data)


def shows_pyramid(image: Image) -> bool:
    """Whether the image is shown as napari multiscale: only when a plane of it is too large
    to slice whole at once. A CT's 512 x 512 plane is not: there a pyramid only re-slices the
    CT a second time whenever the zoom changes its level (each selection)."""
    shape = image.data.shape[-3:]
    planes = [a * b for i, a in enumerate(shape) for b in shape[i + 1:]]
    return bool(image.pyramid) and max(planes, default=0) > PYRAMID_ABOVE_PIXELS


def image_layer(case: Case, image: Image) -> LayerData:
    multiscale = shows_pyramid(image)
    kwargs = {
        "name": image_name(image),
        "contrast_limits": image.contrast_limits,
        "colormap": "gray",
        "multiscale": multiscale,
        "metadata": _meta(case, "image", image=image.id),
        **_geometry(image),
    }
    if multiscale:
        return image.display_levels or image.pyramid, kwargs, "image"
    return (image.display_levels or [image.data])[0], kwargs, "image"


def _layer_name(case: Case, annotation: Annotation) -> str:
    items = case.items_linked_to(annotation.id)
    name = short_name(items[0].id if items else annotation.id)
    name += f" {annotation.kind}" if annotation.kind != "mask" else ""
    first_set = next(iter(case.annotations.values())).set
    return name if annotation.set == first_set else f"{name} · {annotation.set}"


def mask_layer(case: Case, mask: MaskAnnotation, slot: int) -> LayerData:
    image = case.images[mask.image]
    kwargs = {
        "name": _layer_name(case, mask),
        "opacity": 0.55,
        "colormap": label_colormap(slot),
        "metadata": _meta(case, "annotation", annotation=mask.id, image=mask.image),
        **_geometry(image),
    }
    return mask_display(image, mask), kwargs, "labels"


def contour_layer(case: Case, contour: ContourAnnotation, slot: int) -> LayerData:
    image = case.images[contour.image]
    kwargs = {
        "name": _layer_name(case, contour),
        "shape_type": "polygon" if contour.closed else "path",
        "edge_color": [finding_colour(slot)],
        "face_color": [(0.0, 0.0, 0.0, 0.0)],
        "edge_width": max(1.0, max(image.orientation.source_shape) / 400),
        "metadata": _meta(case, "annotation", annotation=contour.id, image=contour.image),
        **_geometry(image),
    }
    return [np.asarray(contour.points, dtype=float)], kwargs, "shapes"




def box_rectangle(box: BoxAnnotation) -> np.ndarray:
    (y1, x1), (y2, x2) = box.corners
    return np.array([[y1, x1], [y1, x2], [y2, x2], [y2, x1]], dtype=float)


def box_style(box: BoxAnnotation, image: Image, emphasised: bool | None = None
              ) -> tuple[tuple[float, ...], float, str]:
    """Edge colour (by positiveness), width and text label; fallbacks thinner and fainter.

    ``emphasised`` True (a selected answer's box): twice as wide, labelled; False (the others
    while something is selected): faint and unlabelled, so labels never pile up; None: plain.
    """
    colour = box_colour(box)
    width = max(2.0, max(image.orientation.source_shape) / 500)
    label = f"{box.label} (fallback)" if box.fallback else box.label
    if box.fallback:
        colour, width = (*colour[:3], 0.55), width / 2
    if emphasised:
        return colour, width * 2, label
    if emphasised is False:
        return (*colour[:3], 0.35), width, ""
    return colour, width, label


def dashes(box: BoxAnnotation, dash: float) -> list[np.ndarray]:
    """A box's outline as dashes (line segments ``dash`` long with gaps as long): napari's
    shapes have no dashed edges, and a prediction's boxes must not look like the truth's."""
    corners = box_rectangle(box)
    segments = []
    for start, end in zip(corners, np.roll(corners, -1, axis=0), strict=True):
        length = float(np.linalg.norm(end - start))
        if length == 0:
            continue  # a box clipped flat has no edge here
        for n in range(max(1, int(length // (2 * dash)))):
            t0, t1 = 2 * n * dash / length, min(1.0, (2 * n + 1) * dash / length)
            segments.append(np.array([start + t0 * (end - start), start + t1 * (end - start)]))
    return segments


def box_shapes(case: Case, box_ids: list[str], emphasised: set[str] | None = None,
               dashed: bool = False) -> dict[str, Any]:
    """Data, colours, widths and labels of some boxes (one image's), for a shapes layer;
    with ``emphasised`` given, those boxes stand out and only they are labelled; ``dashed``
    draws each box as dashes (a model's boxes), labelled once."""
    data, colours, widths, labels = [], [], [], []
    for box in (case.annotations[b] for b in box_ids):
        image = case.images[box.image]
        colour, width, label = box_style(box, image,
                                         None if emphasised is None else box.id in emphasised)
        pieces = dashes(box, max(4.0, max(image.orientation.source_shape) / 150)) if dashed \
            else [box_rectangle(box)]
        data += pieces
        colours += [colour] * len(pieces)
        widths += [width] * len(pieces)
        labels += [label] + [""] * (len(pieces) - 1)
    return {"data": data, "shape_type": "line" if dashed else "rectangle",
            "edge_color": colours or "white", "edge_width": widths or 1.0,
            "features": {"label": labels}}


def boxes_layer(case: Case, image: Image, box_ids: list[str]) -> LayerData:
    set_name = case.annotations[box_ids[0]].set if box_ids else case.reference_set
    dashed = set_name != case.reference_set
    shapes = box_shapes(case, box_ids, emphasised=set(), dashed=dashed)
    kwargs = {
        "name": f"boxes {image_name(image)}" + ("" if set_name == case.reference_set else f" · {set_name}"),
        "shape_type": shapes["shape_type"],
        "edge_color": shapes["edge_color"],
        "edge_width": shapes["edge_width"],
        "face_color": "transparent",
        "features": shapes["features"],
        "text": {"string": "{label}", "anchor": "upper_left", "size": 9, "color": "white"},
        "metadata": _meta(case, "boxes", image=image.id, boxes=list(box_ids), set=set_name,
                          dashed=dashed),
        **_geometry(image),
    }
    return shapes["data"], kwargs, "shapes"


def case_layers(case: Case) -> list[LayerData]:
    """The images first, then each drawable annotation: masks, contours, boxes per image."""
    slots = colour_slots(case)
    layers = [image_layer(case, image) for image in case.images.values()]
    annotations = drawable(case)
    layers += [mask_layer(case, a, slots[a.id]) for a in annotations
               if isinstance(a, MaskAnnotation)]
    layers += [contour_layer(case, a, slots[a.id]) for a in annotations
               if isinstance(a, ContourAnnotation)]
    for image in case.images.values():
        for set_name in case.sets():  # one boxes layer per image and annotation set
            boxes = [a.id for a in case.annotations.values()
                     if isinstance(a, BoxAnnotation) and a.image == image.id and a.set == set_name]
            if boxes:
                layers.append(boxes_layer(case, image, boxes))
    return layers


def grounding_meta(layer: Any) -> dict[str, Any] | None:
    """The plugin's metadata on a napari layer, or None for foreign layers."""
    meta = getattr(layer, "metadata", None) or {}
    found = meta.get(META_KEY)
    return found if isinstance(found, dict) else None
