"""MIMIC-Ext-CXR-QBA: questions with hierarchical answers and boxes, and scene graphs.

A dataset root holds ``qa/p1x/p1xxxxxxx/sxxxxxxxx.qa.json`` and
``scene_data/.../sxxxxxxxx.scene_graph.json``, loose or inside ``qa.zip`` / ``scene_data.zip``.
Zip members are read in place, never extracted, and only names of the expected form are used
(a member called ``../../x.json`` is simply not a study). Boxes are in the pixel coordinates of
MIMIC-CXR-JPG images, named by ``image_id`` = ``dicom_id`` (``--images``: the MIMIC-CXR-JPG
folder). A case is a study, named by its study id (``s5...``).
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd

from ..model import BoxAnnotation, Case, GroundingError, Image, TextItem
from .image_folder import ImageFolder
from .xray import open_xray

DATASET = "mimic-ext-cxr-qba"
KINDS = {"qa": ".qa.json", "scene_graph": ".scene_graph.json"}
_MEMBER = re.compile(r"^(?:[\w.-]+/)*?(p\d{2})/(p\d+)/(s\d+)(\.qa\.json|\.scene_graph\.json)$")
ANSWER_TAGS = ("answer_type", "positiveness", "certainty", "name_tag", "laterality")
QUESTION_TAGS = ("question_type", "question_strategy")


def _study_name(name: str) -> tuple[str, str, str] | None:
    """(patient, study, kind) of a study file name, or None for anything else."""
    match = _MEMBER.match(name.replace("\\", "/"))
    if not match or ".." in name.split("/"):
        return None
    kind = "qa" if match.group(4) == ".qa.json" else "scene_graph"
    return match.group(2), match.group(3), kind


class QBADataset:
    """The studies under one QBA root (or one study's JSON file)."""

    name = DATASET

    def __init__(self, path: Path, images: Path | None = None):
        self.root = path if path.is_dir() else _root_of(path)
        self.images = ImageFolder(images) if images else None
        # study -> kind -> (zip path or None, member or file path)
        self.files: dict[str, dict[str, tuple[Path | None, str]]] = {}
        self.patients: dict[str, str] = {}
        self._scan()
        if path.is_file() and not path.name.endswith(".zip"):
            self._keep_only(path)
        if not self.files:
            raise GroundingError(f"{path}: no QBA studies (qa/p1x/p1xxxxxxx/s....qa.json or qa.zip)")
        self.quality = _QualityGrades(self.root)

    @staticmethod
    def matches(path: Path) -> bool:
        if path.is_file():
            return path.name.endswith(tuple(KINDS.values())) or path.name in (
                "qa.zip", "scene_data.zip")
        return any((path / n).exists() for n in ("qa", "qa.zip", "scene_data.zip"))

    def set_images(self, folder: Path) -> None:
        if not folder.is_dir():
            raise GroundingError(f"{folder}: not a folder")
        self.images = ImageFolder(folder)

    def _add(self, name: str, archive: Path | None, location: str) -> None:
        found = _study_name(name)
        if found is None:
            return
        patient, study, kind = found
        self.files.setdefault(study, {})[kind] = (archive, location)
        self.patients[study] = patient

    def _keep_only(self, path: Path) -> None:
        """Opened on one study's file: that study alone (its other file found by the scan)."""
        name = "/".join(path.parts[-3:])
        found = _study_name(name)
        self.files = {found[1]: self.files.get(found[1], {})} if found else {}
        self._add(name, None, str(path))  # also when it sits outside a root's qa/ folder

    def _scan(self) -> None:
        for folder in ("qa", "scene_data"):
            for file in sorted((self.root / folder).rglob("*.json")):
                self._add(file.relative_to(self.root / folder).as_posix(), None, str(file))
        for archive in ("qa.zip", "scene_data.zip"):
            path = self.root / archive
            if path.is_file():
                try:
                    with zipfile.ZipFile(path) as zf:
                        for member in zf.namelist():
                            self._add(member, path, member)
                except zipfile.BadZipFile as err:
                    raise GroundingError(f"{path}: not a readable zip ({err})") from None

    def case_ids(self) -> list[str]:
        return sorted(self.files)

    def summary(self, case_id: str) -> str:
        kinds = "+".join(sorted(self.files[case_id]))
        return f"{case_id}\t{self.patients[case_id]}\t{kinds}"

    def _read(self, study: str, kind: str) -> dict[str, Any] | None:
        if kind not in self.files[study]:
            return None
        archive, location = self.files[study][kind]
        where = f"{archive}:{location}" if archive else location
        try:
            if archive is None:
                raw = Path(location).read_bytes()
            else:
                with zipfile.ZipFile(archive) as zf:
                    raw = zf.read(location)
            data = json.loads(raw)
        except (OSError, KeyError, zipfile.BadZipFile) as err:
            raise GroundingError(f"{where}: cannot read ({err})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise GroundingError(f"{where}: not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise GroundingError(f"{where}: expected a JSON object")
        return data

    def open_case(self, case_id: str) -> Case:
        if case_id not in self.files:
            raise GroundingError(f"{self.root}: no study {case_id!r} among its {len(self.files)} "
                                 f"(list them with: napari-grounding cases {self.root})")
        qa, graph = self._read(case_id, "qa"), self._read(case_id, "scene_graph")
        case = Case(dataset=DATASET, id=case_id, tags={"patient": self.patients[case_id]})
        builder = _Builder(case, self.quality.for_study(case_id))
        if qa is not None:
            case.items.append(builder.questions(qa.get("questions") or []))
        if graph is not None:
            case.items.append(builder.scene_graph(graph))
        self._add_images(case, builder.image_ids)
        return case

    def _add_images(self, case: Case, image_ids: list[str]) -> None:
        for image_id in image_ids:
            path = self.images.mimic_cxr_jpg(image_id, case.tags["patient"], case.id) \
                if self.images else None
            boxes = [a for a in case.annotations.values() if a.image == image_id]
            if path is None:
                where = "no image folder given (--images)" if self.images is None else \
                    f"not found under {self.images.root}"
                case.problems.append(f"image {image_id}: {where}; its {len(boxes)} boxes are "
                                     "listed, not drawn")
                continue
            image = open_xray(path, image_id=image_id)
            case.images[image_id] = image
            clipped = sum(_clip(box, image) for box in boxes)
            if clipped:
                case.problems.append(f"image {image_id}: {clipped} boxes reach outside the image "
                                     "and were clipped")


def _root_of(path: Path) -> Path:
    """The dataset root above a study file (``qa/p1x/p1x.../s....qa.json``) or a zip."""
    if path.name.endswith(".zip"):
        return path.parent
    parents = list(path.parents)
    return parents[3] if len(parents) > 3 and parents[2].name in ("qa", "scene_data") else path.parent


def _clip(box: BoxAnnotation, image: Image) -> bool:
    rows, cols = image.orientation.source_shape
    x1, y1, x2, y2 = box.given
    clipped = (min(max(x1, 0), cols), min(max(y1, 0), rows),
               min(max(x2, 0), cols), min(max(y2, 0), rows))
    box.xyxy, box.clipped = clipped, clipped != box.given
    return box.clipped


def _text_list(values: Any) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, list) else str(values or "")


class _Builder:
    """Turns one study's JSON into text items and box annotations."""

    def __init__(self, case: Case, grades: dict[str, str]):
        self.case = case
        self.grades = grades
        self.image_ids: list[str] = []

    def _boxes(self, owner: str, localization: Any, label: str, positiveness: str) -> list[str]:
        ids = []
        for image_id, where in (localization or {}).items():
            if image_id not in self.image_ids:
                self.image_ids.append(image_id)
            for k, bbox in enumerate((where or {}).get("bboxes") or []):
                if len(bbox) != 4:
                    self.case.problems.append(f"{owner}: box {k} on {image_id} has "
                                              f"{len(bbox)} numbers, not 4")
                    continue
                given = tuple(float(v) for v in bbox)
                box = BoxAnnotation(id=f"box/{owner}/{image_id}/{k}", image=image_id,
                                    set="QBA (silver)", xyxy=given, given=given,
                                    fallback=bool(where.get("is_fallback")), label=label,
                                    positiveness=positiveness)
                self.case.annotations[box.id] = box
                ids.append(box.id)
        return ids

    def questions(self, questions: list[dict[str, Any]]) -> TextItem:
        items = []
        for question in questions:
            qid = str(question.get("question_id"))
            tags = {k: str(question[k]) for k in QUESTION_TAGS if question.get(k)}
            if qid in self.grades:
                tags["quality"] = self.grades[qid]
            answers = [self._answer(a) for a in question.get("answers") or []]
            items.append(TextItem(id=f"question/{qid}", text=str(question.get("question", "")),
                                  tags=tags, children=answers))
        return TextItem(id="questions", text=f"{len(items)} questions", title="Questions",
                        children=items)

    def _answer(self, answer: dict[str, Any]) -> TextItem:
        aid = str(answer.get("answer_id"))
        tags = {k: str(answer[k]) for k in ANSWER_TAGS if answer.get(k) not in (None, "")}
        tags["level"] = str(answer.get("answer_level", 0))
        for key, tag in (("regions", "regions"), ("obs_entities", "entities")):
            if answer.get(key):
                tags[tag] = _text_list(answer[key])
        if answer.get("modifiers"):
            tags["modifiers"] = "; ".join(": ".join(map(str, m)) for m in answer["modifiers"])
        boxes = self._boxes(f"answer/{aid}", answer.get("localization"),
                            str(answer.get("name_tag") or ""), str(answer.get("positiveness", "")))
        children = [self._answer(sub) for sub in answer.get("sub_answers") or []]
        return TextItem(id=f"answer/{aid}", text=str(answer.get("text", "")), tags=tags,
                        annotations=boxes, children=children)

    def scene_graph(self, graph: dict[str, Any]) -> TextItem:
        groups = []
        indication = graph.get("indication") or {}
        if indication:
            text = indication.get("indication_summary") or indication.get("indication") or ""
            tags = {k: str(indication[k]) for k in ("patient_info", "evaluation") if indication.get(k)}
            groups.append(TextItem(id="indication", text=str(text), title="Indication", tags=tags))
        sentences = [TextItem(id=f"sentence/{sid}", text=str(s.get("sentence", "")),
                              tags={"section": str(s.get("section", "")).lower()})
                     for sid, s in (graph.get("sentences") or {}).items()]
        groups.append(TextItem(id="sentences", text=f"{len(sentences)} sentences",
                               title="Report sentences", children=sentences))
        groups.append(self._observations(graph))
        regions = [TextItem(id=f"region/{name}", text=name,
                            tags={"laterality": str(r.get("laterality") or "")},
                            annotations=self._boxes(f"region/{name}", r.get("localization"),
                                                    name, "region"))
                   for name, r in (graph.get("regions") or {}).items()]
        groups.append(TextItem(id="regions", text=f"{len(regions)} regions", title="Regions",
                               children=regions))
        return TextItem(id="scene_graph", text="scene graph", title="Scene graph", children=groups)

    def _observations(self, graph: dict[str, Any]) -> TextItem:
        observations = graph.get("observations") or {}
        children: dict[str, list[str]] = {}
        for relation in graph.get("obs_relations") or []:
            children.setdefault(str(relation.get("parent_observation_id")), []).append(
                str(relation.get("child_observation_id")))
        nested = {c for kids in children.values() for c in kids}
        top = graph.get("top_level_obs_ids") or [o for o in observations if o not in nested]

        def node(oid: str, seen: frozenset[str]) -> TextItem:
            obs = observations.get(oid, {})
            tags = {k: str(obs[k]) for k in ("positiveness", "probability", "certainty")
                    if obs.get(k)}
            tags["name_tag"] = str(obs.get("name", oid))
            if obs.get("regions"):
                tags["regions"] = _text_list([r.get("region", r) if isinstance(r, dict) else r
                                              for r in obs["regions"]])
            boxes = self._boxes(f"observation/{oid}", obs.get("localization"),
                                str(obs.get("name", oid)), str(obs.get("positiveness", "")))
            kids = [node(c, seen | {oid}) for c in children.get(oid, []) if c not in seen]
            return TextItem(id=f"observation/{oid}",
                            text=str(obs.get("summary_sentence") or obs.get("name", oid)),
                            tags=tags, annotations=boxes, children=kids)

        items = [node(str(o), frozenset()) for o in top]
        return TextItem(id="observations", text=f"{len(items)} observations",
                        title="Observations", children=items)


class _QualityGrades:
    """Question quality grades from ``metadata/question_metadata.*`` when present."""

    def __init__(self, root: Path):
        folder = root / "metadata"
        self.files = [p for p in sorted(folder.glob("question_metadata*"))
                      if p.suffix in (".parquet", ".csv", ".gz")]
        mapping = folder / "quality_mappings.csv"
        self.mapping = self._mapping(mapping) if mapping.is_file() else {}
        self._table: pd.DataFrame | None = None

    @staticmethod
    def _mapping(path: Path) -> dict[str, str]:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        columns = list(table.columns)
        if len(columns) < 2:
            return {}
        return dict(zip(table[columns[0]], table[columns[-1]], strict=True))

    def for_study(self, study: str) -> dict[str, str]:
        if not self.files:
            return {}
        if self._table is None:
            frames = [pd.read_parquet(p) if p.suffix == ".parquet" else
                      pd.read_csv(p, dtype=str, keep_default_na=False) for p in self.files]
            self._table = pd.concat(frames).astype(str)
        table = self._table
        if not {"study_id", "question_id", "quality"} <= set(table.columns):
            return {}
        rows = table[table["study_id"].str.lstrip("s") == study.lstrip("s")]
        return {q: self.mapping.get(g, g) for q, g in zip(rows["question_id"], rows["quality"],
                                                            strict=True)}
