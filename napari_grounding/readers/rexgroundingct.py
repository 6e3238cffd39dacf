"""ReXGroundingCT: finding sentences from ``dataset.json`` and their 4-D masks.

A dataset root holds ``dataset.json`` ({"train", "val", "test"} lists of records) and
``segmentations/<name>.nii.gz``: one channel per finding (in key order), one label value per
entity. ``MICCAI_challenge_dataset.json`` (validation and test scans) has the same schema, as
may any JSON chosen explicitly; ``reports_dataset.json`` holds the full reports. Training masks
hold up to three representative entities per finding (``entity_counts`` may say more); the
validation and test masks are exhaustive. The CTs themselves come from CT-RATE (``ctrate.py``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..model import GroundingError, Image, MaskAnnotation, ReadCounter, TextItem
from .nifti import deferred_array_and_slabs, label_dtype, load_header
from .paths import inside

DATASET = "rexgroundingct"
SPLITS = ("train", "val", "test")
# split names as the files spell them -> ours
SPLIT_KEYS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
RECORD_FILES = ("dataset.json", "MICCAI_challenge_dataset.json")
REPORTS_FILE = "reports_dataset.json"
TRAIN_MAX_ENTITIES = 3
TRAIN_MASK_NOTE = "up to 3 representative entities per finding (training split)"
_RECORDS_HEAD = re.compile(r'^\s*\{\s*"(train|val|valid|validation|test)"\s*:\s*\[')

# Category codes from the dataset card: 1x non-focal (diffuse), 2x focal.
CATEGORY_NAMES = {
    "1a": "bronchial wall thickening",
    "1b": "bronchiectasis",
    "1c": "emphysema",
    "1d": "septal thickening",
    "1e": "micronodules",
    "1f": "other diffuse",
    "2a": "linear opacity / scarring",
    "2b": "atelectasis / consolidation",
    "2c": "ground glass",
    "2d": "nodule / mass",
    "2e": "pleural effusion or thickening",
    "2f": "honeycombing",
    "2g": "pneumothorax",
    "2h": "other focal",
}


@dataclass(frozen=True)
class Record:
    """One scan's entry in dataset.json, findings in channel order."""

    name: str  # case id: the CT file name without .nii.gz
    split: str
    findings: tuple[str, ...]
    categories: tuple[str, ...]
    entity_counts: tuple[int, ...] | None  # None for test records (masks withheld)
    pixels: tuple[int, ...] | None
    shape: tuple[int, ...] | None
    protocol: str
    note: str = ""  # a problem with the record itself, shown on its case

    @property
    def file_name(self) -> str:
        return self.name + ".nii.gz"

    @property
    def has_masks(self) -> bool:
        """Test records withhold their masks; any other record's masks are read, also when
        its ``pixels`` counts are missing."""
        return self.pixels is not None or self.split != "test"


