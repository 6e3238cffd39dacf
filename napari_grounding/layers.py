"""A Case as napari layer data: ``(data, kwargs, layer_type)`` tuples, no viewer needed.

Every layer carries ``metadata["napari_grounding"]`` naming its case, role and image or
annotation, which is how the panel finds the layers of a case however they were added.
"""

from __future__ import annotations

import colorsys
from typing import Any

from .model import Case, Image, MaskAnnotation

META_KEY = "napari_grounding"
LayerData = tuple[Any, dict[str, Any], str]
# Hues for successive findings; instances of one finding share its hue at other lightnesses.
_HUES = (0.0, 0.33, 0.6, 0.12, 0.8, 0.48, 0.92, 0.2, 0.7, 0.04, 0.4, 0.55, 0.87)
_LIGHTNESS = (0.5, 0.7, 0.35, 0.6, 0.42, 0.78)
_INSTANCE_COLOURS = 64


def finding_colour(index: int, instance: int = 1) -> tuple[float, float, float, float]:
    """RGBA of instance ``instance`` (1-based) of the ``index``-th annotation."""
    hue = _HUES[index % len(_HUES)]
    lightness = _LIGHTNESS[(instance - 1) % len(_LIGHTNESS)]
    saturation = 0.95 if instance <= len(_LIGHTNESS) else 0.6
    return (*colorsys.hls_to_rgb(hue, lightness, saturation), 1.0)


def label_colormap(index: int) -> dict[Any, tuple[float, ...]]:
    """A direct labels colormap: background clear, each instance its own shade."""
    colours: dict[Any, tuple[float, ...]] = {None: finding_colour(index), 0: (0, 0, 0, 0)}
    colours.update({k: finding_colour(index, k) for k in range(1, _INSTANCE_COLOURS + 1)})
    return colours


def _meta(case: Case, role: str, **ids: str) -> dict[str, Any]:
    return {META_KEY: {"case": case, "case_key": case.key, "role": role, **ids}}


def image_layer(case: Case, image: Image) -> LayerData:
    kwargs = {
        "name": f"{case.id} {image.id}",
        "scale": image.spacing,
        "translate": image.origin,
        "contrast_limits": image.contrast_limits,
        "colormap": "gray",
        "units": "mm",
        "axis_labels": _axis_labels(image),
        "metadata": _meta(case, "image", image=image.id),
    }
    return image.data, kwargs, "image"


def _axis_labels(image: Image) -> tuple[str, ...]:
    names = ("S→I", "A→P", "R→L") if image.kind == "ct" else ("row", "column")
    return names[-image.data.ndim :]


def mask_layer(case: Case, mask: MaskAnnotation, index: int) -> LayerData:
    image = case.images[mask.image]
    items = case.items_linked_to(mask.id)
    title = items[0].id if items else mask.id
    kwargs = {
        "name": f"{title} [{mask.set}]",
        "scale": image.spacing,
        "translate": image.origin,
        "opacity": 0.55,
        "colormap": label_colormap(index),
        "units": "mm",
        "axis_labels": _axis_labels(image),
        "metadata": _meta(case, "annotation", annotation=mask.id, image=mask.image),
    }
    return image.orientation.to_display(mask.data), kwargs, "labels"


def drawable_masks(case: Case) -> list[MaskAnnotation]:
    """Masks whose image is present; their position picks their colour."""
    return [a for a in case.annotations.values()
            if isinstance(a, MaskAnnotation) and a.image in case.images]


def case_layers(case: Case) -> list[LayerData]:
    """The images first, then each drawable annotation."""
    layers = [image_layer(case, image) for image in case.images.values()]
    layers += [mask_layer(case, mask, i) for i, mask in enumerate(drawable_masks(case))]
    return layers


def grounding_meta(layer: Any) -> dict[str, Any] | None:
    """The plugin's metadata on a napari layer, or None for foreign layers."""
    meta = getattr(layer, "metadata", None) or {}
    found = meta.get(META_KEY)
    return found if isinstance(found, dict) else None
