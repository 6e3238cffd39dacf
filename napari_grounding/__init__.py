"""napari-grounding: review grounded chest-imaging datasets in napari.

Importing the package pulls in no Qt and no heavy library (readers, dask, zarr are imported on
first use), so the command line and napari's reader sniff start quickly.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Case", "GroundingError", "Image", "MaskAnnotation", "TextItem", "open_case",
           "open_dataset"]
_FROM = {"Case": "model", "GroundingError": "model", "Image": "model", "MaskAnnotation": "model",
         "TextItem": "model", "open_case": "readers", "open_dataset": "readers"}


def __getattr__(name: str) -> Any:
    if name not in _FROM:
        raise AttributeError(f"module 'napari_grounding' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_FROM[name]}", __name__), name)
