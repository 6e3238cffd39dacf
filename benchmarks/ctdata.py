"""A realistic chest CT for the viewer benchmark, in the ReXGroundingCT + CT-RATE layout.

512 x 512 x 300 int16 HU at 0.7 x 0.7 x 1 mm: body, fat, muscle, lungs, heart, a contrast-filled
aorta, spine and trachea, with scanner noise everywhere inside the field of view (so gzip
shrinks it about 2x, as it does real CT-RATE volumes), and a 4-finding mask file (F, H, W, D)
with an identity affine: a nodule (two entities), a pleural effusion, an elongated aorta-like
tube and a diffuse patchy region. Built slice by slice with numpy in under a minute;
``ensure_dataset`` keeps what it wrote and only rebuilds when the generator changes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_grounding.sample import _write_csv  # the sample's CT-RATE tables, same form

GENERATOR = 4  # bump when the data changes: cached data of another version is rebuilt
SHAPE = (512, 512, 300)
SPACING = (0.7, 0.7, 1.0)
# 32 cases of one scan: a long session visits 30 it has not seen before
CASES = tuple(f"train_{i}_a_1" for i in range(1, 33))
FINDINGS = (
    ("Two solid nodules in the upper lobe of the right lung, the larger 16 mm.", "2d", 2),
    ("Moderate left pleural effusion layering posteriorly.", "2e", 1),
    ("Dilated descending thoracic aorta.", "2h", 1),
    ("Patchy ground-glass opacities in both lungs.", "2c", 1),
)
REPORT = {
    "ClinicalInformation_EN": "Dyspnoea.",
    "Technique_EN": "Contrast-enhanced chest CT, 1 mm axial sections.",
    "Findings_EN": " ".join(text for text, _, _ in FINDINGS) + " Heart size is normal.",
    "Impressions_EN": "Right upper lobe nodules; left effusion; patchy ground glass.",
}


def _volume_path(root: Path, name: str) -> Path:
    split, patient, scan, _ = name.split("_")
    return (root / "dataset" / f"{split}_fixed" / f"{split}_{patient}" /
            f"{split}_{patient}_{scan}" / f"{name}.nii.gz")


def _smooth_field(rng: np.random.Generator, coarse: tuple[int, int, int]) -> np.ndarray:
    """Random values on a coarse grid, linearly interpolated to SHAPE (a blobby texture)."""
    from scipy.ndimage import zoom

    small = rng.standard_normal(coarse).astype(np.float32)
    return zoom(small, [n / c for n, c in zip(SHAPE, coarse, strict=True)], order=1)


def make_ct(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HU int16 in file order x, y, z; masks uint8 (4, x, y, z); the CT's affine)."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = SHAPE
    u = ((np.arange(nx) - (nx - 1) / 2) * SPACING[0])[:, None]  # mm toward patient left
    v = ((np.arange(ny) - (ny - 1) / 2) * SPACING[1])[None, :]  # mm toward posterior
    hu = np.empty(SHAPE, dtype=np.int16)
    masks = np.zeros((len(FINDINGS), *SHAPE), dtype=np.uint8)
    patches = _smooth_field(rng, (24, 24, 16))  # ground-glass texture
    vessels = _smooth_field(rng, (96, 96, 60))  # lung vessel-like texture
    fov = u**2 + v**2 <= (0.5 * nx * SPACING[0]) ** 2
    for k in range(nz):
        w = (k - (nz - 1) / 2) * SPACING[2]  # mm toward superior
        taper = 1.0 - 0.15 * (w / 150) ** 2
        body = (u / (165 * taper)) ** 2 + (v / (118 * taper)) ** 2 <= 1
        muscle = (u / (150 * taper)) ** 2 + (v / (104 * taper)) ** 2 <= 1
        lung_r = np.sqrt(max(0.0, 1 - ((w - 15) / 135) ** 2))
        lungs = [((u - s * 62) / (50 * lung_r + 1e-6)) ** 2 + ((v + 2) / (76 * lung_r + 1e-6)) ** 2 <= 1
                 for s in (-1, 1)]
        lung = (lungs[0] | lungs[1]) & muscle
        heart = ((u - 18) / 58) ** 2 + ((v + 22) / 47) ** 2 + ((w + 50) / 55) ** 2 <= 1
        # the aorta: ascending in front, arching over at the top, descending beside the spine
        arch = w > 40
        ax, ay = (-10.0, -35.0 + 95 * min(1.0, max(0.0, (w - 40) / 40))) if arch else (22.0, 58.0)
        aorta = (u - ax) ** 2 + (v - ay) ** 2 <= 14**2
        if -20 < w < 40:
            aorta |= (u + 10) ** 2 + (v + 35) ** 2 <= 15**2  # the ascending limb as well
        spine = (u**2 + (v - 85) ** 2 <= 19**2) & (abs(w) <= 150)
        cortex = spine & ~(u**2 + (v - 85) ** 2 <= 15**2)
        trachea = (u**2 + (v + 20) ** 2 <= 9**2) & (w > 30)

        s = np.full((nx, ny), -1000.0, dtype=np.float32)
        s[body] = -100
        s[muscle] = 45
        s[lung] = -860 + 60 * np.clip(vessels[:, :, k][lung], 0, None) ** 3  # vessels brighten
        s[heart & muscle] = 40
        s[aorta] = 190
        s[spine] = 280
        s[cortex] = 900
        s[trachea] = -990
        nodules = [((u + 70) ** 2 + (v + 20) ** 2 + (w - 55) ** 2 <= 8**2),
                   ((u + 55) ** 2 + (v - 10) ** 2 + (w - 75) ** 2 <= 4**2)]
        effusion = lungs[1] & (w < -20) & (v > 20 - 0.3 * (w + 20)) & ~heart
        ggo = lung & (patches[:, :, k] > 0.9) & ~effusion
        for label, nodule in enumerate(nodules, start=1):
            s[nodule] = 35
            masks[0, :, :, k][nodule] = label
        s[effusion] = 12
        s[ggo] = np.maximum(s[ggo], -600)
        masks[1, :, :, k][effusion] = 1
        masks[2, :, :, k][aorta & (w < 40) & ~((u + 10) ** 2 + (v + 35) ** 2 <= 15**2)] = 1
        masks[3, :, :, k][ggo] = 1
        # scanner noise: stronger in tissue than in air; nothing outside the reconstruction disc
        s += rng.standard_normal((nx, ny), dtype=np.float32) * np.where(body, 18.0, 9.0)
        s[~fov] = -1024
        hu[:, :, k] = np.rint(s).astype(np.int16)
    affine = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
    affine[:3, 3] = [SPACING[0] * (nx - 1) / 2, SPACING[1] * (ny - 1) / 2, -SPACING[2] * (nz - 1) / 2]
    return hu, masks, affine




def _write_tables(root: Path, names: tuple[str, ...]) -> None:
    from napari_grounding.readers.ctrate import ABNORMALITIES

    base = root / "dataset"
    volumes = [n + ".nii.gz" for n in names]
    _write_csv(base / "radiology_text_reports" / "train_reports.csv", ["VolumeName", *REPORT],
               [[v, *REPORT.values()] for v in volumes])
    positive = {"Lung nodule", "Pleural effusion"}
    _write_csv(base / "multi_abnormality_labels" / "train_predicted_labels.csv",
               ["VolumeName", *ABNORMALITIES],
               [[v, *(int(a in positive) for a in ABNORMALITIES)] for v in volumes])
    _write_csv(base / "metadata" / "train_metadata.csv",
               ["VolumeName", "Manufacturer", "ManufacturerModelName", "PatientSex", "PatientAge",
                "StudyDate", "XYSpacing", "ZSpacing", "RescaleSlope", "RescaleIntercept",
                "Rows", "Columns", "NumberofSlices"],
               [[v, "BENCH", "Generated CT", "F", "061Y", "20240101",
                 f"[{SPACING[0]}, {SPACING[1]}]", SPACING[2], 1, -1024, SHAPE[1], SHAPE[0],
                 SHAPE[2]] for v in volumes])


def ensure_dataset(workdir: Path) -> Path:
    """The benchmark dataset under ``workdir/data`` (written once per GENERATOR): CASES
    sharing one generated scan (hard links, so each has a path and a cache of its own)."""
    root = workdir / "data"
    stamp = root / "generated.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("generator") == GENERATOR:
        return root
    if root.exists():
        import shutil

        shutil.rmtree(root)
    hu, masks, affine = make_ct()
    first = _volume_path(root, CASES[0])
    first.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(hu, affine), first)
    seg = root / "segmentations"
    seg.mkdir()
    nib.save(nib.Nifti1Image(masks, np.eye(4)), seg / f"{CASES[0]}.nii.gz")
    for name in CASES[1:]:
        target = _volume_path(root, name)
        target.parent.mkdir(parents=True)
        os.link(first, target)
        os.link(seg / f"{CASES[0]}.nii.gz", seg / f"{name}.nii.gz")
    _write_tables(root, CASES)
    entities = [int(len(np.unique(m)) - 1) for m in masks]
    pixels = [int(np.count_nonzero(m)) for m in masks]
    records = [{"name": f"{name}.nii.gz",
                "findings": {str(i): f[0] for i, f in enumerate(FINDINGS)},
                "categories": {str(i): f[1] for i, f in enumerate(FINDINGS)},
                "entity_counts": {str(i): n for i, n in enumerate(entities)},
                "pixels": {str(i): n for i, n in enumerate(pixels)},
                "shape": list(SHAPE), "protocol": "protocol1"} for name in CASES]
    (root / "dataset.json").write_text(json.dumps({"train": records, "val": [], "test": []},
                                                  indent=1), encoding="utf-8")
    raw = hu.nbytes
    stamp.write_text(json.dumps({"generator": GENERATOR, "ct_bytes": raw,
                                 "ct_gz_bytes": first.stat().st_size,
                                 "mask_voxels": pixels}))
    return root


def volume_path(root: Path, name: str = CASES[0]) -> Path:
    return _volume_path(root, name)


def mask_path(root: Path, name: str = CASES[0]) -> Path:
    return root / "segmentations" / f"{name}.nii.gz"


if __name__ == "__main__":
    import sys
    import time

    start = time.perf_counter()
    out = ensure_dataset(Path(sys.argv[1]))
    info = json.loads((out / "generated.json").read_text())
    print(f"{out}: {time.perf_counter() - start:.1f} s, gzip ratio "
          f"{info['ct_bytes'] / info['ct_gz_bytes']:.2f}, mask voxels {info['mask_voxels']}")
