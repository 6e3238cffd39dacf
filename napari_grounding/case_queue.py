"""The case queue: a dataset's cases with their review state, filtered and sorted (no Qt).

Rows come from what is cheap to know for every case: the reader's one-line summary (its
tab-separated fields include ``categories 1c 2d`` for ReXGroundingCT and ``grade B`` for QBA),
the decisions in the review log, the cases a ``qc`` CSV flagged and, once a model has been
evaluated, per-case scores. Opening a case is never needed to list it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .model import GroundingError
from .review import Decision

FILTERS = ("all cases", "unreviewed", "in progress", "has rejections", "flagged by qc",
           "low quality", "disagreements")
SORTS = ("dataset order", "fewest decisions first", "most rejections first", "worst score first",
         "worst grade first")
REJECTING = ("reject", "needs_fix")
# MIMIC-Ext-CXR-QBA's overall rating, best first: B or better is its pre-training grade, A or
# better its fine-tuning grade
GRADES = ("A++", "A+", "A", "B", "C", "D")
ANY_FACET = "any category or grade"
GRADE_FACETS = ("grade below A (not fine-tuning)", "grade below B (not pre-training)", "ungraded")


@dataclass
class QueueRow:
    case_id: str
    summary: str = ""
    decided: int = 0
    rejected: int = 0
    qc_flags: list[str] = field(default_factory=list)
    score: float | None = None  # e.g. a model's mean Dice on the case, lower is worse
    disagreements: int = 0  # keys another reviewer decided otherwise

    @property
    def low_quality(self) -> bool:
        return "LOW" in self.summary.split()

    @property
    def categories(self) -> list[str]:
        return summary_field(self.summary, "categories")

    @property
    def grade(self) -> str | None:
        found = summary_field(self.summary, "grade")
        return found[0] if found else None

    @property
    def grade_rank(self) -> int | None:
        """0 for the best grade; None when ungraded (or graded in a scale we do not know)."""
        return GRADES.index(self.grade) if self.grade in GRADES else None


def summary_field(summary: str, name: str) -> list[str]:
    """The words of a summary's ``<name> word word`` field (fields are tab-separated)."""
    for part in summary.split("\t"):
        head, _, rest = part.partition(" ")
        if head == name:
            return rest.split()
    return []


def facets(rows: Iterable[QueueRow]) -> list[str]:
    """The category and grade filters the rows can be narrowed by: each finding category some
    case has (with its name where the dataset card gives one), grade thresholds if any is graded."""
    from .readers.rexgroundingct import CATEGORY_NAMES

    rows = list(rows)
    found = [ANY_FACET]
    for code in sorted({c for r in rows for c in r.categories}):
        name = CATEGORY_NAMES.get(code)
        found.append(f"category {code} ({name})" if name else f"category {code}")
    if any(r.grade is not None for r in rows):
        found += GRADE_FACETS
    return found


def has_facet(row: QueueRow, facet: str) -> bool:
    """Whether a row is in a facet of ``facets``."""
    if facet == ANY_FACET:
        return True
    if facet.startswith("category "):
        return facet.split()[1] in row.categories
    rank = row.grade_rank
    if facet == "ungraded":
        return rank is None
    limit = GRADES.index("A" if "below A" in facet else "B")
    return rank is not None and rank > limit


def case_of(key: str) -> str:
    """The case id in a review key ``<key space>/<case>/<item id>``."""
    parts = key.split("/")
    return parts[1] if len(parts) > 2 else ""


def queue_rows(case_ids: list[str], decisions: Mapping[str, Decision] | None = None,
               summaries: Mapping[str, str] | None = None,
               qc_flags: Mapping[str, list[str]] | None = None,
               scores: Mapping[str, float] | None = None,
               others: Mapping[str, Decision] | None = None) -> list[QueueRow]:
    """One row per case; ``others`` is a second reviewer's latest decisions."""
    rows = {c: QueueRow(c, (summaries or {}).get(c, "")) for c in case_ids}
    for key, decision in (decisions or {}).items():
        row = rows.get(case_of(key))
        if row is not None:
            row.decided += 1
            row.rejected += decision.verdict in REJECTING
    for key, other in (others or {}).items():
        mine = (decisions or {}).get(key)
        row = rows.get(case_of(key))
        if row is not None and mine is not None and mine.verdict != other.verdict:
            row.disagreements += 1
    for case_id, flags in (qc_flags or {}).items():
        if case_id in rows:
            rows[case_id].qc_flags = list(flags)
    for case_id, score in (scores or {}).items():
        if case_id in rows:
            rows[case_id].score = score
    return list(rows.values())


def keep(row: QueueRow, chosen: str, text: str = "", facet: str = ANY_FACET) -> bool:
    """Whether a row passes a filter (one of ``FILTERS``), a facet (one of ``facets``) and a
    free-text search."""
    if text and text.lower() not in f"{row.case_id} {row.summary}".lower():
        return False
    if not has_facet(row, facet):
        return False
    return {
        "all cases": True,
        "unreviewed": row.decided == 0,
        "in progress": row.decided > 0,
        "has rejections": row.rejected > 0,
        "flagged by qc": bool(row.qc_flags),
        "low quality": row.low_quality,
        "disagreements": row.disagreements > 0,
    }[chosen]


def sort_rows(rows: Iterable[QueueRow], how: str) -> list[QueueRow]:
    rows = list(rows)
    if how == "fewest decisions first":
        return sorted(rows, key=lambda r: r.decided)
    if how == "most rejections first":
        return sorted(rows, key=lambda r: -r.rejected)
    if how == "worst score first":
        return sorted(rows, key=lambda r: (r.score is None, r.score if r.score is not None else 0))
    if how == "worst grade first":
        return sorted(rows, key=lambda r: (r.grade_rank is None, -(r.grade_rank or 0)))
    return rows


def read_qc_flags(path: str | Path) -> dict[str, list[str]]:
    """Case id -> the checks a ``napari-grounding qc`` CSV flagged for it."""
    flags: dict[str, list[str]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            if reader.fieldnames is None or "case" not in reader.fieldnames:
                raise GroundingError(f"{path}: not a qc CSV (no 'case' column)")
            for row in reader:
                flags.setdefault(row["case"], []).append(row.get("check") or "")
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise GroundingError(f"--qc {path}: cannot read ({err})") from None
    return flags


def read_case_scores(path: str | Path) -> dict[str, float]:
    """Case id -> mean Dice over its items, from a ``napari-grounding evaluate`` CSV (a case
    without a prediction counts 0: missed)."""
    sums: dict[str, list[float]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            if reader.fieldnames is None or not {"case", "dice"} <= set(reader.fieldnames):
                raise GroundingError(f"--scores {path}: not an evaluate CSV (needs case, dice)")
            for row in reader:
                try:
                    value = float(row["dice"]) if row["dice"] not in ("", None) else 0.0
                except ValueError:
                    raise GroundingError(f"--scores {path}: dice {row['dice']!r} is not a "
                                         f"number (line {reader.line_num})") from None
                sums.setdefault(row["case"], []).append(value)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise GroundingError(f"--scores {path}: cannot read ({err})") from None
    return {case: sum(values) / len(values) for case, values in sums.items()}

