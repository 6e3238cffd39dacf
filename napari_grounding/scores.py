"""How well one annotation set matches another, per text item (see README "Predictions").

Masks: Dice (both empty = 1), IoU, hit (Dice >= 0.1) and instances. Sums stream over dask
chunks (a few slices per channel at a time). Instances need whole components, so they are
found on the bounding box of the prediction's foreground only: memory is that box's size
(ground truth, prediction and component labels), never the volume's unless the prediction
spans it. Boxes: each predicted box's IoU with the best ground-truth box of the same item and
image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import dask.array as da
import numpy as np
from dask import delayed

from .metrics import compute_isolated
from .model import Annotation, BoxAnnotation, Case, MaskAnnotation, TextItem

HIT_DICE = 0.1
INSTANCE_DICE = 0.2
BOX_IOU = 0.5
PAIR_TABLE_MAX = 1 << 22  # (gt label, component) pairs counted in a table up to this many


@dataclass(frozen=True)
class ItemScore:
    """One item's scores; ``missing`` when the other set has nothing for it (all None)."""

    item: str
    kind: str  # "mask" or "box"
    missing: bool = False
    dice: float | None = None
    iou: float | None = None
    hit: bool | None = None
    gt_instances: int | None = None
    pred_instances: int | None = None
    matched: int | None = None
    instance_precision: float | None = None
    instance_recall: float | None = None
    instance_f1: float | None = None
    box_ious: tuple[float, ...] = field(default=())  # per predicted box, best over gt boxes

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["box_ious"] = list(self.box_ious)
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in out.items()}


# -- pure pieces ---------------------------------------------------------------------------
def overlap_scores(gt_voxels: int, pred_voxels: int, both: int) -> tuple[float, float]:
    """Dice and IoU from voxel counts; both empty counts as a perfect match."""
    total = gt_voxels + pred_voxels
    if total == 0:
        return 1.0, 1.0
    return 2.0 * both / total, both / (total - both)


def instance_scores(gt: int, pred: int, matched: int) -> tuple[float, float, float]:
    """Precision, recall and F1 of ``matched`` one-to-one pairs; nothing on either side = 1."""
    precision = matched / pred if pred else float(gt == 0)
    recall = matched / gt if gt else float(pred == 0)
    f1 = 2.0 * matched / (gt + pred) if gt + pred else 1.0
    return precision, recall, f1


def greedy_matches(pair_dice: dict[tuple[Any, Any], float], threshold: float = INSTANCE_DICE) -> int:
    """One-to-one pairs (gt, pred), highest Dice first, among those with Dice >= threshold."""
    used_gt: set[Any] = set()
    used_pred: set[Any] = set()
    for (g, p), value in sorted(pair_dice.items(), key=lambda kv: -kv[1]):
        if value >= threshold and g not in used_gt and p not in used_pred:
            used_gt.add(g)
            used_pred.add(p)
    return len(used_gt)


