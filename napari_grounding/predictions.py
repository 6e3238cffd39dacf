"""A model's predictions as one more annotation set of a case (see README "Predictions").

Three forms: a folder of ReXGroundingCT-layout ``<case>.nii.gz`` masks (read lazily, as the
dataset's own), a CheXmask-form CSV, and QBA-form boxes JSON
``{study: {"<question_id>/<answer_id>": {image_id: [[x1, y1, x2, y2], ...]}}}``. A prediction
that does not fit the case (shape, channels, image ids) becomes one problem on the case and is
not drawn; a file that cannot be read at all is a ``GroundingError``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from .model import Annotation, BoxAnnotation, Case, GroundingError, MaskAnnotation

DEFAULT_NAME = "prediction"


def add_predictions(case: Case, pred_path: str | Path, name: str = DEFAULT_NAME,
                    threshold: float | None = None) -> None:
    """Add the predictions at ``pred_path`` for ``case`` as the annotation set ``name``.

    Voxels above ``threshold`` (default: any value > 0) are foreground.
    """
    path = Path(pred_path).expanduser()
    if not path.exists():
        raise GroundingError(f"--pred {path}: no such file or folder")
    if path.is_dir():
        _add_volume(case, path, name, threshold)
    elif path.name.lower().endswith((".csv", ".csv.gz")):
        _add_chexmask_rows(case, path, name)
    elif path.name.lower().endswith(".json"):
        _add_boxes(case, path, name)
    else:
        raise GroundingError(f"--pred {path}: expected a folder of <case>.nii.gz masks, a "
                             "CheXmask-form CSV or a boxes JSON")


def check_predictions(pred_path: str | Path) -> None:
    """Fail early (``GroundingError``) on a prediction file that cannot be read at all."""
    path = Path(pred_path).expanduser()
    if not path.exists():
        raise GroundingError(f"--pred {path}: no such file or folder")
    if path.name.lower().endswith(".json"):
        read_boxes(path)
    elif path.name.lower().endswith((".csv", ".csv.gz")):
        _csv_rows(str(path), path.stat().st_mtime_ns)
    elif not path.is_dir():
        raise GroundingError(f"--pred {path}: expected a folder of <case>.nii.gz masks, a "
                             "CheXmask-form CSV or a boxes JSON")


# -- ReXGroundingCT: a folder of 4-D masks ----------------------------------------------------
def prediction_file(folder: Path, case_id: str) -> Path | None:
    return next((folder / f"{case_id}{s}" for s in (".nii.gz", ".nii")
                 if (folder / f"{case_id}{s}").is_file()), None)


def _foreground(channel: da.Array, threshold: float | None) -> da.Array:
    """Labels stay as they are; scores (or any value with a threshold) become 0/1."""
    if threshold is not None:
        return (channel > threshold).astype(np.uint8)
    if channel.dtype.kind in "iub":
        return channel
    return (channel > 0).astype(np.uint8)


def _add_volume(case: Case, folder: Path, name: str, threshold: float | None) -> None:
    from .readers.nifti import lazy_array, load_header

    findings = [i for i in case.walk() if i.id.startswith("finding/")]
    if not findings:
        raise GroundingError(f"--pred {folder}: a folder of masks fits ReXGroundingCT cases, "
                             f"not {case.dataset}")
    path = prediction_file(folder, case.id)
    if path is None:
        case.problems.append(f"--pred {folder}: no {case.id}.nii.gz; no prediction for this case")
        return
    try:
        img = load_header(path)
    except GroundingError as err:
        case.problems.append(f"prediction {err}; not drawn")
        return
    shape = tuple(int(n) for n in img.shape)
    if len(shape) == 3 and len(findings) == 1:
        shape = (1, *shape)
    grid = _case_grid(case)
    problem = None
    if len(shape) != 4:
        problem = f"expected a 4-D mask (findings, H, W, D), found shape {shape}"
    elif grid is not None and shape[1:] != grid:
        problem = f"shape {shape[1:]} does not match the CT's {grid}"
    elif shape[0] != len(findings):
        problem = f"{shape[0]} channels for {len(findings)} findings"
    if problem:
        case.problems.append(f"prediction {path}: {problem}; not drawn")
        return
    volume = lazy_array(path, img, slice_axis=len(img.shape) - 1)
    if volume.ndim == 3:
        volume = volume[None]
    masks, links = [], {}
    for index, item in enumerate(findings):
        base = item.id.replace("finding/", "mask/", 1)
        mask = MaskAnnotation(id=f"{base}@{name}", base=base, image="ct", set=name,
                              data=_foreground(volume[index], threshold), source=str(path))
        masks.append(mask)
        links[item.id] = [mask.id]
    case.add_set(name, masks, links)


def _case_grid(case: Case) -> tuple[int, ...] | None:
    """The source shape predictions must have: the CT's, else the ground-truth masks'."""
    if "ct" in case.images:
        return tuple(case.images["ct"].orientation.source_shape)
    mask = next((a for a in case.annotations.values() if isinstance(a, MaskAnnotation)), None)
    return tuple(mask.data.shape) if mask is not None else None


# -- CheXmask-form CSV -------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _csv_rows(path: str, mtime_ns: int) -> Any:
    from .readers.chexmask import SOURCES
    from .readers.csv_rows import CsvRows

    try:
        return CsvRows(Path(path), tuple(SOURCES))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise GroundingError(f"--pred {path}: cannot read the CSV ({err})") from None


def prefetch(pred_path: str | Path, case_ids: list[str]) -> None:
    """Read a CheXmask-form prediction CSV's rows of these cases in one forward pass (a block
    of a job), so adding each case's predictions reads nothing more; other forms: nothing."""
    path = Path(pred_path).expanduser()
    if path.name.lower().endswith((".csv", ".csv.gz")) and path.is_file():
        _csv_rows(str(path), path.stat().st_mtime_ns).prefetch(case_ids)


