"""Free-text report sections as text items, one child per sentence (CT-RATE, ReXGradient)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from ..model import TextItem

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
# how the datasets write an empty section
_ABSENT = {"", "none", "nan", "null", "not given.", "not given"}


def present(value: Any) -> str | None:
    """A section's text, or None for null, NaN, "None", "Not given." and blanks."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return None if text.lower() in _ABSENT else text


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def section_items(sections: Iterable[tuple[str, str, Any]]) -> list[TextItem]:
    """(key, title, raw text) per section -> items ``report/<key>`` with their sentences as
    children ``report/<key>/<n>``; absent sections are left out."""
    items = []
    for key, title, raw in sections:
        text = present(raw)
        if text is None:
            continue
        children = [TextItem(id=f"report/{key}/{i}", text=s, tags={"section": key})
                    for i, s in enumerate(split_sentences(text))]
        items.append(TextItem(id=f"report/{key}", text=text, title=title, tags={"section": key},
                              children=children))
    return items
