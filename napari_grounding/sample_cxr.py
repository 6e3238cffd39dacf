"""A generated chest X-ray phantom, written in the CheXmask and ReXGradient-160K layouts.

Lungs, heart, mediastinum and ribs on a frontal view, plus a lateral view; lung and heart
landmarks (44 / 50 / 26 points) with their filled masks as CheXmask RLE.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from skimage.draw import polygon2mask

from .readers.rle import LANDMARK_COUNTS, rle_encode

SIZE = (1024, 1024)
DICOM_IDS = ("d0c0ffee-00000001-phantom0-frontal1-0000001a", "d0c0ffee-00000002-phantom0-frontal2-0000002b")
STUDY = {"subject": "10000032", "study": "50414267"}
REXGRADIENT_STUDY = "pGRDN0000001_aGRDN0000001_s1"


def _outline(centre, radii, count: int, bulge: float = 0.0, phase: float = 0.0) -> np.ndarray:
    """A smooth closed outline of ``count`` (x, y) points around ``centre``."""
    angle = np.linspace(0, 2 * np.pi, count, endpoint=False) + phase
    wobble = 1 + bulge * np.cos(2 * angle)
    return np.stack([centre[0] + radii[0] * wobble * np.cos(angle),
                     centre[1] + radii[1] * wobble * np.sin(angle)], axis=1)


def landmarks(shift: float = 0.0) -> dict[str, np.ndarray]:
    """(x, y) outlines: the right lung on the image's left, the heart to the image's right."""
    return {
        "right_lung": _outline((330 + shift, 500), (140, 300), LANDMARK_COUNTS["right_lung"], 0.08),
        "left_lung": _outline((700 + shift, 510), (130, 290), LANDMARK_COUNTS["left_lung"], 0.08, 0.3),
        "heart": _outline((590 + shift, 640), (150, 120), LANDMARK_COUNTS["heart"], 0.05),
    }


def frontal(outlines: dict[str, np.ndarray], shape=SIZE, seed: int = 0) -> np.ndarray:
    """A PA-like picture in [0, 1]: bright body, dark lungs, bright heart and spine."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    picture = np.where(((cols - 512) / 470) ** 2 + ((rows - 560) / 520) ** 2 <= 1, 0.55, 0.05)
    for name in ("right_lung", "left_lung"):
        picture[polygon2mask(shape, outlines[name][:, ::-1])] = 0.22
    picture[polygon2mask(shape, outlines["heart"][:, ::-1])] = 0.7
    picture[np.abs(cols - 512) < 45] = np.maximum(picture[np.abs(cols - 512) < 45], 0.75)
    for k in range(9):  # ribs: faint arcs across both lungs
        arc = np.abs(rows - (260 + 70 * k) - 0.0009 * (cols - 512) ** 2) < 7
        picture[arc & (picture < 0.3)] += 0.12
    noise = np.random.default_rng(seed).normal(0, 0.02, shape)
    return np.clip(picture + noise, 0, 1)


def lateral(shape=(1024, 880)) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    picture = np.where(((cols - 440) / 330) ** 2 + ((rows - 560) / 500) ** 2 <= 1, 0.5, 0.05)
    picture[((cols - 420) / 210) ** 2 + ((rows - 470) / 300) ** 2 <= 1] = 0.25
    picture[((cols - 330) / 120) ** 2 + ((rows - 640) / 130) ** 2 <= 1] = 0.68
    return picture


def _row(image_id: str, outlines: dict[str, np.ndarray], rca: float) -> list[str]:
    points = np.concatenate([outlines[s] for s in ("right_lung", "left_lung", "heart")])
    masks = {s: polygon2mask(SIZE, o[:, ::-1]) for s, o in outlines.items()}
    flat = ",".join(str(int(round(v))) for v in points.ravel())
    return [image_id, f"{rca:.6f}", f"{min(1.0, rca + 0.05):.6f}", flat,
            rle_encode(masks["left_lung"]), rle_encode(masks["right_lung"]),
            rle_encode(masks["heart"]), "1024", "1024"]


