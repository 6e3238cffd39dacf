"""ReXGradient-160K: CXR studies of several views with four-section reports.

A dataset root holds ``metadata/{train,valid,test}_metadata_view_position.json`` (an object
keyed by study id, with parallel per-image lists ``ImagePath`` (relative to ``metadata/``),
``ImageViewPosition`` and ``ImageShape``) and the images under ``deid_png/``. A per-study
``{split}_metadata.csv`` with the same scalars fills in studies the JSON lacks.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from ..model import Case, GroundingError
from .paths import safe_inside
from .report import present, section_items
from .xray import open_xray

DATASET = "rexgradient"
SECTIONS = (("indication", "Indication", "Indication"), ("comparison", "Comparison", "Comparison"),
            ("findings", "Findings", "Findings"), ("impression", "Impression", "Impression"))
STUDY_TAGS = (("PatientID", "patient"), ("PatientSex", "sex"), ("PatientAge", "age"),
              ("StudyDate", "study_date"), ("Manufacturer", "manufacturer"))


def _within(root: Path, path: Path) -> Path | None:
    resolved, base = path.resolve(), root.resolve()
    return resolved if base in resolved.parents else None


def _metadata_folder(path: Path) -> Path:
    return path if path.name == "metadata" else path / "metadata"


class ReXGradientDataset:
    """The studies of one ReXGradient root (or of its ``metadata`` folder, or one JSON)."""

    name = DATASET

    def __init__(self, path: Path, images: Path | None = None):
        files = [path] if path.is_file() else sorted(
            _metadata_folder(path).glob("*_metadata_view_position.json"))
        self.metadata = files[0].parent
        self.root = path if path.is_dir() else path.parent  # what was opened (reviews go there)
        self.images = images
        self.studies: dict[str, dict[str, Any]] = {}
        for file in files:
            split = file.name.split("_metadata")[0]
            for study_id, record in self._load_json(file).items():
                self.studies[study_id] = {**record, "_split": split}
        for file in sorted(self.metadata.glob("*_metadata.csv")):
            self._merge_csv(file)

    def set_images(self, folder: Path) -> None:
        """Look for the pictures under ``folder`` (the deid_png folder or its parent)."""
        if not folder.is_dir():
            raise GroundingError(f"{folder}: not a folder")
        self.images = folder

    @staticmethod
    def matches(path: Path) -> bool:
        if path.is_file():
            return path.name.endswith("_metadata_view_position.json")
        return path.is_dir() and any(_metadata_folder(path).glob("*_metadata_view_position.json"))

    @staticmethod
    def _load_json(file: Path) -> dict[str, dict[str, Any]]:
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise GroundingError(f"{file}: not valid JSON (line {err.lineno}, column {err.colno}: "
                                 f"{err.msg})") from None
        if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
            raise GroundingError(f"{file}: expected an object of studies keyed by study id")
        return raw

    def _merge_csv(self, file: Path) -> None:
        import pandas as pd

        table = pd.read_csv(file, dtype=str, keep_default_na=False)
        key = next((c for c in ("StudyID", "study_id", "id") if c in table.columns), None)
        if key is None:
            return
        split = file.name.split("_metadata")[0]
        for record in table.to_dict("records"):
            self.studies.setdefault(record[key], {**record, "_split": split})

    def case_ids(self) -> list[str]:
        return list(self.studies)

    def summary(self, case_id: str) -> str:
        record = self.studies[case_id]
        views = [present(v) or "unknown" for v in record.get("ImageViewPosition") or []]
        return f"{case_id}\t{record['_split']}\t{len(views)} images\t{' '.join(views)}".rstrip()

    def open_case(self, case_id: str) -> Case:
        record = self.studies.get(case_id)
        if record is None:
            raise GroundingError(f"{self.metadata}: no study {case_id!r} among its "
                                 f"{len(self.studies)} (list them with: napari-grounding cases "
                                 f"{self.metadata.parent})")
        case = Case(dataset=DATASET, id=case_id)
        case.tags["split"] = record["_split"]
        case.tags.update({tag: str(record[k]) for k, tag in STUDY_TAGS if present(record.get(k))})
        self._add_views(record, case)
        case.items = section_items((k, title, record.get(f)) for k, title, f in SECTIONS)
        return case

    def _image_path(self, relative: str) -> Path | None:
        """The picture of an ``ImagePath`` (relative to metadata/, ``../deid_png/...``), only
        ever inside the dataset root or the ``--images`` folder."""
        parts = PurePosixPath(relative.replace("\\", "/")).parts
        candidates = [_within(self.metadata.parent, self.metadata.joinpath(*parts))]
        if self.images is not None:  # --images: the deid_png folder or the folder above it
            tail = parts[parts.index("deid_png") + 1 :] if "deid_png" in parts else parts
            tail_name = "/".join(tail)
            candidates += [safe_inside(self.images, tail_name),
                           safe_inside(self.images, f"deid_png/{tail_name}")]
        return next((p for p in candidates if p is not None and p.is_file()), None)

    def _add_views(self, record: dict[str, Any], case: Case) -> None:
        paths = record.get("ImagePath") or []
        views = record.get("ImageViewPosition") or [None] * len(paths)
        for index, (relative, view) in enumerate(zip(paths, views, strict=False)):
            path = self._image_path(str(relative))
            label = present(view) or "unknown view"
            if path is None:
                case.problems.append(f"view {index} ({label}): image {relative} not found")
                continue
            image = open_xray(path, image_id=f"view/{index}", view=label)
            case.images[image.id] = image
