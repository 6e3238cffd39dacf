"""The text tree of a case: items with category badges, colour swatches and mask numbers."""

from __future__ import annotations

from qtpy.QtCore import QRect, QSize, Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QStyledItemDelegate,
    QTreeWidget,
    QTreeWidgetItem,
)

from ..colours import colour_slots, finding_colour
from ..layers import drawable
from ..metrics import AnnotationStats, MaskStats, display_slice_range, volume_ml
from ..model import Case, TextItem

COLUMNS = ("Text", "Tags", "Voxels", "mL", "Inst.", "Slices", "Review", "Score")
REVIEW_COLUMN = 6
SCORE_COLUMN = 7
STATS_COLUMNS = range(2, 6)
BADGE_TAGS = ("category", "extent", "view", "answer_type", "positiveness", "certainty",
              "quality")
ID_ROLE = Qt.ItemDataRole.UserRole


CASE_BADGES = ("split", "source", "scanner", "slices", "masks", "sex", "age")


def case_badges(case: Case) -> str:
    """The case header's badges (rich text): key tags, RCA quality, positive labels."""
    positive = [k.split(":", 1)[1] for k, v in case.tags.items()
                if k.startswith("label:") and v == "1"]
    plain = [f"{k}: {v}" for k, v in case.tags.items() if k in CASE_BADGES]
    if "rca_dice_mean" in case.tags:
        rca = f"RCA Dice {case.tags['rca_dice_mean']}"
        flagged = case.tags.get("quality", "").startswith("flagged")
        plain.append(f'<span style="color:#f0a030">⚠ {rca} (below 0.7)</span>' if flagged else rca)
    return " · ".join(plain + positive)


def badges(item: TextItem) -> str:
    shown = [item.tags[k] for k in BADGE_TAGS if k in item.tags]
    shown += [f"Dice {v}" for k, v in item.tags.items() if k.startswith("dice vs")]
    return " · ".join(shown)


def stats_columns(case: Case, item: TextItem, stats: dict[str, AnnotationStats]) -> list[str]:
    """Voxels (pixels), mL, instances and display slice range over an item's own masks (of
    the case's own set: a prediction's are scored, not counted in)."""
    own = [(case.annotations[a], stats[a]) for a in item.annotations
           if isinstance(stats.get(a), MaskStats) and case.annotations[a].set == case.reference_set]
    if not own:
        return ["", "", "", ""]
    voxels = sum(s.voxels for _, s in own)
    ranges = [display_slice_range(s, case.images[a.image]) for a, s in own
              if a.image in case.images]
    ranges = [r for r in ranges if r is not None]
    ml = sum(volume_ml(s, case.images[a.image]) for a, s in own if a.image in case.images)
    slices = f"{min(r[0] for r in ranges)}–{max(r[1] for r in ranges)}" if ranges else "–"
    return [str(voxels), f"{ml:.2f}" if ranges else "", str(sum(s.instances for _, s in own)),
            slices]


