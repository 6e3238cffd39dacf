"""napari-grounding: review grounded chest-imaging datasets in napari.

Importing the package pulls in no Qt, so readers and the command line run without a display.
"""

from .model import Case, GroundingError, Image, MaskAnnotation, TextItem
from .readers import open_case, open_dataset

__version__ = "0.1.0"
__all__ = ["Case", "GroundingError", "Image", "MaskAnnotation", "TextItem", "open_case",
           "open_dataset"]
