"""Fingerprint plot: a voxel's measured signal against the matched DM atom and the NN fingerprint.

The three are told apart by colour and by line style (measured: points; DM: solid; NN:
dashed), in Okabe and Ito's colour-blind safe palette, so that curves that coincide when
the fit is good stay distinguishable. A residual subplot shows measured minus model. The
legend sits above the plot, on its own background, never over the curves.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

MODES = ("magnitude", "phase", "real / imaginary")
SOLID, DASH, DOT = Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine
#: Colour and line style of each curve (Okabe-Ito: orange and sky blue; the measurement in light grey points).
STYLES = {
    "measured": ("#DDDDDD", None),
    "DM atom": ("#E69F00", SOLID),
    "NN": ("#56B4E9", DASH),
}
_OTHER = ("#CC79A7", DOT)


def scaled_to(measured: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """``curve`` times the complex least-squares scale (PD and receive phase) that best fits ``measured``."""
    energy = np.vdot(curve, curve).real
    return curve * (np.vdot(curve, measured) / energy) if energy > 0 else curve


def relative_residual(measured: np.ndarray, model: np.ndarray) -> float:
    """||measured - model|| / ||measured||."""
    norm = np.linalg.norm(measured)
    return float(np.linalg.norm(measured - model) / norm) if norm > 0 else float("nan")


class _Swatch(QtWidgets.QLabel):
    """A small picture of a curve's style for the legend."""

    def __init__(self, colour: str, style: Qt.PenStyle | None, faded: bool = False):
        super().__init__()
        pixmap = QtGui.QPixmap(30, 12)
        pixmap.fill(QtGui.QColor(0, 0, 0, 0))
        painter = QtGui.QPainter(pixmap)
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        color = QtGui.QColor(colour)
        if faded:
            color.setAlpha(130)
        if style is None:  # points
            painter.setPen(QtCore.Qt.PenStyle.NoPen)
            painter.setBrush(color)
            for x in (5, 15, 25):
                painter.drawEllipse(QtCore.QPointF(x, 6), 2.2, 2.2)
        else:
            pen = QtGui.QPen(color, 2.0, style)
            painter.setPen(pen)
            painter.drawLine(1, 6, 29, 6)
        painter.end()
        self.setPixmap(pixmap)


class LegendBar(QtWidgets.QFrame):
    """The legend: one swatch and text per curve, in a row above the plot."""

    def __init__(self) -> None:
        super().__init__()
        self.setStyleSheet("LegendBar { background: #303030; border-radius: 3px; } QLabel { color: #E0E0E0; }")
        self._layout = QtWidgets.QHBoxLayout(self)
        self._layout.setContentsMargins(6, 2, 6, 2)
        self._layout.setSpacing(4)
        self._layout.addStretch(1)
        self.entries: dict[str, QtWidgets.QLabel] = {}
        self._widgets: list[QtWidgets.QWidget] = []

    def set_entries(self, entries: list[tuple[str, str, Qt.PenStyle | None, bool, str]]) -> None:
        """(key, colour, style, faded, text) per curve; the texts of the same keys are relabelled in place."""
        if [e[0] for e in entries] == list(self.entries):
            for key, *_, text in entries:
                if self.entries[key].text() != text:
                    self.entries[key].setText(text)
            return
        # Everything out of the row, spacers too (left behind, they pushed new entries over old ones).
        while self._layout.count():
            item = self._layout.takeAt(0)
            if item.widget() is not None:
                item.widget().hide()
                item.widget().deleteLater()
        self._widgets, self.entries = [], {}
        for key, colour, style, faded, text in entries:
            swatch, label = _Swatch(colour, style, faded), QtWidgets.QLabel(text)
            self._layout.addWidget(swatch)
            self._layout.addWidget(label)
            self._layout.addSpacing(10)
            self._widgets += [swatch, label]
            self.entries[key] = label
        self._layout.addStretch(1)


