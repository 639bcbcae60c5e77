"""The ROI statistics table: a Qt model over the session's ROI lines and a view with the name column frozen.

One row per ROI or label; per map a column "mean +- SD (n)" of the shown method (with the
voxels clipped at a range bound, when there are any), then the reference and the error
where references exist. The cells are Qt's own items (painting calls no Python); a
refresh with the same rows and columns writes only the cells whose statistics changed
(one ``dataChanged`` over their rows, none when nothing changed); the column widths are
fitted once per structure, never per refresh.
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from mrfviewer.colormaps import display_name
from mrfviewer.session import RoiLine, RoiRow

Qt = QtCore.Qt
_SOURCES = {"drawn": "drawn", "template": "NIST template", "labels": "label map"}
_DISPLAY, _TOOLTIP = int(Qt.ItemDataRole.DisplayRole), int(Qt.ItemDataRole.ToolTipRole)
_DECORATION, _FOREGROUND = int(Qt.ItemDataRole.DecorationRole), int(Qt.ItemDataRole.ForegroundRole)
_ALIGN = int(Qt.ItemDataRole.TextAlignmentRole)
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_LEFT = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
_SELECTABLE = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
_EDITABLE = _SELECTABLE | Qt.ItemFlag.ItemIsEditable
_CLIPPED = QtGui.QColor("#E69F00")
_HEADERS = {
    "name": "ROI",
    "scope": "scope",
    "value": "{map}{unit}",
    "reference": "{map} reference",
    "error": "{map} error %",
}
_HEADER_TIPS = {
    "name": "ROI or label (double click a drawn ROI's name to rename it)",
    "scope": "what the statistics cover: the slice shown, or the whole volume",
    "value": "mean \u00b1 SD (n voxels; voxels clipped at a bound of the estimator's range)",
    "reference": "the truth of a digital phantom, a NIST sphere's value or a nominal tissue value",
    "error": "100 (mean / reference - 1)",
}


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


def _key(line: RoiLine, kind: str, m: str) -> object:
    """What a cell shows depends on: its RoiRow (None: empty), or the line's name, source and colour, or scope."""
    if kind == "name":
        return (line.name, line.source, line.colour)
    if kind == "scope":
        return line.scope
    return line.cells.get(m)


_put = QtGui.QStandardItemModel.setData  # a cell's data by index (the model's own setData is the rename request)


