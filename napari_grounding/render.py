"""Snapshots without a GUI: an item's slice, windowed, with its annotations drawn (numpy)."""

from __future__ import annotations

import numpy as np
from skimage.draw import line

from .colours import box_colour, colour_slots, finding_colour
from .metrics import AnnotationStats, compute_isolated
from .model import BoxAnnotation, Case, ContourAnnotation, MaskAnnotation, TextItem
from .navigation import item_annotation_ids, item_target

MAX_SIDE = 768  # gallery pictures are scaled down to this
MASK_ALPHA = 0.45


def _grey(plane: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    low, high = limits
    scaled = (plane.astype(np.float32) - low) / max(high - low, 1e-6)
    grey = (np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _rgb(colour) -> np.ndarray:
    return (np.asarray(colour[:3]) * 255).astype(np.uint8)


def render_item(case: Case, item: TextItem, stats: dict[str, AnnotationStats]) -> np.ndarray | None:
    """RGB picture of the slice through an item's centre (or its 2D image), with the item's
    masks blended in and its contours and boxes outlined; None when it has nothing to show."""
    target = item_target(case, item, stats)
    if target is None:
        return None
    image = case.images[target.image]
    three_d = image.data.ndim == 3
    index = None
    if three_d:  # the axial slice through the centre
        spacing0, origin0 = image.spacing[0], image.origin[0]
        index = int(np.clip(round((target.centre[0] - origin0) / spacing0), 0,
                            image.data.shape[0] - 1))
    plane = image.data[index] if three_d else image.data
    annotations = [case.annotations[a] for a in item_annotation_ids(item)
                   if a in case.annotations and case.annotations[a].image == target.image]
    masks = [a for a in annotations if isinstance(a, MaskAnnotation)]
    mask_planes = [image.orientation.to_display(m.data)[index] if three_d else m.data
                   for m in masks]
    plane, *mask_planes = compute_isolated(plane, *mask_planes)
    picture = _grey(np.asarray(plane), image.contrast_limits)
    slots = colour_slots(case)
    for mask, layer in zip(masks, mask_planes, strict=True):
        where = np.asarray(layer) != 0
        colour = _rgb(finding_colour(slots[mask.id]))
        picture[where] = (picture[where] * (1 - MASK_ALPHA) + colour * MASK_ALPHA).astype(np.uint8)
    for annotation in annotations:
        _outline(picture, annotation, slots)
    return _fit(picture)


def _polygon(picture: np.ndarray, rows, cols, colour) -> None:
    """A closed outline through the vertices, clipped to the picture."""
    vertices = np.round(np.stack([rows, cols], axis=1)).astype(int)
    edges = [line(*a, *b) for a, b in zip(vertices, np.roll(vertices, -1, axis=0), strict=True)]
    rr = np.concatenate([e[0] for e in edges])
    cc = np.concatenate([e[1] for e in edges])
    inside = (rr >= 0) & (rr < picture.shape[0]) & (cc >= 0) & (cc < picture.shape[1])
    picture[rr[inside], cc[inside]] = _rgb(colour)


def _outline(picture: np.ndarray, annotation, slots: dict[str, int]) -> None:
    if isinstance(annotation, ContourAnnotation):
        points = np.asarray(annotation.points)
        _polygon(picture, points[:, 0], points[:, 1], finding_colour(slots[annotation.id]))
    elif isinstance(annotation, BoxAnnotation):
        (y1, x1), (y2, x2) = annotation.corners
        _polygon(picture, [y1, y1, y2, y2], [x1, x2, x2, x1], box_colour(annotation))


def _fit(picture: np.ndarray) -> np.ndarray:
    step = int(np.ceil(max(picture.shape[:2]) / MAX_SIDE))
    return picture[::step, ::step] if step > 1 else picture
