"""Quality checks of one case: each defect a row (dataset, case, check, item, detail)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import MaskStats, case_stats
from .model import BoxAnnotation, Case, ContourAnnotation

CHECKS = ("mask_shape", "empty_mask", "voxel_count", "entity_count", "low_rca", "rle",
          "landmarks", "landmarks_outside", "boxes_outside", "missing_image", "unreadable",
          "other")
# reader problems, by what their message says (the reader has already named row and column)
_PROBLEM_CHECKS = (("does not match the CT", "mask_shape"), ("RLE", "rle"),
                   ("'Landmarks'", "landmarks"), ("not found", "missing_image"),
                   ("no image folder given", "missing_image"), ("clipped", None))


def _problem_check(problem: str) -> str | None:
    for phrase, check in _PROBLEM_CHECKS:
        if phrase in problem:
            return check
    return "other"


def qc_case(case: Case) -> list[dict[str, Any]]:
    """Every defect found in a case (an empty list for a clean one)."""
    rows: list[dict[str, Any]] = []

    def add(check: str, detail: str, item: str = "") -> None:
        rows.append({"dataset": case.dataset, "case": case.id, "check": check, "item": item,
                     "detail": detail})

    for problem in case.problems:
        check = _problem_check(problem)
        if check is not None:  # clipped boxes are counted one by one below
            add(check, problem)
    if case.tags.get("quality", "").startswith("flagged"):
        add("low_rca", f"RCA Dice (mean) {case.tags.get('rca_dice_mean')} below 0.7")
    stats = case_stats(case)
    for item in case.walk():
        for annotation_id in item.annotations:
            _check_annotation(case, item.id, item.tags, annotation_id, stats, add)
    return rows


def _check_annotation(case: Case, item_id: str, tags: dict[str, str], annotation_id: str,
                      stats: dict, add) -> None:
    annotation, found = case.annotations[annotation_id], stats.get(annotation_id)
    if isinstance(found, MaskStats):
        if found.empty:
            add("empty_mask", f"{annotation_id} has no foreground", item_id)
        if "voxels" in tags and int(tags["voxels"]) != found.voxels:
            add("voxel_count", f"{annotation_id}: {found.voxels} voxels, dataset.json says "
                f"{tags['voxels']}", item_id)
        if "entities" in tags and not _entities_agree(int(tags["entities"]), found.instances,
                                                      tags.get("entities_max_masked")):
            add("entity_count", f"{annotation_id}: {found.instances} distinct labels, "
                f"entity_counts says {tags['entities']}", item_id)
    elif isinstance(annotation, ContourAnnotation) and annotation.image in case.images:
        rows, cols = case.images[annotation.image].orientation.source_shape
        points = np.asarray(annotation.points)
        outside = int(np.sum((points[:, 0] < 0) | (points[:, 0] > rows) | (points[:, 1] < 0)
                             | (points[:, 1] > cols)))
        if outside:
            add("landmarks_outside", f"{annotation_id}: {outside} landmarks outside the "
                f"{rows} x {cols} image", item_id)
    elif isinstance(annotation, BoxAnnotation) and annotation.clipped:
        add("boxes_outside", f"{annotation_id}: {list(annotation.given)} reaches outside its "
            "image", item_id)


def _entities_agree(counted: int, drawn: int, max_masked: str | None) -> bool:
    """Whether a mask's labels fit the entity count; where the reader says the mask holds only
    a representative few (ReXGroundingCT training: up to 3), fewer labels are no defect."""
    if max_masked is not None and counted > int(max_masked):
        return 1 <= drawn <= counted
    return drawn == counted
