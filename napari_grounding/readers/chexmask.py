"""CheXmask: lung and heart masks (RLE) and landmark contours per CXR, with RCA quality.

PATH is one source database's CSV (plain or gzipped; OriginalResolution or 1024 Preprocessed);
a case is one image, named by its ID. Every column is found by name (v1.0.1 names the ID
column ``Image ID`` in every file: the source is then told by the file name). Images come from
the source dataset's folder (``--images``; VinDr-CXR's are DICOM); without one the masks show on
a blank canvas. The masks and landmarks are HybridGNet's output, not manual segmentations.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import run_stats
from ..model import Annotation, Case, ContourAnnotation, GroundingError, Image, MaskAnnotation, TextItem
from .csv_rows import CsvRows, reading
from .dicom import DICOM_SUFFIXES, open_dicom
from .image_folder import ImageFolder
from .rle import (
    MAX_SIDE,
    STRUCTURES,
    FormatError,
    parse_landmarks,
    rle_extent,
    rle_runs,
    run_moments,
    runs_to_mask,
    split_landmarks,
)
from .xray import blank_image, open_xray

DATASET = "chexmask"
# ID column -> source database; its images are found by relative path or by file name
SOURCES = {"dicom_id": "MIMIC-CXR-JPG", "image_id": "VinDr-CXR", "Path": "CheXpert",
           "Image Index": "ChestX-ray8", "ImageID": "Padchest", "Image ID": ""}
# v1.0.1's shared "Image ID" column: the source database from the file name
SOURCE_NAMES = (("mimic", "MIMIC-CXR-JPG"), ("vindr", "VinDr-CXR"), ("chexpert", "CheXpert"),
                ("chestx-ray8", "ChestX-ray8"), ("chestxray8", "ChestX-ray8"),
                ("chestx-ray14", "ChestX-ray8"), ("padchest", "Padchest"))
MODEL_SET = "HybridGNet model output"
STRUCTURE_COLUMNS = {"right_lung": "Right Lung", "left_lung": "Left Lung", "heart": "Heart"}
STRUCTURE_TITLES = {"right_lung": "Right lung", "left_lung": "Left lung", "heart": "Heart"}
RCA_THRESHOLD = 0.7
PREPROCESSED_SIZE = (1024, 1024)


def _header(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
        return [h.strip() for h in next(csv.reader(f), [])]


def _source_from_name(name: str) -> str:
    lowered = name.lower()
    return next((source for key, source in SOURCE_NAMES if key in lowered), "unknown source")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(value) else value


class CheXmaskDataset:
    """One CheXmask CSV; ``compare`` is a second annotation set of the same form."""

    name = DATASET
    # (tag, shown as a badge, offered as a filter): the source and that masks are a model's
    tag_schema = (("source", True, True), ("annotations", True, False), ("quality", True, True))

    def __init__(self, path: Path, images: Path | None = None, compare: Path | None = None,
                 index_dir: Path | None = None):
        self.path = path
        self.rows = CsvRows(path, tuple(SOURCES), index_dir=index_dir)
        self.source = SOURCES[self.rows.id_column] or _source_from_name(path.name)
        self.images = ImageFolder(images) if images else None
        self.compare = CsvRows(compare, tuple(SOURCES), index_dir=index_dir) if compare else None
        self.compare_name = compare.name.split(".")[0] if compare else ""
        missing = [c for c in ("Landmarks", *STRUCTURE_COLUMNS.values()) if c not in self.rows.header]
        self.missing_columns = missing

    def set_images(self, folder: Path) -> None:
        """Pair rows with the pictures under ``folder`` from now on."""
        if not folder.is_dir():
            raise GroundingError(f"{folder}: not a folder")
        self.images = ImageFolder(folder)

    @staticmethod
    def matches(path: Path) -> bool:
        if not (path.is_file() and path.name.lower().endswith((".csv", ".csv.gz"))):
            return False
        try:
            header = _header(path)
        except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
            return False
        return any(c in header for c in SOURCES) and any(
            c in header for c in ("Landmarks", *STRUCTURE_COLUMNS.values()))

    def case_ids(self) -> list[str]:
        return self.rows.ids()

    def summary(self, case_id: str) -> str:
        found = self.rows.row(case_id)
        return self._summary_line(case_id, found[1] if found else {})

    def summaries(self) -> Iterator[str]:
        """One line per image, streamed (no per-row lookups)."""
        wanted = [c for c in (self.rows.id_column, "Dice RCA (Mean)", "Height", "Width")
                  if c in self.rows.header]
        import pandas as pd

        with reading(self.path):
            for chunk in pd.read_csv(self.path, usecols=wanted, dtype=str,
                                     keep_default_na=False, chunksize=100_000):
                for record in chunk.to_dict("records"):
                    yield self._summary_line(record[self.rows.id_column], record)

    @staticmethod
    def _summary_line(case_id: str, row: dict[str, str]) -> str:
        rca = _number(row.get("Dice RCA (Mean)", ""))
        quality = "RCA ?" if rca is None else f"RCA {rca:.3f}" + (
            " LOW" if rca < RCA_THRESHOLD else "")
        return f"{case_id}\t{quality}"

    # -- one case ---------------------------------------------------------------------------
    def open_case(self, case_id: str) -> Case:
        found = self.rows.row(case_id)
        if found is None:
            raise GroundingError(f"{self.path}: no image {case_id!r} among its {len(self.rows)} "
                                 f"rows (list them with: napari-grounding cases {self.path})")
        return self.case_from_row(case_id, *found)

    # -- whole-file jobs: blocks of rows read in one pass -------------------------------------
    def blocks(self, size: int) -> list[tuple[int, int]]:
        """Consecutive ranges of case positions, ``size`` cases each (the last may be short)."""
        total = len(self.case_ids())
        return [(start, min(start + size, total)) for start in range(0, total, size)]

    def block_rows(self, start: int, stop: int) -> list[tuple[str, int, dict[str, str]]]:
        """(case id, row number, row) of the cases at ``start:stop``, read sequentially;
        ``case_from_row`` makes each the Case ``open_case`` would."""
        rows = self.rows.rows_in(start, stop)
        if self.compare is not None:
            self.compare.prefetch([case_id for case_id, _, _ in rows])
        return rows

    def case_from_row(self, case_id: str, number: int, row: dict[str, str]) -> Case:
        case = Case(dataset=DATASET, id=case_id)
        where = f"{self.path.name}: row {number} ({case_id})"
        case.problems += [f"{self.path.name}: no {c!r} column" for c in self.missing_columns]
        case.problems += [note for note in (self.rows.note,) if note]
        case.tags.update(self._quality_tags(row))
        picture = self._find_image(case_id, case)
        shape = self._mask_shape(row, picture, where, case)
        image = self._canvas(picture, shape, case)
        case.images[image.id] = image
        if shape is not None:
            own = self._annotations(row, shape, where, MODEL_SET, "", case)
            case.annotations.update({a.id: a for a in own})
        case.items = [TextItem(id=f"structure/{s}", text=STRUCTURE_TITLES[s],
                               tags={"structure": s.replace("_", " ")},
                               annotations=[a for a in (f"mask/{s}", f"contour/{s}")
                                            if a in case.annotations]) for s in STRUCTURES]
        if self.compare is not None and shape is not None:
            self._add_comparison(case_id, shape, case)
        return case

    def _quality_tags(self, row: dict[str, str]) -> dict[str, str]:
        tags = {"source": self.source, "annotations": f"{MODEL_SET} (automatic, not manual)"}
        mean, best = _number(row.get("Dice RCA (Mean)")), _number(row.get("Dice RCA (Max)"))
        if mean is not None:
            tags["rca_dice_mean"] = f"{mean:.3f}"
            tags["quality"] = ("flagged: RCA Dice below 0.7" if mean < RCA_THRESHOLD else "ok")
        if best is not None:
            tags["rca_dice_max"] = f"{best:.3f}"
        return tags

    def _find_image(self, case_id: str, case: Case) -> Image | None:
        if self.images is None:
            case.tags["image"] = "none given (--images)"
            return None
        lookup = self.images.by_relative_path if self.source == "CheXpert" else self.images.by_name
        path = lookup(case_id)
        if path is None:
            case.problems.append(f"image {case_id} not found under {self.images.root}: "
                                 "masks shown on a blank canvas")
            case.tags["image"] = "not found"
            return None
        case.tags["image"] = str(path)
        if path.suffix.lower() in DICOM_SUFFIXES:
            return open_dicom(path)
        return open_xray(path)

    def _mask_shape(self, row: dict[str, str], picture: Image | None, where: str,
                    case: Case) -> tuple[int, int] | None:
        """The mask grid: the row's Height/Width, else the image's, else 1024 x 1024 if all fits."""
        height, width = _number(row.get("Height", "")), _number(row.get("Width", ""))
        if height and width and height.is_integer() and width.is_integer() \
                and 1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE:
            case.tags["size_source"] = "CSV Height/Width"
            return int(height), int(width)
        if row.get("Height", "").strip() or row.get("Width", "").strip():
            case.problems.append(f"{where}, columns 'Height'/'Width': not whole numbers from 1 "
                                 f"to {MAX_SIDE} ({row.get('Height')!r}, {row.get('Width')!r})")
        if picture is not None:
            case.tags["size_source"] = "image (Height/Width empty)"
            return picture.orientation.source_shape
        if self._fits(row, PREPROCESSED_SIZE):
            case.tags["size_source"] = "inferred 1024 x 1024 (Height/Width empty; masks fit)"
            return PREPROCESSED_SIZE
        case.problems.append(f"{where}: Height/Width empty and the masks do not fit 1024 x 1024;"
                             " masks not drawn")
        return None

    @staticmethod
    def _fits(row: dict[str, str], shape: tuple[int, int]) -> bool:
        try:
            extents = [rle_extent(row.get(c, "")) for c in STRUCTURE_COLUMNS.values()]
            points = parse_landmarks(row.get("Landmarks", ""))
        except (ValueError, FormatError):
            return False
        return max(extents) <= shape[0] * shape[1] and bool(
            np.all(points >= 0) and np.all(points[:, 0] <= shape[1]) and np.all(points[:, 1] <= shape[0]))

    def _canvas(self, picture: Image | None, shape: tuple[int, int] | None, case: Case) -> Image:
        if picture is None:
            return blank_image(shape or PREPROCESSED_SIZE, reason="image not at hand")
        if shape is not None and picture.orientation.source_shape != shape:
            case.problems.append(
                f"the image is {picture.orientation.source_shape[0]} x "
                f"{picture.orientation.source_shape[1]} but the masks {shape[0]} x {shape[1]} "
                "(a Preprocessed CSV?): masks shown on a blank canvas of their own size")
            return blank_image(shape, reason="image size differs from the masks")
        return picture

    @staticmethod
    def _annotations(row: dict[str, str], shape: tuple[int, int], where: str, set_name: str,
                     suffix: str, case: Case) -> list[Annotation]:
        """Masks and contours of one row; a malformed cell is reported, the others kept."""
        out: list[Annotation] = []
        for structure, column in STRUCTURE_COLUMNS.items():
            if column not in row:
                continue
            try:
                starts, ends = rle_runs(row[column], shape)
            except FormatError as err:
                case.problems.append(f"{where}, column {column!r}: {err}")
                continue
            # statistics from the runs, pixels when asked: qc of a large CSV decodes no mask
            stats = run_stats(shape, run_moments(starts, ends, shape))
            out.append(RunsMask(id=f"mask/{structure}{suffix}", image="image", set=set_name,
                                runs=(starts, ends, shape), cell=row[column], stats=stats,
                                base=f"mask/{structure}" if suffix else ""))
        if "Landmarks" in row:
            try:
                contours = split_landmarks(parse_landmarks(row["Landmarks"]))
            except FormatError as err:
                case.problems.append(f"{where}, column 'Landmarks': {err}")
                contours = {}
            out += [ContourAnnotation(id=f"contour/{s}{suffix}", image="image", set=set_name,
                                      points=points, base=f"contour/{s}" if suffix else "")
                    for s, points in contours.items()]
        return out

    def _add_comparison(self, case_id: str, shape: tuple[int, int], case: Case) -> None:
        found = self.compare.row(case_id)
        if found is None:
            case.problems.append(f"{self.compare.path.name}: no row for {case_id}")
            return
        number, row = found
        where = f"{self.compare.path.name}: row {number} ({case_id})"
        theirs = self._annotations(row, shape, where, self.compare_name, "@compare", case)
        case.add_set(self.compare_name, theirs)  # linked to the structures; scores.py compares


@dataclass(kw_only=True)
class RunsMask(MaskAnnotation):
    """A mask held as its RLE runs: decoded when read, its dask array built when first asked
    for (qc and scoring of a large CSV build none: building one costs more than the decoding)."""

    runs: tuple[np.ndarray, np.ndarray, tuple[int, int]] = field(default=None, repr=False)
    cell: str = field(default="", repr=False)  # the RLE text: equal cells are one dask array

    @property  # type: ignore[override]
    def data(self) -> Any:
        if self._array is None and self.runs is not None:
            self._array = _lazy_mask(self.cell, *self.runs)
        return self._array

    @data.setter
    def data(self, value: Any) -> None:  # the dataclass's __init__ sets it (None: built lazily)
        self._array = value

    def pixels(self) -> np.ndarray:
        return runs_to_mask(*self.runs)


def _lazy_mask(text: str, starts: np.ndarray, ends: np.ndarray, shape: tuple[int, int]) -> Any:
    """A one-chunk dask array decoding the runs when read. Built by hand: ``from_delayed``
    tokenizes and costs more than the decoding; the name is a digest of the cell, so equal
    cells are one mask."""
    import dask.array as da

    digest = hashlib.blake2b(f"{shape}|{text}".encode(), digest_size=16).hexdigest()
    name = f"chexmask-rle-{digest}"
    return da.Array({(name, 0, 0): (runs_to_mask, starts, ends, shape)}, name,
                    chunks=((shape[0],), (shape[1],)), dtype=np.uint8,
                    meta=np.empty((0, 0), dtype=np.uint8))
