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
        self._markers: list[tuple[int, str]] = []
        self.items: dict[str, pg.PlotDataItem] = {}

    def set_markers(self, markers: list[tuple[int, str]]) -> None:
        """Preparation blocks as (first time point after the block, label)."""
        self._markers = markers
        self._draw()

    def set_fingerprint(self, measured: np.ndarray, title: str = "") -> None:
        """The measured signal of a voxel; model curves are cleared."""
        self._measured = np.asarray(measured)
        self._curves = {}
        self.info.setText(title)
        self._draw()

    def add_curve(self, name: str, curve: np.ndarray, description: str) -> None:
        """A model curve, scaled to the measured signal; the legend shows ``description`` and the residual."""
        if self._measured is None:
            return
        fitted = scaled_to(self._measured, np.asarray(curve, dtype=np.complex128))
        residual = relative_residual(self._measured, fitted)
        self._curves[name] = (fitted, f"{name}: {description}; residual {100 * residual:.1f} %")
        self._draw()

    def curve_data(self, name: str) -> np.ndarray | None:
        """The plotted y-values of a curve (for tests and export)."""
        item = self.items.get(name)
        return None if item is None else item.yData

    def _draw(self) -> None:
        self.plot.clear()
        self.legend.clear()
        self.items = {}
        if self._measured is None:
            return
        mode = self.mode.currentText()
        series = [("measured", self._measured, "measured")] + [(n, c, d) for n, (c, d) in self._curves.items()]
        for name, values, label in series:
            color = _COLORS.get(name, (200, 200, 0))
            width = 1 if name == "measured" else 1.5
            if mode == "magnitude":
                parts = [(np.abs(values), label, SOLID)]
            elif mode == "phase":
                parts = [(np.angle(values), label, SOLID)]
            else:
                parts = [(values.real, f"{label} (real)", SOLID), (values.imag, f"{label} (imag)", DASH)]
            for j, (y, text, style) in enumerate(parts):
                item = self.plot.plot(np.arange(len(y)), y, pen=pg.mkPen(color, width=width, style=style), name=text)
                self.items[name if j == 0 else f"{name} imag"] = item
        self.plot.setLabel("left", "phase (rad)" if mode == "phase" else "signal (a.u.)")
        for index, label in self._markers:
            line = pg.InfiniteLine(
                pos=index,
                angle=90,
                pen=pg.mkPen((150, 150, 150), style=DOT),
                label=label,
                labelOpts={"position": 0.95, "color": (180, 180, 180), "rotateAxis": (1, 0)},
            )
            self.plot.addItem(line)
