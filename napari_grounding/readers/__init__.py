"""Readers: one module per dataset, each turning files on disk into Cases.

``open_dataset`` picks the reader whose ``matches`` accepts the path. A reader class has
``name``, ``case_ids()``, ``summary(case_id)`` and ``open_case(case_id)``; nothing else in the
tool knows which dataset it is looking at.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from ..model import Case, GroundingError
from .chest_ct import ChestCTDataset, SingleVolume
from .chexmask import CheXmaskDataset
from .qba import QBADataset
from .rexgradient import ReXGradientDataset


class Dataset(Protocol):
    name: str

    def case_ids(self) -> list[str]: ...

    def summary(self, case_id: str) -> str: ...

    def open_case(self, case_id: str) -> Case: ...


def summaries(dataset: Dataset):
    """One line per case; streamed where the reader can do better than per-case lookups."""
    streamed = getattr(dataset, "summaries", None)
    return streamed() if streamed else (dataset.summary(i) for i in dataset.case_ids())


# most specific first: a ReXGradient root has a metadata/ folder, as a CT-RATE root does
READERS = (ReXGradientDataset, QBADataset, CheXmaskDataset, ChestCTDataset, SingleVolume)


def can_read(path: str | os.PathLike) -> bool:
    """Cheap sniff: does any reader recognise this path? Never raises."""
    try:
        return any(reader.matches(Path(path)) for reader in READERS)
    except OSError:
        return False


def open_dataset(path: str | os.PathLike, images: str | os.PathLike | None = None,
                 compare: str | os.PathLike | None = None) -> Dataset:
    """The dataset at ``path``; ``images`` names a folder holding its images elsewhere;
    ``compare`` a second annotation set (a CheXmask-form CSV) for the same images."""
    path = Path(path).expanduser()
    if not path.exists():
        raise GroundingError(f"{path}: no such file or folder")
    image_dir = Path(images).expanduser() if images else None
    if image_dir is not None and not image_dir.is_dir():
        raise GroundingError(f"--images {image_dir}: not a folder")
    second = Path(compare).expanduser() if compare else None
    if second is not None and not second.is_file():
        raise GroundingError(f"--compare {second}: file not found")
    for reader in READERS:
        if reader.matches(path):
            if second is not None:
                if reader is not CheXmaskDataset:
                    raise GroundingError(f"--compare works with CheXmask CSVs, not {path}")
                return CheXmaskDataset(path, image_dir, compare=second)
            return reader(path, image_dir)
    raise GroundingError(
        f"{path}: not a dataset napari-grounding can read (expected a ReXGroundingCT folder "
        "with dataset.json, a CT-RATE folder, a .nii/.nii.gz volume, a CheXmask CSV or a "
        "ReXGradient folder with metadata/*_metadata_view_position.json, or a QBA folder with "
        "qa/ or qa.zip)")


def open_case(path: str | os.PathLike, case: str | None = None,
              images: str | os.PathLike | None = None,
              compare: str | os.PathLike | None = None) -> Case:
    """One case of the dataset at ``path``: the named one, or the first."""
    dataset = open_dataset(path, images, compare)
    return dataset.open_case(case if case is not None else first_case_id(dataset, path))


def first_case_id(dataset: Dataset, where: str | os.PathLike) -> str:
    ids = dataset.case_ids()
    if not ids:
        raise GroundingError(f"{where}: holds no cases")
    return ids[0]
