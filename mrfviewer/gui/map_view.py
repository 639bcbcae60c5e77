"""Map viewer: parameter maps side by side with linked pan/zoom, crosshair and read-out.

Images are shown in row-major order (array[y, x], y down). Colours come from
:mod:`mrfviewer.colormaps` (lipari for T1, navia for T2 and T1rho, remapped per
window; invalid pixels in the lowest colour), the same code as the PNG export.
Before reconstruction the raw time-point images are shown with a time slider.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from mrfviewer.colormaps import default_window, relaxometry_table, to_rgba
from mrfviewer.gui.histogram import WindowHistogram

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

RAW = "raw"


def _cross_item(size_px: float = 9.0) -> QtWidgets.QGraphicsPathItem:
    """A white '+' of fixed screen size, placed with ``setPos``.

    A plain path item that ignores the view's scaling: moving it repaints two small
    rectangles, where a scatter plot recomputed its bounds and symbol cache on every click.
    """
    half = size_px / 2
    path = QtGui.QPainterPath()
    path.moveTo(-half, 0)
    path.lineTo(half, 0)
    path.moveTo(0, -half)
    path.lineTo(0, half)
    item = QtWidgets.QGraphicsPathItem(path)
    pen = pg.mkPen("w", width=1.5)
    pen.setCosmetic(True)
    item.setPen(pen)
    item.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
    item.setZValue(10)
    item.setVisible(False)
    return item


class _Panel:
    """One map: a view box with its image, crosshair and colour bar."""

    def __init__(self, layout: pg.GraphicsLayout, row: int, col: int, name: str, unit: str):
        self.name, self.unit = name, unit
        self.label = layout.addLabel(self._title(), row=2 * row, col=2 * col, colspan=2)
        self.view = layout.addViewBox(row=2 * row + 1, col=2 * col, lockAspect=True, invertY=True, enableMenu=False)
        self.image = pg.ImageItem()
        self.view.addItem(self.image)
        self.overlay = pg.ImageItem()
        self.overlay.setZValue(5)
        self.view.addItem(self.overlay)
        self.cross = _cross_item()
        self.view.addItem(self.cross, ignoreBounds=True)
        self.bar = pg.ColorBarItem(values=(0, 1), interactive=False, width=12)
        layout.addItem(self.bar, row=2 * row + 1, col=2 * col + 1)
        self.window = (0.0, 1.0)
        self._bar_ready = False

    def _title(self) -> str:
        unit = f" ({self.unit})" if self.unit not in ("", "1") else ""
        return f"<b>{self.name}</b>{unit}"

    def show(self, plane: np.ndarray, window: tuple[float, float]) -> None:
        lo, hi = window
        table = relaxometry_table(self.name, lo, hi)
        rgba = (to_rgba(plane, table, lo, hi) * 255).astype(np.uint8)
        self.image.setImage(rgba, autoLevels=False, levels=(0, 255))
        if window != self.window or not self._bar_ready:
            colors = (table[1:] * 255).astype(np.uint8)
            self.bar.setColorMap(pg.ColorMap(np.linspace(0, 1, len(colors)), colors))
            self.bar.setLevels((lo, hi))
            self.bar.axis.enableAutoSIPrefix(False)  # "ms", never "ms (x0.001)"
            self.bar.axis.setLabel(self.unit if self.unit not in ("", "1") else "")
            self._bar_ready = True
        self.window = window


class MapView(QtWidgets.QWidget):
    """All maps of a reconstruction (or the raw images), with sliders and window fields."""

    pixel_clicked = QtCore.Signal(int, int, int)  # slice, row, column
    hovered = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._layers: dict[str, tuple[np.ndarray, str]] = {}
        self._windows: dict[str, tuple[float, float]] = {}
        self._panels: list[_Panel] = []
        self._raw: np.ndarray | None = None
        self._selected: tuple[int, int, int] | None = None
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#202020")
        self.slice_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slice_label = QtWidgets.QLabel("slice 1/1")
        self.time_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.time_label = QtWidgets.QLabel("time point")
        self.window_map = QtWidgets.QComboBox()
        self.window_map.setToolTip("map whose display window the fields below set")
        self.lower = QtWidgets.QDoubleSpinBox()
        self.upper = QtWidgets.QDoubleSpinBox()
        for box, tip in ((self.lower, "lower window limit"), (self.upper, "upper window limit")):
            box.setRange(-1e6, 1e6)
            box.setDecimals(2)
            box.setKeyboardTracking(False)
            box.setToolTip(tip)
            box.setMaximumWidth(90)
        self.auto = QtWidgets.QPushButton("Auto")
        self.auto.setToolTip("window from the histogram (0 or 1st to 99th percentile)")
        controls = QtWidgets.QHBoxLayout()
        for w in (self.slice_label, self.slice_slider, self.time_label, self.time_slider):
            controls.addWidget(w)
        controls.addSpacing(12)
        self.histogram = WindowHistogram()
        for w in (QtWidgets.QLabel("window"), self.window_map, self.lower, self.upper, self.auto):
            controls.addWidget(w)
        controls.addWidget(self.histogram, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(controls)
        layout.addWidget(self.graphics, 1)
        self.slice_slider.valueChanged.connect(self._redraw)
        self.time_slider.valueChanged.connect(self._redraw)
        self.window_map.currentTextChanged.connect(self._show_window_fields)
        self.lower.valueChanged.connect(self._window_edited)
        self.upper.valueChanged.connect(self._window_edited)
        self.auto.clicked.connect(self._auto_window)
        self.histogram.window_changed.connect(lambda lo, hi: self.set_window(self.window_map.currentText(), lo, hi))
        self.graphics.scene().sigMouseMoved.connect(self._on_move)
        self.graphics.scene().sigMouseClicked.connect(self._on_click)
        self._set_sliders(1, 1)
        self._redraw()

    # -- content -------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._layers)

    def current_slice(self) -> int:
        return self.slice_slider.value()

    def set_overlay(self, labels: np.ndarray | None) -> None:
        """Outline the regions of a (Z, Y, X) label map on every view (``None`` hides it)."""
        self._overlay = labels
        self._redraw()

    def set_raw(self, magnitude: np.ndarray, z: int = 0) -> None:
        """Show raw time-point images of slice ``z``; ``magnitude`` is (T, Z, Y, X)."""
        self._raw = magnitude
        self._layers = {RAW: (magnitude[0], "a.u.")}
        self._windows = {RAW: default_window(RAW, magnitude[magnitude.shape[0] // 2])}
        self._set_sliders(magnitude.shape[1], magnitude.shape[0], z)  # before anything reads the slice
        self._build()
        self._redraw()

    def set_maps(self, layers: dict[str, tuple[np.ndarray, str]], z: int = 0) -> None:
        """Show maps of slice ``z``: name -> ((Z, Y, X) values, unit)."""
        self._raw = None
        self._layers = dict(layers)
        self._windows = {name: default_window(name, values) for name, (values, _) in layers.items()}
        first = next(iter(layers.values()))[0]
        self._set_sliders(first.shape[0], 0, z)
        self._build()
        self._redraw()

    def show_slice(self, z: int) -> None:
        """Show slice ``z`` (set from outside, e.g. by the session)."""
        if z != self.slice_slider.value():
            self.slice_slider.setValue(z)

    def window(self, name: str) -> tuple[float, float]:
        return self._windows[name]

    def set_window(self, name: str, lower: float, upper: float) -> None:
        if upper <= lower:
            upper = lower + 1e-6
        self._windows[name] = (float(lower), float(upper))
        if self.window_map.currentText() == name:
            self._show_window_fields(name)
        self._redraw()

    def select(self, pixel: tuple[int, int, int] | None) -> None:
        """Mark pixel (slice z, row y, column x) in every view (None: no mark)."""
        self._selected = pixel
        if pixel is not None and pixel[0] != self.current_slice():
            self.slice_slider.setValue(pixel[0])
        self._draw_cross()

    def value_at(self, name: str, z: int, y: int, x: int) -> float:
        values, _ = self._layers[name]
        if name == RAW and self._raw is not None:
            return float(self._raw[self.time_slider.value(), z, y, x])
        return float(values[z, y, x])

    def first_view(self) -> pg.ViewBox | None:
        return self._panels[0].view if self._panels else None

    def first_image(self) -> pg.ImageItem | None:
        return self._panels[0].image if self._panels else None

    # -- internals -------------------------------------------------------------
    def _set_sliders(self, n_slices: int, n_time: int, z: int = 0) -> None:
        """Ranges and values of the sliders, without redrawing (the caller redraws once)."""
        for slider, top, value in ((self.slice_slider, n_slices, z), (self.time_slider, n_time, 0)):
            slider.blockSignals(True)
            slider.setRange(0, max(top - 1, 0))
            slider.setValue(min(max(value, 0), max(top - 1, 0)) if slider is self.slice_slider else slider.value())
            slider.blockSignals(False)
        self.slice_slider.setVisible(n_slices > 1)
        self.slice_label.setVisible(n_slices > 1)
        self.time_slider.setVisible(n_time > 1)
        self.time_label.setVisible(n_time > 1)

    def _build(self) -> None:
        self.graphics.clear()
        self._panels = []
        columns = 3 if len(self._layers) > 2 else len(self._layers)
        for i, (name, (_, unit)) in enumerate(self._layers.items()):
            self._panels.append(_Panel(self.graphics.ci, i // max(columns, 1), i % max(columns, 1), name, unit))
        for panel in self._panels[1:]:
            panel.view.setXLink(self._panels[0].view)
            panel.view.setYLink(self._panels[0].view)
        self.window_map.blockSignals(True)
        self.window_map.clear()
        self.window_map.addItems(list(self._layers))
        self.window_map.blockSignals(False)
        self._show_window_fields(self.window_map.currentText())

    def _plane(self, name: str) -> np.ndarray:
        z = self.current_slice()
        if name == RAW and self._raw is not None:
            return self._raw[self.time_slider.value(), z]
        return self._layers[name][0][z]

    def _redraw(self) -> None:
        if self.sender() in (self.slice_slider, self.time_slider):
            self._update_histogram()
        n_slices = self.slice_slider.maximum() + 1
        self.slice_label.setText(f"slice {self.current_slice() + 1}/{n_slices}")
        self.time_label.setText(f"time point {self.time_slider.value() + 1}/{self.time_slider.maximum() + 1}")
        outline = self._outline()
        for panel in self._panels:
            panel.show(self._plane(panel.name), self._windows[panel.name])
            if outline is None:
                panel.overlay.clear()
            else:
                panel.overlay.setImage(outline, autoLevels=False, levels=(0, 255))
        if self._panels and not getattr(self, "_ranged", False):
            self._panels[0].view.autoRange(padding=0.02)
        self._draw_cross()

    def _outline(self) -> np.ndarray | None:
        labels = getattr(self, "_overlay", None)
        if labels is None or not self._panels:
            return None
        plane = labels[min(self.current_slice(), labels.shape[0] - 1)]
        edge = np.zeros(plane.shape, dtype=bool)
        edge[:-1] |= plane[:-1] != plane[1:]
        edge[:, :-1] |= plane[:, :-1] != plane[:, 1:]
        rgba = np.zeros((*plane.shape, 4), dtype=np.uint8)
        rgba[edge] = (255, 255, 255, 150)
        return rgba

    def _draw_cross(self) -> None:
        shown = self._selected is not None and self._selected[0] == self.current_slice()
        for panel in self._panels:
            if shown:
                _, y, x = self._selected  # type: ignore[misc]
                panel.cross.setPos(x + 0.5, y + 0.5)
            panel.cross.setVisible(shown)

    def _show_window_fields(self, name: str) -> None:
        if name not in self._windows:
            return
        lo, hi = self._windows[name]
        for box, value in ((self.lower, lo), (self.upper, hi)):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)
        self._update_histogram()

    def _update_histogram(self) -> None:
        name = self.window_map.currentText()
        if name in self._layers:
            self.histogram.set_values(self._plane(name), self._windows[name])

    def _window_edited(self) -> None:
        name = self.window_map.currentText()
        if name in self._windows:
            self.set_window(name, self.lower.value(), self.upper.value())

    def _auto_window(self) -> None:
        name = self.window_map.currentText()
        if name in self._layers:
            values = self._plane(name)
            self.set_window(name, *default_window(name, values))

    def _pixel_at(self, scene_pos: QtCore.QPointF) -> tuple[str, int, int] | None:
        for panel in self._panels:
            if panel.view.sceneBoundingRect().contains(scene_pos):
                point = panel.view.mapSceneToView(scene_pos)
                plane = self._plane(panel.name)
                x, y = int(np.floor(point.x())), int(np.floor(point.y()))
                if 0 <= y < plane.shape[0] and 0 <= x < plane.shape[1]:
                    return panel.name, y, x
        return None

    def _on_move(self, scene_pos: QtCore.QPointF) -> None:
        hit = self._pixel_at(scene_pos)
        if hit is None:
            return
        name, y, x = hit
        z = self.current_slice()
        value = self.value_at(name, z, y, x)
        unit = self._layers[name][1]
        text = "invalid (outside mask)" if not np.isfinite(value) else f"{value:.4g} {unit if unit != '1' else ''}"
        self.hovered.emit(f"{name} = {text.strip()} at x {x}, y {y}, slice {z + 1}")

    def _on_click(self, event) -> None:  # noqa: ANN001 - pyqtgraph mouse event
        if event.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        hit = self._pixel_at(event.scenePos())
        if hit is not None:
            _, y, x = hit
            self.pixel_clicked.emit(self.current_slice(), y, x)
