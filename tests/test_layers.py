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


def test_a_ct_is_shown_single_scale_unless_its_planes_are_large(tmp_path, monkeypatch):
    """A 512 x 512 plane slices whole in one go: the pyramid would only make napari slice the
    CT again at each zoom change. A plane larger than the threshold is shown from the pyramid."""
    from napari_grounding import layers, store
    from napari_grounding.sample import make_phantom, write_sample

    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))
    root = write_sample(tmp_path / "big", make_phantom((300, 280, 40), (1.0, 1.0, 5.0)))
    store.write_cache(open_case(root))
    ct = open_case(root).images["ct"]
    assert len(ct.pyramid) == 3
    data, kwargs, _ = layers.image_layer(open_case(root), ct)
    assert kwargs["multiscale"] is False and data is ct.display_levels[0]
    monkeypatch.setattr(layers, "PYRAMID_ABOVE_PIXELS", 280 * 300 - 1)
    data, kwargs, _ = layers.image_layer(open_case(root), ct)
    assert kwargs["multiscale"] is True and data is ct.display_levels
    assert [d.shape for d in data] == [
        (40, 280, 300), (20, 140, 150), (10, 70, 75)]
