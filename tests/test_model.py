"""Orientation algebra and the Case tree."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_grounding.model import Case, GroundingError, Orientation, TextItem


@pytest.mark.parametrize("axes", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("flips", list(itertools.product([False, True], repeat=3)))
def test_index_maps_agree_with_array_reordering(axes, flips):
    shape = (3, 4, 5)
    orientation = Orientation(axes, flips, shape)
    array = np.arange(60).reshape(shape)
    shown = orientation.to_display(array)
    assert shown.shape == orientation.display_shape
    for source in [(0, 0, 0), (2, 3, 4), (1, 2, 3)]:
        display = orientation.index_to_display(source).astype(int)
        assert shown[tuple(display)] == array[source]
        np.testing.assert_array_equal(orientation.index_to_source(display), source)


def test_to_display_keeps_leading_axes():
    orientation = Orientation((2, 1, 0), (True, False, False), (3, 4, 5))
    stack = np.arange(2 * 60).reshape(2, 3, 4, 5)
    assert orientation.to_display(stack).shape == (2, 5, 4, 3)
    np.testing.assert_array_equal(orientation.to_display(stack)[1],
                                  orientation.to_display(stack[1]))


def test_case_tree_walk_and_lookup():
    child = TextItem("report/findings/0", "Heart normal.")
    case = Case("demo", "c1", items=[TextItem("finding/0", "Nodule.", annotations=["mask/0"]),
                                     TextItem("report/findings", "Heart normal.",
                                              children=[child])])
    assert [i.id for i in case.walk()] == ["finding/0", "report/findings", "report/findings/0"]
    assert case.item("report/findings/0") is child
    assert case.item_key(child) == "demo/c1/report/findings/0"
    assert [i.id for i in case.items_linked_to("mask/0")] == ["finding/0"]
    with pytest.raises(GroundingError, match="no item 'x'"):
        case.item("x")
