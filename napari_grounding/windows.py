"""CT display windows (centre, width in HU) and their contrast limits."""

from __future__ import annotations

from .model import GroundingError

CT_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (40.0, 400.0),
    "bone": (400.0, 1800.0),
}
CT_DEFAULT_WINDOW = "lung"


def window_limits(name: str) -> tuple[float, float]:
    """Contrast limits (low, high) of a named CT window."""
    try:
        centre, width = CT_WINDOWS[name]
    except KeyError:
        raise GroundingError(f"unknown CT window {name!r} (known: {', '.join(CT_WINDOWS)})") from None
    return centre - width / 2, centre + width / 2


# What a finding is about, as the dataset says it (ReXGroundingCT's category codes) or, failing
# that, as its sentence names it: pleural, vascular and mediastinal findings are read in the
# mediastinum window, bone in the bone window, the lungs in the lung window.
CATEGORY_WINDOWS = {"1a": "lung", "1b": "lung", "1c": "lung", "1d": "lung", "1e": "lung",
                    "1f": "lung", "2a": "lung", "2b": "lung", "2c": "lung", "2d": "lung",
                    "2e": "mediastinum", "2f": "lung", "2g": "lung"}
WORD_WINDOWS = (
    ("bone", ("fracture", "vertebra", "rib ", "ribs", "osteo", "sclerotic", "lytic", "spine",
              "sternum", "scapula", "clavicle", "bone")),
    ("mediastinum", ("pleural effusion", "effusion", "pleural thickening", "aort", "vascular",
                     "arter", "cardi", "heart", "pericard", "mediastin", "lymph", "thyroid",
                     "esophag", "oesophag", "hernia", "vein", "calcific", "atheroma", "liver",
                     "adrenal", "kidney", "spleen", "pancrea", "stomach", "gallbladder")),
    ("lung", ("lung", "pulmonary", "nodule", "emphysema", "bronch", "opacity", "consolidation",
              "atelectasis", "ground glass", "ground-glass", "pneumothorax", "fibro", "septal")),
)


def window_for(item) -> str | None:
    """The window a finding is best read in: its dataset category first, then its words."""
    preset = CATEGORY_WINDOWS.get(item.tags.get("category", ""))
    if preset is not None:
        return preset
    text = f" {item.text.lower()} "
    for name, words in WORD_WINDOWS:
        if any(word in text for word in words):
            return name
    return None


def takes_ct_windows(image) -> bool:
    """Whether an image is in HU, so the CT windows apply (a plain volume of no known dataset
    whose values are not HU takes its contrast from its data; the reader says so)."""
    return image.kind == "ct" and not str(image.meta.get("contrast", "")).startswith("from the data")