class RoiTableModel(QtGui.QStandardItemModel):
    """Rows: ROI lines; columns: ROI, scope, one per map, then reference and error per map that has them.

    The cells live in Qt's own item model, so that painting the table calls no Python (a
    Python ``data()`` and ``flags()`` were called per visible cell and role, about ten
    times per cell, on every repaint: most of a repaint's cost). :meth:`set_lines` writes
    only the cells that changed. Cells are written by index and made by Qt from the item
    prototype; rows go with ``takeRow`` (the items pass through Python): Python holds no
    wrapper of an item that Qt deletes behind its back.
    """

    rename_requested = QtCore.Signal(str, str)  # old name, new name

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        prototype = QtGui.QStandardItem()
        prototype.setFlags(_SELECTABLE)
        prototype.setData(_RIGHT, _ALIGN)
        self.setItemPrototype(prototype)  # every cell Qt makes: selectable, right aligned
        self.lines: list[RoiLine] = []
        self.maps: list[str] = []
        self.units: dict[str, str] = {}
        self.columns: list[tuple[str, str]] = []  # (kind, map): ("name", ""), ("scope", ""), ("value", m), ...
        self._shown: list[list[object]] = []  # per cell what it shows (see _key)
        self.structure_changed = False

    # -- filling ------------------------------------------------------------------------------
    def set_lines(self, lines: list[RoiLine]) -> None:
        """Show ``lines``; the same rows and columns: only the cells that changed are written (no reset)."""
        maps = [m for m in ("T1", "T2", "T1rho", "B1", "PD", "signal") if any(m in line.cells for line in lines)]
        with_reference = [m for m in maps if any(line.cells.get(m) and line.cells[m].reference for line in lines)]
        columns = [("name", ""), ("scope", "")] + [("value", m) for m in maps]
        columns += [c for m in with_reference for c in (("reference", m), ("error", m))]
        units = {m: next(line.cells[m].stats.unit for line in lines if m in line.cells) for m in maps}
        keys = [(line.source, line.name) for line in lines]
        same = columns == self.columns and keys == [(line.source, line.name) for line in self.lines]
        self.structure_changed = not same
        if same:
            self.lines = lines
            if units != self.units:
                self.units = units
                self._fill_header()
            self._update_cells()
            return
        self.beginResetModel()
        blocked = self.blockSignals(True)  # the views start again from the reset: no signal per cell
        try:
            while self.rowCount():
                self.takeRow(self.rowCount() - 1)
            self.lines, self.maps, self.columns, self.units = lines, maps, columns, units
            self.setColumnCount(len(columns))
            self.setRowCount(len(lines))
            self._fill_header()
            self._shown = [[None] * len(columns) for _ in lines]
            for r, line in enumerate(lines):
                for c in (0, 1):
                    _put(self, self.index(r, c), _LEFT, _ALIGN)
                if line.editable:
                    self.itemFromIndex(self.index(r, 0)).setFlags(_EDITABLE)
            self._update_cells()
        finally:
            self.blockSignals(blocked)
        self.endResetModel()

    def _fill_header(self) -> None:
        horizontal = Qt.Orientation.Horizontal
        for c, (kind, m) in enumerate(self.columns):
            unit = self.units.get(m, "")
            unit = f" ({unit})" if unit not in ("", "1") else ""
            self.setHeaderData(c, horizontal, _HEADERS[kind].format(map=display_name(m), unit=unit))
            self.setHeaderData(c, horizontal, _HEADER_TIPS[kind], _TOOLTIP)

    def _update_cells(self) -> None:
        """Write the cells whose statistics changed (a RoiRow equal to the one shown is skipped)."""
        first, last = len(self.lines), -1
        blocked = self.blockSignals(True)  # one dataChanged over the changed rows, not one per cell
        try:
            for r, line in enumerate(self.lines):
                shown = self._shown[r]
                for c, (kind, m) in enumerate(self.columns):
                    key = _key(line, kind, m)
                    if key is shown[c] or key == shown[c]:
                        continue
                    shown[c] = key
                    self._write(self.index(r, c), line, kind, key)
                    first, last = min(first, r), max(last, r)
        finally:
            self.blockSignals(blocked)
        if last >= 0:
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(self.columns) - 1))

    def _write(self, index: QtCore.QModelIndex, line: RoiLine, kind: str, row: object) -> None:
        if kind == "name":
            _put(self, index, line.name, _DISPLAY)
            _put(self, index, QtGui.QColor(line.colour) if line.colour else None, _DECORATION)
            return
        if kind == "scope":
            _put(self, index, line.scope, _DISPLAY)
            return
        clipped = None
        if not isinstance(row, RoiRow):
            text = ""
        elif kind == "value":
            text, clipped = cell_text(row), (_CLIPPED if row.n_clipped else None)
        elif kind == "reference":
            text = f"{row.reference:.4g}" if row.reference else ""
        else:
            error = row.error_pct
            text = f"{error:+.1f}" if error is not None else ""
        _put(self, index, text, _DISPLAY)
        if kind == "value":
            _put(self, index, clipped, _FOREGROUND)

    def tooltip(self, index: QtCore.QModelIndex) -> str:
        """The tooltip of a cell, made when asked (the views ask on a tooltip event): not kept per cell."""
        if not index.isValid() or index.row() >= len(self.lines) or index.column() >= len(self.columns):
            return ""
        line, (kind, m) = self.lines[index.row()], self.columns[index.column()]
        if kind == "name":
            return f"{line.name} ({_SOURCES[line.source]})"
        row = line.cells.get(m)
        return cell_tooltip(row) if row is not None and kind != "scope" else ""

    def line(self, row: int) -> RoiLine:
        return self.lines[row]

    def row_of(self, name: str) -> int | None:
        return next((i for i, line in enumerate(self.lines) if line.name == name and line.source != "labels"), None)

    # -- editing ------------------------------------------------------------------------------
    def setData(self, index: QtCore.QModelIndex, value: object, role: int = Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        """A name edited in the table: a rename request (the session decides; the table follows its event)."""
        if role != Qt.ItemDataRole.EditRole or index.column() != 0:
            return False
        old = self.lines[index.row()].name
        if str(value).strip() and str(value).strip() != old:
            self.rename_requested.emit(old, str(value))
        return False


class FrozenColumnTable(QtWidgets.QTableView):
    """A table whose first column (the ROI name) stays in place when the others scroll.

    After Qt's "Frozen Column" example: a second view showing only the first column lies
    over the first, sharing the model and the selection.
    """

    def __init__(self, model: RoiTableModel, parent: QtWidgets.QWidget | None = None):
        self._frozen_viewport: QtWidgets.QWidget | None = None  # eventFilter runs from the base's __init__ on
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
        self._frozen_viewport = self.frozen.viewport()
        self._frozen_viewport.installEventFilter(self)  # its tooltips (see _tooltip)

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

    def viewportEvent(self, event: QtCore.QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() == QtCore.QEvent.Type.ToolTip:
            return self._tooltip(self, event)  # type: ignore[arg-type]
        return super().viewportEvent(event)

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802 - Qt API
        if obj is self._frozen_viewport and event.type() == QtCore.QEvent.Type.ToolTip:
            return self._tooltip(self.frozen, event)  # type: ignore[arg-type]
        return super().eventFilter(obj, event)

    def _tooltip(self, view: QtWidgets.QTableView, event: QtGui.QHelpEvent) -> bool:
        """A cell's tooltip, made by the model when asked (no tooltip is stored per cell)."""
        index = view.indexAt(event.pos())
        text = self.model().tooltip(index)
        if text:
            QtWidgets.QToolTip.showText(event.globalPos(), text, view.viewport(), view.visualRect(index))
        else:
            QtWidgets.QToolTip.hideText()
        return True

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
