"""A generated MIMIC-Ext-CXR-QBA study on generated CXRs, loose and zipped.

Three questions with nested answers and boxes on a frontal and a lateral view (one box reaching
outside the image, one fallback localisation), and the study's scene graph. As in the released
files, answer ids are integers that restart in every question (three questions have answer 1).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from .sample_cxr import frontal, landmarks, lateral

PATIENT, STUDY = "p10000032", "s50414267"
FRONTAL, LATERAL = "0a0b0c0d-11111111-frontal0-phantom0-00000001", \
    "0a0b0c0d-22222222-lateral0-phantom0-00000002"
QA_MEMBER = f"p10/{PATIENT}/{STUDY}.qa.json"
GRAPH_MEMBER = f"p10/{PATIENT}/{STUDY}.scene_graph.json"


def _where(image_id: str, *boxes: list[float], fallback: bool = False) -> dict:
    return {image_id: {"image_id": image_id, "bboxes": [list(b) for b in boxes],
                       "localization_reference_ids": [], "instance_mask_ids": [],
                       "missing_localization": [], "is_fallback": fallback}}


def _answer(answer_id: int, kind: str, level: int, text: str, tag: str, positiveness: str,
            localization: dict, sub_answers: list | None = None, regions=("lungs",),
            from_report: bool = True) -> dict:
    return {"answer_id": answer_id, "answer_type": kind, "answer_level": level, "text": text,
            "name_tag": tag, "laterality": "right", "regions": list(regions),
            "obs_entities": [tag.lower()], "obs_categories": ["DISEASE"], "certainty": "certain",
            "positiveness": positiveness, "modifiers": [["severity", "small"]],
            "localization": localization, "sub_answers": sub_answers or [], "from_report": from_report}


def qa_document() -> dict:
    effusion = _where(FRONTAL, [180.0, 640.0, 470.0, 820.0])
    layering = _where(FRONTAL, [200.0, 720.0, 460.0, 810.0])
    lungs = _where(FRONTAL, [190.0, 200.0, 470.0, 800.0], [560.0, 220.0, 830.0, 800.0],
                   fallback=True)
    heart = {**_where(FRONTAL, [440.0, 520.0, 740.0, 760.0]),
             **_where(LATERAL, [210.0, 510.0, 450.0, 770.0])}
    nodule = _where(FRONTAL, [900.0, 300.0, 1100.0, 420.0])  # reaches past the right edge
    return {"patient_id": PATIENT, "study_id": STUDY, "questions": [
        {"question_id": "q0001", "question_type": "describe_all", "question_strategy": "abnormal",
         "obs_ids": ["O01", "O02"], "contains_report_answers": True,
         "contains_template_answers": False, "question": "Describe the given study.", "answers": [
             _answer(1, "main_answer", 0, "There is a small right pleural effusion.",
                     "Pleural effusion", "pos", effusion, [
                         _answer(2, "details", 1, "It layers along the right base.",
                                 "Layering", "pos", layering)]),
             _answer(3, "main_answer", 0, "There is no pneumothorax.", "No pneumothorax",
                     "neg", lungs)]},
        {"question_id": "q0002", "question_type": "is_abnormal_region",
         "question_strategy": "region", "obs_ids": ["O03"], "question": "Is the heart enlarged?",
         "answers": [_answer(1, "main_answer", 0, "The heart size is normal.",
                             "Normal heart size", "neg", heart, regions=("heart",),
                             from_report=False)]},
        {"question_id": "q0003", "question_type": "where_is", "question_strategy": "abnormal",
         "obs_ids": ["O04"], "question": "Where is the nodule?",
         "answers": [_answer(1, "main_answer", 0, "A nodule projects over the left upper lung.",
                             "Nodule", "pos", nodule, regions=("left upper lung",)),
                     _answer(2, "related_information", 0, "No other nodules are seen.",
                             "No other nodules", "neg", {})]},
    ]}


def scene_graph_document() -> dict:
    observation = {"name": "pleural effusion", "summary_sentence": "Small right pleural effusion.",
                   "positiveness": "pos", "probability": "positive", "certainty": "certain",
                   "obs_entities": ["pleural effusion"], "changes": ["new"], "from_report": True,
                   "modifiers": {"temporal": [], "severity": ["small"], "texture": [], "spread": []},
                   "regions": [{"region": "right lung", "distances": []}],
                   "localization": _where(FRONTAL, [180.0, 640.0, 470.0, 820.0])}
    return {
        "patient_id": PATIENT, "study_id": STUDY,
        "sentences": {"S01": {"sent_id": "S01", "section": "FINDINGS",
                              "sentence": "Small right pleural effusion, layering."},
                      "S02": {"sent_id": "S02", "section": "IMPRESSION",
                              "sentence": "No pneumothorax."}},
        "top_level_obs_ids": ["O01", "O02"],
        "observations": {
            "O01": observation,
            "O01.01": {**observation, "name": "layering", "summary_sentence": "It layers."},
            "O02": {"name": "no pneumothorax", "summary_sentence": "There is no pneumothorax.",
                    "positiveness": "neg", "localization": {}}},
        "obs_relations": [{"parent_observation_id": "O01", "child_observation_id": "O01.01",
                           "child_type": "associated_with"}],
        "obs_sent_relations": [{"observation_id": "O01", "sentence_id": "S01"},
                               {"observation_id": "O01.01", "sentence_id": "S01"},
                               {"observation_id": "O02", "sentence_id": "S02"}],
        "regions": {"right lung": {"region": "right lung", "laterality": "right",
                                   "localization": _where(FRONTAL, [150.0, 190.0, 480.0, 820.0])}},
        "indication": {"indication_summary": "Dyspnea; evaluate for effusion.",
                       "patient_info": "Adult with dyspnea.", "evaluation": "Effusion?",
                       "associated_sentence_ids": ["S01"], "associated_obs_ids": ["O01"],
                       "answer_for_indication": {
                           **observation, "obs_id": "OIND", "name": "effusion present",
                           "summary_sentence": "Yes, there is a small right pleural effusion.",
                           "localization": _where(FRONTAL, [170.0, 630.0, 480.0, 830.0])}},
    }


def write_qba_images(images: Path) -> Path:
    folder = images / "files" / "p10" / PATIENT / STUDY
    folder.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray((frontal(landmarks()) * 255).astype(np.uint8)).save(folder / f"{FRONTAL}.jpg")
    PILImage.fromarray((lateral() * 255).astype(np.uint8)).save(folder / f"{LATERAL}.jpg")
    return images


def write_qba_sample(root: str | Path, zipped: bool = False, metadata: bool = False) -> Path:
    """A QBA root with one study (loose files, or qa.zip + scene_data.zip) and its images
    in ``root / "mimic-cxr-jpg"``. The zips also hold a member named ``../../x.json``.
    ``metadata``: also the metadata tables (parquet) and ``quality_mappings.csv``, which name
    the views (PA, LATERAL) and grade the study, questions and answers."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    documents = {"qa": (QA_MEMBER, qa_document()), "scene_data": (GRAPH_MEMBER,
                                                                 scene_graph_document())}
    for folder, (member, document) in documents.items():
        text = json.dumps(document, indent=1)
        if zipped:
            with zipfile.ZipFile(root / f"{folder}.zip", "w") as zf:
                zf.writestr(member, text)
                zf.writestr("../../x.json", json.dumps({"questions": []}))
        else:
            (root / folder / member).parent.mkdir(parents=True, exist_ok=True)
            (root / folder / member).write_text(text, encoding="utf-8")
    write_qba_images(root / "mimic-cxr-jpg")
    if metadata:
        write_qba_metadata(root, suffixes=(".parquet",))
    return root


