"""CT-RATE: where its volumes live, and its reports, abnormality labels and metadata.

Volumes are ``<split>_<patient>_<scan>_<recon>.nii.gz`` under
``dataset/<split>_fixed/<split>_<p>/<split>_<p>_<scan>/`` (corrected headers, already HU) or
the older ``dataset/<split>/...`` tree (raw values, no orientation in the header; slope,
intercept, spacing and ``ImageOrientationPatient`` come from the metadata CSV, as the fixed
volumes were made from them). The CSVs are keyed by ``VolumeName``. The 18 labels are
predicted from the reports by a text classifier: weak labels, not read off the images.
"""

from __future__ import annotations

import ast
import csv
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..model import GroundingError, TextItem
from .nifti import Rescale
from .paths import safe_inside
from .report import present, section_items

Row = dict[str, str]

DATASET = "ct-rate"
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
NAME_PATTERN = re.compile(r"^(?P<split>[a-z]+)_(?P<patient>\d+)_(?P<scan>[a-z]+)_(?P<recon>\d+)$")
ABNORMALITIES = (
    "Medical material", "Arterial wall calcification", "Cardiomegaly", "Pericardial effusion",
    "Coronary artery wall calcification", "Hiatal hernia", "Lymphadenopathy", "Emphysema",
    "Atelectasis", "Lung nodule", "Lung opacity", "Pulmonary fibrotic sequela",
    "Pleural effusion", "Mosaic attenuation pattern", "Peribronchial thickening",
    "Consolidation", "Bronchiectasis", "Interlobular septal thickening",
)
REPORT_SECTIONS = (
    ("clinical_information", "Clinical information", "ClinicalInformation_EN"),
    ("technique", "Technique", "Technique_EN"),
    ("findings", "Findings", "Findings_EN"),
    ("impressions", "Impressions", "Impressions_EN"),
)
# Metadata columns shown as case tags, with the tag names used for them.
METADATA_TAGS = (
    ("Manufacturer", "scanner"), ("ManufacturerModelName", "scanner_model"),
    ("PatientSex", "sex"), ("PatientAge", "age"), ("StudyDate", "study_date"),
    ("XYSpacing", "xy_spacing_mm"), ("ZSpacing", "z_spacing_mm"),
    ("NumberofSlices", "slices"), ("ConvolutionKernel", "kernel"),
    ("SeriesDescription", "series_description"),
)
LABEL_NOTE = "predicted from the report text (weak labels)"


@dataclass(frozen=True)
class VolumeName:
    split: str
    patient: str
    scan: str
    recon: str

    @classmethod
    def parse(cls, name: str) -> VolumeName | None:
        match = NAME_PATTERN.match(name)
        return cls(**match.groupdict()) if match else None

    def relative_dirs(self) -> list[Path]:
        """Folders the volume may sit in, relative to a CT-RATE root, preferred first."""
        patient = f"{self.split}_{self.patient}"
        nested = Path(patient) / f"{patient}_{self.scan}"
        return [Path("dataset") / f"{self.split}_fixed" / nested,
                Path(f"{self.split}_fixed") / nested,
                Path("dataset") / self.split / nested,
                Path(self.split) / nested,
                Path(".")]


def find_volume(name: str, roots: list[Path]) -> Path | None:
    """The CT file of a case under any of ``roots``, in CT-RATE's layouts or flat."""
    parsed = VolumeName.parse(name)
    dirs = parsed.relative_dirs() if parsed else [Path(".")]
    for root in roots:
        for folder in dirs:
            for suffix in (".nii.gz", ".nii"):
                candidate = safe_inside(root, (folder / (name + suffix)).as_posix())
                if candidate is not None and candidate.is_file():
                    return root / folder / (name + suffix)
    return None


def is_fixed(path: Path) -> bool:
    """Whether a volume comes from a ``*_fixed`` folder (corrected header, already HU)."""
    return any(part.endswith("_fixed") for part in path.parts)


def _parse_spacing(value: object) -> list[float]:
    """``"[0.75, 0.75]"``, ``"0.75"`` or a number, as floats."""
    if isinstance(value, int | float):
        return [float(value)]
    parsed = ast.literal_eval(str(value).strip())
    return [float(v) for v in (parsed if isinstance(parsed, list | tuple) else [parsed])]


