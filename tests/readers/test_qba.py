"""MIMIC-Ext-CXR-QBA: questions, nested answers, boxes, zips and scene graphs."""

from __future__ import annotations

import json
import zipfile

import pandas as pd
import pytest

from napari_grounding._reader import napari_get_reader
from napari_grounding.describe import describe_case
from napari_grounding.filters import filter_choices, kept_items
from napari_grounding.model import BoxAnnotation, GroundingError
from napari_grounding.readers import open_case, open_dataset
from napari_grounding.readers.qba_metadata import QualityMappings
from napari_grounding.sample_qba import (
    FRONTAL,
    LATERAL,
    QA_MEMBER,
    STUDY,
    metadata_frames,
    qa_document,
    write_qba_metadata,
    write_qba_sample,
)


@pytest.fixture
def loose(tmp_path):
    return write_qba_sample(tmp_path / "qba")


def answers_in(document):
    """Every (question id, answer) of a QA document, depth first."""
    def walk(answer):
        yield answer
        for sub in answer["sub_answers"]:
            yield from walk(sub)
    for question in document["questions"]:
        for answer in question["answers"]:
            for found in walk(answer):
                yield question["question_id"], found


def test_answer_ids_repeat_across_questions_in_the_sample():
    ids = [(q, a["answer_id"]) for q, a in answers_in(qa_document())]
    assert sum(a == 1 for _, a in ids) == 3 and len(set(ids)) == len(ids)


def test_every_answer_has_its_boxes(loose):
    case = open_case(loose, images=loose / "mimic-cxr-jpg")
    expected_total = 0
    for qid, answer in answers_in(qa_document()):
        item = case.item(f"answer/{qid}/{answer['answer_id']}")
        expected = [(image, box) for image, where in answer["localization"].items()
                    for box in where["bboxes"]]
        boxes = [case.annotations[b] for b in item.annotations]
        assert len(boxes) == len(expected), (qid, answer["answer_id"])
        expected_total += len(expected)
        for box, (image, given) in zip(boxes, expected, strict=True):
            assert box.image == image and list(box.given) == given
            assert box.label == answer["name_tag"] and box.positiveness == answer["positiveness"]
            assert box.id.startswith(f"box/{qid}/{answer['answer_id']}/{image}/")
    answer_boxes = [a for a in case.annotations if not a.startswith(
        ("box/observation/", "box/region/", "box/indication/"))]
    assert len(answer_boxes) == expected_total == 7


def test_questions_with_nested_answers_in_order(loose):
    case = open_case(loose)
    questions = case.item("questions").children
    assert [q.id for q in questions] == ["question/q0001", "question/q0002", "question/q0003"]
    assert questions[0].tags == {"question_type": "describe_all", "question_strategy": "abnormal",
                                 "answers_from": "report"}
    first = questions[0].children
    assert [a.id for a in first] == ["answer/q0001/1", "answer/q0001/3"]
    assert [a.id for a in first[0].children] == ["answer/q0001/2"]
    assert first[0].children[0].tags["answer_type"] == "details"
    assert first[0].children[0].tags["level"] == "1"
    assert first[0].tags["modifiers"] == "severity: small"
    assert first[0].tags["regions"] == "lungs"


def test_boxes_outside_the_image_are_clipped_and_flagged(loose):
    case = open_case(loose, images=loose / "mimic-cxr-jpg")
    box = case.annotations[f"box/q0003/1/{FRONTAL}/0"]
    assert box.given == (900.0, 300.0, 1100.0, 420.0)
    assert box.xyxy == (900.0, 300.0, 1024.0, 420.0) and box.clipped
    assert sum(isinstance(a, BoxAnnotation) and a.clipped for a in case.annotations.values()) == 1
    assert f"image {FRONTAL}: 1 boxes reach outside the image and were clipped" in case.problems


def test_fallback_localisations_are_flagged(loose):
    case = open_case(loose)
    flags = {a.id: a.fallback for a in case.annotations.values()}
    assert flags[f"box/q0001/3/{FRONTAL}/0"] and flags[f"box/q0001/3/{FRONTAL}/1"]
    assert not flags[f"box/q0001/1/{FRONTAL}/0"]