# Raw codes as the metadata tables hold them, and the names quality_mappings.csv gives them.
RATINGS = {"6": "A++", "5": "A+", "4": "A", "3": "B", "2": "C", "1": "D"}
LOCALIZATIONS = {"0": "NO_LOCALIZATION", "1": "FALLBACK_LOCALIZATION",
                 "2": "INCOMPLETE_LOCALIZATION", "3": "BBOX_LOCALIZATION",
                 "4": "BBOX_AND_MASK_LOCALIZATION"}


def metadata_frames(patient: str = PATIENT, study: str = STUDY) -> dict:
    """The study's rows of the metadata tables, keys as the index, fields with their prefixes."""
    import pandas as pd

    def frame(keys: list[str], rows: list[dict]) -> pd.DataFrame:
        return pd.DataFrame(rows).set_index(keys)

    q_keys, a_keys = ["patient_id", "study_id", "question_id"], \
        ["patient_id", "study_id", "question_id", "answer_id"]
    ids = {"patient_id": patient, "study_id": study}
    return {
        "study_metadata": frame(["patient_id", "study_id"], [
            {**ids, "study.split": "train", "study.quality.rating": 4}]),
        "image_metadata": frame(["patient_id", "study_id", "image_id"], [
            {**ids, "image_id": LATERAL, "image.view_position": "LATERAL"},
            {**ids, "image_id": FRONTAL, "image.view_position": "PA"}]),
        "question_metadata": frame(q_keys, [
            {**ids, "question_id": "q0001", "question.quality.rating": 6,
             "question.num_answers": 1, "question.contains_report_answers": True,
             "question.contains_template_answers": False},
            {**ids, "question_id": "q0002", "question.quality.rating": 2,
             "question.num_answers": 1, "question.contains_report_answers": False,
             "question.contains_template_answers": True}]),
        "question_image_metadata": frame(q_keys + ["image_id"], [
            {**ids, "question_id": "q0002", "image_id": FRONTAL,
             "question_img.quality.localization_quality": 3},
            {**ids, "question_id": "q0002", "image_id": LATERAL,
             "question_img.quality.localization_quality": 1}]),
        "answer_metadata": frame(a_keys, [
            {**ids, "question_id": q, "answer_id": a, "answer.quality.rating": r,
             "answer.from_report": f}
            for q, a, r, f in (("q0001", 1, 6, True), ("q0001", 2, 5, True), ("q0001", 3, 4, True),
                               ("q0002", 1, 2, False), ("q0003", 1, 3, True))]),
        "answer_image_metadata": frame(a_keys + ["image_id"], [
            {**ids, "question_id": "q0001", "answer_id": 1, "image_id": FRONTAL,
             "answer_img.quality.localization_quality": 4},
            {**ids, "question_id": "q0002", "answer_id": 1, "image_id": FRONTAL,
             "answer_img.quality.localization_quality": 3}]),
    }


def write_quality_mappings(path: Path) -> Path:
    lines = ["field,code,name"]
    lines += [f"quality.rating,{c},{n}" for c, n in RATINGS.items()]
    lines += [f"localization_quality,{c},{n}" for c, n in LOCALIZATIONS.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_qba_metadata(root: str | Path, suffixes: tuple[str, ...] = (".parquet", ".csv.gz"),
                       frames: dict | None = None, row_group_size: int | None = None) -> Path:
    """``root/metadata/<table><suffix>`` for each table (both forms, as released) and
    ``root/quality_mappings.csv``."""
    root = Path(root)
    folder = root / "metadata"
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (frames or metadata_frames()).items():
        for suffix in suffixes:
            if suffix == ".parquet":
                frame.to_parquet(folder / f"{name}.parquet", row_group_size=row_group_size)
            else:
                frame.to_csv(folder / f"{name}{suffix}")
    write_quality_mappings(root / "quality_mappings.csv")
    return folder
