"""DICOM CXRs (VinDr-CXR for CheXmask): lazy, MONOCHROME1 inverted, window and spacing from the file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from napari_grounding.model import GroundingError
from napari_grounding.readers import open_case
from napari_grounding.readers.chexmask import MODEL_SET
from napari_grounding.readers.dicom import open_dicom
from napari_grounding.sample_cxr import DICOM_IDS, frontal, landmarks, write_chexmask_sample


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 12,
                window: tuple[float, float] | None = None, spacing=(0.139, 0.139),
                lut: np.ndarray | None = None) -> Path:
    """A minimal, valid DX DICOM file holding ``pixels`` (uint16)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    if spacing is not None:
        ds.ImagerPixelSpacing = list(spacing)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if lut is not None:
        item = Dataset()
        item.LUTDescriptor = [len(lut), 0, 8]
        item.LUTData = np.asarray(lut, dtype=np.uint16).tobytes()
        ds.VOILUTSequence = [item]
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    return path


def picture(bits: int = 12) -> np.ndarray:
    return (frontal(landmarks(), shape=(256, 200)) * ((1 << bits) - 1)).astype(np.uint16)


def test_monochrome1_is_inverted_and_windowed_without_decoding(tmp_path):
    stored = picture()
    path = write_dicom(tmp_path / "a.dicom", stored, "MONOCHROME1", window=(1000.0, 800.0))
    image = open_dicom(path)
    assert image.reads.chunks == 0  # the window came from the header: nothing decoded yet
    assert image.data.dtype == np.uint16 and image.data.shape == (256, 200)
    assert image.contrast_limits == (4095 - 1400.0, 4095 - 600.0)
    shown = image.data.compute()
    assert shown.dtype == np.uint16 and image.reads.chunks == 1
    np.testing.assert_array_equal(shown, 4095 - stored)
    assert image.meta["photometric"] == "MONOCHROME1"
    assert image.meta["pixel_spacing_mm"] == "0.139 x 0.139"
    assert image.meta["contrast"].startswith("window from the file")


def test_monochrome2_without_window_takes_contrast_from_the_data(tmp_path):
    stored = picture()
    image = open_dicom(write_dicom(tmp_path / "b.dcm", stored, spacing=None))
    np.testing.assert_array_equal(image.data.compute(), stored)
    low, high = image.contrast_limits
    assert stored.min() <= low < high <= stored.max()
    assert "pixel_spacing_mm" not in image.meta


def test_voi_lut_sequence_is_applied(tmp_path):
    stored = picture(bits=8)
    lut = (255 - np.arange(256)) // 2  # a non-linear-looking mapping, as a table
    image = open_dicom(write_dicom(tmp_path / "c.dicom", stored, bits=8, lut=lut))
    shown = image.data.compute()
    np.testing.assert_array_equal(shown, lut[stored])
    assert shown.dtype == image.data.dtype
    assert image.meta["contrast"] == "VOI LUT from the file"


def test_not_a_dicom_is_one_clear_error(tmp_path):
    (tmp_path / "x.dicom").write_bytes(b"hello")
    with pytest.raises(GroundingError, match=r"x\.dicom: not a readable DICOM file"):
        open_dicom(tmp_path / "x.dicom")


def vindr_layout(tmp_path: Path, header_name: str) -> tuple[Path, Path]:
    """The CheXmask sample as a VinDr-CXR CSV (ID column ``header_name``) with DICOM images."""
    mimic = write_chexmask_sample(tmp_path / "mimic")
    rows = list(csv.reader(mimic.open(newline="")))
    rows[0][0] = header_name
    path = tmp_path / "chexmask" / "VinDr-CXR.csv"
    path.parent.mkdir(parents=True)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    images = tmp_path / "vindr" / "train"
    for index, image_id in enumerate(DICOM_IDS):
        pixels = (frontal(landmarks(shift=12.0 * index), seed=index) * 4095).astype(np.uint16)
        write_dicom(images / f"{image_id}.dicom", 4095 - pixels, "MONOCHROME1",
                    window=(2048.0, 4096.0))
    return path, tmp_path / "vindr"


@pytest.mark.parametrize("header_name", ["image_id", "Image ID"])
def test_vindr_masks_sit_on_their_dicom_images(tmp_path, header_name):
    path, images = vindr_layout(tmp_path, header_name)
    case = open_case(path, DICOM_IDS[0], images=images)
    assert case.tags["source"] == "VinDr-CXR" and case.problems == []
    image = case.images["image"]
    assert "blank" not in image.meta and image.source.endswith(".dicom")
    expected = (frontal(landmarks(), seed=0) * 4095).astype(np.uint16)
    np.testing.assert_array_equal(image.data.compute(), expected)  # inverted back to bright bone
    assert {a.set for a in case.annotations.values()} == {MODEL_SET}
    assert case.tags["annotations"] == "HybridGNet model output (automatic, not manual)"
