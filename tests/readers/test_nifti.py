"""Lazy NIfTI volumes: orientation, HU, dtypes, chunked reads, damaged files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from napari_grounding.metrics import mask_stats
from napari_grounding.model import GroundingError
from napari_grounding.readers import inflate
from napari_grounding.readers.nifti import Rescale, open_volume
from napari_grounding.sample import ras_copy
from tests.conftest import save_nifti


@pytest.fixture(scope="module")
def lps_and_ras(tmp_path_factory, phantom):
    folder = tmp_path_factory.mktemp("orient")
    lps = save_nifti(folder / "lps.nii.gz", phantom.hu, phantom.affine)
    ras_data, ras_affine = ras_copy(phantom.hu, phantom.affine)
    ras = save_nifti(folder / "ras.nii.gz", ras_data, ras_affine)
    return open_volume(lps), open_volume(ras)


def test_lps_and_ras_copies_display_the_same_picture(lps_and_ras):
    lps, ras = lps_and_ras
    assert lps.meta["orientation"] == "LPS" and ras.meta["orientation"] == "RAS"
    np.testing.assert_array_equal(lps.data.compute(), ras.data.compute())
    assert lps.spacing == pytest.approx(ras.spacing)
    assert lps.origin == pytest.approx(ras.origin)


def test_display_is_radiological(lps_and_ras, phantom):
    """Superior slices first, anterior at the top, patient right on screen left."""
    lps, _ = lps_and_ras
    shown = lps.data.compute()
    assert shown.shape == (60, 128, 128)
    # nodule: patient right, anterior, superior -> screen left, upper half, early slices
    z, y, x = np.argwhere(lps.orientation.to_display(phantom.masks[0])).mean(axis=0)
    assert x < 64 and y < 64 and z < 30
    # effusion: patient left, posterior, inferior -> screen right, lower half, late slices
    z, y, x = np.argwhere(lps.orientation.to_display(phantom.masks[1])).mean(axis=0)
    assert x > 64 and y > 64 and z > 30
    # the spine (bone) is posterior: bottom of the screen
    assert np.flatnonzero((shown[30] > 400).any(axis=1)).min() > 64
    # the trachea is only in the superior slices: the top of the stack
    assert (shown[:10] <= -990).sum() > (shown[-10:] <= -990).sum()


def test_same_finding_centre_in_mm(tmp_path, phantom, lps_and_ras):
    mask = phantom.masks[0]
    ras_mask, _ = ras_copy(mask, phantom.affine)
    lps, ras = lps_and_ras
    lps_centre = lps.source_to_world(mask_stats(mask).centroid)
    ras_centre = ras.source_to_world(mask_stats(ras_mask).centroid)
    np.testing.assert_allclose(lps_centre, ras_centre, atol=1e-4)
    np.testing.assert_allclose(lps.source_to_display_mm(mask_stats(mask).centroid),
                               ras.source_to_display_mm(mask_stats(ras_mask).centroid), atol=1e-4)
    # the phantom's nodule was placed at 70 mm right, 20 mm anterior, 55 mm superior
    np.testing.assert_allclose(lps_centre, [70, 20, 55], atol=2.5)


def test_fixed_volume_values_are_kept(tmp_path, phantom):
    image = open_volume(save_nifti(tmp_path / "ct.nii.gz", phantom.hu, phantom.affine))
    assert image.data.dtype == np.int16
    np.testing.assert_array_equal(image.orientation.to_display(phantom.hu), image.data.compute())


def test_side_rescale_applied_once_in_int16(tmp_path, phantom):
    raw = (phantom.hu.astype(np.int32) + 1024).astype(np.int16)
    path = save_nifti(tmp_path / "old.nii.gz", raw, phantom.affine)
    image = open_volume(path, rescale=Rescale(1.0, -1024.0, "CSV"))
    assert image.data.dtype == np.int16
    assert image.meta["hu"] == "CSV"
    np.testing.assert_array_equal(image.data.compute(), image.orientation.to_display(phantom.hu))


def test_header_rescale_wins_over_side_rescale(tmp_path, phantom):
    raw = (phantom.hu.astype(np.int32) + 1024).astype(np.int16)
    path = save_nifti(tmp_path / "scaled.nii.gz", raw, phantom.affine, slope=1.0, inter=-1024.0)
    image = open_volume(path, rescale=Rescale(1.0, -1024.0, "CSV"))
    assert image.meta["hu"].startswith("NIfTI header")
    assert image.data.dtype == np.int16  # integer rescale: no float copy
    np.testing.assert_array_equal(image.data.compute(), image.orientation.to_display(phantom.hu))


def test_fractional_rescale_is_float32_per_chunk(tmp_path):
    raw = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    image = open_volume(save_nifti(tmp_path / "f.nii", raw, np.eye(4)), rescale=Rescale(0.5, -1.0))
    assert image.data.dtype == np.float32
    np.testing.assert_allclose(np.sort(image.data.compute().ravel()), np.arange(24) * 0.5 - 1)


def test_spacing_override_keeps_directions(tmp_path, phantom):
    path = save_nifti(tmp_path / "ct.nii.gz", phantom.hu, np.diag([-1.0, -1.0, 1.0, 1.0]))
    image = open_volume(path, spacing=(0.75, 0.75, 1.5))
    assert image.source_spacing == pytest.approx((0.75, 0.75, 1.5))
    assert image.meta["orientation"] == "LPS"


def test_one_slice_reads_a_small_fraction(tmp_path, phantom):
    image = open_volume(save_nifti(tmp_path / "ct.nii.gz", phantom.hu, phantom.affine))
    assert image.reads.chunks == 0  # opening reads no image data
    plane = np.asarray(image.data[30])
    assert plane.shape == (128, 128)
    assert image.reads.chunks == 1
    assert image.reads.bytes == 128 * 128 * 2
    assert image.reads.bytes / phantom.hu.nbytes < 0.02


def test_truncated_gzip_is_reported(tmp_path, phantom):
    path = save_nifti(tmp_path / "ct.nii.gz", phantom.hu, phantom.affine)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GroundingError, match=r"ct\.nii\.gz: truncated or corrupt \.nii\.gz"):
        open_volume(path)


def test_header_only_gzip_is_reported(tmp_path, phantom):
    path = save_nifti(tmp_path / "ct.nii.gz", phantom.hu, phantom.affine)
    path.write_bytes(gzip.decompress(path.read_bytes())[:200])  # not even a header, not gzip
    with pytest.raises(GroundingError, match="not a readable NIfTI"):
        open_volume(path)


def test_multi_member_gzip_is_accepted(tmp_path, phantom):
    """A valid gzip whose trailer is not the whole size (two members) still opens."""
    path = save_nifti(tmp_path / "ct.nii", phantom.hu, phantom.affine)
    raw = path.read_bytes()
    two = tmp_path / "two.nii.gz"
    two.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    image = open_volume(two)
    np.testing.assert_array_equal(image.data[5].compute(), image.orientation.to_display(phantom.hu)[5])


@pytest.fixture(params=["isal", "zlib"])
def inflater(request, monkeypatch):
    """Forward reads inflated by ISA-L (when installed) and by the standard library."""
    if request.param == "zlib":
        monkeypatch.setattr(inflate, "igzip", None)
    elif inflate.igzip is None:
        pytest.skip("isal is not installed here")
    return request.param


def _forward_slabs(image, step: int) -> np.ndarray:
    """The whole source array as the cache writer reads it: forward ranges along its axis."""
    n = image.slabs.reader.source.shape[image.slabs.axis]
    parts = [image.slabs(start, min(n, start + step)) for start in range(0, n, step)]
    return np.concatenate(parts, axis=image.slabs.axis)


def test_forward_slab_reads_give_the_stored_values(tmp_path, phantom, inflater):
    single = save_nifti(tmp_path / "ct.nii.gz", phantom.hu, phantom.affine)
    raw = gzip.decompress(single.read_bytes())
    two = tmp_path / "two.nii.gz"  # a valid gzip of two members reads on into the second
    two.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    for path in (single, two):
        image = open_volume(path)
        np.testing.assert_array_equal(_forward_slabs(image, 7), phantom.hu)


def test_corrupt_deflate_data_is_one_line_on_slab_reads(tmp_path, phantom, inflater):
    """Damage inside the compressed stream, found by the forward read (the file went bad
    after it was opened), is named in one line whichever inflater reads it."""
    path = save_nifti(tmp_path / "ct.nii.gz", phantom.hu, phantom.affine)
    image = open_volume(path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0x5A for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))
    with pytest.raises(GroundingError, match=r"ct\.nii\.gz: cannot read image data \("):
        _forward_slabs(image, 16)


def test_truncated_uncompressed_is_reported(tmp_path, phantom):
    path = save_nifti(tmp_path / "ct.nii", phantom.hu, phantom.affine)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(GroundingError, match="truncated NIfTI"):
        open_volume(path)


def test_not_3d_and_missing(tmp_path):
    path = save_nifti(tmp_path / "four.nii.gz", np.zeros((2, 3, 4, 5), np.uint8), np.eye(4))
    with pytest.raises(GroundingError, match=r"expected a 3D volume, found shape \(2, 3, 4, 5\)"):
        open_volume(path)
    with pytest.raises(GroundingError, match="file not found"):
        open_volume(tmp_path / "nope.nii.gz")


def test_plain_volume_takes_its_contrast_from_the_data(tmp_path):
    """A brain-MRI-like volume outside any dataset: no lung window, no cache written."""
    from napari_grounding.readers import open_case
    from napari_grounding.readers.chest_ct import PLAIN_CACHE_NOTE

    rng = np.random.default_rng(0)
    data = rng.integers(0, 800, size=(24, 20, 16)).astype(np.uint16)
    path = save_nifti(tmp_path / "brain.nii.gz", data, np.diag([1.0, 1.0, 1.2, 1.0]))
    image = open_case(path).images["ct"]
    low, high = image.contrast_limits
    assert 0 <= low < 20 and 780 < high <= 800
    assert image.meta["contrast"].startswith("from the data")
    assert image.meta["cache"] == PLAIN_CACHE_NOTE


def test_plain_ct_gets_the_ct_window(tmp_path, phantom):
    from napari_grounding.readers import open_case
    from napari_grounding.windows import CT_DEFAULT_WINDOW, window_limits

    path = save_nifti(tmp_path / "chest.nii.gz", phantom.hu, phantom.affine)
    image = open_case(path).images["ct"]
    assert image.contrast_limits == window_limits(CT_DEFAULT_WINDOW)
    assert image.meta["contrast"].endswith("(values look like HU)")


def test_reader_declines_niftis_it_cannot_show(tmp_path, phantom, sample_root):
    from napari_grounding._reader import napari_get_reader

    four_d = save_nifti(tmp_path / "fmri.nii.gz", np.zeros((8, 8, 6, 5), np.int16), np.eye(4))
    two_d = save_nifti(tmp_path / "slice.nii", np.zeros((8, 8), np.int16), np.eye(4))
    three_d = save_nifti(tmp_path / "ct.nii.gz", phantom.hu, phantom.affine)
    assert napari_get_reader(str(four_d)) is None and napari_get_reader(str(two_d)) is None
    assert napari_get_reader(str(three_d)) is not None
    mask = sample_root / "segmentations" / "train_1_a_1.nii.gz"  # 4-D, in its dataset tree
    assert napari_get_reader(str(mask)) is not None
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    assert napari_get_reader(str(tmp_path / "broken.nii.gz")) is None


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_a_flattened_range_is_set_wherever_a_value_along_it_is(tmp_path, dtype):
    """The cache writer finds a mask's extent in a range from the range collapsed along the
    read axis: nonzero exactly where some value along it is nonzero (or a float's -0.0, kept
    as stored), on every range, whatever the type."""
    rng = np.random.default_rng(1)
    values = np.where(rng.random((20, 18, 30)) < 0.01, rng.integers(1, 9, (20, 18, 30)), 0)
    values = values.astype(dtype)
    if values.dtype.kind == "f":
        values[3, 4, 25] = -0.0
    image = open_volume(save_nifti(tmp_path / "m.nii.gz", values, np.eye(4)))
    slabs, axis = image.slabs, image.slabs.axis
    for start, stop in ((0, 7), (7, 8), (8, 30)):
        read = slabs(start, stop)
        flat = slabs.flattened(start, stop)
        set_ = (read != 0) | (np.signbit(read) if read.dtype.kind == "f" else False)
        np.testing.assert_array_equal(flat != 0, set_.any(axis=axis, keepdims=True))
        assert flat.shape[axis] == 1