class FingerprintPlot(QtWidgets.QWidget):
    """Plot of the clicked voxel's fingerprint, the model curves and their residuals."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(MODES)
        self.info = QtWidgets.QLabel("Click a pixel to plot its fingerprint.")
        # One line that never resizes the plot: a wrapped caption changed the plot's height on a
        # click, and the whole plot was drawn again.
        self.info.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.legend = LegendBar()
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#202020")
        self.plot = self.graphics.addPlot(row=0, col=0)
        self.residual_plot = self.graphics.addPlot(row=1, col=0)
        self.graphics.ci.layout.setRowStretchFactor(0, 3)
        self.graphics.ci.layout.setRowStretchFactor(1, 1)
        self.residual_plot.setXLink(self.plot)
        self.plot.setLabel("left", "signal")
        # The residual's name inside its plot: a second axis label overlapped the first in a low dock.
        note = pg.LabelItem("residual: measured \u2212 model", size="8pt", color="#BBBBBB")
        note.setParentItem(self.residual_plot.vb)
        note.anchor(itemPos=(0, 0), parentPos=(0, 0), offset=(6, 0))
        self.residual_plot.setLabel("bottom", "time point")
        self.plot.getAxis("bottom").setStyle(showValues=False)
        for plot in (self.plot, self.residual_plot):
            # A fixed axis width: tick labels of each new voxel's range would otherwise resize the
            # view box and repaint the whole plot on a click.
            plot.getAxis("left").setWidth(56)
            plot.getAxis("left").enableAutoSIPrefix(False)  # "(x0.001)" made the label too long to show
            plot.setMenuEnabled(False)
        self.residual_plot.addItem(pg.InfiniteLine(pos=0, angle=0, pen=pg.mkPen((150, 150, 150), width=1)))
        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("show"))
        top.addWidget(self.mode)
        top.addWidget(self.info, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.legend)
        layout.addWidget(self.graphics, 1)
        self.mode.currentTextChanged.connect(lambda _: self._draw())
        self._measured: np.ndarray | None = None
        self._title = ""
        self._curves: dict[str, tuple[np.ndarray, str, float]] = {}  # name -> (fitted curve, values, residual)
        self._marker_lines: list[tuple[pg.PlotItem, pg.InfiniteLine]] = []
        self.items: dict[str, pg.PlotDataItem] = {}
        self.residual_items: dict[str, pg.PlotDataItem] = {}
        self._styles: dict[int, tuple] = {}
        self.legend.setVisible(False)

    def set_markers(self, markers: list[tuple[int, str]]) -> None:
        """Preparation blocks as (first time point after the block, label); drawn once.

        Dotted lines, labelled on a top axis: labels on the lines themselves were re-placed
        on every click as the plot re-ranged (a fifth of a click's paint time).
        """
        for plot, line in self._marker_lines:
            plot.removeItem(line)
        self._marker_lines = []
        for plot in (self.plot, self.residual_plot):
            for index, _ in markers:
                line = pg.InfiniteLine(pos=index, angle=90, pen=pg.mkPen((120, 120, 120), style=DOT))
                plot.addItem(line)
                self._marker_lines.append((plot, line))
        top = self.plot.getAxis("top")
        top.setTicks([[(index, label) for index, label in markers], []])
        self.plot.showAxis("top", show=bool(markers))
        top.setStyle(showValues=bool(markers))

    def set_fingerprint(
        self, measured: np.ndarray, title: str = "", curves: dict[str, tuple[np.ndarray, str]] | None = None
    ) -> None:
        """The measured signal of a voxel and its model curves (name -> (curve, values text)); one redraw."""
        self._measured = np.asarray(measured)
        self._curves = {}
        self._title = title
        for name, (curve, description) in (curves or {}).items():
            self._fit_curve(name, curve, description)
        self._draw()

    def clear(self) -> None:
        """No voxel chosen (e.g. another series was opened): hide the curves and the legend."""
        self._measured, self._curves, self._title = None, {}, ""
        self._draw()

    def add_curve(self, name: str, curve: np.ndarray, description: str) -> None:
        """A model curve, scaled to the measured signal; ``description`` (its values) goes in the caption."""
        if self._measured is None:
            return
        self._fit_curve(name, curve, description)
        self._draw()

    def _fit_curve(self, name: str, curve: np.ndarray, description: str) -> None:
        assert self._measured is not None
        fitted = scaled_to(self._measured, np.asarray(curve, dtype=np.complex128))
        self._curves[name] = (fitted, description, relative_residual(self._measured, fitted))

    def curve_data(self, name: str) -> np.ndarray | None:
        """The plotted y-values of a curve (for tests and export)."""
        item = self.items.get(name)
        if item is None or not item.isVisible():
            return None
        return item.yData

    def residual_data(self, name: str) -> np.ndarray | None:
        item = self.residual_items.get(name)
        return None if item is None or not item.isVisible() else item.yData

    def _parts(self, values: np.ndarray) -> list[tuple[str, np.ndarray]]:
        mode = self.mode.currentText()
        if mode == "magnitude":
            return [("", np.abs(values))]
        if mode == "phase":
            return [("", np.angle(values))]
        return [("", values.real), (" imag", values.imag)]

    def _residual(self, model: np.ndarray) -> list[tuple[str, np.ndarray]]:
        assert self._measured is not None
        mode = self.mode.currentText()
        if mode == "magnitude":
            return [("", np.abs(self._measured) - np.abs(model))]
        if mode == "phase":
            return [("", np.angle(self._measured * np.conj(model)))]  # wrapped to (-pi, pi]
        diff = self._measured - model
        return [("", diff.real), (" imag", diff.imag)]

    def _item(self, store: dict[str, pg.PlotDataItem], plot: pg.PlotItem, key: str) -> pg.PlotDataItem:
        item = store.get(key)
        if item is None:
            item = plot.plot([], [])
            store[key] = item
        return item

    def _style(self, item: pg.PlotDataItem, colour: str, style: Qt.PenStyle | None, faded: bool) -> None:
        """Set an item's pen once (restyling on every click redrew the curves several times)."""
        key = (colour, style, faded)
        if self._styles.get(id(item)) == key:
            return
        self._styles[id(item)] = key
        color = QtGui.QColor(colour)
        if faded:
            color.setAlpha(130)
        if style is None:  # points
            item.setPen(None)
            item.setSymbol("s")
            item.setSymbolSize(2.5)
            item.setSymbolPen(None)
            item.setSymbolBrush(color)
        else:
            # One pixel wide: wider pens are stroked as paths, several times slower for 1750 points.
            item.setPen(pg.mkPen(color, width=1, style=style))

    def _draw(self) -> None:
        """Update the curves in place (items are reused: a click must redraw fast)."""
        if self._measured is None:
            for item in [*self.items.values(), *self.residual_items.values()]:
                item.setVisible(False)
            self.legend.setVisible(False)
            self.info.setText("Click a pixel to plot its fingerprint.")
            return
        x = np.arange(len(self._measured))
        shown, residuals, entries = set(), set(), []
        wanted = [("measured", self._measured, "")] + [(n, c, d) for n, (c, d, _) in self._curves.items()]
        for name, values, _ in wanted:
            colour, style = STYLES.get(name, _OTHER)
            for suffix, y in self._parts(values):
                key, faded = name + suffix, bool(suffix)
                item = self._item(self.items, self.plot, key)
                self._style(item, colour, style, faded)
                item.setData(x, y)
                item.setVisible(True)
                shown.add(key)
                if not suffix:  # imaginary parts share one legend entry (six entries overflowed the row)
                    label = name if name == "measured" else f"{name} (residual {100 * self._curves[name][2]:.1f} %)"
                    entries.append((key, colour, style, faded, label))
            if name == "measured":
                continue
            for suffix, y in self._residual(values):
                key = name + suffix
                item = self._item(self.residual_items, self.residual_plot, key)
                self._style(item, colour, style, bool(suffix))
                item.setData(x, y)
                item.setVisible(True)
                residuals.add(key)
        for store, keep in ((self.items, shown), (self.residual_items, residuals)):
            for key, item in store.items():
                if key not in keep:
                    item.setVisible(False)
        if self.mode.currentText() == MODES[2]:
            entries.append(("imaginary", "#DDDDDD", SOLID, True, "imaginary parts: faded"))
        self.legend.set_entries(entries)
        self.legend.setVisible(True)
        values = "; ".join(f"{n}: {d}" for n, (_, d, _) in self._curves.items() if d)
        text = f"{self._title}" + (f" \u2014 {values}" if values else "")
        self.info.setText(text)
        self.info.setToolTip(text)
        self.plot.setLabel("left", "phase (rad)" if self.mode.currentText() == "phase" else "signal")