class WrappingDelegate(QStyledItemDelegate):
    """Rows as tall as their sentence wrapped to the text column (Qt's own row heights ignore
    word wrap, so long sentences were cut to one line with an ellipsis)."""

    SWATCH = 24  # colour swatch and its gap
    PADDING = 8

    def __init__(self, tree: QTreeWidget):
        super().__init__(tree)
        self.tree = tree

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 (Qt's name)
        hint = super().sizeHint(option, index)
        if index.column() != 0:
            return hint
        depth, parent = 1, index.parent()
        while parent.isValid():
            depth, parent = depth + 1, parent.parent()
        width = (self.tree.columnWidth(0) - depth * self.tree.indentation() - self.SWATCH
                 - self.PADDING)
        text = str(index.data() or "")
        bounds = option.fontMetrics.boundingRect(QRect(0, 0, max(width, 40), 100000),
                                                 int(Qt.TextFlag.TextWordWrap), text)
        return QSize(hint.width(), max(hint.height(), bounds.height() + 4))


class TextTree(QTreeWidget):
    """Shows a case's text items; selection is by item id."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setColumnCount(len(COLUMNS))
        self.setHeaderLabels(COLUMNS)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        # whole sentences: rows wrap to the text column's width, which the user can drag
        self.setWordWrap(True)
        self.setUniformRowHeights(False)
        self.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.setItemDelegate(WrappingDelegate(self))
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header = self.header()
        header.setStretchLastSection(False)
        header.setMinimumSectionSize(36)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.sectionResized.connect(self._on_section_resized)
        self._rows: dict[str, QTreeWidgetItem] = {}

    def _on_section_resized(self, column: int, _old: int, _new: int) -> None:
        if column != 0:
            self.fit_text_column()  # a column sized to its contents grew or shrank
        self.scheduleDelayedItemsLayout()  # rows re-wrap to the new width

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """The text column takes the width the other columns leave."""
        super().resizeEvent(event)
        self.fit_text_column()

    def fit_text_column(self) -> None:
        header = self.header()
        others = sum(header.sectionSize(c) for c in range(1, self.columnCount())
                     if not self.isColumnHidden(c))
        self.setColumnWidth(0, max(140, self.viewport().width() - others))

    def populate(self, case: Case, first: list[str] | None = None) -> None:
        """List the case's items; ``first`` (item ids) puts those top-level items first."""
        self.clear()
        self._rows = {}
        slots = colour_slots(case)
        colours = {a.id: slots[a.id] for a in drawable(case)}
        rank = {item_id: n for n, item_id in enumerate(first or [])}
        for item in sorted(case.items, key=lambda i: rank.get(i.id, len(rank))):
            self.addTopLevelItem(self._row(item, colours))
        self.expandToDepth(0)
        self.fit_text_column()

    def _row(self, item: TextItem, colours: dict[str, int]) -> QTreeWidgetItem:
        row = QTreeWidgetItem([item.title or item.text, badges(item)])
        row.setData(0, ID_ROLE, item.id)
        tags = "\n".join(f"{k}: {v}" for k, v in item.tags.items())
        row.setToolTip(0, f"{item.text}\n\n{tags}".strip())
        row.setToolTip(1, tags)
        drawn = [a for a in item.annotations if a in colours]
        if drawn:
            r, g, b, _ = finding_colour(colours[drawn[0]])
            row.setData(0, Qt.ItemDataRole.DecorationRole, QColor.fromRgbF(r, g, b))
        self._rows[item.id] = row
        for child in item.children:
            row.addChild(self._row(child, colours))
        return row

    def set_stats(self, case: Case, stats: dict[str, AnnotationStats]) -> None:
        three_d = any(i.data.ndim == 3 for i in case.images.values())
        self.headerItem().setText(2, "Voxels" if three_d else "Pixels")
        for item in case.walk():
            row = self._rows.get(item.id)
            if row is not None:
                for column, text in enumerate(stats_columns(case, item, stats), start=2):
                    row.setText(column, text)
        self.fit_text_column()

    def set_verdict(self, item_id: str, verdict: str | None, colour: str = "") -> None:
        """The item's latest verdict as a badge in the Review column."""
        row = self._rows.get(item_id)
        if row is not None:
            row.setText(REVIEW_COLUMN, (verdict or "").replace("_", " "))
            row.setForeground(REVIEW_COLUMN, QColor(colour) if colour else QColor())

    def set_score(self, item_id: str, text: str, tooltip: str = "") -> None:
        row = self._rows.get(item_id)
        if row is not None:
            row.setText(SCORE_COLUMN, text)
            row.setToolTip(SCORE_COLUMN, tooltip)

    def show_only(self, item_ids: set[str] | None) -> None:
        """Hide every row not in ``item_ids`` (None shows all)."""
        for item_id, row in self._rows.items():
            row.setHidden(item_ids is not None and item_id not in item_ids)

    def selected_ids(self) -> list[str]:
        return [row.data(0, ID_ROLE) for row in self.selectedItems()]

    def select_ids(self, ids: list[str]) -> None:
        """Select exactly these items without emitting selection signals."""
        blocked = self.blockSignals(True)
        try:
            self.clearSelection()
            for item_id in ids:
                if item_id in self._rows:
                    self._rows[item_id].setSelected(True)
            if ids and ids[0] in self._rows:
                self.scrollToItem(self._rows[ids[0]])
        finally:
            self.blockSignals(blocked)