def case_name(name: str) -> str:
    """A case id from a CT or mask file name (with or without .nii/.nii.gz)."""
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_records(path: Path) -> dict[str, Record]:
    """Every record of a dataset.json, keyed by case id; malformed input says where."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise GroundingError(
            f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise GroundingError(f"{path}: cannot read ({err})") from None
    if not isinstance(raw, dict) or not any(isinstance(raw.get(s), list) for s in SPLIT_KEYS):
        raise GroundingError(f"{path}: expected an object with 'train', 'val' and 'test' lists")
    records: dict[str, Record] = {}
    for split_key, split in SPLIT_KEYS.items():
        for index, entry in enumerate(raw.get(split_key) or []):
            where = f"{path}: {split_key}[{index}]"
            record = _parse_record(entry, where, split)
            key = record.name
            if key in records:  # keep both: the repeat gets a case id of its own
                key = next(f"{record.name}~{n}" for n in range(2, len(records) + 3)
                           if f"{record.name}~{n}" not in records)
                record = replace(record, note=f"{where} repeats the name {record.name!r} of an "
                                              f"earlier record; shown as case {key!r}")
                records[record.name] = replace(records[record.name], note=(
                    f"{path}: the name {record.name!r} is used by another record too "
                    f"(case {key!r})"))
            records[key] = record
    return records


def looks_like_records(path: Path) -> bool:
    """A JSON file that starts as a records file does (``{"train": [`` ...); reads 4 KB."""
    try:
        with path.open("rb") as f:
            head = f.read(4096).decode("utf-8", errors="ignore")
    except OSError:
        return False
    return bool(_RECORDS_HEAD.match(head))


def records_file(root: Path) -> Path | None:
    """The records file of a root: ``dataset.json``, else the MICCAI challenge file."""
    return next((root / n for n in RECORD_FILES if (root / n).is_file()), None)


def load_reports(path: Path) -> dict[str, list[tuple[str, str, str]]]:
    """``reports_dataset.json``: case id -> (key, title, text) per report section.

    Its layout is not documented: records under split keys, a list of records or an object
    keyed by file name are all read; every text field of a record other than its name is a
    section (an object of numbered sentences is joined).
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GroundingError(f"{path}: cannot read the reports ({err})") from None
    if isinstance(raw, dict) and any(isinstance(raw.get(k), list) for k in SPLIT_KEYS):
        entries = [e for k in SPLIT_KEYS for e in raw.get(k) or []]
    elif isinstance(raw, list):
        entries = raw
    elif isinstance(raw, dict):
        entries = [{"name": k, **(v if isinstance(v, dict) else {"report": v})} for k, v in raw.items()]
    else:
        entries = []
    reports: dict[str, list[tuple[str, str, str]]] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name = entry.get("name") or entry.get("VolumeName")
        if not isinstance(name, str):
            continue
        sections = []
        for key, value in entry.items():
            if key in ("name", "VolumeName"):
                continue
            if isinstance(value, dict):
                ordered = sorted(value.items(), key=lambda kv: (len(str(kv[0])), str(kv[0])))
                value = " ".join(str(v) for _, v in ordered)
            if isinstance(value, str) and value.strip():
                slug = re.sub(r"\W+", "_", key.lower()).strip("_").removesuffix("_en")
                sections.append((slug, slug.replace("_", " ").capitalize(), value))
        reports[case_name(name)] = sections
    return reports


def _ordered(mapping: Any, where: str, field_name: str) -> list[tuple[int, Any]]:
    if not isinstance(mapping, dict):
        raise GroundingError(f"{where}: '{field_name}' must be an object keyed by finding index")
    try:
        return sorted((int(k), v) for k, v in mapping.items())
    except ValueError:
        raise GroundingError(f"{where}: '{field_name}' has a key that is not a finding index") from None


def _parse_record(entry: Any, where: str, split: str) -> Record:
    if not isinstance(entry, dict):
        raise GroundingError(f"{where}: a record must be an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise GroundingError(f"{where}: record has no 'name'")
    if "/" in name or "\\" in name or case_name(name) in ("", ".", "..") or "\x00" in name:
        raise GroundingError(f"{where}: 'name' {name!r} is not a plain file name")
    where = f"{where} ({name})"
    findings = _ordered(entry.get("findings"), where, "findings")
    keys = [k for k, _ in findings]
    categories = dict(_ordered(entry.get("categories", {}), where, "categories"))
    optional = {}
    for field_name in ("entity_counts", "pixels"):
        if entry.get(field_name) is None:
            optional[field_name] = None
            continue
        values = dict(_ordered(entry[field_name], where, field_name))
        try:
            optional[field_name] = tuple(int(values[k]) for k in keys)
        except (KeyError, TypeError, ValueError):
            raise GroundingError(f"{where}: '{field_name}' does not give an integer per finding") from None
    shape = entry.get("shape")
    return Record(
        name=case_name(name),
        split=split,
        findings=tuple(str(text) for _, text in findings),
        categories=tuple(str(categories.get(k, "")) for k in keys),
        entity_counts=optional["entity_counts"],
        pixels=optional["pixels"],
        shape=tuple(int(n) for n in shape) if isinstance(shape, list) else None,
        protocol=str(entry.get("protocol", "")),
    )


def finding_items(record: Record) -> list[TextItem]:
    """One text item per finding, tagged with its category and linked to its mask."""
    items = []
    for index, (text, code) in enumerate(zip(record.findings, record.categories, strict=True)):
        tags = {
            "category": code or "?",
            "category_name": CATEGORY_NAMES.get(code, "unknown category"),
            "extent": "focal" if code.startswith("2") else "non-focal",
        }
        if record.entity_counts is not None:
            tags["entities"] = str(record.entity_counts[index])
            if record.split == "train":  # the mask holds a representative few of them
                tags["entities_max_masked"] = str(TRAIN_MAX_ENTITIES)
        if record.pixels is not None:
            tags["voxels"] = str(record.pixels[index])  # as dataset.json counts them
        links = [f"mask/{index}"] if record.has_masks else []
        items.append(TextItem(id=f"finding/{index}", text=text, tags=tags, annotations=links))
    return items


def mask_path(root: Path, record: Record) -> Path:
    return inside(root / "segmentations", record.file_name)


def open_masks(path: Path, record: Record, ct: Image | None) -> tuple[list[MaskAnnotation], list[str]]:
    """One lazily read mask annotation per finding, and any problem found on the way.

    The masks carry an identity affine; they are voxel-aligned with the CT array, so their
    geometry is the CT's. A mask that does not fit the CT is reported and left undrawn.
    """
    img = load_header(path)
    shape = tuple(int(n) for n in img.shape)
    n_findings = len(record.findings)
    if len(shape) == 3 and n_findings == 1:
        shape = (1, *shape)  # a single-finding mask saved without its channel axis
    if len(shape) != 4:
        return [], [f"{path}: expected a 4-D mask (findings, H, W, D), found shape {shape}"]
    problems = list(img.extra.get("warnings", []))  # nibabel's complaints about the header
    if ct is not None and shape[1:] != ct.orientation.source_shape:
        return [], [f"{path}: mask shape {shape[1:]} does not match the CT's "
                    f"{ct.orientation.source_shape}; masks not drawn"]
    if shape[0] != n_findings:
        problems.append(f"{path}: {shape[0]} mask channels for {n_findings} findings; "
                        f"linking the first {min(shape[0], n_findings)}")
    reads = ReadCounter()
    volume, slabs = deferred_array_and_slabs(path, img, slice_axis=len(img.shape) - 1,
                                             counter=reads,
                                             out_dtype=label_dtype(img.get_data_dtype()))
    if volume.ndim == 3:
        volume = volume.then(lambda v: v[None], (1, *volume.shape))
    channels = [volume.then(lambda v, i=i: v[i], volume.shape[1:])
                for i in range(min(shape[0], n_findings))]
    # the cache writer reads every channel's slices in one pass over the file
    masks = [MaskAnnotation(id=f"mask/{i}", image="ct", data=channel, reads=reads,
                            source=str(path),
                            slabs=slabs.view(channel, i if len(img.shape) == 4 else None))
             for i, channel in enumerate(channels)]
    return masks, problems
