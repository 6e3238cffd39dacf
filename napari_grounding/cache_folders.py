"""Housekeeping of cache folders: locks, leftovers, size limit (LRU), listing and clearing.

A cache root holds one *slot* folder per source file; a slot holds immutable published versions
(``v-<stamp>.ome.zarr``), writers' ``*.partial-*`` folders and ``.trash-*`` folders being
deleted. Every version and partial holds a ``.lock`` file: readers keep a shared ``flock`` on it
while they use the version, a writer keeps an exclusive one on its partial, and nothing is
deleted without first taking the exclusive lock, so a folder in use is never removed. Locks die
with their process, so a killed writer's partial is free to clean up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; folders are then cleaned only when stale
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"
KEEP_MARKER = ".napari-grounding-keep"  # in a `convert --out` folder: never evicted
MAX_ENV = "NAPARI_GROUNDING_CACHE_MAX_GB"
DEFAULT_MAX_GB = 20.0
CRASH_ENV = "NAPARI_GROUNDING_TEST_CRASH_AT"  # tests: SIGKILL ourselves at a named point
_LOCKLESS_GRACE_S = 60.0  # a partial without its lock file yet may be a writer just starting


def crash_point(name: str) -> None:
    """Die here, as ``kill -9`` would, when a test asks for it (fault injection)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class Hold:
    """A lock on a cache folder, released when closed or garbage collected."""

    def __init__(self, fd: int):
        self.fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        self._finalizer()


def hold(folder: Path, exclusive: bool, create: bool = False) -> Hold | None:
    """Lock ``folder`` without waiting; None when someone else holds it or it is gone."""
    path = folder / LOCK
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except OSError:
        try:  # a read-only cache (a shared convert output): a shared lock needs no write access
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
    if fcntl is not None:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
    try:  # locked a file that a cleaner has meanwhile unlinked: the folder is gone
        same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except OSError:
        same = False
    if not same:
        os.close(fd)
        return None
    return Hold(fd)


def touch(folder: Path) -> None:
    """Mark a version as just used (its lock file's time orders eviction)."""
    with contextlib.suppress(OSError):  # a read-only cache: eviction goes by write time
        os.utime(folder / LOCK)


def remove(folder: Path) -> bool:
    """Delete a version or partial folder unless it is in use; True when it is gone."""
    if not folder.exists():
        return True
    lock = None
    if (folder / LOCK).exists():
        lock = hold(folder, exclusive=True)
        if lock is None:
            return False  # in use (or vanished meanwhile)
    elif time.time() - folder.stat().st_mtime < _LOCKLESS_GRACE_S:
        return False  # a writer may be about to create its lock
    trash = folder.parent / f".trash-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(folder, trash)  # from here on no reader can find it
    except OSError:
        return False
    finally:
        if lock is not None:
            lock.close()
    crash_point("cleaning")
    shutil.rmtree(trash, ignore_errors=True)
    return True


def clean_slot(slot: Path, keep: Path | None = None) -> None:
    """Remove a slot's stale versions, dead partials and trash, never ``keep`` or one in use."""
    try:
        children = list(slot.iterdir())
    except OSError:
        return
    for child in children:
        if child == keep or not child.is_dir():
            continue
        if child.name.startswith(".trash-"):
            shutil.rmtree(child, ignore_errors=True)  # nobody can hold a folder in the trash
        else:
            remove(child)


def _size(folder: Path) -> int:
    total = 0
    for base, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(base, name)).st_size
    return total


@dataclass
class Entry:
    """One slot of a cache root: the caches of one source file."""

    path: Path
    size: int
    last_used: float
    in_use: bool
    source: str


def _versions(slot: Path) -> list[Path]:
    try:
        return [p for p in slot.iterdir() if p.is_dir() and p.name.startswith("v-")]
    except OSError:
        return []


def _in_use(folder: Path) -> bool:
    if not (folder / LOCK).exists():
        return False
    lock = hold(folder, exclusive=True)
    if lock is None:
        return True
    lock.close()
    return False


def _source_of(version: Path) -> str:
    import json

    try:
        attrs = json.loads((version / "zarr.json").read_text())["attributes"]
        return str(attrs["napari_grounding"]["source"])
    except (OSError, ValueError, KeyError, TypeError):
        return "?"


def entries(root: Path) -> list[Entry]:
    """Every slot under a cache root, least recently used first."""
    found = []
    try:
        slots = [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return []
    for slot in slots:
        versions = _versions(slot)
        stamps = [(v / LOCK).stat().st_mtime for v in versions if (v / LOCK).exists()]
        last = max(stamps, default=slot.stat().st_mtime)
        found.append(Entry(slot, _size(slot), last, any(_in_use(v) for v in versions),
                           _source_of(versions[0]) if versions else "?"))
    return sorted(found, key=lambda e: e.last_used)


def max_bytes() -> int | None:
    """The user cache's size limit from $NAPARI_GROUNDING_CACHE_MAX_GB (0 or less: none)."""
    text = os.environ.get(MAX_ENV, "")
    try:
        gigabytes = float(text) if text.strip() else DEFAULT_MAX_GB
    except ValueError:
        gigabytes = DEFAULT_MAX_GB
    return int(gigabytes * 2**30) if gigabytes > 0 else None


def evict(root: Path, limit: int | None, keep: Path | None = None) -> list[Path]:
    """Delete least recently used slots until the root fits ``limit``; never one in use,
    never ``keep``'s slot, never a root marked as the user's own (``convert --out``)."""
    if limit is None or (root / KEEP_MARKER).exists():
        return []
    listing = entries(root)
    total = sum(e.size for e in listing)
    removed = []
    for entry in listing:
        if total <= limit:
            break
        if entry.in_use or (keep is not None and keep.parent == entry.path):
            continue
        if clear_slot(entry.path):
            total -= entry.size
            removed.append(entry.path)
    return removed


def clear_slot(slot: Path) -> bool:
    """Delete a whole slot unless one of its versions is in use; True when it is gone."""
    if not all(remove(v) for v in _versions(slot)):
        return False
    clean_slot(slot)
    shutil.rmtree(slot, ignore_errors=True)
    return not slot.exists()
