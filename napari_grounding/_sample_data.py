"""napari sample data: generated phantoms, written once to the user cache."""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_cache_path

from .layers import LayerData
from .readers import open_dataset
from .sample import CASE, write_sample
from .sample_cxr import write_chexmask_sample, write_rexgradient_sample
from .sample_qba import write_qba_sample


def _root(name: str) -> Path:
    return user_cache_path("napari-grounding") / "sample" / name


def ct_phantom() -> list[LayerData]:
    from ._reader import read_case

    root = _root("ct-phantom")
    if not (root / "dataset.json").is_file():
        write_sample(root)
    return read_case(str(root / "segmentations" / f"{CASE}.nii.gz"))


def cxr_chexmask() -> list[LayerData]:
    from ._reader import layers_with_panel

    root = _root("cxr-phantom")
    csv_path = root / "chexmask" / "MIMIC-CXR-JPG.csv"
    if not csv_path.is_file():
        write_chexmask_sample(root)
    dataset = open_dataset(csv_path, images=root / "mimic-cxr-jpg")
    return layers_with_panel(dataset.open_case(dataset.case_ids()[0]), dataset)


def cxr_rexgradient() -> list[LayerData]:
    from ._reader import read_case

    root = _root("rexgradient-phantom")
    if not (root / "metadata").is_dir():
        write_rexgradient_sample(root)
    return read_case(str(root))


def qba_study() -> list[LayerData]:
    from ._reader import layers_with_panel

    root = _root("qba-phantom")
    if not (root / "qa").is_dir():
        write_qba_sample(root, metadata=True)
    dataset = open_dataset(root, images=root / "mimic-cxr-jpg")
    return layers_with_panel(dataset.open_case(dataset.case_ids()[0]), dataset)
