"""napari reader hook: a dataset folder or a NIfTI file opens as a case with its panel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .layers import LayerData, case_layers
from .model import GroundingError
from .readers import can_read, first_case_id, open_dataset

# napari's way of saying "read fine, nothing to add": no second reader, no traceback
NOTHING: list[Any] = [(None,)]


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return a reader for paths this plugin understands, else None (never raises)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if str(path).endswith((".nii", ".nii.gz")) and not _volume_we_show(Path(path)):
        return None  # 2-D, 4-D (fMRI, DWI): napari offers another reader
    return read_case if can_read(path) else None


def _volume_we_show(path: Path) -> bool:
    """A 3-D NIfTI, or a ReXGroundingCT mask (4-D, in ``segmentations/``); header only."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    try:
        ndim = len(nib.load(str(path)).shape)
    except (OSError, EOFError, ValueError, ImageFileError):  # not ours: a sniff never raises
        return False
    return ndim == 3 or (ndim == 4 and path.parent.name == "segmentations")


def read_case(path: str | list[str]) -> list[LayerData]:
    from napari.utils.notifications import show_error

    path = path[0] if isinstance(path, list) else path
    try:
        dataset = open_dataset(path)
        case = dataset.open_case(first_case_id(dataset, path))
    except GroundingError as err:
        show_error(str(err))
        return NOTHING
    return layers_with_panel(case, dataset)


def layers_with_panel(case: Any, dataset: Any = None) -> list[LayerData]:
    """The case's layers for napari to add, with the panel docked to take them up."""
    panel = _dock_panel_if_possible()
    if panel is not None:
        panel.set_case(case)
        if dataset is not None:
            panel.set_dataset(dataset)
    layers = case_layers(case)
    return layers or NOTHING  # text only: the panel still shows the case


def _dock_panel_if_possible() -> Any:
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        return None
    from .widgets.launch import dock_panel

    return dock_panel(viewer)
