"""napari sample data: the generated chest-CT phantom, written once to the user cache."""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_cache_path

from .layers import LayerData
from .sample import CASE, write_sample


def sample_root() -> Path:
    root = user_cache_path("napari-grounding") / "sample" / "ct-phantom"
    if not (root / "dataset.json").is_file():
        write_sample(root)
    return root


def ct_phantom() -> list[LayerData]:
    from ._reader import read_case

    return read_case(str(sample_root() / "segmentations" / f"{CASE}.nii.gz"))
