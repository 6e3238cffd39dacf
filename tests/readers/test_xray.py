"""CXR pictures: dtypes, lazy pyramids and data-driven display ranges."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from napari_grounding.model import GroundingError
from napari_grounding.readers.xray import display_range, open_xray


def save(path, pixels):
    PILImage.fromarray(pixels).save(path)
    return path


def test_eight_and_sixteen_bit_png_and_jpeg(tmp_path):
    ramp = np.tile(np.arange(300, dtype=np.uint16), (200, 1))
    sixteen = open_xray(save(tmp_path / "a.png", ramp * 100 + 20000))
    assert sixteen.data.dtype == np.uint16 and sixteen.data.shape == (200, 300)
    np.testing.assert_array_equal(np.asarray(sixteen.data), ramp * 100 + 20000)
    eight = open_xray(save(tmp_path / "b.png", (ramp % 256).astype(np.uint8)))
    assert eight.data.dtype == np.uint8
    jpeg = open_xray(save(tmp_path / "c.jpg", (ramp % 256).astype(np.uint8)))
    assert jpeg.data.dtype == np.uint8 and jpeg.data.shape == (200, 300)
    colour = np.stack([ramp % 256] * 3, axis=-1).astype(np.uint8)
    assert open_xray(save(tmp_path / "d.png", colour)).data.shape == (200, 300)


def test_sixteen_bit_display_range_follows_the_data(tmp_path):
    pixels = np.random.default_rng(0).integers(30000, 34000, (256, 256)).astype(np.uint16)
    pixels[0, 0] = 65535  # one hot pixel must not stretch the range
    image = open_xray(save(tmp_path / "narrow.png", pixels))
    low, high = image.contrast_limits
    assert 30000 <= low < 30200 and 33800 < high <= 34000
    assert display_range(np.zeros((4, 4))) == (0.0, 1.0)


def test_large_images_get_a_pyramid_and_small_ones_do_not(tmp_path):
    big = open_xray(save(tmp_path / "big.png", np.zeros((3000, 2500), np.uint8)))
    assert [level.shape for level in big.pyramid] == [(3000, 2500), (1500, 1250), (750, 625)]
    reads_before = big.reads.chunks
    np.asarray(big.pyramid[2])  # the coarse level comes from the cached decode
    assert big.reads.bytes == (reads_before + 1) * 3000 * 2500
    small = open_xray(save(tmp_path / "small.png", np.zeros((1024, 1024), np.uint8)))
    assert small.pyramid == []


def test_unreadable_pictures(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(GroundingError, match="not a readable PNG or JPEG"):
        open_xray(tmp_path / "x.png")
    with pytest.raises(GroundingError, match="file not found"):
        open_xray(tmp_path / "y.png")
