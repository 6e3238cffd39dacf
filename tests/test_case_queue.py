"""The case queue's rows, filters and sorting, and reading a qc CSV (no viewer)."""

from __future__ import annotations

import pytest

from napari_grounding.case_queue import keep, queue_rows, read_qc_flags, sort_rows
from napari_grounding.model import GroundingError
from napari_grounding.review import Decision


def decision(key: str, verdict: str) -> Decision:
    return Decision(key, verdict, "", "ada", "2026-11-27T10:00:00Z")


def test_rows_count_decisions_and_rejections_per_case():
    decisions = {k: decision(k, v) for k, v in [
        ("ct-rate/a/finding/0", "accept"), ("ct-rate/a/finding/1", "reject"),
        ("ct-rate/c/finding/0", "needs_fix"), ("ct-rate/zz/finding/0", "reject")]}
    rows = queue_rows(["a", "b", "c"], decisions, {"b": "RCA 0.640 LOW"}, {"c": ["empty mask"]},
                      {"a": 0.9, "b": 0.2})
    assert [(r.case_id, r.decided, r.rejected) for r in rows] == [("a", 2, 1), ("b", 0, 0),
                                                                  ("c", 1, 1)]
    assert [r.case_id for r in rows if keep(r, "unreviewed")] == ["b"]
    assert [r.case_id for r in rows if keep(r, "has rejections")] == ["a", "c"]
    assert [r.case_id for r in rows if keep(r, "flagged by qc")] == ["c"]
    assert [r.case_id for r in rows if keep(r, "low quality")] == ["b"]
    assert [r.case_id for r in rows if keep(r, "all cases", "low")] == ["b"]
    assert [r.case_id for r in sort_rows(rows, "fewest decisions first")] == ["b", "c", "a"]
    assert [r.case_id for r in sort_rows(rows, "worst score first")] == ["b", "a", "c"]


def test_qc_csv_flags(tmp_path):
    path = tmp_path / "qc.csv"
    path.write_text("dataset,case,check,item,detail\nx,a,empty mask,finding/0,\n"
                    "x,a,shape,mask/1,\nx,b,entity count,finding/2,4\n")
    assert read_qc_flags(path) == {"a": ["empty mask", "shape"], "b": ["entity count"]}
    (tmp_path / "bad.csv").write_text("id,what\n1,2\n")
    with pytest.raises(GroundingError, match="not a qc CSV"):
        read_qc_flags(tmp_path / "bad.csv")


def test_disagreements_with_another_reviewer():
    mine = {k: decision(k, v) for k, v in [("ct-rate/a/finding/0", "accept"),
                                           ("ct-rate/b/finding/0", "reject")]}
    theirs = {k: decision(k, v) for k, v in [("ct-rate/a/finding/0", "accept"),
                                             ("ct-rate/b/finding/0", "accept"),
                                             ("ct-rate/c/finding/0", "reject")]}
    rows = queue_rows(["a", "b", "c"], mine, others=theirs)
    assert [(r.case_id, r.disagreements) for r in rows] == [("a", 0), ("b", 1), ("c", 0)]
    assert [r.case_id for r in rows if keep(r, "disagreements")] == ["b"]


def test_case_scores_from_an_evaluate_csv(tmp_path):
    from napari_grounding.case_queue import read_case_scores

    path = tmp_path / "eval.csv"
    path.write_text("case,item,dice,hit,gt_instances,pred_instances,matched,instance_precision,"
                    "instance_recall,instance_f1\na,finding/0,0.8,1,1,1,1,1,1,1\n"
                    "a,finding/1,0.4,1,1,1,1,1,1,1\nb,finding/0,,,1,,,,,\n")
    scores = read_case_scores(path)
    assert scores == pytest.approx({"a": 0.6, "b": 0.0})  # no prediction: missed
    rows = queue_rows(["a", "b"], scores=scores)
    assert [r.case_id for r in sort_rows(rows, "worst score first")] == ["b", "a"]
    path.write_text("case,dice\na,high\n")
    with pytest.raises(GroundingError, match="not a number"):
        read_case_scores(path)


def test_category_and_grade_facets():
    from napari_grounding.case_queue import ANY_FACET, facets

    summaries = {"a": "train\t3 findings\tmasks\tcategories 1c 2d\tCT found",
                 "b": "train\t1 findings\tmasks\tcategories 2e\tCT found",
                 "c": "p1\tqa\tgrade A+", "d": "p1\tqa\tgrade B", "e": "p1\tqa\tgrade D",
                 "f": "p1\tqa\tgrade unrated"}
    rows = queue_rows(list(summaries), summaries=summaries)
    assert facets(rows) == [ANY_FACET, "category 1c (emphysema)", "category 2d (nodule / mass)",
                            "category 2e (pleural effusion or thickening)",
                            "grade below A (not fine-tuning)", "grade below B (not pre-training)",
                            "ungraded"]
    def kept(facet):
        return [r.case_id for r in rows if keep(r, "all cases", "", facet)]
    assert kept(ANY_FACET) == list(summaries)
    assert kept("category 2d (nodule / mass)") == ["a"]
    assert kept("category 2e (pleural effusion or thickening)") == ["b"]
    assert kept("grade below A (not fine-tuning)") == ["d", "e"]
    assert kept("grade below B (not pre-training)") == ["e"]
    assert kept("ungraded") == ["a", "b", "f"]
    assert [r.case_id for r in sort_rows(rows, "worst grade first")][:3] == ["e", "d", "c"]
    # the text "2d" in a case id is not a category
    assert facets(queue_rows(["x2d"], summaries={"x2d": "train\tCT found"})) == [ANY_FACET]
