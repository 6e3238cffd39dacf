"""A generated chest-CT phantom, written in the real ReXGroundingCT + CT-RATE layouts.

Body, lungs, airway, heart and spine, with three findings: a nodule, a pleural effusion and
emphysema in both apices (two entities). Deterministic, so tests can rely on its numbers.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .readers.ctrate import ABNORMALITIES

CASE = "train_1_a_1"
FINDINGS = (
    ("Solid 16 mm nodule in the upper lobe of the right lung.", "2d"),
    ("Small left pleural effusion layering posteriorly.", "2e"),
    ("Paraseptal emphysema in both lung apices.", "1c"),
)
REPORT = {
    "ClinicalInformation_EN": "Cough and weight loss for two months.",
    "Technique_EN": "Non-contrast chest CT with 5 mm axial sections.",
    "Findings_EN": (
        "Trachea and both main bronchi are patent. A solid nodule measuring 16 mm is seen in "
        "the upper lobe of the right lung. There is a small left pleural effusion layering "
        "posteriorly. Paraseptal emphysema is present in both lung apices. Heart size is normal."
    ),
    "Impressions_EN": "Right upper lobe nodule; follow-up recommended. Small left effusion.",
}
POSITIVE_LABELS = {"Emphysema", "Lung nodule", "Pleural effusion"}


@dataclass
class Phantom:
    hu: np.ndarray  # int16, file order (x toward patient left, y posterior, z superior)
    masks: np.ndarray  # uint8 (findings, x, y, z), one label value per entity
    affine: np.ndarray  # LPS, as CT-RATE's *_fixed volumes


def _ellipsoid(u, v, w, centre, radii) -> np.ndarray:
    return sum(((c - m) / r) ** 2 for c, m, r in zip((u, v, w), centre, radii, strict=True)) <= 1.0


def _segment(u, v, w, start, end, radius) -> np.ndarray:
    """Voxels within ``radius`` mm of the line segment start-end."""
    p = np.stack(np.broadcast_arrays(u, v, w), axis=-1)
    a, b = np.asarray(start, float), np.asarray(end, float)
    t = np.clip(((p - a) @ (b - a)) / np.dot(b - a, b - a), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1) <= radius


def make_phantom(shape: tuple[int, int, int] = (128, 128, 60),
                 spacing: tuple[float, float, float] = (2.5, 2.5, 5.0), seed: int = 0) -> Phantom:
    """The phantom CT (HU) and its finding masks; millimetre geometry independent of shape."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)]
    u, v, w = np.meshgrid(*axes, indexing="ij", sparse=True)  # left+, posterior+, superior+
    hu = np.full(shape, -1000, dtype=np.int16)
    body = ((u / 150) ** 2 + (v / 110) ** 2 <= 1) & (np.abs(w) <= 140)
    hu[body] = -100
    hu[body & ((u / 138) ** 2 + (v / 98) ** 2 <= 1)] = 40
    lungs = [_ellipsoid(u, v, w, (side * 65, -5, 10), (48, 72, 120)) for side in (-1, 1)]
    heart = _ellipsoid(u, v, w, (20, -25, -45), (55, 45, 50))
    hu[lungs[0] | lungs[1]] = -850
    hu[heart] = 40
    hu[np.broadcast_to((u**2 + (v - 80) ** 2 <= 18**2) & (np.abs(w) <= 140), shape)] = 700
    airway = _segment(u, v, w, (0, -20, 30), (0, -20, 150), 9)
    for side in (-1, 1):
        airway |= _segment(u, v, w, (0, -20, 30), (side * 45, -12, 0), 6)
    hu[airway & body] = -1000

    masks = np.zeros((len(FINDINGS), *shape), dtype=np.uint8)
    nodule = _ellipsoid(u, v, w, (-70, -20, 55), (8, 8, 8))
    effusion = lungs[1] & (w < -40) & (v > 15) & ~heart
    apices = [lungs[i] & _ellipsoid(u, v, w, (s * 70, -5, 110), (20, 20, 20))
              for i, s in enumerate((-1, 1))]
    hu[nodule] = 30
    hu[effusion] = 10
    masks[0][nodule] = 1
    masks[1][effusion] = 1
    for label, apex in enumerate(apices, start=1):
        hu[apex] = -950
        masks[2][apex] = label
    noise = np.random.default_rng(seed).normal(0, 12, shape).astype(np.int16)
    hu = np.where(hu > -1000, hu + noise, hu).astype(np.int16)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [s * (n - 1) / 2 for s, n in zip(spacing, shape, strict=True)]
    affine[2, 3] *= -1
    return Phantom(hu, masks, affine)


