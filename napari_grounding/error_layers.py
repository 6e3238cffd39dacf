"""Where a prediction is right and wrong, as napari layer data (no viewer, no Qt).

The error map of one item is a lazy labels volume (1 true positive, 2 false positive,
3 false negative; ``scores.error_labels``) built chunk by chunk from the two masks: napari
computes only the chunks of the slice it shows, never a full-volume copy.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from .colours import error_colormap
from .layers import META_KEY, LayerData, _geometry, short_name
from .model import Case, MaskAnnotation
from .scores import error_labels


def error_volume(gt: Any, pred: Any) -> da.Array:
    """``error_labels`` of two same-shaped masks, lazily, in ``gt``'s chunks."""
    g = gt if isinstance(gt, da.Array) else da.from_array(np.asarray(gt))
    p = pred if isinstance(pred, da.Array) else da.from_array(np.asarray(pred))
    if p.chunks != g.chunks:
        p = p.rechunk(g.chunks)
    return da.map_blocks(error_labels, g, p, dtype=np.uint8)


def item_masks(case: Case, item_id: str, gt_set: str | None = None, pred_set: str | None = None
               ) -> tuple[MaskAnnotation, MaskAnnotation] | None:
    """The item's ground-truth and predicted masks, or None when either set has none."""
    item = case.item(item_id)
    gt_set = gt_set or case.reference_set
    pred_set = pred_set or (case.added_sets[-1] if case.added_sets else None)
    if pred_set is None:
        return None
    found = [next((a for a in case.annotations_in(item, s) if isinstance(a, MaskAnnotation)), None)
             for s in (gt_set, pred_set)]
    return None if None in found else (found[0], found[1])


def error_layer(case: Case, item_id: str, gt_set: str | None = None, pred_set: str | None = None
                ) -> LayerData | None:
    """A labels layer of the item's true and false positives and false negatives (display
    order, on its image's geometry), or None when the item has no mask in either set."""
    masks = item_masks(case, item_id, gt_set, pred_set)
    if masks is None:
        return None
    gt, pred = masks
    image = case.images[gt.image]
    kwargs = {
        "name": f"{short_name(item_id)} errors · {pred.set}",
        "opacity": 0.7,
        "colormap": error_colormap(),
        "metadata": {META_KEY: {"case": case, "case_key": case.key, "role": "errors",
                                "item": item_id, "image": gt.image, "gt_set": gt.set,
                                "pred_set": pred.set}},
        **_geometry(image),
    }
    return image.orientation.to_display(error_volume(gt.data, pred.data)), kwargs, "labels"
