"""Case -> napari layer data, without a viewer."""

from __future__ import annotations

import numpy as np

from napari_grounding.layers import case_layers, finding_colour, grounding_meta, label_colormap
from napari_grounding.readers import open_case
from napari_grounding.windows import window_limits


def test_sample_case_layers(sample_root):
    case = open_case(sample_root)
    layers = case_layers(case)
    assert [t for _, _, t in layers] == ["image", "labels", "labels", "labels"]
    data, kwargs, _ = layers[0]
    assert data.shape == (60, 128, 128) and data.dtype == np.int16
    assert kwargs["scale"] == (5.0, 2.5, 2.5)
    assert kwargs["contrast_limits"] == window_limits("lung") == (-1350.0, 150.0)
    for mask_data, mask_kwargs, _ in layers[1:]:
        assert mask_data.shape == data.shape and mask_data.dtype == np.uint8
        assert mask_kwargs["scale"] == kwargs["scale"]
        assert mask_kwargs["translate"] == kwargs["translate"]
    assert layers[1][1]["name"] == "finding 0"
    assert grounding_meta(type("L", (), {"metadata": layers[3][1]["metadata"]})())["annotation"] \
        == "mask/2"


def test_colours_differ_between_findings_and_instances():
    colours = {finding_colour(f, i) for f in range(13) for i in (1, 2, 3)}
    assert len(colours) == 39
    cmap = label_colormap(0)
    assert cmap[0][3] == 0 and cmap[1] != cmap[2]
