"""MIMIC-Ext-CXR-QBA: questions, nested answers, boxes, zips and scene graphs."""

from __future__ import annotations

import json
import zipfile

import pytest

from napari_grounding.describe import describe_case
from napari_grounding.filters import filter_choices, kept_items
from napari_grounding.model import BoxAnnotation, GroundingError
from napari_grounding.readers import open_case, open_dataset
from napari_grounding.sample_qba import (
    FRONTAL,
    LATERAL,
    QA_MEMBER,
    STUDY,
    qa_document,
    write_qba_sample,
)


@pytest.fixture
def loose(tmp_path):
    return write_qba_sample(tmp_path / "qba")


def answers_in(document):
    """Every answer of a QA document, depth first, with its boxes per image."""
    def walk(answer):
        yield answer
        for sub in answer["sub_answers"]:
            yield from walk(sub)
    for question in document["questions"]:
        for answer in question["answers"]:
            yield from walk(answer)


def test_every_answer_has_its_boxes(loose):
    case = open_case(loose, images=loose / "mimic-cxr-jpg")
    for answer in answers_in(qa_document()):
        item = case.item(f"answer/{answer['answer_id']}")
        expected = [(image, box) for image, where in answer["localization"].items()
                    for box in where["bboxes"]]
        boxes = [case.annotations[b] for b in item.annotations]
        assert len(boxes) == len(expected), answer["answer_id"]
        for box, (image, given) in zip(boxes, expected, strict=True):
            assert box.image == image and list(box.given) == given
            assert box.label == answer["name_tag"] and box.positiveness == answer["positiveness"]


def test_questions_with_nested_answers_in_order(loose):
    case = open_case(loose)
    questions = case.item("questions").children
    assert [q.id for q in questions] == ["question/q0001", "question/q0002", "question/q0003"]
    assert questions[0].tags == {"question_type": "describe_all", "question_strategy": "abnormal"}
    first = questions[0].children
    assert [a.id for a in first] == ["answer/a0001", "answer/a0003"]
    assert [a.id for a in first[0].children] == ["answer/a0002"]
    assert first[0].children[0].tags["answer_type"] == "details"
    assert first[0].children[0].tags["level"] == "1"
    assert first[0].tags["modifiers"] == "severity: small"
    assert first[0].tags["regions"] == "lungs"


def test_boxes_outside_the_image_are_clipped_and_flagged(loose):
    case = open_case(loose, images=loose / "mimic-cxr-jpg")
    box = case.annotations[f"box/answer/a0005/{FRONTAL}/0"]
    assert box.given == (900.0, 300.0, 1100.0, 420.0)
    assert box.xyxy == (900.0, 300.0, 1024.0, 420.0) and box.clipped
    assert sum(isinstance(a, BoxAnnotation) and a.clipped for a in case.annotations.values()) == 1
    assert f"image {FRONTAL}: 1 boxes reach outside the image and were clipped" in case.problems


def test_fallback_localisations_are_flagged(loose):
    case = open_case(loose)
    flags = {a.id: a.fallback for a in case.annotations.values()}
    assert flags[f"box/answer/a0003/{FRONTAL}/0"] and flags[f"box/answer/a0003/{FRONTAL}/1"]
    assert not flags[f"box/answer/a0001/{FRONTAL}/0"]


def test_two_images_per_study(loose):
    case = open_case(loose, images=loose / "mimic-cxr-jpg")
    assert list(case.images) == [FRONTAL, LATERAL]
    assert case.images[LATERAL].data.shape == (1024, 880)
    heart = [case.annotations[b].image for b in case.item("answer/a0004").annotations]
    assert heart == [FRONTAL, LATERAL]


def test_zipped_study_reads_in_place_and_ignores_hostile_names(tmp_path):
    root = write_qba_sample(tmp_path / "deep" / "er" / "qba", zipped=True)
    with zipfile.ZipFile(root / "qa.zip") as zf:
        assert "../../x.json" in zf.namelist()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    dataset = open_dataset(root, images=root / "mimic-cxr-jpg")
    assert dataset.case_ids() == [STUDY]
    case = dataset.open_case(STUDY)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert before == after  # nothing written, nothing extracted
    assert not (tmp_path / "deep" / "x.json").exists()
    loose = open_case(write_qba_sample(tmp_path / "loose"))
    assert [i.id for i in case.walk()] == [i.id for i in loose.walk()]


def test_missing_image_keeps_text_and_lists_boxes(loose, tmp_path):
    (tmp_path / "empty").mkdir()
    case = open_case(loose, images=tmp_path / "empty")
    assert case.images == {}
    assert case.item("answer/a0001").text == "There is a small right pleural effusion."
    assert any(p.startswith(f"image {FRONTAL}: not found under") and "boxes are listed, not drawn"
               in p for p in case.problems)
    described = describe_case(case)
    answer = described["items"][0]["children"][0]["children"][0]
    assert answer["annotations"] == [{
        "id": f"box/answer/a0001/{FRONTAL}/0", "kind": "box", "set": "QBA (silver)",
        "image": FRONTAL, "xyxy": [180.0, 640.0, 470.0, 820.0], "clipped": False,
        "fallback": False, "label": "Pleural effusion"}]


def test_scene_graph_is_a_second_view(loose):
    case = open_case(loose)
    graph = case.item("scene_graph")
    assert [g.id for g in graph.children] == ["indication", "sentences", "observations", "regions"]
    assert case.item("indication").text == "Dyspnea; evaluate for effusion."
    observations = case.item("observations").children
    assert [o.id for o in observations] == ["observation/O01", "observation/O02"]
    assert [c.id for c in observations[0].children] == ["observation/O01.01"]
    assert case.item("sentence/S02").tags == {"section": "impression"}
    assert len(case.item("region/right lung").annotations) == 1


def test_quality_grades_from_metadata(loose):
    metadata = loose / "metadata"
    metadata.mkdir()
    (metadata / "question_metadata.csv").write_text(
        "patient_id,study_id,question_id,quality\n"
        f"p10000032,{STUDY},q0001,4\np10000032,{STUDY},q0002,1\n")
    (metadata / "quality_mappings.csv").write_text("code,grade\n4,A++\n1,C\n")
    case = open_case(loose)
    assert case.item("question/q0001").tags["quality"] == "A++"
    assert case.item("question/q0002").tags["quality"] == "C"
    assert "quality" not in case.item("question/q0003").tags
    assert filter_choices(case)["quality"] == ["A++", "C"]
    assert kept_items(case, {"quality": "C"}) == {"questions", "question/q0002", "answer/a0004"}


def test_single_study_file_and_bad_json(loose):
    qa_file = loose / "qa" / QA_MEMBER
    case = open_case(qa_file)
    assert case.id == STUDY and case.item("scene_graph")  # found its scene graph beside
    qa_file.write_text("{not json")
    with pytest.raises(GroundingError, match=r"s50414267\.qa\.json: not valid JSON"):
        open_case(loose)
    with pytest.raises(GroundingError, match="no study 's1'"):
        open_dataset(loose).open_case("s1")


def test_describe_schema_for_questions(loose, capsys):
    from napari_grounding.cli import main

    assert main(["describe", str(loose), "--images", str(loose / "mimic-cxr-jpg"), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    question = described["items"][0]["children"][2]
    assert question["id"] == "question/q0003" and question["text"] == "Where is the nodule?"
    (box,) = question["children"][0]["annotations"]
    assert box["xyxy"] == [900.0, 300.0, 1024.0, 420.0] and box["clipped"]
    assert box["given"] == [900.0, 300.0, 1100.0, 420.0]
