"""MIMIC-Ext-CXR-QBA: questions with hierarchical answers and boxes, and scene graphs.

A dataset root holds ``qa/p1x/p1xxxxxxx/sxxxxxxxx.qa.json`` and
``scene_data/.../sxxxxxxxx.scene_graph.json``, loose or inside ``qa.zip`` / ``scene_data.zip``
(``scene_graph.zip`` in ``exports/<subset>/``), with ``metadata/`` tables (``qba_metadata.py``)
and ``quality_mappings.csv``. A root holding only ``exports/`` opens its first subset.
Answer ids restart in every question, so an answer is keyed by question and answer:
``answer/<question_id>/<answer_id>``, its boxes ``box/<question_id>/<answer_id>/<image_id>/<n>``.
Zip members are read in place, never extracted, and only names of the expected form are used
(a member called ``../../x.json`` is simply not a study). Boxes are in the pixel coordinates of
MIMIC-CXR-JPG images, named by ``image_id`` = ``dicom_id`` (``--images``: the MIMIC-CXR-JPG
folder). A case is a study, named by its study id (``s5...``).
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from functools import cached_property
from pathlib import Path
from typing import Any

from ..model import BoxAnnotation, Case, GroundingError, Image
from .image_folder import ImageFolder
from .qba_items import StudyBuilder, listed
from .qba_metadata import QBAMetadata, QualityMappings, StudyMetadata, find_mappings, study_key
from .xray import open_xray

DATASET = "mimic-ext-cxr-qba"
KINDS = {"qa": ".qa.json", "scene_graph": ".scene_graph.json"}
FOLDERS = ("qa", "scene_data", "scene_graph")
ZIPS = ("qa.zip", "scene_data.zip", "scene_graph.zip")
FRONTAL_VIEWS = ("PA", "AP", "AP AXIAL", "PA LLD", "AP LLD", "AP RLD", "PA RLD")
# Tags this reader adds beyond the JSON's own: (name, shown as a badge, offered as a filter).
# Items: grades, origin and what an answer or observation names; ``links`` holds item ids.
# Case: ``split``, ``study_quality``, ``subset``. Images carry their ``view`` in ``meta``.
TAG_SCHEMA = (
    ("quality", True, True), ("answers_from", True, True), ("origin", True, True),
    ("localization_quality", False, True), ("entities", False, True), ("modifiers", False, True),
    ("changes", False, True), ("categories", False, True), ("links", False, False),
    ("split", True, True), ("study_quality", True, False), ("subset", True, False),
)
_MEMBER = re.compile(r"^(?:[\w.-]+/)*?(p\d{2})/(p\d+)/(s\d+)(\.qa\.json|\.scene_graph\.json)$")
MAX_JSON_BYTES = 64 * 2**20  # one study's JSON; a larger (declared or inflated) one is refused


def _study_name(name: str) -> tuple[str, str, str] | None:
    """(patient, study, kind) of a study file name, or None for anything else."""
    normal = name.replace("\\", "/")  # a zip made on Windows may use backslashes
    match = _MEMBER.match(normal)
    if not match or ".." in normal.split("/") or normal.startswith("/"):
        return None
    kind = "qa" if match.group(4) == ".qa.json" else "scene_graph"
    return match.group(2), match.group(3), kind


class QBADataset:
    """The studies under one QBA root (or one study's JSON file)."""

    name = DATASET
    tag_schema = TAG_SCHEMA

    def __init__(self, path: Path, images: Path | None = None):
        self.root = _layout_root(path if path.is_dir() else _root_of(path))
        self.images = ImageFolder(images) if images else None
        # study -> kind -> (zip path or None, member or file path)
        self.files: dict[str, dict[str, tuple[Path | None, str]]] = {}
        self.patients: dict[str, str] = {}
        self.duplicates: dict[str, list[str]] = {}  # study -> members named more than once
        self._scan()
        if path.is_file() and not path.name.endswith(".zip"):
            self._keep_only(path)
        if not self.files:
            raise GroundingError(f"{path}: no QBA studies (qa/p1x/p1xxxxxxx/s....qa.json or qa.zip)")
        self.metadata = QBAMetadata(self.root / "metadata",
                                    QualityMappings(find_mappings(self.root)))

    @staticmethod
    def matches(path: Path) -> bool:
        if path.is_file():
            return path.name.endswith(tuple(KINDS.values())) or path.name in ZIPS
        return _has_studies(path) or any(_has_studies(p) for p in _subsets(path))

    def set_images(self, folder: Path) -> None:
        if not folder.is_dir():
            raise GroundingError(f"{folder}: not a folder")
        self.images = ImageFolder(folder)

    def _add(self, name: str, archive: Path | None, location: str) -> None:
        found = _study_name(name)
        if found is None:
            return
        patient, study, kind = found
        if archive is not None and self.files.get(study, {}).get(kind, (None,))[0] == archive:
            self.duplicates.setdefault(study, []).append(f"{archive.name}:{location}")
            return  # a member named twice in one zip: the first copy is used, the repeat reported
        self.files.setdefault(study, {})[kind] = (archive, location)
        self.patients[study] = patient

    def _keep_only(self, path: Path) -> None:
        """Opened on one study's file: that study alone (its other file found by the scan)."""
        name = "/".join(path.parts[-3:])
        found = _study_name(name)
        self.files = {found[1]: self.files.get(found[1], {})} if found else {}
        self._add(name, None, str(path))  # also when it sits outside a root's qa/ folder

    def _scan(self) -> None:
        for folder in FOLDERS:
            for file in sorted((self.root / folder).rglob("*.json")):
                self._add(file.relative_to(self.root / folder).as_posix(), None, str(file))
        for archive in ZIPS:
            path = self.root / archive
            if path.is_file():
                try:
                    with zipfile.ZipFile(path) as zf:
                        for info in zf.infolist():
                            self._add(info.filename, path, info.filename)
                except zipfile.BadZipFile as err:
                    raise GroundingError(f"{path}: not a readable zip ({err})") from None

    def case_ids(self) -> list[str]:
        return sorted(self.files)

    def summary(self, case_id: str) -> str:
        kinds = "+".join(sorted(self.files[case_id]))
        grade = self.study_grades.get(study_key(case_id))
        return f"{case_id}\t{self.patients[case_id]}\t{kinds}" + (f"\tgrade {grade}" if grade else "")

    @cached_property
    def study_grades(self) -> dict[str, str]:
        """Every study's overall grade from the study table, read once (227,239 rows in the
        release); a table that cannot be read leaves the summaries without grades."""
        try:
            return self.metadata.study_grades()
        except GroundingError:
            return {}

    def _read(self, study: str, kind: str) -> dict[str, Any] | None:
        if kind not in self.files[study]:
            return None
        archive, location = self.files[study][kind]
        where = f"{archive}:{location}" if archive else location
        try:
            raw = _read_capped(archive, location)
            data = json.loads(raw)
        except (OSError, KeyError, EOFError, zlib.error, zipfile.BadZipFile, RuntimeError,
                NotImplementedError) as err:  # damaged, encrypted, unknown compression
            raise GroundingError(f"{where}: cannot read ({err})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise GroundingError(f"{where}: not valid JSON ({err})") from None
        except RecursionError:
            raise GroundingError(f"{where}: JSON nested too deeply") from None
        if not isinstance(data, dict):
            raise GroundingError(f"{where}: expected a JSON object")
        return data

    def open_case(self, case_id: str) -> Case:
        if case_id not in self.files:
            raise GroundingError(f"{self.root}: no study {case_id!r} among its {len(self.files)} "
                                 f"(list them with: napari-grounding cases {self.root})")
        qa, graph = self._read(case_id, "qa"), self._read(case_id, "scene_graph")
        case = Case(dataset=DATASET, id=case_id, tags={"patient": self.patients[case_id]})
        if self.root.parent.name == "exports":
            case.tags["subset"] = self.root.name
        case.problems += [f"{member}: named more than once in the zip; the first copy is shown"
                          for member in self.duplicates.get(case_id, [])]
        metadata = self.metadata.for_study(case_id)
        if self.metadata:
            case.tags["metadata"] = self.metadata.form
        case.tags.update(metadata.study)
        builder = StudyBuilder(case, metadata)
        for kind, data in (("qa", qa), ("scene_graph", graph)):
            if data is None:
                continue
            try:
                case.items.append(builder.questions(listed(data, "questions")) if kind == "qa"
                                  else builder.scene_graph(data))
            except (AttributeError, TypeError, ValueError, RecursionError) as err:
                archive, location = self.files[case_id][kind]
                where = f"{archive}:{location}" if archive else location
                raise GroundingError(f"{where}: unexpected JSON structure "
                                     f"({type(err).__name__}: {err})") from None
        self._add_images(case, builder.image_ids, metadata)
        return case

    def _add_images(self, case: Case, image_ids: list[str], metadata: StudyMetadata) -> None:
        views = {i: _view(metadata.images.get(i, {})) for i in image_ids}
        # the dataset recommends frontal images for boxes: show them first
        for image_id in sorted(image_ids, key=lambda i: not _is_frontal(views[i])):
            path = self.images.mimic_cxr_jpg(image_id, case.tags["patient"], case.id) \
                if self.images else None
            boxes = [a for a in case.annotations.values() if a.image == image_id]
            if path is None:
                where = "no image folder given (--images)" if self.images is None else \
                    f"not found under {self.images.root}"
                case.problems.append(f"image {image_id}: {where}; its {len(boxes)} boxes are "
                                     "listed, not drawn")
                continue
            extra = {"view": views[image_id]} if views[image_id] else {}
            image = open_xray(path, image_id=image_id, **extra)
            case.images[image_id] = image
            clipped = sum(_clip(box, image) for box in boxes)
            if clipped:
                case.problems.append(f"image {image_id}: {clipped} boxes reach outside the image "
                                     "and were clipped")


def _has_studies(folder: Path) -> bool:
    return any((folder / n).exists() for n in (*ZIPS, "qa", "scene_data", "scene_graph"))


def _subsets(root: Path) -> list[Path]:
    """``exports/<subset>/`` folders (A_frontal, B_frontal) holding their own zips."""
    exports = root / "exports"
    return sorted(p for p in exports.iterdir() if p.is_dir()) if exports.is_dir() else []


def _layout_root(root: Path) -> Path:
    """Where the studies are: the root itself, else its first export subset that has them."""
    if _has_studies(root):
        return root
    return next((p for p in _subsets(root) if _has_studies(p)), root)


def _view(image_row: dict[str, str]) -> str:
    for name, value in image_row.items():
        if name.split(".")[-1].lower() in ("view_position", "viewposition") and value:
            return value.upper()
    return ""


def _is_frontal(view: str) -> bool:
    return view in FRONTAL_VIEWS


def _read_capped(archive: Path | None, location: str) -> bytes:
    """A study file's bytes, refusing one larger than MAX_JSON_BYTES (declared or inflated)."""
    if archive is None:
        if Path(location).stat().st_size > MAX_JSON_BYTES:
            raise OSError(f"larger than {MAX_JSON_BYTES // 2**20} MB")
        return Path(location).read_bytes()
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(location)
        if info.file_size > MAX_JSON_BYTES:
            raise OSError(f"inflates to {info.file_size} bytes, over {MAX_JSON_BYTES // 2**20} MB")
        with zf.open(info) as member:
            raw = member.read(MAX_JSON_BYTES + 1)  # the declared size may lie
    if len(raw) > MAX_JSON_BYTES:
        raise OSError(f"inflates to over {MAX_JSON_BYTES // 2**20} MB")
    return raw




def _root_of(path: Path) -> Path:
    """The dataset root above a study file (``qa/p1x/p1x.../s....qa.json``) or a zip."""
    if path.name.endswith(".zip"):
        return path.parent
    parents = list(path.parents)
    return parents[3] if len(parents) > 3 and parents[2].name in FOLDERS else path.parent


def _clip(box: BoxAnnotation, image: Image) -> bool:
    rows, cols = image.orientation.source_shape
    x1, y1, x2, y2 = box.given
    clipped = (min(max(x1, 0), cols), min(max(y1, 0), rows),
               min(max(x2, 0), cols), min(max(y2, 0), rows))
    box.xyxy, box.clipped = clipped, clipped != box.given
    return box.clipped
