"""ROI panel: drawing tools, the NIST template, label statistics settings and the statistics table.

Shapes are drawn by dragging on any map (:class:`~mrfviewer.gui.map_view.MapView`); the
panel only chooses the tool. What is drawn lives in the
:class:`~mrfviewer.session.Session` (name, colour, mask, shape); the table
(:mod:`mrfviewer.gui.roi_table`) lists the session's statistics of the shown result: one
row per ROI, a column per map.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from mrfviewer.errors import MRFError
from mrfviewer.gui.roi_items import SHAPES
from mrfviewer.gui.roi_table import FrozenColumnTable, RoiTableModel
from mrfviewer.session import RoiLine, RoiRow, Session

_SHAPE_KEYS = {"rectangle": "R", "ellipse": "E", "freehand": "F"}


class RoiPanel(QtWidgets.QWidget):
    """ROI tools and the session's statistics of the shown result."""

    export_requested = QtCore.Signal()
    fit_requested = QtCore.Signal()
    template_requested = QtCore.Signal()
    draw_requested = QtCore.Signal(object)  # a shape of SHAPES, or None
    statistics_needed = QtCore.Signal()
    message = QtCore.Signal(str)

    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.tools: dict[str, QtWidgets.QToolButton] = {}
        tools = QtWidgets.QHBoxLayout()
        tools.addWidget(QtWidgets.QLabel("draw"))
        for shape in SHAPES:
            button = QtWidgets.QToolButton()
            button.setText(shape.capitalize())
            button.setCheckable(True)
            button.setToolTip(f"drag on any map to draw a {shape} ROI ({_SHAPE_KEYS[shape]}; Esc: stop)")
            button.toggled.connect(lambda on, s=shape: self._tool_toggled(s, on))
            tools.addWidget(button)
            self.tools[shape] = button
        tools.addStretch(1)
        self.rename_button = QtWidgets.QToolButton()
        self.rename_button.setText("Rename...")
        self.rename_button.setToolTip("rename the selected ROI (F2, or double click its name)")
        self.delete_button = QtWidgets.QToolButton()
        self.delete_button.setText("Delete")
        self.delete_button.setToolTip("delete the selected ROI (Delete)")
        self.clear_button = QtWidgets.QToolButton()
        self.clear_button.setText("Clear all")
        self.clear_button.setToolTip("delete every drawn ROI and the template")
        for b in (self.rename_button, self.delete_button):
            tools.addWidget(b)
        self.template_button = QtWidgets.QPushButton("NIST template")
        self.template_button.setToolTip("overlay the NIST/ISMRM sphere template (drag, rotate, scale)")
        self.fit_button = QtWidgets.QPushButton("Fit template")
        self.fit_button.setToolTip(
            "fit the sphere template to the PD map in the background (T2 decides the orientation)"
        )
        self.array = QtWidgets.QComboBox()
        self.array.addItems(["T2 array", "T1 array"])
        self.array.setToolTip("the NIST array the series shows: the reference values of the spheres")
        self.labels_box = QtWidgets.QCheckBox("label statistics")
        self.labels_box.setChecked(session.label_statistics)
        self.scope = QtWidgets.QComboBox()
        self.scope.addItems(["per volume", "per slice"])
        self.scope.setToolTip("label statistics over the whole volume, or of the slice shown")
        self.outline_box = QtWidgets.QCheckBox("outlines")
        self.outline_box.setToolTip("outline the label map's regions on the maps")
        self.outline_box.setChecked(True)
        self.export_button = QtWidgets.QPushButton("Export CSV...")
        self.status = QtWidgets.QLabel("")
        self.status.setStyleSheet("color: #888;")
        self.status.setWordWrap(True)  # a long note must not widen the dock (and the window)
        template = QtWidgets.QHBoxLayout()
        for w in (self.template_button, self.fit_button, self.array):
            template.addWidget(w)
        template.addStretch(1)
        template.addWidget(self.clear_button)
        labels = QtWidgets.QHBoxLayout()
        for w in (self.labels_box, self.scope, self.outline_box):
            labels.addWidget(w)
        labels.addStretch(1)
        labels.addWidget(self.export_button)
        self.model = RoiTableModel(self)
        self.table = FrozenColumnTable(self.model)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(tools)
        layout.addLayout(template)
        layout.addLayout(labels)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        self.rename_button.clicked.connect(self.rename_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.clear_button.clicked.connect(self.clear)
        self.export_button.clicked.connect(self.export_requested)
        self.labels_box.toggled.connect(session.set_label_statistics)
        self.scope.currentIndexChanged.connect(lambda i: session.set_label_scope(("volume", "slice")[i]))
        self.array.currentIndexChanged.connect(lambda i: session.set_nist_array(("T2", "T1")[i]))
        self.template_button.clicked.connect(self.template_requested)
        self.fit_button.clicked.connect(self.fit_requested)
        self.model.rename_requested.connect(self.rename)
        self.table.selectionModel().currentRowChanged.connect(self._row_chosen)
        self.rows: list[RoiRow] = []
        self.lines: list[RoiLine] = []
        events = session.events
        for event in (events.rois, events.selection, events.labels, events.slice, events.time, events.results):
            event.connect(lambda *_: self.refresh())
        events.roi_selected.connect(self._show_selected)
        events.input.connect(self._on_input)

    # -- tools --------------------------------------------------------------------------------
    def _tool_toggled(self, shape: str, on: bool) -> None:
        if on:
            for other, button in self.tools.items():
                if other != shape and button.isChecked():
                    button.blockSignals(True)
                    button.setChecked(False)
                    button.blockSignals(False)
            self.draw_requested.emit(shape)
        elif not any(b.isChecked() for b in self.tools.values()):
            self.draw_requested.emit(None)

    def choose_tool(self, shape: str | None) -> None:
        """Check the button of ``shape`` (None: none), as the map view's drawing state changes."""
        for name, button in self.tools.items():
            button.blockSignals(True)
            button.setChecked(name == shape)
            button.blockSignals(False)
        if shape is not None:
            self.draw_requested.emit(shape)

    def rename(self, old: str, new: str) -> None:
        try:
            self.session.rename_roi(old, new)
        except MRFError as exc:
            self.message.emit(str(exc))

    def rename_selected(self) -> None:
        name = self.session.selected_roi
        if name is None or self.session.rois[name].kind == "template":
            self.message.emit("select a drawn ROI to rename (click it on a map or in the table)")
            return
        new, ok = QtWidgets.QInputDialog.getText(self, "Rename ROI", "name", text=name)
        if ok:
            self.rename(name, new)

    def delete_selected(self) -> None:
        name = self.session.selected_roi
        if name is None:
            self.message.emit("select an ROI to delete (click it on a map or in the table)")
            return
        self.session.remove_rois([name])

    def clear(self) -> None:
        self.session.set_template(None)
        self.session.remove_rois()

    def _on_input(self) -> None:
        self.array.blockSignals(True)
        self.array.setCurrentIndex(0 if self.session.nist_array == "T2" else 1)
        self.array.blockSignals(False)
        self.refresh()

    # -- the table ----------------------------------------------------------------------------
    def refresh(self) -> None:
        """The table of the session's statistics of the shown result (label rows once computed)."""
        self.lines = self.session.roi_lines(wait=False)
        self.rows = [row for line in self.lines for row in line.cells.values()]
        self.model.set_lines(self.lines)
        self._show_selected(self.session.selected_roi)
        pending = self.session.label_statistics_pending()
        self.status.setText("label statistics: computing..." if pending else self._status_text())
        if pending:
            self.statistics_needed.emit()

    def _status_text(self) -> str:
        clipped = sum(1 for line in self.lines if any(r.n_clipped for r in line.cells.values()))
        if not clipped:
            return ""
        return f"{clipped} ROI(s) hold voxels clipped at a bound of the estimator's range (orange; hatched on the maps)"

    def _row_chosen(self, current: QtCore.QModelIndex, _previous: QtCore.QModelIndex) -> None:
        if not current.isValid() or current.row() >= len(self.model.lines):
            return
        line = self.model.line(current.row())
        self.session.select_roi(line.name if line.source != "labels" else None)

    def _show_selected(self, name: str | None) -> None:
        row = self.model.row_of(name) if name is not None else None
        selection = self.table.selectionModel()
        current = self.table.currentIndex()
        if row is None or (current.isValid() and current.row() == row):
            return
        selection.blockSignals(True)
        self.table.selectRow(row)
        selection.blockSignals(False)
        self.table.frozen.viewport().update()
