"""A compact histogram of one map with a draggable window (lower, upper) region."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

#: Histogram bins; the range spans the 0.5th to 99.5th percentile and the window.
BINS = 96


class WindowHistogram(pg.PlotWidget):
    """Histogram of the finite values of a map; drag the shaded region to set the display window."""

    window_changed = QtCore.Signal(float, float)

    def __init__(self, parent=None):  # noqa: ANN001 - Qt parent
        super().__init__(parent, background="#202020")
        self.setFixedHeight(56)
        self.setMinimumWidth(80)
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.getPlotItem().hideAxis("left")
        self.getPlotItem().getAxis("bottom").setHeight(16)
        self.curve = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=(150, 150, 170, 160), pen=None)
        self.addItem(self.curve)
        self.region = pg.LinearRegionItem(brush=(255, 200, 80, 50), pen=pg.mkPen((255, 200, 80), width=1.5))
        self.region.setZValue(10)
        self.addItem(self.region)
        self.region.sigRegionChangeFinished.connect(self._region_moved)
        self.setToolTip("histogram of the map on this slice; drag the edges to set the window")

    def set_values(self, values: np.ndarray, window: tuple[float, float]) -> None:
        """Show the histogram of ``values`` (non-finite values ignored) and the ``window``."""
        finite = values[np.isfinite(values)]
        lo, hi = window
        if finite.size:
            p_lo, p_hi = np.percentile(finite, [0.5, 99.5])
            lo_edge, hi_edge = min(p_lo, lo), max(p_hi, hi)
        else:
            lo_edge, hi_edge = lo, hi
        if hi_edge <= lo_edge:
            hi_edge = lo_edge + 1.0
        counts, edges = np.histogram(finite, bins=BINS, range=(lo_edge, hi_edge))
        self.curve.setData(edges, np.sqrt(counts))  # square root: small peaks (cartilage) stay visible
        self.setXRange(lo_edge, hi_edge, padding=0.02)
        self.set_window(window)

    def set_window(self, window: tuple[float, float]) -> None:
        """Move the region without emitting :attr:`window_changed`."""
        self.region.blockSignals(True)
        self.region.setRegion(window)
        self.region.blockSignals(False)

    def _region_moved(self) -> None:
        lo, hi = self.region.getRegion()
        self.window_changed.emit(float(lo), float(hi))
