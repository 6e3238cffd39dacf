"""File names that come from data, kept inside the folder they are relative to."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath

from ..model import GroundingError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_HASHED = re.compile(r"-[0-9a-f]{8}$")  # what safe_name appends: such names get their own


def inside(root: str | os.PathLike, name: str) -> Path:
    """``root / name`` resolved, checked to stay inside ``root`` (no absolute names, no ``..``
    escapes, also through symlinks and backslashes); GroundingError otherwise."""
    text = str(name).replace("\\", "/")
    relative = PurePosixPath(text)
    if not text or "\x00" in text or relative.is_absolute() or re.match(r"^[A-Za-z]:", text) \
            or ".." in relative.parts:
        raise GroundingError(f"{name!r}: not a file name inside {root}")
    base = Path(root).resolve()
    target = base.joinpath(*relative.parts).resolve()
    if target != base and base not in target.parents:
        raise GroundingError(f"{name!r}: leads outside {root}")
    return target


def safe_inside(root: str | os.PathLike, name: str) -> Path | None:
    """``inside`` that answers None instead of raising (for look-ups that may miss)."""
    try:
        return inside(root, name)
    except GroundingError:
        return None


def slug(text: str, limit: int = 80) -> str:
    """``text`` with runs of unsafe characters as ``_`` and no leading or trailing dots (may
    collide: ``a b`` and ``a_b``; use ``safe_name`` where names must stay distinct)."""
    return _UNSAFE.sub("_", text).strip(".")[:limit]


def safe_name(text: str, limit: int = 80) -> str:
    """A file name for data-derived text: itself when already safe, else its slug with a short
    hash of the text, so two texts never share a name (``a b`` and ``a_b``) and none is ``..``."""
    short = slug(text, limit)
    if short == text and short and not _HASHED.search(short):
        return short
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{short or 'item'}-{digest}"