def ras_copy(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same scan stored in RAS axis order: flip x and y, and move the affine's origin."""
    flipped = data[..., ::-1, ::-1, :]
    out = affine.copy()
    for axis in (0, 1):
        n = data.shape[data.ndim - 3 + axis]
        out[:3, 3] = affine[:3, :3] @ np.eye(3)[axis] * (n - 1) + out[:3, 3]
        out[:3, axis] = -affine[:3, axis]
    return flipped, out


def ctrate_volume_path(root: Path, name: str, fixed: bool = True) -> Path:
    split, patient, scan, _ = name.split("_")
    tree = f"{split}_fixed" if fixed else split
    return root / "dataset" / tree / f"{split}_{patient}" / f"{split}_{patient}_{scan}" / (name + ".nii.gz")


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_ctrate_tables(root: Path, name: str, shape: tuple[int, ...],
                        spacing: tuple[float, ...], intercept: float = -1024.0) -> None:
    """CT-RATE's report, label and metadata CSVs for one volume."""
    base = root / "dataset"
    volume = name + ".nii.gz"
    _write_csv(base / "radiology_text_reports" / "train_reports.csv",
               ["VolumeName", *REPORT], [[volume, *REPORT.values()]])
    _write_csv(base / "multi_abnormality_labels" / "train_predicted_labels.csv",
               ["VolumeName", *ABNORMALITIES],
               [[volume, *(int(a in POSITIVE_LABELS) for a in ABNORMALITIES)]])
    _write_csv(base / "metadata" / "train_metadata.csv",
               ["VolumeName", "Manufacturer", "ManufacturerModelName", "PatientSex", "PatientAge",
                "StudyDate", "XYSpacing", "ZSpacing", "RescaleSlope", "RescaleIntercept",
                "Rows", "Columns", "NumberofSlices"],
               [[volume, "PHANTOM", "Generated CT", "F", "061Y", "20240101",
                 f"[{spacing[0]}, {spacing[1]}]", spacing[2], 1, intercept, shape[1], shape[0],
                 shape[2]]])


def write_sample(root: str | Path, phantom: Phantom | None = None) -> Path:
    """The phantom as one ReXGroundingCT + CT-RATE case under ``root``; returns ``root``."""
    root = Path(root)
    phantom = phantom or make_phantom()
    spacing = tuple(float(s) for s in np.linalg.norm(phantom.affine[:3, :3], axis=0))
    volume = ctrate_volume_path(root, CASE)
    volume.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(phantom.hu, phantom.affine), volume)
    (root / "segmentations").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(phantom.masks, np.eye(4)), root / "segmentations" / (CASE + ".nii.gz"))
    write_ctrate_tables(root, CASE, phantom.hu.shape, spacing)
    record = {
        "name": CASE + ".nii.gz",
        "findings": {str(i): text for i, (text, _) in enumerate(FINDINGS)},
        "categories": {str(i): code for i, (_, code) in enumerate(FINDINGS)},
        "entity_counts": {str(i): int(len(np.unique(m)) - 1) for i, m in enumerate(phantom.masks)},
        "pixels": {str(i): int(np.count_nonzero(m)) for i, m in enumerate(phantom.masks)},
        "shape": list(phantom.hu.shape),
        "protocol": "protocol1",
    }
    (root / "dataset.json").write_text(json.dumps({"train": [record], "val": [], "test": []},
                                                  indent=2), encoding="utf-8")
    return root
