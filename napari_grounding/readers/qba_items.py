"""One QBA study's JSON (questions and scene graph) as text items and box annotations.

Keys: ``question/<question_id>``, ``answer/<question_id>/<answer_id>`` (answer ids restart in
every question), boxes ``box/<question_id>/<answer_id>/<image_id>/<n>``; scene-graph boxes are
``box/observation/<obs_id>/...``, ``box/region/<name>/...`` and ``box/indication/...``.
Sentences and observations name each other in a ``links`` tag (item ids, space separated).
"""

from __future__ import annotations

import math
from typing import Any

from ..model import BoxAnnotation, Case, TextItem
from .qba_metadata import StudyMetadata, plain

ANSWER_TAGS = ("answer_type", "positiveness", "certainty", "name_tag", "laterality")
QUESTION_TAGS = ("question_type", "question_strategy")
BOX_SET = "QBA (silver)"


def _text_list(values: Any) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, list) else str(values or "")


def _modifiers(value: Any) -> str:
    """``[[type, value], ...]`` (answers) or ``{type: [values]}`` (observations) as text."""
    if isinstance(value, dict):
        pairs = [(k, v) for k, values in value.items() for v in (values if isinstance(values, list)
                                                                 else [values]) if v]
    else:
        pairs = [tuple(m) if isinstance(m, list | tuple) else (m,) for m in value or []]
    return "; ".join(": ".join(map(str, p)) for p in pairs)


def _origin(from_report: Any) -> str | None:
    text = plain(from_report).strip().lower()
    if text in ("true", "1", "yes"):
        return "report"
    if text in ("false", "0", "no"):
        return "template"
    return None


def _answers_from(report: Any, template: Any) -> str | None:
    kinds = [k for k, flag in (("report", report), ("template", template))
             if plain(flag).strip().lower() in ("true", "1", "yes")]
    return " + ".join(kinds) if kinds else None


def _observation_tags(node: dict[str, Any]) -> dict[str, str]:
    """What users filter observations and answers by: entities, modifiers, changes, origin."""
    tags: dict[str, str] = {}
    for key, tag in (("regions", "regions"), ("obs_entities", "entities"),
                     ("obs_categories", "categories"), ("changes", "changes")):
        values = node.get(key)
        if values:
            tags[tag] = _text_list([v.get("region", v) if isinstance(v, dict) else v for v in values]
                                   if isinstance(values, list) else values)
    modifiers = _modifiers(node.get("modifiers"))
    if modifiers:
        tags["modifiers"] = modifiers
    origin = _origin(node.get("from_report"))
    if origin:
        tags["origin"] = origin
    return tags


def listed(data: dict[str, Any], key: str) -> list[Any]:
    """A JSON field that must be a list (absent or null: empty); TypeError otherwise."""
    value = data.get(key) or []
    if not isinstance(value, list):
        raise TypeError(f"{key!r} is a {type(value).__name__}, not a list")
    return value


