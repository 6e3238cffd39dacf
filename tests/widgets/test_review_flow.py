"""Reviewing a case with the keyboard only; decisions read back from the log file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qtpy.QtCore import Qt

from napari_grounding.readers import open_dataset
from napari_grounding.review import read_log, remember_reviewer
from napari_grounding.sample import CASE
from napari_grounding.widgets.launch import show_case
from tests.widgets.gestures import press, settle
from tests.widgets.test_reviewer_viewer import multi_case_root

pytestmark = pytest.mark.gui

ALT = Qt.KeyboardModifier.AltModifier


@pytest.fixture
def reviewer(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("NAPARI_GROUNDING_CACHE_ON_OPEN", "0")
    remember_reviewer("Dr Ada")
    return "Dr Ada"


def test_a_whole_case_reviewed_with_keys_only(make_napari_viewer, qtbot, sample_copy, reviewer):
    root = multi_case_root(sample_copy, 2)
    viewer = make_napari_viewer(show=True)
    dataset = open_dataset(root)
    panel = show_case(viewer, dataset.open_case(CASE), dataset=dataset)
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    log_path = panel.session.review.path
    assert log_path == root / ".napari-grounding" / "review-ct-rate-dr-ada.jsonl"
    assert panel.selected_ids == ["finding/0"]
    press(viewer, Qt.Key.Key_A, ALT)  # accept the nodule
    press(viewer, Qt.Key.Key_N)  # next unreviewed: the effusion
    assert panel.selected_ids == ["finding/1"]
    press(viewer, Qt.Key.Key_R, ALT)
    press(viewer, Qt.Key.Key_M, ALT)  # comment: typed, saved on Enter
    assert panel.window().focusWidget() is panel.review.comment
    qtbot.keyClicks(panel.review.comment, "misses the posterior part")
    qtbot.keyClick(panel.review.comment, Qt.Key.Key_Return)
    press(viewer, Qt.Key.Key_N)
    assert panel.selected_ids == ["finding/2"]
    press(viewer, Qt.Key.Key_X, ALT)
    assert panel.review.status.text().startswith(
        "This case: 3 / 3 reviewed · dataset: 1 / 2 cases with decisions, 3 decisions")
    assert panel.tree.topLevelItem(1).text(6) == "reject"  # the tree's badge
    press(viewer, Qt.Key.Key_N)  # the case is done: on to the next one
    assert panel.case.id == "train_2_a_1"
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    settle()
    assert panel.selected_ids == ["finding/0"]
    press(viewer, Qt.Key.Key_U, ALT)

    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(d["key"], d["verdict"], d["comment"]) for d in lines] == [
        (f"ct-rate/{CASE}/finding/0", "accept", ""),
        (f"ct-rate/{CASE}/finding/1", "reject", ""),
        (f"ct-rate/{CASE}/finding/1", "reject", "misses the posterior part"),
        (f"ct-rate/{CASE}/finding/2", "needs_fix", ""),
        ("ct-rate/train_2_a_1/finding/0", "unsure", ""),
    ]
    assert all(d["reviewer"] == "Dr Ada" and d["time"].endswith("Z") for d in lines)
    decisions, problems = read_log(log_path)
    assert len(decisions) == 5 and problems == []


def test_reopening_resumes_at_the_first_unreviewed_item(make_napari_viewer, qtbot,
                                                         sample_copy, reviewer):
    viewer = make_napari_viewer(show=True)
    dataset = open_dataset(sample_copy)
    panel = show_case(viewer, dataset.open_case(CASE), dataset=dataset)
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    press(viewer, Qt.Key.Key_A, ALT)
    press(viewer, Qt.Key.Key_N)
    press(viewer, Qt.Key.Key_A, ALT)
    viewer.close()
    again = make_napari_viewer(show=True)
    dataset = open_dataset(sample_copy)
    panel = show_case(again, dataset.open_case(CASE), dataset=dataset, resume=True)
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    settle()
    assert panel.selected_ids == ["finding/2"]
    assert [panel.tree.topLevelItem(i).text(6) for i in range(3)] == ["accept", "accept", ""]


def test_the_case_queue_filters_and_opens_cases(make_napari_viewer, qtbot, sample_copy,
                                                reviewer, tmp_path):
    root = multi_case_root(sample_copy, 3)
    raw = json.loads((root / "dataset.json").read_text())
    raw["train"][1]["categories"] = {k: "2g" for k in raw["train"][1]["categories"]}
    (root / "dataset.json").write_text(json.dumps(raw))
    qc = tmp_path / "qc.csv"
    qc.write_text("dataset,case,check,item,detail\nrexgroundingct,train_3_a_1,empty mask,"
                  "finding/0,\n")
    viewer = make_napari_viewer(show=True)
    dataset = open_dataset(root)
    panel = show_case(viewer, dataset.open_case(CASE), dataset=dataset, qc=qc)
    queue = panel.queue
    assert "Case queue" in " ".join(viewer.window.dock_widgets)
    qtbot.waitUntil(lambda: "3 findings" in queue.list.topLevelItem(0).text(4), timeout=20000)
    assert queue.shown_ids() == [CASE, "train_2_a_1", "train_3_a_1"]
    press(viewer, Qt.Key.Key_R, ALT)  # reject the first finding of the first case
    queue.set_filter("has rejections")
    assert queue.shown_ids() == [CASE]
    queue.set_filter("unreviewed")
    assert queue.shown_ids() == ["train_2_a_1", "train_3_a_1"]
    queue.set_filter("all cases")
    assert queue.facet.isVisible()
    assert "category 2g (pneumothorax)" in [queue.facet.itemText(i)
                                            for i in range(queue.facet.count())]
    queue.set_facet("category 2g (pneumothorax)")
    assert queue.shown_ids() == ["train_2_a_1"]
    queue.set_facet("category 2d (nodule / mass)")
    assert queue.shown_ids() == [CASE, "train_3_a_1"]
    queue.set_filter("flagged by qc")
    assert queue.shown_ids() == ["train_3_a_1"]
    queue.list.setCurrentItem(queue.list.topLevelItem(0))
    qtbot.keyClick(queue.list, Qt.Key.Key_Return)  # Enter opens it
    assert panel.case.id == "train_3_a_1"


def test_a_verdict_on_one_annotation_of_an_item(make_napari_viewer, qtbot, sample_copy, reviewer):
    viewer = make_napari_viewer(show=True)
    dataset = open_dataset(sample_copy)
    panel = show_case(viewer, dataset.open_case(CASE), dataset=dataset)
    qtbot.waitUntil(lambda: panel.stats is not None, timeout=20000)
    target = panel.review.target
    assert [target.itemData(i) for i in range(target.count())] == [None, "mask/0"]
    target.setCurrentIndex(1)  # the nodule's mask, not the sentence
    press(viewer, Qt.Key.Key_X, ALT)
    press(viewer, Qt.Key.Key_N)  # moving on: verdicts go to the next item itself
    assert panel.session.review_target is None and target.currentIndex() == 0
    lines = [json.loads(line) for line in panel.session.review.path.read_text().splitlines()]
    assert [(d["key"], d["verdict"]) for d in lines] == [(f"ct-rate/{CASE}/mask/0", "needs_fix")]


def test_a_study_s_earlier_log_is_carried_into_the_dataset_s(make_napari_viewer, qtbot, tmp_path,
                                                              reviewer):
    """Verdicts a reviewer left beside a ReXGradient study's images (where its log was kept
    before) are there when the study opens: counted, shown, and in the dataset's log."""
    from napari_grounding.review import Decision, log_name
    from napari_grounding.sample_cxr import write_rexgradient_sample

    root = write_rexgradient_sample(tmp_path / "rexgradient")
    dataset = open_dataset(root)
    case = dataset.open_case(dataset.case_ids()[0])
    first = next(item for item in case.walk() if not item.children)  # a report's sentence
    key = case.item_key(first)
    folder = Path(next(i.source for i in case.images.values() if i.source)).parent
    earlier = folder / ".napari-grounding" / log_name("rexgradient", reviewer)
    earlier.parent.mkdir()
    earlier.write_bytes(Decision(key, "reject", "cut", reviewer, "2026-01-01T10:00:00.000Z")
                        .to_line())
    viewer = make_napari_viewer(show=True)
    panel = show_case(viewer, case, dataset=dataset)
    settle()
    log_path = panel.session.review.path
    assert log_path == root / ".napari-grounding" / log_name("rexgradient", reviewer)
    assert panel.review.status.text().startswith("This case: 1 / ")
    assert panel.session.verdict_of(first.id).verdict == "reject"
    assert [(d.key, d.verdict, d.comment) for d in read_log(log_path)[0]] == [(key, "reject", "cut")]
