"""The ROI statistics table: a Qt model over the session's ROI lines and a view with the name column frozen.

One row per ROI or label; per map a column "mean +- SD (n)" of the shown method (with the
voxels clipped at a range bound, when there are any), then the reference and the error
where references exist. A refresh with the same rows and columns only repaints (one
``dataChanged``); the column widths are fitted once per structure, never per refresh.
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from mrfviewer.colormaps import display_name
from mrfviewer.session import RoiLine, RoiRow

Qt = QtCore.Qt
_SOURCES = {"drawn": "drawn", "template": "NIST template", "labels": "label map"}
# Roles as plain ints: Qt passes ints, and comparing them with enum members costs time per cell.
_DISPLAY, _EDIT, _TOOLTIP = (
    int(r) for r in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole, Qt.ItemDataRole.ToolTipRole)
)
_DECORATION, _FOREGROUND = int(Qt.ItemDataRole.DecorationRole), int(Qt.ItemDataRole.ForegroundRole)
_ALIGN = int(Qt.ItemDataRole.TextAlignmentRole)
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_LEFT = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
_SELECTABLE = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
_EDITABLE = _SELECTABLE | Qt.ItemFlag.ItemIsEditable
_CLIPPED = QtGui.QColor("#E69F00")


def cell_text(row: RoiRow) -> str:
    """``1203 ± 35.2 (240)``; ``3000 ± 0 (36, 36 clipped)`` when voxels sit at a range bound."""
    s = row.stats
    if s.n_voxels == 0:
        return "no voxels"
    sd = f"{s.sd:.3g}" if np.isfinite(s.sd) else "-"
    count = f"{s.n_voxels}, {row.n_clipped} clipped" if row.n_clipped else f"{s.n_voxels}"
    return f"{s.mean:.4g} \u00b1 {sd} ({count})"


def cell_tooltip(row: RoiRow) -> str:
    s = row.stats
    unit = f" {s.unit}" if s.unit not in ("", "1") else ""
    lines = [
        f"{row.stats.label}: {display_name(s.map)}, {row.method.upper()}, {row.scope}",
        f"mean {s.mean:.5g}{unit}, SD {s.sd:.4g}, median {s.median:.5g}, IQR {s.iqr:.4g}",
        f"min {s.min:.5g}, max {s.max:.5g}; n {s.n_voxels} (excluded: {s.n_excluded} invalid)",
    ]
    if row.n_clipped:
        lines.append(f"{row.n_clipped} voxel(s) at a bound of the estimator's range: clipped there, not measured")
    if row.reference:
        error = row.error_pct
        lines.append(f"reference {row.reference:.5g}{unit}" + (f", error {error:+.1f} %" if error is not None else ""))
    return "\n".join(lines)


class RoiTableModel(QtCore.QAbstractTableModel):
    """Rows: ROI lines; columns: ROI, scope, one per map, then reference and error per map that has them."""

    rename_requested = QtCore.Signal(str, str)  # old name, new name

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.lines: list[RoiLine] = []
        self.maps: list[str] = []
        self.units: dict[str, str] = {}
        self.columns: list[tuple[str, str]] = []  # (kind, map): ("name", ""), ("scope", ""), ("value", m), ...
        self._texts: list[list[str]] = []
        self._colours: list[list[QtGui.QColor | None]] = []
        self._swatches: list[QtGui.QColor | None] = []
        self._editable: list[bool] = []
        self.structure_changed = False

    # -- filling ------------------------------------------------------------------------------
    def set_lines(self, lines: list[RoiLine]) -> None:
        """Show ``lines``; the same rows and columns: one repaint, no reset."""
        maps = [m for m in ("T1", "T2", "T1rho", "B1", "PD", "signal") if any(m in line.cells for line in lines)]
        with_reference = [m for m in maps if any(line.cells.get(m) and line.cells[m].reference for line in lines)]
        columns = [("name", ""), ("scope", "")] + [("value", m) for m in maps]
        columns += [c for m in with_reference for c in (("reference", m), ("error", m))]
        units = {m: next(line.cells[m].stats.unit for line in lines if m in line.cells) for m in maps}
        keys = [(line.source, line.name) for line in lines]
        same = columns == self.columns and keys == [(line.source, line.name) for line in self.lines]
        self.structure_changed = not same
        if same:
            self.lines, self.units = lines, units
            self._prepare()
            if lines:
                self.dataChanged.emit(self.index(0, 0), self.index(len(lines) - 1, len(columns) - 1))
            return
        self.beginResetModel()
        self.lines, self.maps, self.columns, self.units = lines, maps, columns, units
        self._prepare()
        self.endResetModel()

    def _prepare(self) -> None:
        """What data() hands out, per cell: texts, colours (clipped in orange), swatches, editability."""
        self._texts = [[self._text(line, c) for c in self.columns] for line in self.lines]
        self._colours = [
            [
                _CLIPPED if k == "value" and line.cells.get(m) is not None and line.cells[m].n_clipped else None
                for k, m in self.columns
            ]
            for line in self.lines
        ]
        self._swatches = [QtGui.QColor(line.colour) if line.colour else None for line in self.lines]
        self._editable = [line.editable for line in self.lines]

    def _text(self, line: RoiLine, column: tuple[str, str]) -> str:
        kind, m = column
        if kind == "name":
            return line.name
        if kind == "scope":
            return line.scope
        row = line.cells.get(m)
        if row is None:
            return ""
        if kind == "value":
            return cell_text(row)
        if kind == "reference":
            return f"{row.reference:.4g}" if row.reference else ""
        error = row.error_pct
        return f"{error:+.1f}" if error is not None else ""

    def line(self, row: int) -> RoiLine:
        return self.lines[row]

    def row_of(self, name: str) -> int | None:
        return next((i for i, line in enumerate(self.lines) if line.name == name and line.source != "labels"), None)

    # -- the Qt model -------------------------------------------------------------------------
    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.lines)

    def columnCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: ANN201, N802
        if orientation != Qt.Orientation.Horizontal or section >= len(self.columns):
            return None
        kind, m = self.columns[section]
        if role == Qt.ItemDataRole.DisplayRole:
            unit = self.units.get(m, "")
            unit = f" ({unit})" if unit not in ("", "1") else ""
            return {
                "name": "ROI",
                "scope": "scope",
                "value": f"{display_name(m)}{unit}",
                "reference": f"{display_name(m)} reference",
                "error": f"{display_name(m)} error %",
            }[kind]
        if role == Qt.ItemDataRole.ToolTipRole:
            return {
                "name": "ROI or label (double click a drawn ROI's name to rename it)",
                "scope": "what the statistics cover: the slice shown, or the whole volume",
                "value": "mean \u00b1 SD (n voxels; voxels clipped at a bound of the estimator's range)",
                "reference": "the truth of a digital phantom, a NIST sphere's value or a nominal tissue value",
                "error": "100 (mean / reference - 1)",
            }[kind]
        return None

    def data(self, index: QtCore.QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: ANN201
        # Called for every visible cell and role on each repaint: the common roles first, from
        # what set_lines prepared, and nothing computed here.
        if role in (_DISPLAY, _EDIT):
            return self._texts[index.row()][index.column()]
        if role == _ALIGN:
            return _RIGHT if index.column() > 1 else _LEFT
        if role == _FOREGROUND:
            return self._colours[index.row()][index.column()]
        if role == _DECORATION:
            return self._swatches[index.row()] if index.column() == 0 else None
        if role == _TOOLTIP:
            line, (kind, m) = self.lines[index.row()], self.columns[index.column()]
            if kind == "name":
                return f"{line.name} ({_SOURCES[line.source]})"
            row = line.cells.get(m)
            return cell_tooltip(row) if row is not None else None
        return None

    def flags(self, index: QtCore.QModelIndex) -> Qt.ItemFlag:
        if index.column() == 0 and self._editable[index.row()]:
            return _EDITABLE
        return _SELECTABLE

    def setData(self, index: QtCore.QModelIndex, value: object, role: int = Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        if role != Qt.ItemDataRole.EditRole or index.column() != 0:
            return False
        old = self.lines[index.row()].name
        if str(value).strip() and str(value).strip() != old:
            self.rename_requested.emit(old, str(value))  # the session decides; the table follows its event
        return False


class FrozenColumnTable(QtWidgets.QTableView):
    """A table whose first column (the ROI name) stays in place when the others scroll.

    After Qt's "Frozen Column" example: a second view showing only the first column lies
    over the first, sharing the model and the selection.
    """

    def __init__(self, model: RoiTableModel, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setModel(model)
        self.frozen = QtWidgets.QTableView(self)
        self.frozen.setModel(model)
        self.frozen.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.frozen.verticalHeader().hide()
        self.frozen.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        self.frozen.setSelectionModel(self.selectionModel())
        self.frozen.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.frozen.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.frozen.setStyleSheet("QTableView { border: none; border-right: 1px solid palette(mid); }")
        self.frozen.setEditTriggers(
            QtWidgets.QAbstractItemView.EditTrigger.DoubleClicked
            | QtWidgets.QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.viewport().stackUnder(self.frozen)
        for view in (self, self.frozen):
            view.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
            view.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
            view.setVerticalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
            view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
            view.verticalHeader().setDefaultSectionSize(22)
        self.setHorizontalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalHeader().hide()
        self.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Interactive)
        self.horizontalHeader().sectionResized.connect(self._section_resized)
        self.frozen.verticalScrollBar().valueChanged.connect(self.verticalScrollBar().setValue)
        self.verticalScrollBar().valueChanged.connect(self.frozen.verticalScrollBar().setValue)
        model.modelReset.connect(self._structure)
        self._structure()
        self.frozen.show()

    def _structure(self) -> None:
        model = self.model()
        for col in range(model.columnCount()):
            self.frozen.setColumnHidden(col, col != 0)
        # Column widths fitted once per structure (fitting on every refresh cost seconds with 100 rows).
        self.resizeColumnsToContents()
        if model.columnCount():
            self.setColumnWidth(0, min(max(self.columnWidth(0), 120), 220))
            self.frozen.setColumnWidth(0, self.columnWidth(0))
        self._place()

    def _section_resized(self, index: int, _old: int, new: int) -> None:
        if index == 0:
            self.frozen.setColumnWidth(0, new)
            self._place()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._place()

    def _place(self) -> None:
        self.frozen.setGeometry(
            self.verticalHeader().width() + self.frameWidth(),
            self.frameWidth(),
            self.columnWidth(0),
            self.viewport().height() + self.horizontalHeader().height(),
        )

    def moveCursor(self, action, modifiers):  # noqa: ANN001, ANN201, N802 - Qt API
        current = super().moveCursor(action, modifiers)
        if (
            action == QtWidgets.QAbstractItemView.CursorAction.MoveLeft
            and current.column() > 0
            and self.visualRect(current).topLeft().x() < self.frozen.columnWidth(0)
        ):
            value = self.horizontalScrollBar().value() + self.visualRect(current).topLeft().x()
            self.horizontalScrollBar().setValue(value - self.frozen.columnWidth(0))
        return current

    def scrollTo(self, index, hint=QtWidgets.QAbstractItemView.ScrollHint.EnsureVisible) -> None:  # noqa: ANN001, N802
        if index.column() > 0:
            super().scrollTo(index, hint)
