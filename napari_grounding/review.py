"""Review verdicts in a crash-safe, append-only JSON Lines log (one file per reviewer and dataset).

Each decision is one line ``{"key", "verdict", "comment", "reviewer", "time"}``, written, flushed
and fsynced before ``record`` returns, so a decision reported as saved survives a killed process
or a power cut. Reading keeps the latest line per key (file order); a line that does not parse
(a torn write) is skipped and reported, and everything else is kept.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from platformdirs import user_config_path, user_data_path

from .model import Case, GroundingError

VERDICTS = ("accept", "reject", "needs_fix", "unsure")
APP = "napari-grounding"
LOG_FOLDER = ".napari-grounding"  # beside the user's data, when writable


class ReviewLogWarning(UserWarning):
    """A line of a review log was skipped (torn by a crash, or not a decision)."""


@dataclass(frozen=True)
class Decision:
    """One reviewer's verdict on one key, as stored on one line of the log."""

    key: str
    verdict: str
    comment: str
    reviewer: str
    time: str  # ISO 8601, UTC

    def to_line(self) -> bytes:
        return (json.dumps(asdict(self), ensure_ascii=False) + "\n").encode("utf-8")


class Progress(NamedTuple):
    reviewed: int
    total: int


def utc_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds, e.g. ``2026-01-31T09:15:02.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_line(raw: bytes) -> Decision:
    """One log line as a Decision; ValueError says what is wrong with it."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not JSON ({err})") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    fields = {}
    for name in ("key", "verdict", "reviewer", "time", "comment"):
        value = record.get(name, "" if name == "comment" else None)
        if not isinstance(value, str) or (name != "comment" and not value):
            raise ValueError(f"{name!r} missing or not a string")
        fields[name] = value
    if fields["verdict"] not in VERDICTS:
        raise ValueError(f"unknown verdict {fields['verdict']!r}")
    try:
        parse_time(fields["time"])
    except ValueError:
        raise ValueError(f"time {fields['time']!r} is not ISO 8601") from None
    return Decision(**fields)


def read_log(path: str | Path) -> tuple[list[Decision], list[str]]:
    """Every decision of a log in file order, and one problem per skipped line.

    A missing file is an empty log; a file that cannot be read raises GroundingError.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a device or pipe that never ends
        raise GroundingError(f"{path}: cannot read review log (not a file)")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], []
    except OSError as err:
        raise GroundingError(f"{path}: cannot read review log ({err.strerror or err})") from None
    lines = data.split(b"\n")
    decisions, problems = [], []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            decisions.append(_parse_line(raw))
        except ValueError as err:
            # the last line without its newline was cut mid-write; anything else is damage
            where = "last line, cut short" if number == len(lines) else f"line {number}"
            problems.append(f"{path}: {where}: skipped ({err})")
    return decisions, problems