def _add_chexmask_rows(case: Case, path: Path, name: str) -> None:
    from .readers.chexmask import CheXmaskDataset

    if case.dataset != "chexmask":
        raise GroundingError(f"--pred {path}: a CheXmask-form CSV fits CheXmask cases, not {case.dataset}")
    rows = _csv_rows(str(path), path.stat().st_mtime_ns)
    found = rows.row(case.id)
    if found is None:
        case.problems.append(f"prediction {path.name}: no row for {case.id}; no prediction for this case")
        return
    number, row = found
    shape = tuple(case.images["image"].orientation.source_shape)
    given = (row.get("Height", "").strip(), row.get("Width", "").strip())
    if all(given) and given != (str(shape[0]), str(shape[1])):
        case.problems.append(f"prediction {path.name}: row {number} is {given[0]} x {given[1]}, "
                             f"the case {shape[0]} x {shape[1]}; not drawn")
        return
    problems_before = len(case.problems)
    ours = CheXmaskDataset._annotations(row, shape, f"prediction {path.name}: row {number}",
                                        name, f"@{name}", case)
    if len(case.problems) > problems_before:
        return  # a malformed cell: reported, nothing of this row drawn
    case.add_set(name, ours)


# -- QBA-form boxes JSON ----------------------------------------------------------------------
@lru_cache(maxsize=4)
def _load_boxes(path: str, mtime_ns: int) -> dict[str, Any]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GroundingError(f"--pred {path}: not a readable JSON file ({err})") from None
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise GroundingError(f"--pred {path}: expected {{study: {{question/answer: {{image: "
                             "[[x1, y1, x2, y2], ...]}}}}")
    return raw


def read_boxes(path: Path) -> dict[str, Any]:
    """The boxes JSON, parsed once per file version."""
    return _load_boxes(str(path), path.stat().st_mtime_ns)


def _add_boxes(case: Case, path: Path, name: str) -> None:
    study = read_boxes(path).get(case.id)
    if study is None:
        case.problems.append(f"prediction {path.name}: no study {case.id}; no prediction for this case")
        return
    boxes: list[Annotation] = []
    links: dict[str, list[str]] = {}
    problems: list[str] = []
    for answer, per_image in study.items():
        item = f"answer/{answer}"
        if item not in {i.id for i in case.walk()}:
            problems.append(f"unknown answer {answer!r}")
            continue
        for image_id, given in (per_image if isinstance(per_image, dict) else {}).items():
            if image_id not in case.images:
                problems.append(f"unknown image {image_id!r} (answer {answer})")
                continue
            for k, xyxy in enumerate(given if isinstance(given, list) else [given]):
                box = _box(xyxy, f"box/{answer}/{image_id}/p{k}@{name}", image_id, name)
                if box is None:
                    problems.append(f"answer {answer}, image {image_id}: box {k} is not 4 numbers")
                    continue
                boxes.append(box)
                links.setdefault(item, []).append(box.id)
        if not isinstance(per_image, dict):
            problems.append(f"answer {answer}: expected {{image_id: boxes}}")
    if problems:
        shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        case.problems.append(f"prediction {path.name}, study {case.id}: {shown}; not drawn")
        return
    # every answer is in scope: one the JSON leaves out was predicted to have no box
    case.add_set(name, boxes, links, scope=[i.id for i in case.walk() if i.id.startswith("answer/")])


def _box(xyxy: Any, box_id: str, image: str, name: str) -> BoxAnnotation | None:
    try:
        values = tuple(float(v) for v in xyxy)
    except (TypeError, ValueError):
        return None
    if len(values) != 4 or not all(np.isfinite(values)):
        return None
    return BoxAnnotation(id=box_id, image=image, set=name, xyxy=values, given=values,
                         label=name)


# -- a dataset whose cases come with their predictions ---------------------------------------
class WithPredictions:
    """A dataset (reader) whose ``open_case`` adds the predictions, so a case switcher or a
    batch job sees them on every case; everything else is the dataset's own."""

    def __init__(self, dataset: Any, pred_path: str | Path, name: str = DEFAULT_NAME,
                 threshold: float | None = None):
        self.dataset, self.pred_path, self.pred_name, self.threshold = dataset, pred_path, name, threshold

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.dataset, attr)

    def open_case(self, case_id: str) -> Case:
        case = self.dataset.open_case(case_id)
        add_predictions(case, self.pred_path, self.pred_name, self.threshold)
        return case
