"""Agreement between two reviewers: raw agreement and Cohen's kappa over the four verdicts.

Computed in exact fractions, so the numbers a test works out by hand come out exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Agreement:
    """Two reviewers on the keys both decided. ``None`` when they share no key."""

    items: int
    agreement: float | None
    kappa: float | None

    def as_dict(self) -> dict:
        return {"items": self.items, "agreement": self.agreement, "kappa": self.kappa}


def cohen_kappa(pairs: list[tuple[str, str]]) -> tuple[Fraction, Fraction]:
    """Observed agreement p_o and kappa = (p_o - p_e) / (1 - p_e) for (verdict A, verdict B) pairs.

    p_e, the agreement expected by chance, sums over verdicts the product of how often each
    reviewer gave it. When p_e is 1 both reviewers gave one and the same verdict to every key,
    so p_o is 1 as well and kappa (0 / 0) is defined as 1: they agree completely.
    """
    n = len(pairs)
    if n == 0:
        raise ValueError("kappa needs at least one pair")
    observed = Fraction(sum(a == b for a, b in pairs), n)
    count_a = Counter(a for a, _ in pairs)
    count_b = Counter(b for _, b in pairs)
    expected = sum((Fraction(count_a[v] * count_b[v], n * n) for v in count_a), Fraction(0))
    if expected == 1:
        return observed, Fraction(1)
    return observed, (observed - expected) / (1 - expected)


def agreement(a: Mapping[str, str], b: Mapping[str, str]) -> Agreement:
    """Agreement of two ``key -> verdict`` maps on their shared keys."""
    shared = [key for key in a if key in b]
    if not shared:
        return Agreement(0, None, None)
    observed, kappa = cohen_kappa([(a[k], b[k]) for k in shared])
    return Agreement(len(shared), float(observed), float(kappa))


def dataset_of(key: str) -> str:
    """The dataset part of a key (``<dataset>/<case>/<id>``)."""
    return key.split("/", 1)[0]


def by_dataset(a: Mapping[str, str], b: Mapping[str, str]) -> dict[str, Agreement]:
    """Agreement per dataset, over the keys both decided, datasets in name order."""
    datasets = sorted({dataset_of(k) for k in a if k in b})
    return {d: agreement({k: v for k, v in a.items() if dataset_of(k) == d}, b) for d in datasets}