def test_two_images_per_study(loose):
    case = open_case(loose, images=loose / "mimic-cxr-jpg")
    assert list(case.images) == [FRONTAL, LATERAL]
    assert case.images[LATERAL].data.shape == (1024, 880)
    heart = [case.annotations[b].image for b in case.item("answer/q0002/1").annotations]
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
    assert case.item("answer/q0001/1").text == "There is a small right pleural effusion."
    assert any(p.startswith(f"image {FRONTAL}: not found under") and "boxes are listed, not drawn"
               in p for p in case.problems)
    described = describe_case(case)
    answer = described["items"][0]["children"][0]["children"][0]
    assert answer["annotations"] == [{
        "id": f"box/q0001/1/{FRONTAL}/0", "kind": "box", "set": "QBA (silver)",
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
    assert case.item("sentence/S02").tags["section"] == "impression"
    assert len(case.item("region/right lung").annotations) == 1


def test_metadata_tags_from_parquet_and_csv(loose):
    write_qba_metadata(loose, suffixes=(".csv.gz",))
    from_csv = open_case(loose)
    write_qba_metadata(loose, suffixes=(".parquet",))
    for table in (loose / "metadata").glob("*.csv.gz"):
        table.write_bytes(b"not gzip at all")  # both shipped: only the parquet may be read
    dataset = open_dataset(loose)
    assert {t.path.suffix for t in dataset.metadata.tables.values()} == {".parquet"}
    case = dataset.open_case(STUDY)
    assert case.tags["metadata"] == ".parquet"
    assert from_csv.tags["metadata"].startswith(".csv.gz (streamed whole")
    for opened in (case, from_csv):
        tags = {i.id: i.tags for i in opened.walk()}
        assert tags["question/q0001"]["quality"] == "A++"
        assert tags["question/q0002"]["quality"] == "C"
        assert "quality" not in tags["question/q0003"]
        assert tags["question/q0002"]["answers_from"] == "template"
        assert tags["question/q0002"]["localization_quality"] == \
            "PA: BBOX_LOCALIZATION; LATERAL: FALLBACK_LOCALIZATION"
        assert tags["answer/q0001/1"]["quality"] == "A++" and tags["answer/q0001/2"]["quality"] == "A+"
        assert tags["answer/q0002/1"]["quality"] == "C" and tags["answer/q0003/1"]["quality"] == "B"
        assert tags["answer/q0001/1"]["localization_quality"] == "BBOX_AND_MASK_LOCALIZATION"
        assert tags["answer/q0002/1"]["origin"] == "template"
        assert tags["answer/q0001/1"]["origin"] == "report"
        assert opened.tags["split"] == "train" and opened.tags["study_quality"] == "A"
    assert filter_choices(case)["quality"] == ["A", "A+", "A++", "B", "C"]
    assert kept_items(case, {"quality": "C"}) == {"questions", "question/q0002", "answer/q0002/1"}


@pytest.mark.parametrize("as_int", [False, True], ids=["s-prefixed ids", "integer ids"])
def test_opening_a_study_reads_only_its_row_groups(loose, as_int):
    frames = metadata_frames()
    others = pd.DataFrame([{"patient_id": "p1", "study_id": f"s{50000000 + n:08d}",
                            "question_id": f"q{k}", "question.quality.rating": 1}
                           for n in range(0, 800000, 10000) for k in range(4)])
    mine = frames["question_metadata"].reset_index()
    table = pd.concat([others, mine]).sort_values("study_id")
    if as_int:
        table["study_id"] = table["study_id"].str.lstrip("s").astype("int64")
    frames["question_metadata"] = table.set_index(["patient_id", "study_id", "question_id"])
    write_qba_metadata(loose, suffixes=(".parquet",), frames=frames, row_group_size=4)
    dataset = open_dataset(loose)
    case = dataset.open_case(STUDY)
    questions = dataset.metadata.tables["question_metadata"]
    assert questions.row_groups_total == len(table) // 4 + (len(table) % 4 > 0) > 80
    assert questions.row_groups_read <= 2  # the study's 2 rows, in one group or across two
    assert case.item("question/q0001").tags["quality"] == "A++"


def test_frontal_images_first(loose):
    frames = metadata_frames()
    # the views as the metadata says them: the first image seen is the lateral one here
    frames["image_metadata"] = pd.DataFrame([
        {"patient_id": "p10000032", "study_id": STUDY, "image_id": FRONTAL,
         "image.view_position": "LATERAL"},
        {"patient_id": "p10000032", "study_id": STUDY, "image_id": LATERAL,
         "image.view_position": "AP"}]).set_index(["patient_id", "study_id", "image_id"])
    write_qba_metadata(loose, suffixes=(".parquet",), frames=frames)
    case = open_case(loose, images=loose / "mimic-cxr-jpg")
    assert list(case.images) == [LATERAL, FRONTAL]
    assert case.images[LATERAL].meta["view"] == "AP"
    assert case.images[FRONTAL].label == "LATERAL"


@pytest.mark.parametrize("open_at", ["root", "subset"])
def test_export_subset_layout(tmp_path, open_at):
    root = tmp_path / "qba"
    subset = write_qba_sample(root / "exports" / "A_frontal", zipped=True)
    (subset / "scene_data.zip").rename(subset / "scene_graph.zip")
    write_qba_metadata(subset, suffixes=(".parquet", ".csv.gz"))
    (subset / "quality_mappings.csv").rename(root / "quality_mappings.csv")  # it sits at the root
    dataset = open_dataset(root if open_at == "root" else subset)
    assert dataset.case_ids() == [STUDY]
    case = dataset.open_case(STUDY)
    assert case.tags["subset"] == "A_frontal"
    assert case.item("scene_graph") and case.item("question/q0001").tags["quality"] == "A++"
    assert napari_get_reader(str(root if open_at == "root" else subset / "scene_graph.zip"))


@pytest.mark.parametrize("text, column, raw, name", [
    ("field,code,name\nquality.rating,6,A++\nlocalization_quality,6,BBOX\n",
     "question.quality.rating", 6.0, "A++"),
    ("field,code,name\nquality.rating,6,A++\nlocalization_quality,6,BBOX\n",
     "answer_img.quality.localization_quality", "6", "BBOX"),
    ("code,name\n6,A++\n", "answer.quality.rating", 6, "A++"),
    ("code,name\n6,A++\n", "question.num_answers", 6, "6"),  # not a quality field: not decoded
    ("field,code,name\nquality.rating,6,A++\n", "question.quality.rating", 7, "7"),
])
def test_quality_mappings_decode_by_field(tmp_path, text, column, raw, name):
    path = tmp_path / "quality_mappings.csv"
    path.write_text(text)
    assert QualityMappings(path).decode(column, raw) == name


def test_scene_graph_links_sentences_and_observations(loose):
    case = open_case(loose)
    sentence, observation = case.item("sentence/S01"), case.item("observation/O01")
    assert sentence.tags["links"] == "observation/O01 observation/O01.01"
    assert observation.tags["links"] == "sentence/S01"
    assert case.item("sentence/S02").tags["links"] == "observation/O02"
    # selecting the sentence shows the boxes of the observations it grounds
    assert sentence.annotations == observation.annotations + case.item("observation/O01.01").annotations
    assert observation.tags["entities"] == "pleural effusion"
    assert observation.tags["modifiers"] == "severity: small"
    assert observation.tags["changes"] == "new" and observation.tags["origin"] == "report"
    indication = case.item("indication")
    assert indication.tags["links"] == "sentence/S01 observation/O01"
    (box,) = case.annotations_of(case.item("indication/answer"))
    assert box.id == f"box/indication/{FRONTAL}/0" and box.given == (170.0, 630.0, 480.0, 830.0)


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


def test_string_answer_ids_join_integer_metadata_keys(loose):
    qa_file = loose / "qa" / QA_MEMBER
    document = json.loads(qa_file.read_text())
    for question in document["questions"]:
        for answer in question["answers"]:
            answer["answer_id"] = str(answer["answer_id"])  # "1" in the JSON, 1 in the tables
    qa_file.write_text(json.dumps(document))
    write_qba_metadata(loose, suffixes=(".parquet",))
    case = open_case(loose)
    assert case.item("answer/q0002/1").tags["quality"] == "C"
    assert case.item("answer/q0001/3").tags["quality"] == "A"
    assert len(case.item("answer/q0001/3").annotations) == 2


def test_summaries_carry_the_study_grade(loose):
    from napari_grounding.readers import summaries

    assert open_dataset(loose).summary(STUDY).split("\t")[-1] == "qa+scene_graph"  # no tables
    for suffix in (".parquet", ".csv.gz"):
        for old in (loose / "metadata").glob("*"):
            old.unlink()
        write_qba_metadata(loose, suffixes=(suffix,))
        dataset = open_dataset(loose)
        assert dataset.study_grades == {STUDY.lstrip("s"): "A"}
        assert list(summaries(dataset))[0].split("\t")[-1] == "grade A"
