"""Chest CT cases: a CT-RATE volume with its report, plus ReXGroundingCT findings and masks.

One class serves both datasets because they share the CTs: a ReXGroundingCT root lists the
cases (``dataset.json``), a CT-RATE tree (under the root or ``--images``) supplies volumes,
reports, labels and metadata. Whatever of the two is present is shown.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from ..model import Case, GroundingError, Image, MaskAnnotation
from . import ctrate, rexgroundingct
from .ctrate import CTRateTables, VolumeName, find_volume, is_fixed
from .nifti import Rescale, open_volume
from .report import section_items
from .rexgroundingct import (
    REPORTS_FILE,
    TRAIN_MASK_NOTE,
    Record,
    case_name,
    load_records,
    load_reports,
    looks_like_records,
    records_file,
)

PLAIN_CACHE_NOTE = "not written for a plain NIfTI (napari-grounding convert writes one)"


def _is_ctrate_root(path: Path) -> bool:
    base = path / "dataset" if (path / "dataset").is_dir() else path
    markers = ("radiology_text_reports", "multi_abnormality_labels", "metadata")
    return any((base / m).is_dir() for m in markers) or any(base.glob("*_fixed"))


class ChestCTDataset:
    """A ReXGroundingCT root, a CT-RATE root, or one that is both."""

    # (tag, shown as a badge, offered as a filter): case tags masks, split, kernel,
    # series_description, labels (the weak-label note); finding tag entities_max_masked
    tag_schema = (("masks", True, False), ("split", True, True), ("kernel", True, True),
                  ("series_description", False, True), ("labels", False, False),
                  ("entities_max_masked", False, False))

    def __init__(self, root: Path, images: Path | None = None):
        json_path = records_file(root) if root.is_dir() else root  # a records file named directly
        if root.is_file():
            root = root.parent
            if json_path.name == REPORTS_FILE:
                json_path = records_file(root)
        self.root = root
        self.records_path = json_path
        self.records: dict[str, Record] = load_records(json_path) if json_path else {}
        self.search_roots = [p for p in (images, root) if p is not None]
        self.tables = CTRateTables.find(self.search_roots)

    @staticmethod
    def matches(path: Path) -> bool:
        if path.is_file():
            if path.name == REPORTS_FILE:
                return records_file(path.parent) is not None
            return path.suffix == ".json" and looks_like_records(path)
        return records_file(path) is not None or _is_ctrate_root(path)

    @cached_property
    def reports(self) -> dict[str, list[tuple[str, str, str]]]:
        """Full reports from ``reports_dataset.json`` beside the records, when shipped."""
        path = self.root / REPORTS_FILE
        return load_reports(path) if path.is_file() and self.records else {}

    @property
    def name(self) -> str:
        return rexgroundingct.DATASET if self.records else ctrate.DATASET

    def case_ids(self) -> list[str]:
        if self.records:
            return list(self.records)
        return self.tables.volume_names() if self.tables else []

    def summary(self, case_id: str) -> str:
        """One line for ``napari-grounding cases``."""
        record = self.records.get(case_id)
        found = find_volume(case_id, self.search_roots) is not None
        parts = [case_id]
        if record is not None:
            masks = "masks" if record.has_masks else "no masks (test split)"
            parts += [record.split, f"{len(record.findings)} findings", masks]
            codes = sorted({c for c in record.categories if c})
            if codes:  # what the case queue's search finds a case by
                parts.append("categories " + " ".join(codes))
        parts.append("CT found" if found else "CT missing")
        return "\t".join(parts)

    def open_case(self, case_id: str, volume: Path | None = None) -> Case:
        key = case_name(case_id)
        record = self.records.get(key)
        name = record.name if record else key  # a repeated dataset.json name: its file's name
        in_tables = self.tables is not None and self.tables.has(name)
        volume = volume or find_volume(name, self.search_roots)
        if record is None and not in_tables and volume is None:
            raise GroundingError(
                f"{self.root}: no case {name!r} among its {len(self.case_ids())} cases "
                f"(list them with: napari-grounding cases {self.root})")
        # one key space for both: the same scan reached from either root joins its verdicts
        case = Case(dataset=rexgroundingct.DATASET if record else ctrate.DATASET, id=key,
                    key_space=ctrate.DATASET)
        if record is not None and record.note:
            case.problems.append(record.note)
        ct, cached_masks = self._open_ct(name, volume, record, case) if volume else (None, {})
        if ct is not None:
            case.images[ct.id] = ct
        else:
            roots = ", ".join(str(r) for r in self.search_roots)
            case.problems.append(
                f"CT {name}.nii.gz not found under {roots}: showing text only "
                "(name the CT-RATE folder with --images)")
        if record is not None:
            self._add_findings(record, ct, case, cached_masks)
        report = self.tables.report_items(name) if in_tables else []
        if not report and name in self.reports:
            report = section_items(self.reports[name])
        case.items.extend(report)
        if in_tables:
            case.tags.update(self.tables.tags(name))
        return case

    def _open_ct(self, name: str, volume: Path, record: Record | None,
                 case: Case) -> tuple[Image, dict]:
        """The CT (from its OME-Zarr cache when a current one exists) and any cached masks."""
        rescale = spacing = direction = None
        if is_fixed(volume):
            rescale = Rescale(source="already HU (CT-RATE *_fixed volume)")
        else:
            if self.tables is not None:
                rescale, spacing = self.tables.raw_geometry(name)
                direction = self.tables.raw_direction(name)
            if rescale is None:
                case.problems.append(
                    f"{volume}: not a *_fixed volume and no metadata row for it: "
                    "values and spacing shown as stored")
            elif direction is None:
                case.problems.append(
                    f"{volume}: not a *_fixed volume and no ImageOrientationPatient in its "
                    "metadata row: orientation shown as the header says (left and right may swap)")
        ct = open_volume(volume, rescale=rescale, spacing=spacing, direction=direction)
        if direction is not None:
            ct.meta["orientation_from"] = "CT-RATE metadata ImageOrientationPatient"
        if ct.meta.get("warnings"):
            case.problems.append(ct.meta["warnings"])
        if record is not None and record.shape and record.shape != ct.orientation.source_shape:
            case.problems.append(
                f"{volume}: CT shape {ct.orientation.source_shape} differs from dataset.json's "
                f"{record.shape}")
        from ..store import open_current  # zarr on use

        return open_current(ct) or (ct, {})

    def _add_findings(self, record: Record, ct: Image | None, case: Case,
                      cached_masks: dict) -> None:
        case.tags.update({"split": record.split, "protocol": record.protocol})
        case.items.extend(rexgroundingct.finding_items(record))
        if not record.has_masks:
            case.tags["masks"] = "withheld (test split)"
            return
        if record.split == "train":
            case.tags["masks"] = TRAIN_MASK_NOTE
        if record.pixels is None:
            case.problems.append(f"{case.id}: dataset.json gives no 'pixels' for a {record.split} "
                                 "record; its masks are read, their voxel counts not checked")
        path = rexgroundingct.mask_path(self.root, record)
        wanted = [f"mask/{i}" for i in range(len(record.findings))]
        if cached_masks and all(m in cached_masks for m in wanted):
            masks = [MaskAnnotation(id=m, image="ct", data=cached_masks[m].data,
                                    stats=cached_masks[m].stats,
                                    display_data=cached_masks[m].display, source=str(path))
                     for m in wanted]
        elif not path.is_file():
            case.problems.append(f"{path}: mask file not found; findings shown without masks")
            masks = []
        else:
            try:
                masks, problems = rexgroundingct.open_masks(path, record, ct)
            except GroundingError as err:
                masks, problems = [], [f"{err}; findings shown without masks"]
            case.problems.extend(problems)
        case.annotations.update({m.id: m for m in masks})
        for item in case.items:
            item.annotations = [a for a in item.annotations if a in case.annotations]


class SingleVolume:
    """One NIfTI file: a CT-RATE volume or ReXGroundingCT mask in its tree, or any CT."""

    def __init__(self, path: Path, images: Path | None = None):
        self.path = path
        self.case_id = case_name(path.name)
        self.parent = self._dataset_around(path, images)

    @staticmethod
    def matches(path: Path) -> bool:
        return path.is_file() and path.name.endswith((".nii", ".nii.gz"))

    @staticmethod
    def _dataset_around(path: Path, images: Path | None) -> ChestCTDataset | None:
        """The dataset root the file sits in: one listing it in dataset.json first."""
        name = case_name(path.name)
        around = [ChestCTDataset(folder, images) for folder in list(path.parents)[:6]
                  if ChestCTDataset.matches(folder)]
        for dataset in around:
            if name in dataset.records:
                return dataset
        for dataset in around:
            if dataset.tables is not None and dataset.tables.has(name):
                return dataset
        if VolumeName.parse(name) is not None:  # a CT-RATE volume away from its tables
            return ChestCTDataset(path.parent, images)
        return None

    @property
    def name(self) -> str:
        return self.parent.name if self.parent else "nifti"

    def case_ids(self) -> list[str]:
        return [self.case_id]

    def summary(self, case_id: str) -> str:
        return f"{case_id}\t{self.path}"

    def open_case(self, case_id: str) -> Case:
        if case_name(case_id) != self.case_id:
            raise GroundingError(f"{self.path}: holds only case {self.case_id!r}, not {case_id!r}")
        if self.parent is not None:
            in_segmentations = self.path.parent.name == "segmentations"
            return self.parent.open_case(self.case_id, None if in_segmentations else self.path)
        case = Case(dataset="nifti", id=self.case_id)
        ct = open_volume(self.path, plain=True)
        if ct.meta.get("warnings"):  # an odd header, said once, as for a dataset's CT
            case.problems.append(ct.meta["warnings"])
        # a file of no known dataset: the viewer writes no cache of it (convert still does)
        ct.meta["cache"] = PLAIN_CACHE_NOTE
        case.images[ct.id] = ct
        return case