def components(foreground: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components, touching by faces, edges or corners (26 in 3D, 8 in 2D)."""
    from skimage.measure import label

    labelled, count = label(foreground, connectivity=foreground.ndim, return_num=True)
    return labelled, int(count)


def instance_pairs(gt: np.ndarray, labelled: np.ndarray, gt_sizes: dict[Any, int]
                   ) -> dict[tuple[Any, int], float]:
    """Dice of every overlapping (gt label, predicted component) pair; ``gt`` and
    ``labelled`` cover the same box, ``gt_sizes`` counts each gt label over the whole mask."""
    pred_sizes = np.bincount(labelled.ravel())
    both = (gt != 0) & (labelled != 0)
    if not both.any():
        return {}
    g, p = gt[both].astype(np.int64), labelled[both].astype(np.int64)
    lowest, span = int(g.min()), int(p.max()) + 1
    keys = (g - lowest) * span + p  # one integer per (gt label, component) pair
    if int(keys.max()) < PAIR_TABLE_MAX:  # a table: np.unique(axis=1) sorts 50x slower
        table = np.bincount(keys)
        keys = np.flatnonzero(table)
        counts = table[keys]
    else:
        keys, counts = np.unique(keys, return_counts=True)
    labels, comps = keys // span + lowest, keys % span
    return {(a, b): 2.0 * n / (gt_sizes[a] + pred_sizes[b])
            for a, b, n in zip(labels.tolist(), comps.tolist(), counts.tolist(), strict=True)}


def error_labels(gt: Any, pred: Any) -> np.ndarray:
    """Per pixel of one slice: 0 neither, 1 true positive, 2 false positive (prediction only),
    3 false negative (ground truth only); colours in ``colours.ERROR_COLOURS``."""
    g, p = np.asarray(gt) != 0, np.asarray(pred) != 0
    out = np.zeros(g.shape, dtype=np.uint8)
    out[g & p] = 1
    out[p & ~g] = 2
    out[g & ~p] = 3
    return out


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_scores(item: str, gt: list[BoxAnnotation], pred: list[BoxAnnotation]) -> ItemScore:
    """Best IoU of each predicted box with the gt boxes of its image; matched at IoU >= 0.5.

    ``matched`` counts predicted boxes that match; recall counts gt boxes some prediction
    matches; F1 is their harmonic mean.
    """
    ious = []
    found: set[str] = set()
    for p in pred:
        candidates = [(box_iou(p.xyxy, g.xyxy), g.id) for g in gt if g.image == p.image]
        best, best_id = max(candidates, default=(0.0, ""))
        ious.append(best)
        found.update(g_id for iou, g_id in candidates if iou >= BOX_IOU)
    matched = sum(iou >= BOX_IOU for iou in ious)
    precision = matched / len(pred) if pred else float(not gt)
    recall = len(found) / len(gt) if gt else float(not pred)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ItemScore(item, "box", hit=matched > 0 or not (gt or pred), gt_instances=len(gt),
                     pred_instances=len(pred), matched=matched, instance_precision=precision,
                     instance_recall=recall, instance_f1=f1, box_ious=tuple(ious))


# -- masks, chunk by chunk ------------------------------------------------------------------
def _block_sums(g: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, dict[Any, int], list[np.ndarray]]:
    """Counts of gt, prediction and both; gt voxels per label; the prediction's per-axis
    profile (for its bounding box)."""
    g, p = np.asarray(g), np.asarray(p) != 0
    gfg = g != 0
    sums = np.array([gfg.sum(), p.sum(), (gfg & p).sum()], dtype=np.int64)
    labels, counts = np.unique(g[gfg], return_counts=True)
    axes = range(p.ndim)
    profiles = [p.any(axis=tuple(a for a in axes if a != axis)) for axis in axes]
    return sums, dict(zip(labels.tolist(), counts.tolist(), strict=True)), profiles


def _as_dask(array: Any, like: Any = None) -> da.Array:
    arr = array if isinstance(array, da.Array) else da.from_array(np.asarray(array))
    return arr.rechunk(like.chunks) if like is not None and arr.chunks != like.chunks else arr


def _block_offsets(chunks: tuple[tuple[int, ...], ...]) -> list[tuple[int, ...]]:
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(int) for c in chunks]
    return [tuple(int(s[i]) for s, i in zip(starts, index, strict=True))
            for index in np.ndindex(*(len(c) for c in chunks))]


def _first_pass(pairs: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
    """Voxel counts, gt label sizes and the prediction's bounding box of each (gt, pred)
    pair, in one compute (channels of one file share its chunk reads)."""
    graphs, layouts, partials = [], [], []
    for gt, pred in pairs:
        if not (hasattr(gt, "dask") or hasattr(pred, "dask")):  # numpy (CSV rows): no graph
            g = np.asarray(gt)
            partials.append([_block_sums(g, pred)])
            layouts.append((g.shape, tuple((n,) for n in g.shape)))
            continue
        g = _as_dask(gt)
        p = _as_dask(pred, like=g)
        gb = g.to_delayed(optimize_graph=False).ravel()
        pb = p.to_delayed(optimize_graph=False).ravel()
        graphs.append([delayed(_block_sums)(a, b) for a, b in zip(gb, pb, strict=True)])
        partials.append(None)  # filled from the one compute below
        layouts.append((g.shape, g.chunks))
    if graphs:
        computed = iter(compute_isolated(graphs)[0])
        partials = [next(computed) if part is None else part for part in partials]
    out = []
    for (shape, chunks), blocks in zip(layouts, partials, strict=True):
        sums = np.zeros(3, dtype=np.int64)
        sizes: dict[Any, int] = {}
        profiles = [np.zeros(n, dtype=bool) for n in shape]
        for offset, (s, labels, block_profiles) in zip(_block_offsets(chunks), blocks, strict=True):
            sums += s
            for k, n in labels.items():
                sizes[k] = sizes.get(k, 0) + n
            for axis, prof in enumerate(block_profiles):
                profiles[axis][offset[axis]:offset[axis] + prof.size] |= prof
        box = None
        if sums[1]:
            box = tuple(slice(int(np.flatnonzero(q)[0]), int(np.flatnonzero(q)[-1]) + 1)
                        for q in profiles)
        out.append({"sums": sums, "sizes": sizes, "box": box})
    return out


def mask_scores(item: str, gt: Any, pred: Any) -> ItemScore:
    return mask_scores_many([(item, gt, pred)])[0]


def mask_scores_many(triples: list[tuple[str, Any, Any]]) -> list[ItemScore]:
    """Scores of (item, gt mask, predicted mask) triples; masks numpy or dask, same shape."""
    firsts = _first_pass([(g, p) for _, g, p in triples])
    out = []
    for (item, g, p), first in zip(triples, firsts, strict=True):
        gt_voxels, pred_voxels, both = (int(v) for v in first["sums"])
        dice, iou = overlap_scores(gt_voxels, pred_voxels, both)
        gt_count, pred_count, matched = len(first["sizes"]), 0, 0
        box = first["box"]
        if box is not None:  # one item's box at a time: memory is the largest box, not their sum
            if hasattr(g, "dask") or hasattr(p, "dask"):
                g_box, p_box = compute_isolated(_as_dask(g)[box], _as_dask(p)[box] != 0)
            else:
                g_box, p_box = np.asarray(g)[box], np.asarray(p)[box] != 0
            labelled, pred_count = components(p_box)
            matched = greedy_matches(instance_pairs(g_box, labelled, first["sizes"]))
        precision, recall, f1 = instance_scores(gt_count, pred_count, matched)
        out.append(ItemScore(item, "mask", dice=dice, iou=iou, hit=dice >= HIT_DICE,
                             gt_instances=gt_count, pred_instances=pred_count, matched=matched,
                             instance_precision=precision, instance_recall=recall, instance_f1=f1))
    return out


# -- a case --------------------------------------------------------------------------------
def scored_items(case: Case, gt_set: str, pred_set: str | None = None) -> list[TextItem]:
    """Items with at least one annotation of ``gt_set`` (and, when ``pred_set`` was added, in
    its scope): one score (and CSV row) each."""
    scope = case.set_scopes.get(pred_set) if pred_set else None
    return [i for i in case.walk() if case.annotations_in(i, gt_set)
            and (scope is None or i.id in scope)]


def _first(annotations: list[Annotation], kind: type) -> Any:
    return next((a for a in annotations if isinstance(a, kind)), None)


def item_scores(case: Case, gt_set: str | None = None, pred_set: str | None = None
                ) -> dict[str, ItemScore]:
    """Per item with ground truth (in the prediction's scope): its scores, ``gt_set`` (default
    the case's own set) against ``pred_set`` (default the last set added). Without that set
    (no prediction for the case) every item is ``missing``."""
    gt_set = gt_set or case.reference_set
    pred_set = pred_set or (case.added_sets[-1] if case.added_sets else None)
    loaded = pred_set is not None and pred_set in case.sets()
    out: dict[str, ItemScore] = {}
    masks: list[tuple[str, Any, Any]] = []
    items = scored_items(case, gt_set, pred_set)
    for item in items:
        gt = case.annotations_in(item, gt_set)
        pred = case.annotations_in(item, pred_set) if loaded else []
        gt_mask, pred_mask = _first(gt, MaskAnnotation), _first(pred, MaskAnnotation)
        gt_boxes = [a for a in gt if isinstance(a, BoxAnnotation)]
        if gt_mask is not None and pred_mask is not None:
            masks.append((item.id, gt_mask.pixels(), pred_mask.pixels()))
        elif gt_mask is None and gt_boxes and loaded:  # no box predicted: all missed
            out[item.id] = box_scores(item.id, gt_boxes,
                                      [a for a in pred if isinstance(a, BoxAnnotation)])
        else:
            out[item.id] = ItemScore(item.id, "mask" if gt_mask is not None else "box", missing=True)
    for score in mask_scores_many(masks) if masks else []:
        out[score.item] = score
    return {i.id: out[i.id] for i in items}


def badness(score: ItemScore) -> float:
    """One number per item, lower is worse: Dice for masks, F1 for boxes, -1 when missing."""
    if score.missing:
        return -1.0
    value = score.dice if score.dice is not None else score.instance_f1
    return float(value) if value is not None else -1.0


def worst_first(scores: dict[str, ItemScore]) -> list[str]:
    """Item ids, the worst scored first (ties keep reading order)."""
    return sorted(scores, key=lambda item: badness(scores[item]))
