"""Orientation algebra and the Case tree."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_grounding.model import (
    Case,
    Deferred,
    GroundingError,
    Image,
    MaskAnnotation,
    Orientation,
    TextItem,
    stored,
)


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


def test_deferred_data_is_built_once_on_first_read_even_from_two_threads():
    import threading

    calls = []

    def build():
        calls.append(1)
        return np.arange(6, dtype=np.int16).reshape(2, 3)

    deferred = Deferred(build, (2, 3), np.int16)
    image = Image(id="ct", data=deferred, orientation=Orientation.identity((2, 3)),
                  affine=np.eye(4), kind="ct", contrast_limits=(0.0, 1.0))
    assert image.dtype == np.int16 and not calls  # known without building
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(image.data)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(s is seen[0] for s in seen)
    assert stored(image) is deferred and image.data is deferred.built
    channel = deferred.then(lambda a: a[1], (3,))
    np.testing.assert_array_equal(MaskAnnotation(id="m", image="ct", data=channel).data, [3, 4, 5])
    assert MaskAnnotation(id="n", image="ct").data is None  # the field's default
    with pytest.raises(TypeError):
        Image(id="ct")  # data stays a required field
