"""Bland-Altman plot of NN against DM over the ROI and label means of one parameter (comparison mode).

Each ROI is a point: the mean of the two methods across, NN - DM down. The bias and the
limits of agreement (bias -/+ 1.96 SD) are lines; ROIs holding voxels clipped at a bound of
the dictionary (or beyond the network's range) are drawn hollow and left out of both,
since their DM mean is a bound, not a measurement. Hovering a point names its ROI.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from mrfviewer.colormaps import display_name
from mrfviewer.session import Agreement

_POINT = "#56B4E9"


class AgreementPlot(QtWidgets.QWidget):
    """The Bland-Altman plot and its caption (bias, limits, ROIs used)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.plot = pg.PlotWidget(background="#202020")
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)  # "(x0.001)" beside "ms" misread the scale
        self.caption = QtWidgets.QLabel("Bland-Altman: reconstruct with DM and NN, and draw ROIs or load labels.")
        self.caption.setWordWrap(True)
        self.points = pg.ScatterPlotItem(size=8, hoverable=True, tip=self._tip)
        self.plot.addItem(self.points)
        self.lines = {
            "bias": pg.InfiniteLine(angle=0, pen=pg.mkPen("#E69F00", width=2)),
            "lower": pg.InfiniteLine(angle=0, pen=pg.mkPen("#E69F00", width=1.5, style=QtCore.Qt.PenStyle.DashLine)),
            "upper": pg.InfiniteLine(angle=0, pen=pg.mkPen("#E69F00", width=1.5, style=QtCore.Qt.PenStyle.DashLine)),
        }
        for line in self.lines.values():
            self.plot.addItem(line)
        self.zero = pg.InfiniteLine(angle=0, pos=0, pen=pg.mkPen((150, 150, 150), width=1))
        self.plot.addItem(self.zero)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.caption)
        self.agreement: Agreement | None = None
        self._names: list[str] = []

    def _tip(self, x: float, y: float, data: object) -> str:
        return f"{data}\nmean of DM and NN {x:.4g}"

    def show_agreement(self, agreement: Agreement | None) -> None:
        """Plot ``agreement`` (None: nothing to compare yet)."""
        self.agreement = agreement
        if agreement is None or not agreement.names:
            self.points.setData([], [])
            for line in self.lines.values():
                line.setVisible(False)
            self.caption.setText(
                "Bland-Altman of NN against DM: reconstruct with both methods, and draw ROIs or load a label map."
            )
            return
        name, unit = display_name(agreement.param), agreement.unit
        used = ~agreement.clipped
        bias, (lower, upper) = agreement.bias, agreement.limits
        y = agreement.difference
        # The scale is set by the ROIs that count: a clipped ROI far off (DM at the dictionary's
        # bound) would squash them to a line. Such a point sits at the edge, as a triangle.
        span = [v for v in (*y[used], lower, upper) if np.isfinite(v)] or list(y)
        lo, hi = min(span), max(span)
        pad = 0.15 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.5
        lo, hi = lo - pad, hi + pad
        shown = np.clip(y, lo, hi)
        symbols = ["o" if lo <= v <= hi else ("t1" if v > hi else "t") for v in y]
        tips = [
            f"{n}{'' if u else ' (clipped voxels: left out)'}: NN − DM {d:+.4g}"
            for n, u, d in zip(agreement.names, used, y, strict=True)
        ]
        brushes = [pg.mkBrush(_POINT) if u else pg.mkBrush(0, 0, 0, 0) for u in used]
        self.points.setData(
            x=agreement.mean,
            y=shown,
            data=np.array(tips, dtype=object),
            brush=brushes,
            symbol=symbols,
            pen=pg.mkPen(_POINT, width=1.5),
        )
        self.plot.setYRange(lo, hi, padding=0)
        xs = agreement.mean
        self.plot.setXRange(float(xs.min()), float(xs.max()), padding=0.08)
        for key, value in (("bias", bias), ("lower", lower), ("upper", upper)):
            self.lines[key].setVisible(bool(np.isfinite(value)))
            if np.isfinite(value):
                self.lines[key].setValue(value)
        units = f" ({unit})" if unit not in ("", "1") else ""
        self.plot.setLabel("bottom", f"mean of DM and NN, {name}{units}")
        self.plot.setLabel("left", f"NN \u2212 DM{units}")
        n_clipped = int(agreement.clipped.sum())
        text = f"{name}: {len(agreement.names)} ROI(s)"
        if np.isfinite(bias):
            text += f"; bias {bias:+.3g}{' ' + unit if units else ''}"
        if np.isfinite(lower):
            text += f", limits of agreement {lower:+.3g} to {upper:+.3g}"
        text += f" over {agreement.n_used} ROI(s)"
        if n_clipped:
            text += f"; {n_clipped} hollow: holding voxels clipped at a range bound, left out"
        self.caption.setText(text)
