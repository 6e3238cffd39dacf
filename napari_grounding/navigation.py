"""Where to look for a text item: pure geometry the panel turns into camera moves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import AnnotationStats
from .model import Case, Image, TextItem


@dataclass(frozen=True)
class Target:
    """A place in napari world coordinates (display axes, mm) and the box around it."""

    image: str
    centre: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def item_annotation_ids(item: TextItem) -> list[str]:
    """The annotations of an item and of all its descendants, in order."""
    ids = list(item.annotations)
    for child in item.children:
        ids += [a for a in item_annotation_ids(child) if a not in ids]
    return ids


def item_target(case: Case, item: TextItem, stats: dict[str, AnnotationStats]) -> Target | None:
    """Weighted centre and joint extent of an item's non-empty annotations on one image."""
    found = [(case.annotations[a], stats[a]) for a in item_annotation_ids(item)
             if a in stats and not stats[a].empty and case.annotations[a].image in case.images]
    if not found:
        return None
    image_id = found[0][0].image
    image: Image = case.images[image_id]
    found = [(a, s) for a, s in found if a.image == image_id]
    weights = np.array([s.weight for _, s in found], dtype=float)
    centroid = np.average([s.centroid for _, s in found], axis=0, weights=weights)
    corners = [image.source_to_display_mm(c) for _, s in found for c in s.bbox]
    half_voxel = np.asarray(image.spacing) / 2
    return Target(image_id, image.source_to_display_mm(centroid),
                  np.min(corners, axis=0) - half_voxel, np.max(corners, axis=0) + half_voxel)


MARGIN = 0.5  # of the target's extent, on each side
MIN_FIELD_MM = 80.0
MIN_FIELD_FRACTION = 0.2  # of the image's larger side, where sizes are pixels, not mm
ELONGATED = 1.5  # S-I extent over the largest in-plane extent that turns the plane
PLANE_ORDERS = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}


@dataclass(frozen=True)
class Frame:
    """A 2D view: the camera centre (world, displayed axes) and zoom (screen px per unit)."""

    centre: tuple[float, float]
    zoom: float


def best_plane(target: Target, chosen: str | None = None) -> str:
    """The plane to read a 3D target in: the user's, else axial unless the target runs
    mostly head to foot (an aorta), then the plane that holds its length and its width."""
    if chosen is not None:
        return chosen
    size = target.hi - target.lo
    if size.size != 3 or size[0] < ELONGATED * max(size[1], size[2]):
        return "axial"
    return "coronal" if size[1] <= size[2] else "sagittal"


def frame(target: Target, displayed: list[int], scene_lo: np.ndarray, scene_hi: np.ndarray,
          canvas_px: tuple[float, float], min_field: float) -> Frame:
    """Centre on the target with a margin of half its extent on each side and at least
    ``min_field`` across, never showing past the scene's edges where the scene is larger."""
    lo, hi = target.lo[displayed], target.hi[displayed]
    field = np.maximum((hi - lo) * (1 + 2 * MARGIN), min_field)
    scene_lo, scene_hi = np.asarray(scene_lo)[displayed], np.asarray(scene_hi)[displayed]
    canvas = np.asarray(canvas_px, dtype=float)
    zoom = float(np.min(canvas / field))
    zoom = max(zoom, float(np.min(canvas / (scene_hi - scene_lo))))  # no smaller than the scene
    visible = canvas / zoom
    centre = np.asarray(target.centre, dtype=float)[displayed]
    for axis in range(2):
        if visible[axis] >= scene_hi[axis] - scene_lo[axis]:
            centre[axis] = (scene_lo[axis] + scene_hi[axis]) / 2
        else:
            half = visible[axis] / 2
            centre[axis] = float(np.clip(centre[axis], scene_lo[axis] + half, scene_hi[axis] - half))
    return Frame((float(centre[0]), float(centre[1])), zoom)
