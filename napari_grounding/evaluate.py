"""``napari-grounding evaluate``: a model's predictions against a dataset, one CSV row per item.

One dask task per case, or per block of rows of a CheXmask CSV (``batch.run``: local threads
or processes, or a ``dask.distributed`` cluster). A case without a usable prediction gets rows
with empty scores and counts as missed.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from .batch import Opener, _dataset, _opener, run
from .metrics import masks_stats
from .model import GroundingError, MaskAnnotation
from .predictions import add_predictions, check_predictions, prefetch
from .scores import item_scores, scored_items

COLUMNS = ("case", "item", "dice", "hit", "gt_instances", "pred_instances", "matched",
           "instance_precision", "instance_recall", "instance_f1")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    return round(value, 6) if isinstance(value, float) else value


def evaluate_case(path: str, images: str | None, case_id: str, pred: str, name: str,
                  threshold: float | None, opener: Opener | None = None) -> dict[str, Any]:
    """The rows of one case and the problems its prediction had."""
    case = _opener(path, images, case_id, opener)()
    before = len(case.problems)
    add_predictions(case, pred, name, threshold)
    scores = item_scores(case, case.reference_set, name)
    missing = [i for i in scored_items(case, case.reference_set, name) if scores[i.id].missing]
    gt_masks = {i.id: next((a for a in case.annotations_in(i, case.reference_set)
                            if isinstance(a, MaskAnnotation)), None) for i in missing}
    known = {k: m for k, m in gt_masks.items() if m is not None}
    # a missed item still has its ground-truth instances (they count as false negatives)
    gt_counts = dict(zip(known, (s.instances for s in masks_stats(list(known.values()))),
                         strict=True)) if known else {}
    rows = []
    for item, score in scores.items():
        row = {"case": case_id, "item": item, "kind": score.kind}
        row.update({c: _cell(getattr(score, c)) for c in COLUMNS[2:]})
        if score.missing and item in gt_counts:
            row["gt_instances"] = gt_counts[item]
        rows.append(row)
    return {"case": case_id, "rows": rows, "problems": case.problems[before:]}


def _prefetch(case_ids: list[str], pred: str, *_: Any) -> None:
    prefetch(pred, case_ids)


evaluate_case.before_block = _prefetch  # type: ignore[attr-defined]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _number(row: dict[str, Any], column: str) -> float:
    return float(row[column]) if row[column] != "" else 0.0


def summarise(rows: list[dict[str, Any]]) -> dict[str, float | int]:
    """Mean Dice (over mask items), hit rate, instance F1 micro and macro;
    a missed item counts as Dice 0, no hit and F1 0."""
    missing = [r for r in rows if r["hit"] == ""]
    diced = [r for r in rows if r.get("kind", "mask") == "mask"]
    gt = sum(_number(r, "gt_instances") for r in rows)
    pred = sum(_number(r, "pred_instances") for r in rows)
    matched = sum(_number(r, "matched") for r in rows)
    return {"items": len(rows), "missing": len(missing),
            "mean_dice": _mean([_number(r, "dice") for r in diced]),
            "hit_rate": _mean([_number(r, "hit") for r in rows]),
            "instance_f1_micro": 2 * matched / (gt + pred) if gt + pred else float("nan"),
            "instance_f1_macro": _mean([_number(r, "instance_f1") for r in rows])}


def write_rows(rows: list[dict[str, Any]], out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    except OSError as err:
        raise GroundingError(f"{out}: cannot write ({err.strerror or err})") from None


def evaluate(path: str, pred: str, out: Path, images: str | None = None, name: str = "prediction",
             threshold: float | None = None, scheduler: str | None = None,
             workers: int | None = None, threads: int | None = None
             ) -> tuple[dict[str, float | int], list[dict[str, Any]]]:
    """Score every case, write the CSV; the summary and each case's result."""
    check_predictions(pred)
    ids = _dataset(path, images).case_ids()
    results = run(evaluate_case, path, images, ids, pred, name, threshold,
                  scheduler=scheduler, workers=workers, threads=threads)
    rows = [row for result in results for row in result["rows"]]
    write_rows(rows, out)
    return summarise(rows), results


def summary_line(summary: dict[str, float | int], cases: int) -> str:
    return (f"{summary['items']} items in {cases} cases ({summary['missing']} without a prediction): "
            f"mean Dice {summary['mean_dice']:.3f}, hit rate {summary['hit_rate']:.3f}, "
            f"instance F1 micro {summary['instance_f1_micro']:.3f}, "
            f"macro {summary['instance_f1_macro']:.3f}")
