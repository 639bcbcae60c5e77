"""Fingerprint plot: a voxel's measured signal against the matched atom and the NN fingerprint."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets
from PySide6.QtCore import Qt

MODES = ("magnitude", "phase", "real / imaginary")
SOLID, DASH, DOT = Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine
_COLORS = {"measured": (220, 220, 220), "DM atom": (255, 140, 0), "NN": (80, 180, 255)}


def scaled_to(measured: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """``curve`` times the complex least-squares scale (PD and receive phase) that best fits ``measured``."""
    energy = np.vdot(curve, curve).real
    return curve * (np.vdot(curve, measured) / energy) if energy > 0 else curve


def relative_residual(measured: np.ndarray, model: np.ndarray) -> float:
    """||measured - model|| / ||measured||."""
    norm = np.linalg.norm(measured)
    return float(np.linalg.norm(measured - model) / norm) if norm > 0 else float("nan")


class FingerprintPlot(QtWidgets.QWidget):
    """Plot of the clicked voxel's fingerprint and the model curves."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(MODES)
        self.info = QtWidgets.QLabel("Click a pixel to plot its fingerprint.")
        self.info.setWordWrap(True)
        self.plot = pg.PlotWidget()
        self.plot.setBackground("#202020")
        self.plot.setLabel("bottom", "time point")
        self.plot.setLabel("left", "signal (a.u.)")
        # A fixed axis width: tick labels of each new voxel's range would otherwise resize the
        # view box and repaint the whole plot on a click.
        self.plot.getAxis("left").setWidth(56)
        self.plot.getAxis("left").enableAutoSIPrefix(False)  # "(x0.001)" made the label too long to show
        self.legend = self.plot.addLegend(offset=(-10, 10), labelTextSize="8pt")
        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("show"))
        top.addWidget(self.mode)
        top.addWidget(self.info, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)
        self.mode.currentTextChanged.connect(lambda _: self._draw())
        self._measured: np.ndarray | None = None
        self._curves: dict[str, tuple[np.ndarray, str]] = {}
        self._marker_lines: list[pg.InfiniteLine] = []
        self.items: dict[str, pg.PlotDataItem] = {}
        self._legend_text: dict[str, str] = {}  # legend entries now shown: curve key -> text

    def set_markers(self, markers: list[tuple[int, str]]) -> None:
        """Preparation blocks as (first time point after the block, label); drawn once.

        Dotted lines, labelled on a top axis: labels on the lines themselves were re-placed
        on every click as the plot re-ranged (a fifth of a click's paint time).
        """
        for line in self._marker_lines:
            self.plot.removeItem(line)
        self._marker_lines = []
        for index, _ in markers:
            line = pg.InfiniteLine(pos=index, angle=90, pen=pg.mkPen((150, 150, 150), style=DOT))
            self.plot.addItem(line)
            self._marker_lines.append(line)
        top = self.plot.getAxis("top")
        top.setTicks([[(index, label) for index, label in markers], []])
        self.plot.showAxis("top", show=bool(markers))
        top.setStyle(showValues=bool(markers))

    def set_fingerprint(
        self, measured: np.ndarray, title: str = "", curves: dict[str, tuple[np.ndarray, str]] | None = None
    ) -> None:
        """The measured signal of a voxel and its model curves (name -> (curve, description)); one redraw."""
        self._measured = np.asarray(measured)
        self._curves = {}
        self.info.setText(title)
        for name, (curve, description) in (curves or {}).items():
            self._fit_curve(name, curve, description)
        self._draw()

    def clear(self) -> None:
        """No voxel chosen (e.g. another series was opened): hide the curves and the legend."""
        self._measured, self._curves = None, {}
        self.info.setText("Click a pixel to plot its fingerprint.")
        self._draw()

    def add_curve(self, name: str, curve: np.ndarray, description: str) -> None:
        """A model curve, scaled to the measured signal; the legend shows ``description`` and the residual."""
        if self._measured is None:
            return
        self._fit_curve(name, curve, description)
        self._draw()

    def _fit_curve(self, name: str, curve: np.ndarray, description: str) -> None:
        fitted = scaled_to(self._measured, np.asarray(curve, dtype=np.complex128))
        residual = relative_residual(self._measured, fitted)
        self._curves[name] = (fitted, f"{name}: {description}; residual {100 * residual:.1f} %")

    def curve_data(self, name: str) -> np.ndarray | None:
        """The plotted y-values of a curve (for tests and export)."""
        item = self.items.get(name)
        return None if item is None or not item.isVisible() else item.yData

    def _parts(self, name: str, values: np.ndarray, label: str) -> list[tuple[str, np.ndarray, str, object]]:
        mode = self.mode.currentText()
        if mode == "magnitude":
            return [(name, np.abs(values), label, SOLID)]
        if mode == "phase":
            return [(name, np.angle(values), label, SOLID)]
        return [(name, values.real, f"{label} (real)", SOLID), (f"{name} imag", values.imag, f"{label} (imag)", DASH)]

    def _draw(self) -> None:
        """Update the curves in place (items are reused: a click must redraw fast)."""
        if self._measured is None:
            for item in self.items.values():
                item.setVisible(False)
            self.legend.setVisible(False)
            return
        self.legend.setVisible(True)
        wanted = [("measured", self._measured, "measured")] + [(n, c, d) for n, (c, d) in self._curves.items()]
        shown: dict[str, str] = {}
        for name, values, label in wanted:
            color = _COLORS.get(name, (200, 200, 0))
            for key, y, text, style in self._parts(name, values, label):
                item = self.items.get(key)
                if item is None:
                    item = self.plot.plot([], [])
                    self.items[key] = item
                item.setPen(pg.mkPen(color, width=1 if name == "measured" else 1.5, style=style))
                item.setData(np.arange(len(y)), y)
                item.setVisible(True)
                shown[key] = text
        for key, item in self.items.items():
            if key not in shown:
                item.setVisible(False)
        previous = self._legend_text
        if list(shown) != list(previous):
            self.legend.clear()
            for key, text in shown.items():
                self.legend.addItem(self.items[key], text)
        else:  # same curves, new residuals: relabel in place (rebuilding the legend costs a click's budget)
            for key, text in shown.items():
                if previous[key] != text:
                    self.legend.getLabel(self.items[key]).setText(text)
        self._legend_text = shown
        self.plot.setLabel("left", "phase (rad)" if self.mode.currentText() == "phase" else "signal (a.u.)")