def latest(decisions: Iterable[Decision]) -> dict[str, Decision]:
    """The latest decision per key: later lines win."""
    return {d.key: d for d in decisions}


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` accepted; no zone means UTC) as an aware datetime."""
    value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def latest_per_reviewer(logs: Iterable[list[Decision]]) -> list[Decision]:
    """The latest decision per (key, reviewer), sorted by key then reviewer.

    Within one log the later line wins; between logs (one reviewer on two machines) the later
    time wins, and on equal times the later log.
    """
    best: dict[tuple[str, str], Decision] = {}
    for decisions in logs:
        for pair, decision in {(d.key, d.reviewer): d for d in decisions}.items():
            kept = best.get(pair)
            if kept is None or parse_time(decision.time) >= parse_time(kept.time):
                best[pair] = decision
    return [best[pair] for pair in sorted(best)]


EXPORT_COLUMNS = ("key", "reviewer", "verdict", "comment", "time")


def write_export(decisions: Iterable[Decision], out: str | Path) -> int:
    """Decisions as CSV rows (``EXPORT_COLUMNS``); returns the number of rows."""
    rows = [[getattr(d, c) for c in EXPORT_COLUMNS] for d in decisions]
    with open(out, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(EXPORT_COLUMNS)
        writer.writerows(rows)
    return len(rows)


class ReviewLog:
    """One reviewer's log: load it, record decisions durably, ask what is left to review.

    Lines that had to be skipped on loading are in ``problems`` and, unless ``warn`` is false,
    are also issued as ``ReviewLogWarning`` (napari shows warnings as notifications).
    """

    def __init__(self, path: str | Path, reviewer: str, warn: bool = True):
        self.path = Path(path)
        self.reviewer = reviewer.strip()
        if not self.reviewer:
            raise GroundingError("a review needs a reviewer name")
        decisions, self.problems = read_log(self.path)
        self._latest = latest(decisions)
        self._fd: int | None = None
        if warn:
            for problem in self.problems:
                warnings.warn(problem, ReviewLogWarning, stacklevel=2)

    def record(self, key: str, verdict: str, comment: str = "") -> Decision:
        """Append a decision; it is on disk (fsynced) when this returns."""
        if verdict not in VERDICTS:
            raise GroundingError(f"unknown verdict {verdict!r} (one of: {', '.join(VERDICTS)})")
        if not key:
            raise GroundingError("a decision needs a key")
        decision = Decision(key, verdict, comment, self.reviewer, utc_now())
        self._append([decision], "decision not saved")
        return decision

    def merge(self, other: str | Path) -> int:
        """Carry this reviewer's decisions from another log into this one: each key's decision
        there that is newer than this log's (or the only one), appended with its own time.
        Returns how many; a second merge of the same log appends none. The other log is only
        read."""
        theirs, _ = read_log(other)
        newer = [d for d in latest(d for d in theirs if d.reviewer == self.reviewer).values()
                 if d.key not in self._latest
                 or parse_time(d.time) > parse_time(self._latest[d.key].time)]
        if newer:
            self._append(newer, f"decisions of {other} not saved")
        return len(newer)

    def _append(self, decisions: list[Decision], failure: str) -> None:
        """Decisions appended to the log, on disk (fsynced) when this returns."""
        fd = self._open()
        try:
            _write_all(fd, b"".join(d.to_line() for d in decisions))
            os.fsync(fd)
        except OSError as err:  # disk full, removed drive: not saved, and the caller must say so
            self.close()  # reopening checks for a torn end again
            raise GroundingError(f"{self.path}: {failure} ({err.strerror or err})") from None
        self._latest.update((d.key, d) for d in decisions)

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        new_folders = [f for f in (self.path.parent, *self.path.parent.parents) if not f.exists()]
        created = not self.path.exists()
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)  # no \r\n on Windows
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, flags, 0o644)
            if not created and _ends_mid_line(fd):  # after a torn write, start a fresh line
                _write_all(fd, b"\n")
        except OSError as err:
            raise GroundingError(f"{self.path}: cannot write review log ({err.strerror or err})") from None
        # new names (the file, folders made for it) must survive a power cut too
        for folder in {f.parent for f in new_folders} | ({self.path.parent} if created else set()):
            _fsync_dir(folder)
        self._fd = fd
        return fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ReviewLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            self.close()

    def decisions(self) -> dict[str, Decision]:
        """The latest decision per key."""
        return dict(self._latest)

    def verdict(self, key: str) -> str | None:
        decision = self._latest.get(key)
        return decision.verdict if decision else None

    def first_unreviewed(self, keys: Sequence[str], after: str | None = None) -> str | None:
        """The first key without a decision; with ``after``, the first one past it (wrapping)."""
        start = keys.index(after) + 1 if after in keys else 0
        for key in [*keys[start:], *keys[:start]]:
            if key not in self._latest:
                return key
        return None

    def progress(self, keys: Iterable[str]) -> Progress:
        keys = list(keys)
        return Progress(sum(k in self._latest for k in keys), len(keys))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _ends_mid_line(fd: int) -> bool:
    size = os.fstat(fd).st_size
    if size == 0:
        return False
    os.lseek(fd, size - 1, os.SEEK_SET)  # reads only: O_APPEND writes go to the end anyway
    return os.read(fd, 1) != b"\n"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a folder; the file itself is fsynced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not supported for folders on this filesystem
    finally:
        os.close(fd)


def case_keys(case: Case) -> list[str]:
    """Every reviewable key of a case in reading order: each text item, then its annotations."""
    keys, seen = [], set()
    for item in case.walk():
        keys.append(case.item_key(item))
        for annotation in item.annotations:
            if annotation in case.annotations and annotation not in seen:
                seen.add(annotation)
                keys.append(case.annotation_key(annotation))
    keys += [case.annotation_key(a) for a in case.annotations if a not in seen]
    return keys


def slug(name: str) -> str:
    """A name safe in a file name on any system: lower case letters, digits, ``.``, ``_``, ``-``."""
    text = re.sub(r"[^a-z0-9._-]+", "-", name.strip().lower()).strip(".-")
    return text[:64] or "unnamed"


def log_name(dataset: str, reviewer: str) -> str:
    return f"review-{slug(dataset)}-{slug(reviewer)}.jsonl"


def default_log_path(data_root: str | Path, dataset: str, reviewer: str) -> Path:
    """``<data root>/.napari-grounding/review-<dataset>-<reviewer>.jsonl`` when that folder can
    be written, else the same name under the user data folder's ``reviews/``."""
    root = Path(data_root)
    if root.is_file():  # a dataset named by one of its files (dataset.json, a CSV)
        root = root.parent
    name = log_name(dataset, reviewer)
    folder = root / LOG_FOLDER
    usable = _writable(folder) if folder.exists() else _writable(root)
    if usable:
        return folder / name
    return user_data_path(APP) / "reviews" / name


def data_root(dataset: object, case: Case) -> Path:
    """The folder a dataset was opened from (its root, or its file's), for the default log."""
    root = getattr(dataset, "root", None) or getattr(dataset, "path", None)
    if root is not None:
        return Path(root)
    image_folder = _first_image_folder(case)
    return image_folder if image_folder is not None else user_data_path(APP)


def _first_image_folder(case: Case) -> Path | None:
    sources = [i.source for i in case.images.values() if i.source]
    return Path(sources[0]).parent if sources else None


def earlier_log_path(case: Case, dataset: str, reviewer: str) -> Path | None:
    """The log a reviewer may have beside a case's first image, where a dataset opened
    without a root folder (ReXGradient) kept it before its log moved beside the dataset:
    one per study. None when there is none."""
    image_folder = _first_image_folder(case)
    if image_folder is None:
        return None
    path = image_folder / LOG_FOLDER / log_name(dataset, reviewer)
    return path if path.is_file() else None


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def settings_path() -> Path:
    return user_config_path(APP) / "settings.json"


def _settings() -> dict:
    try:
        settings = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or damaged: start afresh
        return {}
    return settings if isinstance(settings, dict) else {}


def remembered_reviewer() -> str | None:
    """The reviewer name given last time, if any."""
    name = _settings().get("reviewer")
    return name if isinstance(name, str) and name.strip() else None


def remember_reviewer(name: str) -> None:
    """Keep the reviewer name for next time (written atomically: never a half-written file)."""
    path = settings_path()
    settings = {**_settings(), "reviewer": name.strip()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as file:
            json.dump(settings, file, indent=2)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise GroundingError(f"{path}: cannot save settings ({err.strerror or err})") from None
    _fsync_dir(path.parent)