class StudyBuilder:
    """Turns one study's JSON into text items and box annotations, with its metadata's grades."""

    def __init__(self, case: Case, metadata: StudyMetadata | None = None):
        self.case = case
        self.metadata = metadata or StudyMetadata()
        self.image_ids: list[str] = []

    def _boxes(self, owner: str, localization: Any, label: str, positiveness: str) -> list[str]:
        ids = []
        for image_id, where in (localization or {}).items():
            if image_id not in self.image_ids:
                self.image_ids.append(image_id)
            for k, bbox in enumerate((where or {}).get("bboxes") or []):
                try:
                    given = tuple(float(v) for v in bbox)
                except (TypeError, ValueError):
                    given = ()
                if len(given) != 4 or not all(math.isfinite(v) for v in given):
                    self.case.problems.append(f"{owner}: box {k} on {image_id} is not 4 "
                                              f"numbers ({bbox!r})")
                    continue
                box = BoxAnnotation(id=f"box/{owner}/{image_id}/{k}", image=image_id,
                                    set=BOX_SET, xyxy=given, given=given,
                                    fallback=bool(where.get("is_fallback")), label=label,
                                    positiveness=positiveness)
                self.case.annotations[box.id] = box
                ids.append(box.id)
        return ids

    def _localization(self, per_image: dict[str, str]) -> str | None:
        """Localization grade per image: ``A++`` for one image, ``PA: A++; LATERAL: B`` for more."""
        graded = {i: g for i, g in per_image.items() if g}
        if not graded:
            return None
        if len(graded) == 1:
            return next(iter(graded.values()))
        names = {i: self._view_name(i) for i in graded}
        return "; ".join(f"{names[i]}: {g}" for i, g in graded.items())

    def _view_name(self, image_id: str) -> str:
        row = self.metadata.images.get(image_id, {})
        view = next((v for k, v in row.items() if k.split(".")[-1].lower() in
                     ("view_position", "viewposition") and v), "")
        return view.upper() or image_id[:8] + "…"

    def questions(self, questions: list[dict[str, Any]]) -> TextItem:
        items = []
        for question in questions:
            qid = plain(question.get("question_id"))
            fields = self.metadata.questions.get(qid, {})
            tags = {k: str(question[k]) for k in QUESTION_TAGS if question.get(k)}
            quality = _grade(fields) or _json_grade(question.get("question_quality"))
            if quality:
                tags["quality"] = quality
            source = _answers_from(
                question.get("contains_report_answers", _field(fields, "contains_report_answers")),
                question.get("contains_template_answers", _field(fields, "contains_template_answers")))
            if source:
                tags["answers_from"] = source
            localization = self._localization(self.metadata.question_images.get(qid, {}))
            if localization:
                tags["localization_quality"] = localization
            answers = [self._answer(qid, a) for a in listed(question, "answers")]
            items.append(TextItem(id=f"question/{qid}", text=str(question.get("question", "")),
                                  tags=tags, children=answers))
        return TextItem(id="questions", text=f"{len(items)} questions", title="Questions",
                        children=items)

    def _answer(self, qid: str, answer: dict[str, Any]) -> TextItem:
        aid = plain(answer.get("answer_id"))
        fields = self.metadata.answers.get((qid, aid), {})
        tags = {k: str(answer[k]) for k in ANSWER_TAGS if answer.get(k) not in (None, "")}
        tags["level"] = str(answer.get("answer_level", 0))
        tags.update(_observation_tags({**answer, "from_report": answer.get(
            "from_report", _field(fields, "from_report"))}))
        quality = _grade(fields) or _json_grade(answer.get("answer_quality"))
        if quality:
            tags["quality"] = quality
        localization = self._localization(self.metadata.answer_images.get((qid, aid), {}))
        if localization:
            tags["localization_quality"] = localization
        boxes = self._boxes(f"{qid}/{aid}", answer.get("localization"),
                            str(answer.get("name_tag") or ""), str(answer.get("positiveness", "")))
        children = [self._answer(qid, sub) for sub in listed(answer, "sub_answers")]
        return TextItem(id=f"answer/{qid}/{aid}", text=str(answer.get("text", "")), tags=tags,
                        annotations=boxes, children=children)

    def scene_graph(self, graph: dict[str, Any]) -> TextItem:
        links = _sentence_links(graph)
        groups = []
        indication = graph.get("indication") or {}
        if indication:
            groups.append(self._indication(indication))
        observations = self._observations(graph, links)
        boxes_of = {i.id: i.annotations for i in _walk(observations)}
        sentences = []
        for sid, sentence in (graph.get("sentences") or {}).items():
            tags = {"section": str(sentence.get("section", "")).lower()}
            linked = [f"observation/{o}" for o in links.get(f"S:{sid}", [])]
            if linked:
                tags["links"] = " ".join(linked)
            # selecting a sentence shows the boxes of the observations it grounds
            boxes = list(dict.fromkeys(b for o in linked for b in boxes_of.get(o, [])))
            sentences.append(TextItem(id=f"sentence/{sid}", text=str(sentence.get("sentence", "")),
                                      tags=tags, annotations=boxes))
        groups.append(TextItem(id="sentences", text=f"{len(sentences)} sentences",
                               title="Report sentences", children=sentences))
        groups.append(observations)
        regions = [TextItem(id=f"region/{name}", text=name,
                            tags={"laterality": str(r.get("laterality") or "")},
                            annotations=self._boxes(f"region/{name}", r.get("localization"),
                                                    name, "region"))
                   for name, r in (graph.get("regions") or {}).items()]
        groups.append(TextItem(id="regions", text=f"{len(regions)} regions", title="Regions",
                               children=regions))
        return TextItem(id="scene_graph", text="scene graph", title="Scene graph", children=groups)

    def _indication(self, indication: dict[str, Any]) -> TextItem:
        text = indication.get("indication_summary") or indication.get("indication") or ""
        tags = {k: str(indication[k]) for k in ("patient_info", "evaluation") if indication.get(k)}
        linked = [f"sentence/{s}" for s in indication.get("associated_sentence_ids") or []]
        linked += [f"observation/{o}" for o in indication.get("associated_obs_ids") or []]
        if linked:
            tags["links"] = " ".join(linked)
        answer = indication.get("answer_for_indication") or {}
        boxes = []
        if isinstance(answer, dict) and answer:
            tags.update(_observation_tags(answer))
            if answer.get("positiveness"):
                tags["positiveness"] = str(answer["positiveness"])
            boxes = self._boxes("indication", answer.get("localization"),
                                str(answer.get("name") or "indication"),
                                str(answer.get("positiveness", "")))
        children = []
        if isinstance(answer, dict) and answer.get("summary_sentence"):
            children.append(TextItem(id="indication/answer", text=str(answer["summary_sentence"]),
                                     title="", tags={"name_tag": str(answer.get("name", ""))},
                                     annotations=boxes))
        return TextItem(id="indication", text=str(text), title="Indication", tags=tags,
                        annotations=[] if children else boxes, children=children)

    def _observations(self, graph: dict[str, Any], links: dict[str, list[str]]) -> TextItem:
        observations = graph.get("observations") or {}
        children: dict[str, list[str]] = {}
        for relation in graph.get("obs_relations") or []:
            children.setdefault(str(relation.get("parent_observation_id")), []).append(
                str(relation.get("child_observation_id")))
        nested = {c for kids in children.values() for c in kids}
        top = graph.get("top_level_obs_ids") or [o for o in observations if o not in nested]

        placed: set[str] = set()  # each observation once: a lattice of relations stays linear

        def node(oid: str) -> TextItem:
            placed.add(oid)
            obs = observations.get(oid, {})
            tags = {k: str(obs[k]) for k in ("positiveness", "probability", "certainty")
                    if obs.get(k)}
            tags["name_tag"] = str(obs.get("name", oid))
            tags.update(_observation_tags(obs))
            sentences = links.get(f"O:{oid}", [])
            if sentences:
                tags["links"] = " ".join(f"sentence/{s}" for s in sentences)
            boxes = self._boxes(f"observation/{oid}", obs.get("localization"),
                                str(obs.get("name", oid)), str(obs.get("positiveness", "")))
            kids = [node(c) for c in children.get(oid, []) if c not in placed]
            return TextItem(id=f"observation/{oid}",
                            text=str(obs.get("summary_sentence") or obs.get("name", oid)),
                            tags=tags, annotations=boxes, children=kids)

        items = [node(str(o)) for o in top if str(o) not in placed]
        return TextItem(id="observations", text=f"{len(items)} observations",
                        title="Observations", children=items)


