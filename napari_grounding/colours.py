"""Colours of annotations, shared by the layers and the snapshot renderer (no Qt)."""

from __future__ import annotations

import colorsys
from typing import Any

from .model import BoxAnnotation, Case

# Hues for successive items; instances of one item share its hue at other lightnesses.
_HUES = (0.0, 0.33, 0.6, 0.12, 0.8, 0.48, 0.92, 0.2, 0.7, 0.04, 0.4, 0.55, 0.87)
_LIGHTNESS = (0.5, 0.7, 0.35, 0.6, 0.42, 0.78)
_INSTANCE_COLOURS = 64


def finding_colour(index: int, instance: int = 1) -> tuple[float, float, float, float]:
    """RGBA of instance ``instance`` (1-based) of the ``index``-th colour slot."""
    hue = _HUES[index % len(_HUES)]
    lightness = _LIGHTNESS[(instance - 1) % len(_LIGHTNESS)]
    saturation = 0.95 if instance <= len(_LIGHTNESS) else 0.6
    return (*colorsys.hls_to_rgb(hue, lightness, saturation), 1.0)


def label_colormap(index: int) -> dict[Any, tuple[float, ...]]:
    """A direct labels colormap: background clear, each instance its own shade."""
    colours: dict[Any, tuple[float, ...]] = {None: finding_colour(index), 0: (0, 0, 0, 0)}
    colours.update({k: finding_colour(index, k) for k in range(1, _INSTANCE_COLOURS + 1)})
    return colours


def colour_slots(case: Case) -> dict[str, int]:
    """Annotation id -> colour slot: that of the first item linking it, one block per set,
    so a structure's mask and contour match and a second annotation set stands apart."""
    items = list(case.walk())
    sets = list(dict.fromkeys(a.set for a in case.annotations.values()))
    slots = {}
    for position, annotation in enumerate(case.annotations.values()):
        linked = [i for i, item in enumerate(items) if annotation.id in item.annotations]
        base = linked[0] if linked else len(items) + position
        slots[annotation.id] = base + sets.index(annotation.set) * max(len(items), 1)
    return slots


POSITIVENESS_COLOURS = {"pos": (1.0, 0.35, 0.2, 1.0), "neg": (0.2, 0.85, 0.6, 1.0)}
OTHER_COLOUR = (1.0, 0.85, 0.2, 1.0)


def box_colour(box: BoxAnnotation) -> tuple[float, float, float, float]:
    """Positive findings red, negative green, anything else (regions) yellow."""
    return POSITIVENESS_COLOURS.get(box.positiveness, OTHER_COLOUR)

# Error map of a prediction against the ground truth, values as ``scores.error_labels`` gives
# them. Okabe–Ito colours: told apart with any of the common colour-vision deficiencies.
TRUE_POSITIVE = (0.0, 158 / 255, 115 / 255, 1.0)  # bluish green: both
FALSE_POSITIVE = (230 / 255, 159 / 255, 0.0, 1.0)  # orange: prediction only (spill-over)
FALSE_NEGATIVE = (0.0, 114 / 255, 178 / 255, 1.0)  # blue: ground truth only (missed)
ERROR_COLOURS = {1: TRUE_POSITIVE, 2: FALSE_POSITIVE, 3: FALSE_NEGATIVE}
ERROR_NAMES = {1: "true positive", 2: "false positive", 3: "false negative"}


def error_colormap() -> dict[Any, tuple[float, ...]]:
    """A direct labels colormap for ``scores.error_labels`` images (background clear)."""
    return {None: (0.0, 0.0, 0.0, 0.0), 0: (0.0, 0.0, 0.0, 0.0), **ERROR_COLOURS}
