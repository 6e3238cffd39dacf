"""Finding a dataset's pictures in the folder a user names, by each source's conventions."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .dicom import DICOM_SUFFIXES
from .paths import safe_inside
from .xray import IMAGE_SUFFIXES


class ImageFolder:
    """Pictures under one folder, looked up by relative path, file name or file stem.

    The name index is built on the first lookup that needs it (one walk of the folder).
    """

    def __init__(self, root: Path):
        self.root = root
        self._by_name: dict[str, Path] | None = None

    def by_relative_path(self, relative: str) -> Path | None:
        """``relative`` under the root, also with its leading folders dropped one by one
        (CheXpert's ``CheXpert-v1.0/train/...`` when the root is that folder)."""
        parts = PurePosixPath(relative.replace("\\", "/")).parts
        for start in range(len(parts)):
            candidate = safe_inside(self.root, "/".join(parts[start:]))  # never outside root
            if candidate is not None and candidate.is_file():
                return candidate
        return None

    def by_name(self, name: str) -> Path | None:
        """A picture whose file name, or name without suffix, is ``name``, in any subfolder."""
        if self._by_name is None:
            found: dict[str, Path] = {}
            for folder, _, files in os.walk(self.root):
                for file in files:
                    if file.lower().endswith(IMAGE_SUFFIXES + DICOM_SUFFIXES):
                        path = Path(folder) / file
                        found.setdefault(file, path)
                        found.setdefault(path.stem, path)
            self._by_name = found  # published whole: a job's other threads never see it half built
        # only files found under the root are in the index, so no name can lead outside it
        return self._by_name.get(name) or self._by_name.get(
            PurePosixPath(name.replace("\\", "/")).name)

    def mimic_cxr_jpg(self, dicom_id: str, subject_id: str = "", study_id: str = "") -> Path | None:
        """MIMIC-CXR-JPG's ``files/pXX/p<subject>/s<study>/<dicom_id>.jpg``."""
        if subject_id and study_id:
            subject, study = subject_id.lstrip("p"), study_id.lstrip("s")
            direct = safe_inside(self.root, f"files/p{subject[:2]}/p{subject}/s{study}/"
                                            f"{dicom_id}.jpg")
            if direct is not None and direct.is_file():
                return direct
        return self.by_name(dicom_id)