def _sentence_links(graph: dict[str, Any]) -> dict[str, list[str]]:
    """``obs_sent_relations`` both ways: ``S:<sid>`` -> observations, ``O:<oid>`` -> sentences."""
    links: dict[str, list[str]] = {}
    for relation in graph.get("obs_sent_relations") or []:
        oid, sid = relation.get("observation_id"), relation.get("sentence_id")
        if oid is None or sid is None:
            continue
        links.setdefault(f"S:{sid}", []).append(str(oid))
        links.setdefault(f"O:{oid}", []).append(str(sid))
    return links


def _walk(item: TextItem):
    yield item
    for child in item.children:
        yield from _walk(child)


def _field(fields: dict[str, str], name: str) -> str | None:
    """A metadata field by its name without prefixes (``question.from_report`` -> from_report)."""
    return next((v for k, v in fields.items() if k == name or k.endswith("." + name)), None)


def _grade(fields: dict[str, str]) -> str | None:
    """The overall rating: ``quality.rating`` (released tables), else a plain ``quality``."""
    return _field(fields, "quality.rating") or _field(fields, "rating") or fields.get("quality") or None


def _json_grade(quality: Any) -> str | None:
    if isinstance(quality, dict) and quality.get("rating") not in (None, ""):
        return plain(quality["rating"])
    return None
