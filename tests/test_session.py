"""The session model without a viewer: selection, stepping, cases, windows, framing."""

from __future__ import annotations

import numpy as np
import pytest

from napari_grounding.model import Case, GroundingError, TextItem
from napari_grounding.navigation import Target, best_plane, frame
from napari_grounding.session import Session
from napari_grounding.windows import window_for


class Cases:
    """A dataset stand-in: three text-only cases."""

    name = "toy"

    def case_ids(self):
        return ["a", "b", "c"]


def toy_case(case_id: str = "a") -> Case:
    items = [TextItem("finding/0", "Nodule in the right upper lobe.", tags={"category": "2d"}),
             TextItem("finding/1", "Small left pleural effusion.", tags={"category": "2e"}),
             TextItem("report", "Report", children=[TextItem("report/0", "Heart normal.")])]
    return Case(dataset="toy", id=case_id, items=items)


def recorder(signal):
    seen = []
    signal.connect(lambda *args: seen.append(args))
    return seen


def test_selecting_emits_once_and_follows_the_window():
    session = Session()
    session.set_case(toy_case())
    selections, windows = recorder(session.selection_changed), recorder(session.window_changed)
    session.select(["finding/1"])
    assert selections == [(("finding/1",), True)]
    assert session.window is None  # no CT: windows do not apply
    with pytest.raises(GroundingError, match="no item 'finding/9'"):
        session.select(["finding/9"])
    assert windows == []


def test_stepping_through_items_in_reading_order_and_filters():
    session = Session()
    session.set_case(toy_case())
    assert session.step_item(1) == "finding/0"  # from nothing: the first
    assert session.step_item(1) == "finding/1"
    assert session.step_item(1) == "report"
    assert session.step_item(1) == "report/0"
    assert session.step_item(1) is None and session.selected == ("report/0",)  # stays at the end
    assert session.step_item(-1) == "report"
    session.set_filters({"category": "2e"})
    session.select(["finding/1"])
    assert [i.id for i in session.navigable_items()] == ["finding/1"]


def test_case_list_moves_and_stops_at_its_ends():
    session = Session()
    session.set_dataset(Cases())
    asked = recorder(session.case_requested)
    session.set_case(toy_case("a"))
    assert session.case_position() == (0, 3)
    assert session.next_case(-1) is None
    assert session.next_case(1) == "b"
    session.set_case(toy_case("c"))
    assert session.next_case(1) is None
    assert asked == [("b",)]


def test_statistics_of_a_case_left_behind_are_dropped():
    session = Session()
    session.set_case(toy_case("a"))
    old_key = session.case_key
    session.set_case(toy_case("b"))
    assert not session.set_stats(old_key, {"x": 1})
    assert session.stats is None
    assert session.set_stats(session.case_key, {"x": 1}) and session.stats == {"x": 1}


def test_windows_follow_what_the_finding_is():
    assert window_for(TextItem("f", "Nodule.", tags={"category": "2d"})) == "lung"
    assert window_for(TextItem("f", "Effusion.", tags={"category": "2e"})) == "mediastinum"
    assert window_for(TextItem("f", "Calcified plaques of the aortic arch.",
                               tags={"category": "2h"})) == "mediastinum"
    assert window_for(TextItem("f", "Old fracture of the left 7th rib.")) == "bone"
    assert window_for(TextItem("f", "Something unnamed.")) is None


def target(lo, hi) -> Target:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return Target("ct", (lo + hi) / 2, lo, hi)


def test_planes_follow_the_shape_of_the_finding():
    assert best_plane(target([0, 0, 0], [20, 30, 30])) == "axial"
    assert best_plane(target([0, 0, 0], [150, 25, 30])) == "coronal"  # thin front to back
    assert best_plane(target([0, 0, 0], [150, 30, 25])) == "sagittal"
    assert best_plane(target([0, 0, 0], [150, 25, 30]), chosen="axial") == "axial"


