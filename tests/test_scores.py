"""Scores on small hand-made arrays; every expected number is worked out in the comments."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_grounding.colours import ERROR_COLOURS, error_colormap
from napari_grounding.model import BoxAnnotation
from napari_grounding.scores import (
    ItemScore,
    box_iou,
    box_scores,
    error_labels,
    greedy_matches,
    instance_pairs,
    instance_scores,
    mask_scores,
    worst_first,
)


def cube(shape=(10, 10, 10), lo=(2, 2, 2), size=4, value=1) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    out[tuple(slice(a, a + size) for a in lo)] = value
    return out


def test_empty_prediction():
    s = mask_scores("f", cube(), np.zeros((10, 10, 10), np.uint8))
    assert (s.dice, s.iou, s.hit) == (0.0, 0.0, False)
    assert (s.gt_instances, s.pred_instances, s.matched) == (1, 0, 0)
    # nothing predicted while something was there: precision, recall and F1 all 0
    assert (s.instance_precision, s.instance_recall, s.instance_f1) == (0.0, 0.0, 0.0)


def test_empty_ground_truth():
    s = mask_scores("f", np.zeros((10, 10, 10), np.uint8), cube())
    assert (s.dice, s.hit) == (0.0, False)
    assert (s.gt_instances, s.pred_instances, s.matched) == (0, 1, 0)
    assert (s.instance_precision, s.instance_recall, s.instance_f1) == (0.0, 0.0, 0.0)


def test_both_empty_is_perfect():
    empty = np.zeros((6, 6, 6), np.uint8)
    s = mask_scores("f", empty, empty)
    assert (s.dice, s.iou, s.hit, s.instance_f1) == (1.0, 1.0, True, 1.0)
    assert (s.gt_instances, s.pred_instances) == (0, 0)


def test_perfect_prediction_of_two_instances():
    gt = cube() + cube(lo=(7, 7, 7), size=2, value=2)
    s = mask_scores("f", gt, (gt > 0).astype(np.uint8))
    assert (s.dice, s.iou, s.hit) == (1.0, 1.0, True)
    assert (s.gt_instances, s.pred_instances, s.matched, s.instance_f1) == (2, 2, 2, 1.0)


def test_shifted_prediction():
    # a 4x4x4 cube moved by one voxel along axis 0: 3*4*4 = 48 of 64 voxels overlap
    s = mask_scores("f", cube(), cube(lo=(3, 2, 2)))
    assert s.dice == pytest.approx(2 * 48 / 128)  # 0.75
    assert s.iou == pytest.approx(48 / 80)  # 0.6
    assert s.matched == 1 and s.instance_f1 == 1.0
    # moved by three: 1*4*4 = 16 overlap, Dice 0.25 (a hit, >= 0.1; an instance match, >= 0.2)
    s = mask_scores("f", cube(), cube(lo=(5, 2, 2)))
    assert s.dice == pytest.approx(0.25) and s.hit and s.matched == 1
    # moved by four: no overlap at all
    s = mask_scores("f", cube(), cube(lo=(6, 2, 2)))
    assert (s.dice, s.hit, s.matched) == (0.0, False, 0)


def test_two_corner_touching_predicted_instances_are_one_component():
    # gt: two 2x2x2 entities meeting at one corner; the prediction draws exactly these voxels,
    # which 26-connectivity joins into one 16-voxel component
    gt = cube(lo=(0, 0, 0), size=2, value=1) + cube(lo=(2, 2, 2), size=2, value=2)
    s = mask_scores("f", gt, (gt > 0).astype(np.uint8))
    assert s.dice == 1.0
    assert (s.gt_instances, s.pred_instances) == (2, 1)
    # each entity against the component: 2*8/(8+16) = 0.667 >= 0.2, but one to one: 1 match
    assert s.matched == 1
    assert (s.instance_precision, s.instance_recall) == (1.0, 0.5)
    assert s.instance_f1 == pytest.approx(2 / 3)


def test_one_entity_split_in_two_by_the_prediction():
    gt = np.zeros((4, 4, 8), np.uint8)
    gt[:2, :2, :] = 1  # one 2x2x8 bar: 32 voxels
    pred = gt.copy()
    pred[:, :, 3:5] = 0  # a gap of two slices: two 2x2x3 pieces of 12 voxels
    s = mask_scores("f", gt, pred)
    assert s.dice == pytest.approx(2 * 24 / (32 + 24))  # 0.857
    assert (s.gt_instances, s.pred_instances, s.matched) == (1, 2, 1)  # each piece 2*12/44 = 0.545
    assert (s.instance_precision, s.instance_recall) == (0.5, 1.0)
    assert s.instance_f1 == pytest.approx(2 / 3)


def test_chunked_dask_gives_the_numpy_answer():
    gt = cube() + cube(lo=(7, 7, 7), size=3, value=2)
    pred = cube(lo=(3, 2, 2))
    pred[8, 8, 8] = 1
    plain = mask_scores("f", gt, pred)
    chunked = mask_scores("f", da.from_array(gt, chunks=(10, 10, 1)), da.from_array(pred, chunks=(3, 10, 10)))
    assert chunked == plain
    # gt 64 + 27, pred 64 + 1, overlap 48 + 1
    assert plain.dice == pytest.approx(2 * 49 / (91 + 65))
    # the lone voxel against the 27-voxel entity: 2*1/28 = 0.07 < 0.2, no match
    assert (plain.gt_instances, plain.pred_instances, plain.matched) == (2, 2, 1)


def test_greedy_matching_takes_the_best_pair_first():
    pairs = {(1, "a"): 0.5, (1, "b"): 0.6, (2, "b"): 0.9, (3, "c"): 0.19}
    # (2, b) 0.9 first; (1, b) then blocked; (1, a) 0.5; (3, c) below 0.2
    assert greedy_matches(pairs) == 2
    assert instance_scores(3, 3, 2) == pytest.approx((2 / 3, 2 / 3, 2 / 3))


def test_error_labels_of_a_slice():
    gt = np.array([[1, 1, 0], [0, 2, 0]])
    pred = np.array([[0, 1, 1], [0, 1, 0]])
    np.testing.assert_array_equal(error_labels(gt, pred), [[3, 1, 2], [0, 1, 0]])
    assert error_labels(gt, pred).dtype == np.uint8


def test_error_colours_are_three_distinct_opaque_colours():
    assert set(ERROR_COLOURS) == {1, 2, 3}
    assert len(set(ERROR_COLOURS.values())) == 3 and all(c[3] == 1.0 for c in ERROR_COLOURS.values())
    colormap = error_colormap()
    assert colormap[0][3] == 0.0 and colormap[2] == ERROR_COLOURS[2]


def box(xyxy, image="a", set_name="gt", box_id="b") -> BoxAnnotation:
    return BoxAnnotation(id=box_id, image=image, set=set_name, xyxy=xyxy, given=xyxy)


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0


def test_box_scores_per_predicted_box():
    gt = [box((0, 0, 10, 10), box_id="g1"), box((20, 20, 30, 30), box_id="g2")]
    pred = [box((0, 0, 10, 12), set_name="p"),  # 100/120 with g1
            box((5, 0, 15, 10), set_name="p"),  # 50/150 with g1
            box((20, 20, 30, 30), image="b", set_name="p")]  # another image: no gt box there
    s = box_scores("answer/q/1", gt, pred)
    assert s.box_ious == pytest.approx((100 / 120, 1 / 3, 0.0))
    assert (s.gt_instances, s.pred_instances, s.matched) == (2, 3, 1)
    assert s.instance_precision == pytest.approx(1 / 3) and s.instance_recall == 0.5
    assert s.hit


def test_worst_first():
    scores = {"a": mask_scores("a", cube(), cube()),  # Dice 1
              "b": mask_scores("b", cube(), cube(lo=(3, 2, 2))),  # Dice 0.75
              "c": ItemScore("c", "mask", missing=True),
              "d": box_scores("d", [box((0, 0, 10, 10))], [box((0, 0, 10, 10), set_name="p")])}  # F1 1
    assert worst_first(scores) == ["c", "b", "a", "d"]


@pytest.mark.parametrize("labels", [(1, 2, 3), (-7, 5, 40_000), (1, 2**40, 3)])
def test_instance_pairs_count_every_overlap_of_any_label_values(labels):
    """Dice of each overlapping (gt label, component) pair, counted pixel by pixel, for small,
    negative and huge label values (a table for the first two, a sort for the last)."""
    rng = np.random.default_rng(3)
    gt = rng.choice(np.array([0, *labels], dtype=np.int64), size=(40, 50))
    labelled = rng.integers(0, 6, size=(40, 50))
    gt_sizes = {int(v): int(np.sum(gt == v)) for v in labels}
    pred_sizes = np.bincount(labelled.ravel())
    expected = {}
    for g in labels:
        for c in range(1, 6):
            n = int(np.sum((gt == g) & (labelled == c)))
            if n:
                expected[(g, c)] = 2.0 * n / (gt_sizes[g] + pred_sizes[c])
    assert instance_pairs(gt, labelled, gt_sizes) == pytest.approx(expected)
