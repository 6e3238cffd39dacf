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