class CTRateTables:
    """The reports, labels and metadata CSVs of one CT-RATE root, read on first use."""

    def __init__(self, root: Path):
        self.root = root
        base = root / "dataset" if (root / "dataset").is_dir() else root
        self._files = {
            "reports": sorted((base / "radiology_text_reports").glob("*_reports.csv")),
            "labels": sorted((base / "multi_abnormality_labels").glob("*_predicted_labels.csv")),
            "metadata": sorted((base / "metadata").glob("*_metadata.csv")),
        }

    @classmethod
    def find(cls, roots: list[Path]) -> CTRateTables | None:
        for root in roots:
            tables = cls(root)
            if any(tables._files.values()):
                return tables
        return None

    def _table(self, kind: str) -> dict[str, Row]:
        """Rows by volume name (without ``.nii.gz``), the first of repeats; the csv module, not
        pandas: these tables are small and pandas' import would double a ``describe``."""
        rows: dict[str, Row] = {}
        for path in self._files[kind]:
            try:
                with open(path, newline="", encoding="utf-8-sig") as f:
                    reader = csv.DictReader(f)
                    if "VolumeName" not in (reader.fieldnames or []):
                        raise GroundingError(f"{path}: no 'VolumeName' column")
                    for row in reader:
                        name = (row["VolumeName"] or "").removesuffix(".gz").removesuffix(".nii")
                        rows.setdefault(name, row)
            except (OSError, ValueError, csv.Error) as err:
                raise GroundingError(f"{path}: cannot read CSV ({err})") from None
        return rows

    @cached_property
    def reports(self) -> dict[str, Row]:
        return self._table("reports")

    @cached_property
    def labels(self) -> dict[str, Row]:
        return self._table("labels")

    @cached_property
    def metadata(self) -> dict[str, Row]:
        return self._table("metadata")

    def volume_names(self) -> list[str]:
        tables = (self.reports, self.metadata, self.labels)
        return list(dict.fromkeys(n for t in tables for n in t))

    def has(self, name: str) -> bool:
        return any(name in t for t in (self.reports, self.labels, self.metadata))

    def _row(self, table: dict[str, Row], name: str) -> Row | None:
        return table.get(name)

    def report_items(self, name: str) -> list[TextItem]:
        """The report's sections as items, each with its sentences as children."""
        row = self._row(self.reports, name)
        if row is None:
            return []
        return section_items((key, title, row.get(column)) for key, title, column in REPORT_SECTIONS)

    def tags(self, name: str) -> dict[str, str]:
        """Key metadata and the 18 abnormality labels (``label:<name>`` = 0/1)."""
        tags: dict[str, str] = {}
        meta = self._row(self.metadata, name)
        if meta is not None:
            for column, tag in METADATA_TAGS:
                value = present(meta.get(column))
                if value is not None:
                    tags[tag] = value
        labels = self._row(self.labels, name)
        if labels is not None:
            tags["labels"] = LABEL_NOTE
            for label in ABNORMALITIES:
                value = present(labels.get(label))
                if value is not None:
                    tags[f"label:{label}"] = value
        return tags

    def raw_geometry(self, name: str) -> tuple[Rescale | None, tuple[float, float, float] | None]:
        """Rescale and spacing for an old (not ``_fixed``) volume, from the metadata CSV."""
        meta = self._row(self.metadata, name)
        if meta is None:
            return None, None
        try:
            rescale = Rescale(float(meta.get("RescaleSlope") or 1.0),
                              float(meta.get("RescaleIntercept") or 0.0), "CT-RATE metadata CSV")
        except ValueError:
            rescale = None
        try:
            xy = _parse_spacing(meta["XYSpacing"])
            z = _parse_spacing(meta["ZSpacing"])[0]
            spacing = (xy[0], xy[-1], z)
        except (KeyError, ValueError, SyntaxError, IndexError, TypeError):
            spacing = None  # missing, None or malformed: the header's spacing is used
        return rescale, spacing

    def raw_direction(self, name: str) -> np.ndarray | None:
        """LPS direction cosines per array axis of an old volume, from the metadata's
        ``ImageOrientationPatient`` (row, column; slices along their cross product)."""
        meta = self._row(self.metadata, name)
        text = present(meta.get("ImageOrientationPatient")) if meta is not None else None
        if text is None:
            return None
        # "[1, 0, 0, 0, 1, 0]", "['1.0', ...]" or DICOM's "1\\0\\0\\0\\1\\0"
        values = [float(v) for v in _NUMBER.findall(str(text))]
        if len(values) != 6:
            return None
        row, col = np.array(values[:3]), np.array(values[3:])
        if not (np.isclose(np.linalg.norm(row), 1, atol=1e-3)
                and np.isclose(np.linalg.norm(col), 1, atol=1e-3)):
            return None
        return np.column_stack([row, col, np.cross(row, col)])
