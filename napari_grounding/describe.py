"""A Case as plain JSON-ready data: the schema every reader fills (see README)."""

from __future__ import annotations

from typing import Any

from .metrics import (
    AnnotationStats,
    MaskStats,
    ShapeStats,
    case_stats,
    display_slice_range,
    volume_ml,
)
from .model import (
    Annotation,
    BoxAnnotation,
    Case,
    ContourAnnotation,
    Image,
    MaskAnnotation,
    TextItem,
)


def _round(values: Any, digits: int = 3) -> list[float]:
    return [round(float(v), digits) for v in values]


def image_dict(image: Image) -> dict[str, Any]:
    """Shape and spacing in the source file's own axis order (pixels for 2D images)."""
    return {
        "id": image.id,
        "kind": image.kind,
        "shape": list(image.orientation.source_shape),
        # plain PNG/JPEG pictures carry no physical pixel size
        "spacing_mm": _round(image.source_spacing, 4) if image.kind == "ct" else None,
        "dtype": str(image.dtype),
        **{k: v for k, v in image.meta.items() if isinstance(v, str)},
        "source": image.source,
    }


def mask_dict(mask: MaskAnnotation, stats: MaskStats, image: Image | None) -> dict[str, Any]:
    three_d = len(stats.shape) == 3
    out: dict[str, Any] = {"id": mask.id, "kind": "mask", "set": mask.set, "image": mask.image,
                           "voxels" if three_d else "pixels": stats.voxels,
                           "instances": stats.instances,
                           "labels": [int(v) if float(v).is_integer() else v for v in stats.labels]}
    if three_d:
        out["volume_ml"] = round(volume_ml(stats, image), 4) if image else None
    out["bbox"] = [list(stats.bbox[0]), list(stats.bbox[1])] if stats.bbox else None
    out["centroid"] = _round(stats.centroid) if stats.centroid else None
    if three_d and image is not None and stats.centroid is not None:
        out["centroid_mm"] = _round(image.source_to_world(stats.centroid))
        out["slice_range"] = list(display_slice_range(stats, image))
    return out


def shape_dict(annotation: Annotation, stats: ShapeStats) -> dict[str, Any]:
    out: dict[str, Any] = {"id": annotation.id, "kind": annotation.kind, "set": annotation.set,
                           "image": annotation.image, "points": stats.points}
    if isinstance(annotation, ContourAnnotation):
        out["closed"] = annotation.closed
    out["bbox"] = [_round(stats.bbox[0]), _round(stats.bbox[1])] if stats.bbox else None
    out["centroid"] = _round(stats.centroid) if stats.centroid else None
    return out


def box_dict(box: BoxAnnotation) -> dict[str, Any]:
    """Image pixel coordinates; ``given`` is the dataset's box before clipping."""
    out: dict[str, Any] = {"id": box.id, "kind": "box", "set": box.set, "image": box.image,
                           "xyxy": _round(box.xyxy, 2), "clipped": box.clipped,
                           "fallback": box.fallback, "label": box.label}
    if box.clipped:
        out["given"] = _round(box.given, 2)
    return out


def annotation_dict(case: Case, annotation: Annotation) -> dict[str, Any]:
    if isinstance(annotation, BoxAnnotation):
        return box_dict(annotation)
    stats = case_stats(case).get(annotation.id)
    if isinstance(stats, MaskStats):
        return mask_dict(annotation, stats, case.images.get(annotation.image))
    if isinstance(stats, ShapeStats):
        return shape_dict(annotation, stats)
    return {"id": annotation.id, "kind": annotation.kind, "set": annotation.set,
            "image": annotation.image}


def annotation_summary(case: Case, annotation_id: str,
                       stats: dict[str, AnnotationStats] | None) -> str:
    """One line for the panel: what an annotation holds."""
    annotation = case.annotations[annotation_id]
    found = stats.get(annotation_id) if stats else None
    if found is None:
        return f"{annotation_id}: measuring…"
    if isinstance(annotation, BoxAnnotation):
        flags = [f for f, on in (("clipped", annotation.clipped), ("fallback", annotation.fallback))
                 if on]
        note = f" ({', '.join(flags)})" if flags else ""
        return (f"box on {annotation.image[:12]}…: "
                f"{', '.join(f'{v:.0f}' for v in annotation.xyxy)}{note}")
    if isinstance(found, ShapeStats):
        return f"{annotation_id} [{annotation.set}]: {annotation.kind}, {found.points} points"
    image = case.images.get(annotation.image)
    three_d = len(found.shape) == 3
    parts = [f"{found.voxels} {'voxels' if three_d else 'pixels'}"]
    if three_d and image is not None:
        parts.append(f"{volume_ml(found, image):.2f} mL")
    parts.append(f"instances: {found.instances}")
    first_last = display_slice_range(found, image) if image is not None else None
    if first_last:
        parts.append(f"slices {first_last[0]}–{first_last[1]}")
    return f"{annotation_id} [{annotation.set}]: " + ", ".join(parts)


def item_dict(case: Case, item: TextItem) -> dict[str, Any]:
    out: dict[str, Any] = {"id": item.id, "text": item.text}
    if item.title:
        out["title"] = item.title
    out["tags"] = dict(item.tags)
    out["annotations"] = [annotation_dict(case, a) for a in case.annotations_of(item)]
    out["children"] = [item_dict(case, c) for c in item.children]
    return out


def describe_case(case: Case) -> dict[str, Any]:
    return {
        "dataset": case.dataset,
        "case": case.id,
        "key": case.key,
        "tags": dict(case.tags),
        "problems": list(case.problems),
        "images": [image_dict(i) for i in case.images.values()],
        "items": [item_dict(case, i) for i in case.items],
    }
