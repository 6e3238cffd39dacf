"""What the user is looking at: the open case, the selection, the shown image, the display.

Qt-free and evented with psygnal, as napari's own models are. The text tree, the canvas, the key
bindings and the display controls change the session and redraw from its signals; none of them
reads state back out of a Qt control, so everything here is tested without a viewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psygnal import Signal

from .filters import kept_items
from .model import Case, GroundingError, TextItem
from .navigation import item_annotation_ids
from .review import Decision, ReviewLog, earlier_log_path
from .windows import CT_DEFAULT_WINDOW, CT_WINDOWS, takes_ct_windows, window_for

MASK_MODES = ("all", "selected")
PLANES = ("axial", "coronal", "sagittal")


class Session:
    """One reviewer's state in one viewer.

    Signals carry the new value; ``selection_changed`` also says whether the view should move
    to the selection (a click in the canvas selects without moving).
    """

    dataset_changed = Signal(object)  # the reader's dataset, or None
    case_requested = Signal(str)  # a case id the user asked for (opening it is I/O: the panel's)
    case_changed = Signal(object)  # Case | None
    stats_changed = Signal(object)  # {annotation id: AnnotationStats}
    selection_changed = Signal(tuple, bool)  # item ids, navigate
    image_changed = Signal(object)  # id of the image shown, or None (all)
    display_changed = Signal(str, bool)  # mask mode, contours only
    window_changed = Signal(object)  # CT window preset name, or None (user's own limits)
    filters_changed = Signal(dict)  # tag -> value kept
    plane_changed = Signal(object)  # "axial" | "coronal" | "sagittal" chosen by the user, or None
    review_changed = Signal(object)  # the ReviewLog decisions go to, or None
    verdict_recorded = Signal(str, object)  # key, Decision: on disk when emitted
    comment_requested = Signal()  # the reviewer wants to type a comment
    review_target_changed = Signal(object)  # an annotation of the selected item, or None (it)
    scores_changed = Signal(object)  # {item id: ItemScore} of a prediction set, or None
    errors_changed = Signal(bool)  # true/false positives and negatives shown or not
    order_changed = Signal(bool)  # items listed worst scored first, or in reading order
    notice = Signal(str)  # a one-line answer to a key that had nothing to do
    reviewer_needed = Signal()  # a verdict was asked for before anyone named the reviewer

    def __init__(self) -> None:
        self.dataset: Any = None
        self.case_ids: list[str] = []
        self.case: Case | None = None
        self.stats: dict[str, Any] | None = None
        self.selected: tuple[str, ...] = ()
        self.image: str | None = None
        self.mask_mode = "all"
        self.contours = False
        self.window: str | None = None
        self.filters: dict[str, str] = {}
        self.plane: str | None = None
        self.review: ReviewLog | None = None
        self.review_target: str | None = None
        self.scores: dict[str, Any] | None = None
        self.errors_shown = False
        self.worst_first = False

    def disconnect_all(self) -> None:
        """Forget every subscriber (the widgets that showed this session are gone)."""
        for name in dir(type(self)):
            signal = getattr(self, name)
            if isinstance(getattr(type(self), name), Signal):
                signal.disconnect()

    # -- dataset and cases ------------------------------------------------------------------
    def set_dataset(self, dataset: Any, case_ids: list[str] | None = None) -> None:
        """The dataset whose cases the user moves through (None: a lone case)."""
        self.dataset = dataset
        self.case_ids = list(case_ids if case_ids is not None else
                             (dataset.case_ids() if dataset is not None else []))
        self.dataset_changed.emit(dataset)

    @property
    def case_key(self) -> str | None:
        return self.case.key if self.case is not None else None

    def case_position(self) -> tuple[int, int] | None:
        """(index, count) of the open case in the dataset's case list, when it is listed."""
        if self.case is None or self.case.id not in self.case_ids:
            return None
        return self.case_ids.index(self.case.id), len(self.case_ids)

    def neighbour_case(self, step: int) -> str | None:
        """The case ``step`` places away in the case list, or None past either end."""
        position = self.case_position()
        if position is None:
            return self.case_ids[0] if self.case_ids and self.case is None else None
        index = position[0] + step
        return self.case_ids[index] if 0 <= index < len(self.case_ids) else None

    def request_case(self, case_id: str) -> None:
        if self.case is None or case_id != self.case.id:
            self.case_requested.emit(case_id)

    def next_case(self, step: int = 1) -> str | None:
        """Ask for the next (or, with -1, previous) case; returns its id."""
        case_id = self.neighbour_case(step)
        if case_id is not None:
            self.request_case(case_id)
        return case_id

    def set_case(self, case: Case | None) -> None:
        """Show another case: selection, stats, image and filters start afresh."""
        self.case = case
        self.stats = None
        self.scores = None
        self.selected = ()
        self.filters = {}
        self.image = next(iter(case.images), None) if case is not None and len(case.images) > 1 \
            else None
        kept = self.window if self.window in CT_WINDOWS else CT_DEFAULT_WINDOW  # the reader's preset
        self.window = kept if case is not None and _has_ct(case) else None
        self.case_changed.emit(case)
        self.scores_changed.emit(None)
        self.image_changed.emit(self.image)
        self.window_changed.emit(self.window)

    def set_stats(self, case_key: str, stats: dict[str, Any]) -> bool:
        """Mask statistics arrived; dropped (False) when the user has left that case."""
        if case_key != self.case_key:
            return False
        self.stats = stats
        self.stats_changed.emit(stats)
        return True

    # -- selection --------------------------------------------------------------------------
    def select(self, item_ids: list[str] | tuple[str, ...], navigate: bool = True) -> None:
        """Select text items (unknown ids are a GroundingError) and follow their window."""
        if self.case is None:
            return
        items = [self.case.item(i) for i in item_ids]
        self.selected = tuple(i.id for i in items) + self._linked(items)
        if self.review_target is not None:
            self.review_target = None
            self.review_target_changed.emit(None)
        if items and _has_ct(self.case):
            preset = window_for(items[0])
            if preset is not None:
                self.set_window(preset)
        self.selection_changed.emit(self.selected, navigate)

    def _linked(self, items: list[TextItem]) -> tuple[str, ...]:
        """Items the selected ones name in their ``links`` tag (a report sentence's scene-graph
        observations, an observation's sentences), selected along with them."""
        chosen = {i.id for i in items}
        known = {i.id for i in self.case.walk()}
        linked = [link for i in items for link in i.tags.get("links", "").split()]
        return tuple(dict.fromkeys(x for x in linked if x in known and x not in chosen))

    def navigable_items(self) -> list[TextItem]:
        """The items next/previous step through: those the filters keep, in reading order."""
        if self.case is None:
            return []
        kept = kept_items(self.case, self.filters) if self.filters else None
        items = [i for i in self.case.walk() if kept is None or i.id in kept]
        if self.worst_first and self.scores:
            rank = {item_id: n for n, item_id in enumerate(self.ranked_items())}
            items.sort(key=lambda i: rank.get(i.id, len(rank)))  # stable: the rest keep order
        return items

    def ranked_items(self) -> list[str]:
        """Scored items, the worst first (a missing prediction first of all)."""
        from .scores import worst_first

        return worst_first(self.scores) if self.scores else []

    def step_item(self, step: int = 1) -> str | None:
        """Select the next (or previous) item; from nothing selected, the first (or last)."""
        items = [i.id for i in self.navigable_items()]
        if not items:
            return None
        if self.selected and self.selected[0] in items:
            index = items.index(self.selected[0]) + step
            if not 0 <= index < len(items):
                return None
        else:
            index = 0 if step > 0 else len(items) - 1
        self.select([items[index]])
        return items[index]

    def first_grounded_item(self) -> str | None:
        """The first item (in reading order) with an annotation of its own on one of the case's
        images (a finding, an answer; not the group holding them)."""
        if self.case is None:
            return None
        shown = {a.id for a in self.case.annotations.values() if a.image in self.case.images}
        return next((i.id for i in self.case.walk() if any(a in shown for a in i.annotations)),
                    None)

    def selected_annotations(self) -> set[str]:
        if self.case is None:
            return set()
        return {a for i in self.selected for a in item_annotation_ids(self.case.item(i))}

    # -- images, display, window ------------------------------------------------------------
    def show_image(self, image_id: str | None) -> None:
        if self.case is None or image_id == self.image:
            return
        if image_id is not None and image_id not in self.case.images:
            raise GroundingError(f"case {self.case.id} has no image {image_id!r}")
        self.image = image_id
        self.image_changed.emit(image_id)

    def next_image(self) -> str | None:
        """Cycle through the case's images (views); None when it has only one."""
        if self.case is None or len(self.case.images) < 2:
            return None
        ids = list(self.case.images)
        index = ids.index(self.image) + 1 if self.image in ids else 0
        self.show_image(ids[index % len(ids)])
        return self.image

    def set_display(self, mask_mode: str | None = None, contours: bool | None = None) -> None:
        if mask_mode is not None and mask_mode not in MASK_MODES:
            raise GroundingError(f"unknown mask mode {mask_mode!r} (known: {', '.join(MASK_MODES)})")
        mode = mask_mode if mask_mode is not None else self.mask_mode
        only_contours = contours if contours is not None else self.contours
        if (mode, only_contours) != (self.mask_mode, self.contours):
            self.mask_mode, self.contours = mode, only_contours
            self.display_changed.emit(mode, only_contours)

    def set_window(self, name: str | None) -> None:
        """A CT window preset by name, or None once the user set limits of their own."""
        if name is not None and name not in CT_WINDOWS:
            raise GroundingError(f"unknown CT window {name!r} (known: {', '.join(CT_WINDOWS)})")
        if name != self.window:
            self.window = name
            self.window_changed.emit(name)

    def set_filters(self, chosen: dict[str, str]) -> None:
        if chosen != self.filters:
            self.filters = dict(chosen)
            self.filters_changed.emit(self.filters)

    # -- predictions ------------------------------------------------------------------------
    def set_scores(self, case_key: str, scores: dict[str, Any]) -> bool:
        """Scores of the case's prediction set arrived; dropped when the user has left."""
        if case_key != self.case_key:
            return False
        self.scores = scores
        self.scores_changed.emit(scores)
        return True

    def toggle_errors(self) -> None:
        """Show the selected item's true positives, false positives and false negatives (or
        its masks again); only where the case holds a second set to compare."""
        if self.case is None or not self.case.added_sets:
            return
        self.errors_shown = not self.errors_shown
        self.errors_changed.emit(self.errors_shown)

    def set_worst_first(self, on: bool) -> None:
        if on != self.worst_first:
            self.worst_first = on
            self.order_changed.emit(on)

    def set_plane(self, plane: str | None) -> None:
        if plane is not None and plane not in PLANES:
            raise GroundingError(f"unknown plane {plane!r} (known: {', '.join(PLANES)})")
        if plane != self.plane:
            self.plane = plane
            self.plane_changed.emit(plane)


    # -- review -----------------------------------------------------------------------------
    def set_review(self, log: ReviewLog | None) -> None:
        self.review = log
        self.review_changed.emit(log)

    def carry_earlier_decisions(self) -> tuple[int, Path | None]:
        """The reviewer's decisions in the open case's earlier log (beside its first image,
        where a ReXGradient study's went before its log moved beside the dataset) carried into
        the open log, when newer: (how many, from where)."""
        if self.review is None or self.case is None:
            return 0, None
        earlier = earlier_log_path(self.case, self.case.key.split("/")[0], self.review.reviewer)
        if earlier is None or earlier.resolve() == self.review.path.resolve():
            return 0, None
        count = self.review.merge(earlier)
        if count:
            self.review_changed.emit(self.review)
        return count, earlier

    def reviewable_items(self) -> list[TextItem]:
        """What a reviewer goes through: the items grounded by annotations of their own (the
        findings, the answers), or in a case with none the items holding no others (a report's
        sentences, not the sections they make up)."""
        if self.case is None:
            return []
        items = list(self.case.walk())
        grounded = [i for i in items if any(a in self.case.annotations for a in i.annotations)]
        return grounded or [i for i in items if not i.children]

    def item_key(self, item_id: str) -> str:
        return self.case.item_key(self.case.item(item_id))

    def verdict_of(self, item_id: str) -> Decision | None:
        if self.review is None or self.case is None:
            return None
        return self.review.decisions().get(self.item_key(item_id))

    def set_review_target(self, annotation_id: str | None) -> None:
        """Verdicts go to one annotation of the selected item (a mask, a contour, a box)
        instead of the item itself; None: the item."""
        if annotation_id is not None and (self.case is None
                                          or annotation_id not in self.case.annotations):
            raise GroundingError(f"no annotation {annotation_id!r} in this case")
        if annotation_id != self.review_target:
            self.review_target = annotation_id
            self.review_target_changed.emit(annotation_id)

    def review_key(self) -> str | None:
        """The key a verdict now goes to: the review target's, else the selected item's."""
        if self.case is None or not self.selected:
            return None
        if self.review_target is not None:
            return self.case.annotation_key(self.review_target)
        return self.item_key(self.selected[0])

    def record(self, verdict: str, comment: str | None = None) -> Decision | None:
        """Record a verdict on the selected item or review target (durably: the log fsyncs
        before this returns); ``comment`` None keeps the earlier comment."""
        key = self.review_key()
        if self.review is None and self.case is not None:
            self.reviewer_needed.emit()
            self.notice.emit("Name the reviewer first (the Reviewer box): verdicts are saved "
                             "under that name.")
        if self.review is None or key is None:
            return None
        earlier = self.review.decisions().get(key)
        if comment is None:
            comment = earlier.comment if earlier is not None else ""
        decision = self.review.record(key, verdict, comment)
        self.verdict_recorded.emit(key, decision)
        return decision

    def request_comment(self) -> None:
        if self.selected:
            self.comment_requested.emit()

    def comment(self, text: str) -> Decision | None:
        """Save a comment on the selected item (or review target), keeping its verdict
        (``unsure`` if none yet)."""
        key = self.review_key()
        if self.review is None or key is None:
            return None
        earlier = self.review.decisions().get(key)
        return self.record(earlier.verdict if earlier is not None else "unsure", text)

    def review_progress(self) -> tuple[int, int]:
        """(reviewed, total) over this case's reviewable items."""
        if self.review is None or self.case is None:
            return 0, 0
        keys = [self.case.item_key(i) for i in self.reviewable_items()]
        return tuple(self.review.progress(keys))

    def resume_case(self) -> str | None:
        """The case of the reviewer's latest decision in this dataset's key space, if listed."""
        if self.review is None or self.case is None:
            return None
        space = self.case.key.split("/")[0]
        mine = [d for d in self.review.decisions().values() if d.key.startswith(f"{space}/")]
        if not mine:
            return None
        latest = max(mine, key=lambda d: d.time).key.split("/")[1]
        return latest if latest in self.case_ids else None

    def next_unreviewed(self) -> str | None:
        """Select the next reviewable item without a verdict (after the selected one, wrapping);
        when the case is done, ask for the next case. Returns the item id, or None."""
        if self.review is None or self.case is None:
            return None
        ids = [i.id for i in self.reviewable_items()]
        keys = [self.case.item_key(self.case.item(i)) for i in ids]
        after = self.item_key(self.selected[0]) if self.selected and self.selected[0] in ids \
            else None
        key = self.review.first_unreviewed(keys, after=after)
        if key is None:
            if self.next_case(1) is None:
                self.notice.emit(f"Every item of {self.case.id} is reviewed, and it is the "
                                 "last case." if len(self.case_ids) > 1 else
                                 f"Every item of {self.case.id} is reviewed.")
            return None
        item_id = ids[keys.index(key)]
        self.select([item_id])
        return item_id


def _has_ct(case: Case) -> bool:
    return any(takes_ct_windows(image) for image in case.images.values())
