"""Shared fixtures: generated cases in the real layouts, and the real files in ../shared/data."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_grounding.sample import CASE, ctrate_volume_path, make_phantom, write_sample

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Caches (OME-Zarr, CSV indexes in the user cache) go to a folder of this test run."""
    folder = tmp_path_factory.mktemp("cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("NAPARI_GROUNDING_CACHE", str(folder / "zarr"))
    patch.setenv("XDG_CACHE_HOME", str(folder / "xdg"))
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real dataset files kept beside the checkout (absent in a user's clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real reference data not found at {SHARED_DATA} (only beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def phantom():
    return make_phantom()


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory, phantom) -> Path:
    """The sample case: ReXGroundingCT + CT-RATE layout, LPS *_fixed CT (read-only: copy to edit)."""
    return write_sample(tmp_path_factory.mktemp("sample"), phantom)


@pytest.fixture
def sample_copy(tmp_path, sample_root) -> Path:
    """A private copy of the sample case a test may break."""
    return Path(shutil.copytree(sample_root, tmp_path / "sample"))


def ct_path(root: Path) -> Path:
    return ctrate_volume_path(root, CASE)


def mask_file(root: Path) -> Path:
    return root / "segmentations" / f"{CASE}.nii.gz"


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, slope: float | None = None,
               inter: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, path)
    return path