def write_chexmask_sample(root: str | Path) -> Path:
    """A MIMIC-CXR-JPG-style CheXmask CSV of two images, and the images in MIMIC's tree.

    Returns the CSV; the images folder is ``root / "mimic-cxr-jpg"``.
    """
    root = Path(root)
    header = ["dicom_id", "Dice RCA (Mean)", "Dice RCA (Max)", "Landmarks", "Left Lung",
              "Right Lung", "Heart", "Height", "Width"]
    rows = []
    for index, (dicom_id, rca) in enumerate(zip(DICOM_IDS, (0.91, 0.64), strict=True)):
        outlines = landmarks(shift=12.0 * index)
        folder = (root / "mimic-cxr-jpg" / "files" / f"p{STUDY['subject'][:2]}" /
                  f"p{STUDY['subject']}" / f"s{STUDY['study']}")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (frontal(outlines, seed=index) * 255).astype(np.uint8)
        PILImage.fromarray(pixels).save(folder / f"{dicom_id}.jpg", quality=92)
        rows.append(_row(dicom_id, outlines, rca))
    csv_path = root / "chexmask" / "MIMIC-CXR-JPG.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    return csv_path


def write_rexgradient_sample(root: str | Path) -> Path:
    """One ReXGradient study (16-bit PA and lateral PNGs, a report); returns the root."""
    root = Path(root)
    study_uid, series_uid = "1.2.3.4", "1.2.3.4.1"
    views = (("PA", frontal(landmarks()), "1.2.3.4.1.1"), ("LATERAL", lateral(), "1.2.3.4.1.2"))
    paths, positions, shapes = [], [], []
    for view, picture, sop in views:
        relative = (Path("deid_png") / "GRDN0000001" / "GRDN0000001" / "studies" / study_uid /
                    "series" / series_uid / "instances" / f"{sop}.png")
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray((picture * 40000 + 9000).astype(np.uint16)).save(root / relative)
        paths.append(f"../{relative.as_posix()}")
        positions.append(view)
        shapes.append(list(picture.shape))
    record = {
        "PatientID": "GRDN0000001", "AccessionNumber": "GRDN0000001",
        "StudyInstanceUid": study_uid, "PatientSex": "M", "PatientAge": "064Y",
        "StudyDate": "20210315", "Indication": "Shortness of breath.",
        "Comparison": "None", "Findings": ("The lungs are clear. The cardiomediastinal silhouette "
                                           "is normal. No pleural effusion or pneumothorax."),
        "Impression": "No acute cardiopulmonary process.", "Manufacturer": "PHANTOM",
        "ImagePath": paths, "ImageViewPosition": positions, "ImageShape": shapes,
    }
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    (root / "metadata" / "train_metadata_view_position.json").write_text(
        json.dumps({REXGRADIENT_STUDY: record}, indent=2), encoding="utf-8")
    return root


def write_chexmask_rows(path: str | Path, count: int, variants: int = 8, shift: float = 0.0,
                        gzip_it: bool = False) -> Path:
    """A CheXmask-form CSV of ``count`` rows (ids ``cxr-0000000``, ...) cycling through
    ``variants`` drawn outlines, for tests and benchmarks; ``shift`` moves every outline (a
    model's predictions for the same ids)."""
    import gzip

    path = Path(path)
    header = ["dicom_id", "Dice RCA (Mean)", "Dice RCA (Max)", "Landmarks", "Left Lung",
              "Right Lung", "Heart", "Height", "Width"]
    pool = [_row("", landmarks(shift=shift + 9.0 * k), 0.5) for k in range(min(variants, count))]
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gzip_it else open
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for k in range(count):
            rca = 0.45 + 0.5 * ((k * 37) % 100) / 100
            row = list(pool[k % len(pool)])
            row[0], row[1], row[2] = f"cxr-{k:07d}", f"{rca:.6f}", f"{min(1.0, rca + 0.05):.6f}"
            writer.writerow(row)
    return path