def test_framing_adds_context_and_stays_inside_the_scene():
    scene_lo, scene_hi = np.zeros(3), np.array([300.0, 400.0, 400.0])
    # a 10 mm nodule in the middle: at least 80 mm across, centred on it
    view = frame(target([100, 195, 195], [110, 205, 205]), [1, 2], scene_lo, scene_hi,
                 (800, 800), 80.0)
    assert view.zoom == pytest.approx(800 / 80) and view.centre == (200.0, 200.0)
    # a 100 mm finding: half its extent on each side
    view = frame(target([0, 150, 150], [10, 250, 250]), [1, 2], scene_lo, scene_hi,
                 (800, 800), 80.0)
    assert view.zoom == pytest.approx(800 / 200)
    # at the scene's edge: the view shifts inward instead of showing the black outside
    view = frame(target([0, 0, 0], [10, 10, 10]), [1, 2], scene_lo, scene_hi, (800, 800), 80.0)
    assert view.centre == (40.0, 40.0)
    # larger than the scene: never zoomed out past the whole slice, centred on it
    view = frame(target([0, 0, 0], [300, 400, 400]), [1, 2], scene_lo, scene_hi, (800, 800),
                 80.0)
    assert view.zoom == pytest.approx(2.0) and view.centre == (200.0, 200.0)


def test_selecting_a_sentence_selects_the_observations_it_names():
    case = toy_case()
    case.items.append(TextItem("sentence/1", "Small effusion.",
                               tags={"links": "observation/3 observation/9"}))
    case.items.append(TextItem("observation/3", "effusion", tags={"links": "sentence/1"}))
    session = Session()
    session.set_case(case)
    session.select(["sentence/1"])
    assert session.selected == ("sentence/1", "observation/3")  # unknown ids are left out
    session.select(["observation/3"])
    assert session.selected == ("observation/3", "sentence/1")


def test_the_window_preset_carries_over_to_the_next_ct():
    from napari_grounding.model import Image, Orientation

    def ct_case(case_id):
        case = toy_case(case_id)
        case.images["ct"] = Image("ct", np.zeros((2, 2, 2), np.int16), Orientation.identity((2, 2, 2)),
                                  np.eye(4), "ct", (-1000.0, 400.0))
        return case

    session = Session()
    session.set_case(ct_case("a"))
    assert session.window == "lung"
    session.set_window("bone")
    session.set_case(ct_case("b"))
    assert session.window == "bone"
    session.set_case(toy_case("c"))  # no CT: no window
    assert session.window is None


def test_keys_with_nothing_to_do_say_why(tmp_path):
    from napari_grounding.review import ReviewLog

    session = Session()
    session.set_dataset(Cases())
    session.set_case(toy_case("c"))  # the last case
    session.select(["finding/0"])
    notices, asked = recorder(session.notice), recorder(session.reviewer_needed)
    assert session.record("accept") is None  # nobody named yet: nothing saved, and said so
    assert asked == [()] and "Name the reviewer" in notices[0][0]
    session.set_review(ReviewLog(tmp_path / "log.jsonl", "ada"))
    for item in [i.id for i in session.reviewable_items()]:
        session.select([item])
        session.record("accept")
    requested = recorder(session.case_requested)
    assert session.next_unreviewed() is None
    assert requested == []  # no case after the last
    assert notices[-1] == ("Every item of c is reviewed, and it is the last case.",)
    session.review.close()


def test_a_case_without_annotations_is_reviewed_sentence_by_sentence(tmp_path):
    """With nothing grounded, the reviewer goes through the items holding no others: a
    report's sentences count and are stepped to by "next unreviewed", its section does not."""
    from napari_grounding.review import ReviewLog

    session = Session()
    session.set_dataset(Cases())
    session.set_case(toy_case("a"))
    session.set_review(ReviewLog(tmp_path / "log.jsonl", "ada"))
    assert [i.id for i in session.reviewable_items()] == ["finding/0", "finding/1", "report/0"]
    assert session.review_progress() == (0, 3)
    session.select(["finding/1"])
    session.record("accept")
    assert session.next_unreviewed() == "report/0"
    session.record("reject")
    assert session.review_progress() == (2, 3)
    session.review.close()
