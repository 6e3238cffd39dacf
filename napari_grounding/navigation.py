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


def zoom_factor(scene_size: np.ndarray, target_size: np.ndarray, min_size_mm: float = 120.0,
                fill: float = 0.5) -> float:
    """How much to magnify a whole-scene view so the target fills ``fill`` of it."""
    size = np.maximum(target_size / fill, min_size_mm)
    return float(max(1.0, np.min(scene_size / size)))
