"""Which text items a set of tag filters keeps (pure logic behind the panel's filters)."""

from __future__ import annotations

from .model import Case, TextItem

# Tags a reviewer filters by, in the order the panel offers them.
FILTER_TAGS = ("question_strategy", "question_type", "answer_type", "positiveness", "quality")


def filter_choices(case: Case) -> dict[str, list[str]]:
    """The filterable tags present in a case, with their values."""
    values: dict[str, set[str]] = {}
    for item in case.walk():
        for tag in FILTER_TAGS:
            if tag in item.tags:
                values.setdefault(tag, set()).add(item.tags[tag])
    return {tag: sorted(values[tag]) for tag in FILTER_TAGS if tag in values}


def kept_items(case: Case, filters: dict[str, str]) -> set[str]:
    """Ids of the items to show. Each filter is decided by the nearest item carrying its tag
    (the item itself, else an ancestor): an item matches when every filter is decided and
    passes; an item is kept when it matches or when a descendant is kept (as its context)."""
    kept: set[str] = set()

    def visit(item: TextItem, decided: dict[str, bool]) -> bool:
        decided = {**decided, **{tag: item.tags[tag] == value for tag, value in filters.items()
                                 if tag in item.tags}}
        matches = len(decided) == len(filters) and all(decided.values())
        keep = any([visit(child, decided) for child in item.children]) or matches
        if keep:
            kept.add(item.id)
        return keep

    for item in case.items:
        visit(item, {})
    return kept
