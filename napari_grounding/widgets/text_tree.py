"""The text tree of a case: items with category badges, colour swatches and mask numbers."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTreeWidget, QTreeWidgetItem

from ..colours import colour_slots, finding_colour
from ..layers import drawable
from ..metrics import AnnotationStats, MaskStats, display_slice_range, volume_ml
from ..model import Case, TextItem

COLUMNS = ("Text", "Tags", "Voxels", "mL", "Inst.", "Slices")
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
    """Voxels (pixels), mL, instances and display slice range over an item's own masks."""
    own = [(case.annotations[a], stats[a]) for a in item.annotations
           if isinstance(stats.get(a), MaskStats)]
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


class TextTree(QTreeWidget):
    """Shows a case's text items; selection is by item id."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setColumnCount(len(COLUMNS))
        self.setHeaderLabels(COLUMNS)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setWordWrap(True)
        self.setUniformRowHeights(False)
        # the text takes what the badges and numbers leave; full text is in the tooltip
        header = self.header()
        header.setStretchLastSection(False)
        header.setMinimumSectionSize(36)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self._rows: dict[str, QTreeWidgetItem] = {}

    def populate(self, case: Case) -> None:
        self.clear()
        self._rows = {}
        slots = colour_slots(case)
        colours = {a.id: slots[a.id] for a in drawable(case)}
        for item in case.items:
            self.addTopLevelItem(self._row(item, colours))
        self.expandToDepth(0)

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
