"""Map viewer: panels of maps with linked navigation, crosshair, ROIs, read-out and windows.

What it shows comes from the main window (views of the session: the maps of a result,
DM | NN | NN - DM of one parameter, or three orthogonal views of one map); what the user
does goes out as signals (a clicked voxel, a drawn or edited ROI, a slice step). It keeps
only view state: zoom and pan per plane (kept across slices, windows, methods and layouts
until the view is reset), display windows, the drawing tool.

Images are shown in row-major order (array[y, x], y down). Colours come from
:mod:`mrfviewer.colormaps` (lipari for T1, navia for T2 and T1rho, remapped per window;
invalid pixels in the lowest colour), the same code as the PNG export. Before a
reconstruction the raw time-point images are shown with a time slider.

Mouse: click a pixel to select it, drag to pan, wheel to zoom, double click (or Home) to
reset the view, right click for the context menu; with a drawing tool chosen, drag on any
map to draw an ROI. Keys (map focused): Down/Right/Page Down next slice, Up/Left/Page Up
previous (raw images: Left/Right step time points), Delete removes the selected ROI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from mrfviewer.colormaps import default_window, edge_labels, plane_name, relaxometry_table, to_rgba
from mrfviewer.gui.histogram import WindowHistogram
from mrfviewer.gui.roi_items import (
    RubberBand,
    SphereTemplateROI,
    item_polygon,
    make_roi_item,
    set_roi_colour,
    shape_state,
    state_polygon,
)
from mrfviewer.session import DrawnRoi, SphereTemplate

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

RAW = "raw"
LAYOUTS = ("grid", "compare", "ortho")
#: Clipped voxels: diagonal stripes one voxel wide, white and black, blended over the map.
_HATCH_BLEND = 0.6
#: Label outlines: white, blended over the map.
_OUTLINE_BLEND = 0.6


@dataclass
class PanelSpec:
    """One panel: a (Z, Y, X) map seen in one plane.

    ``key`` names the panel, ``name`` the map (its colours and window: DM and NN panels
    of T1 share the T1 window), ``plane`` is "slice" (the acquired plane), "row" (rows =
    slices, at the selected row) or "column" (columns = slices, at the selected column).
    ``clipped`` marks voxels at a bound of the estimator's range (hatched), ``tissue`` the
    voxels automatic windows come from (None: every finite voxel).
    """

    key: str
    name: str
    values: np.ndarray
    unit: str
    title: str
    plane: str = "slice"
    clipped: np.ndarray | None = None
    tissue: np.ndarray | None = None


class Crosshair(QtWidgets.QGraphicsItem):
    """A '+' of fixed screen size, white on a black outline (visible on bright and dark pixels).

    Placed with ``setPos``: moving it repaints two small rectangles, where a scatter plot
    recomputed its bounds and symbol cache on every click.
    """

    def __init__(self, size_px: float = 11.0):
        super().__init__()
        self._half = size_px / 2
        self.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setZValue(40)
        self.setVisible(False)
        self._pens = []
        for colour, width in (("#000000", 4.0), ("#FFFFFF", 1.6)):
            pen = QtGui.QPen(QtGui.QColor(colour), width)
            pen.setCosmetic(True)
            pen.setCapStyle(QtCore.Qt.PenCapStyle.FlatCap)
            self._pens.append(pen)

    def boundingRect(self) -> QtCore.QRectF:  # noqa: N802 - Qt API
        h = self._half + 3
        return QtCore.QRectF(-h, -h, 2 * h, 2 * h)

    def paint(self, painter: QtGui.QPainter, *args: object) -> None:
        h = self._half
        for pen in self._pens:
            painter.setPen(pen)
            painter.drawLine(QtCore.QPointF(-h, 0), QtCore.QPointF(h, 0))
            painter.drawLine(QtCore.QPointF(0, -h), QtCore.QPointF(0, h))


class MapViewBox(pg.ViewBox):
    """A view box that draws ROIs by dragging when a tool is chosen, resets on double click
    and asks for a context menu on right click."""

    reset_requested = QtCore.Signal()
    context_requested = QtCore.Signal(object, object)  # scene position, screen position
    shape_drawn = QtCore.Signal(str, dict)  # kind, view state (image pixels)

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self.setDefaultPadding(0.0)  # maps fill their cells (the default pads up to 10 % of small views)
        self.draw_kind: str | None = None
        self.can_draw = True
        self._band = RubberBand()
        self._band.setVisible(False)
        self.addItem(self._band, ignoreBounds=True)
        self._points: list[QtCore.QPointF] = []

    def mouseClickEvent(self, ev) -> None:  # noqa: ANN001, N802 - pyqtgraph API
        if ev.button() == QtCore.Qt.MouseButton.RightButton:
            ev.accept()
            self.context_requested.emit(ev.scenePos(), ev.screenPos())
        elif ev.button() == QtCore.Qt.MouseButton.LeftButton and ev.double() and self.draw_kind is None:
            ev.accept()
            self.reset_requested.emit()
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: ANN001, N802 - pyqtgraph API
        if self.draw_kind is None or not self.can_draw or ev.button() != QtCore.Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        start = self.mapSceneToView(ev.buttonDownScenePos())
        end = self.mapSceneToView(ev.scenePos())
        if ev.isStart():
            self._points = [start]
        self._points.append(end)
        self._band.show_shape(self.draw_kind, start, end, self._points)
        self._band.setVisible(True)
        if ev.isFinish():
            self._band.setVisible(False)
            kind, points = self.draw_kind, self._points
            self._points = []
            too_small = abs(end.x() - start.x()) < 1 and abs(end.y() - start.y()) < 1
            if kind == "freehand":
                too_small = len(points) < 4
            if not too_small:
                self.shape_drawn.emit(kind, shape_state(kind, start, end, points))


class OutlinedText(QtWidgets.QGraphicsItem):
    """A bold letter, white on a black outline: readable on every colour of every map."""

    def __init__(self) -> None:
        super().__init__()
        self._font = QtGui.QFont()
        self._font.setBold(True)
        self._font.setPointSize(10)
        self._path = QtGui.QPainterPath()
        self._text = ""
        self.setZValue(50)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:  # noqa: N802 - as QGraphicsSimpleTextItem
        self._text = text
        self.prepareGeometryChange()
        self._path = QtGui.QPainterPath()
        self._path.addText(0, QtGui.QFontMetricsF(self._font).ascent(), self._font, text)

    def boundingRect(self) -> QtCore.QRectF:  # noqa: N802 - Qt API
        return self._path.boundingRect().adjusted(-2, -2, 2, 2)

    def paint(self, painter: QtGui.QPainter, *args: object) -> None:
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        painter.strokePath(self._path, QtGui.QPen(QtGui.QColor("#000000"), 3.0))
        painter.fillPath(self._path, QtGui.QColor("#FFFFFF"))


class _Panel:
    """One map in a cell: title and unit, view box with image, overlays and crosshair, colour bar."""

    def __init__(self, layout: pg.GraphicsLayout, row: int, col: int, spec: PanelSpec, scale: tuple[float, float]):
        self.spec = spec
        self.scale = scale  # display units per voxel across and down (the slice spacing of reformats)
        # The unit is in the title ("T1 (ms)"): a unit label on the colour bar's axis overlapped its ticks.
        self.title = layout.addLabel(spec.title, row=2 * row, col=2 * col, colspan=2, size="10pt")
        self.title.setSizePolicy(QtWidgets.QSizePolicy.Policy.Preferred, QtWidgets.QSizePolicy.Policy.Fixed)
        self.view = MapViewBox()
        self.view.can_draw = spec.plane == "slice"
        layout.addItem(self.view, row=2 * row + 1, col=2 * col)
        self.image = pg.ImageItem()
        self.view.addItem(self.image)
        # Label outlines and clipped-voxel stripes are painted into the map's own image: one
        # image per panel to draw (three scaled images per panel made a slice step slow).
        self.outline: np.ndarray | None = None  # (Y, X) the edges drawn last, for tests
        self.hatch: np.ndarray | None = None  # (Y, X) the clipped voxels drawn last
        self.cross = Crosshair()
        self.view.addItem(self.cross, ignoreBounds=True)
        self.lines = [pg.InfiniteLine(angle=a, pen=pg.mkPen((255, 220, 0, 150), width=1)) for a in (0, 90)]
        for line in self.lines:
            line.setVisible(False)
            self.view.addItem(line, ignoreBounds=True)
        self.bar = pg.ColorBarItem(values=(0, 1), interactive=False, width=12)
        self.bar.axis.enableAutoSIPrefix(False)  # "ms", never "ms (x0.001)"
        layout.addItem(self.bar, row=2 * row + 1, col=2 * col + 1)
        self.letters = {edge: OutlinedText() for edge in ("left", "right", "top", "bottom")}
        for item in self.letters.values():
            item.setParentItem(self.view)
        self.view.sigResized.connect(lambda _: self._place_letters())
        self.view.sigRangeChanged.connect(lambda *_: self._place_letters())
        self.window = (math.nan, math.nan)
        self.image_rect: QtCore.QRectF | None = None
        self.rois: dict[str, pg.ROI] = {}
        self.template: SphereTemplateROI | None = None

    def set_letters(self, letters: dict[str, str]) -> None:
        for edge, item in self.letters.items():
            item.setText(letters.get(edge, ""))
        self._place_letters()

    def _place_letters(self) -> None:
        """Letters at the edges of the image where it is inside the view, else at the view's edges."""
        box = self.view.boundingRect()
        rect = box
        if self.image_rect is not None:
            rect = self.view.mapFromView(self.image_rect).boundingRect().intersected(box)
            if rect.width() < 30 or rect.height() < 30:
                rect = box
        for edge, item in self.letters.items():
            size = item.boundingRect()
            x = {"left": rect.left() + 3, "right": rect.right() - size.width() - 3}.get(
                edge, rect.center().x() - size.width() / 2
            )
            y = {"top": rect.top() + 2, "bottom": rect.bottom() - size.height() - 2}.get(
                edge, rect.center().y() - size.height() / 2
            )
            item.setPos(x, y)

    def show(
        self,
        plane: np.ndarray,
        window: tuple[float, float],
        table: np.ndarray,
        outline: np.ndarray | None = None,
        hatch: np.ndarray | None = None,
    ) -> None:
        """Draw ``plane`` in ``window``; ``outline`` (edges) and ``hatch`` (clipped voxels) are (Y, X) masks."""
        lo, hi = window
        rgba = to_rgba(plane, table, lo, hi)
        if outline is not None and outline.any():
            rgba[outline, :3] += _OUTLINE_BLEND * (1.0 - rgba[outline, :3])
        if hatch is not None and hatch.any():
            yy, xx = np.indices(hatch.shape)
            phase = (yy + xx) % 3
            white, black = hatch & (phase == 0), hatch & (phase == 1)
            rgba[white, :3] += _HATCH_BLEND * (1.0 - rgba[white, :3])
            rgba[black, :3] *= 1.0 - _HATCH_BLEND
        self.outline = outline if outline is not None and outline.any() else None
        self.hatch = hatch if hatch is not None and hatch.any() else None
        self.image.setImage((rgba * 255).astype(np.uint8), autoLevels=False, levels=(0, 255))
        sx, sy = self.scale
        rect = QtCore.QRectF(0, 0, plane.shape[1] * sx, plane.shape[0] * sy)
        self.image.setRect(rect)
        if rect != self.image_rect:
            self.image_rect = rect
            self._place_letters()
        if window != self.window:
            colors = (table[1:] * 255).astype(np.uint8)
            self.bar.setColorMap(pg.ColorMap(np.linspace(0, 1, len(colors)), colors))
            self.bar.setLevels((lo, hi))
            self.window = window

    def to_view(self, col: float, row: float) -> QtCore.QPointF:
        """The view position of a voxel centre of this panel's plane (column, row)."""
        return QtCore.QPointF((col + 0.5) * self.scale[0], (row + 0.5) * self.scale[1])


def _edges(plane: np.ndarray) -> np.ndarray:
    """Pixels on an edge between regions of a label plane."""
    edge = np.zeros(plane.shape, dtype=bool)
    edge[:-1] |= plane[:-1] != plane[1:]
    edge[:, :-1] |= plane[:, :-1] != plane[:, 1:]
    return edge


class MapView(QtWidgets.QWidget):
    """Panels of maps (or the raw images) with sliders, window fields and a histogram."""

    pixel_clicked = QtCore.Signal(int, int, int)  # slice, row, column
    hovered = QtCore.Signal(str)
    time_changed = QtCore.Signal(int)
    roi_drawn = QtCore.Signal(str, object, object)  # kind, polygon (N, 2), view state
    roi_edited = QtCore.Signal(str, object, object)  # name, polygon, view state
    roi_clicked = QtCore.Signal(str)
    roi_delete_requested = QtCore.Signal(str)
    roi_rename_requested = QtCore.Signal(str)
    template_edited = QtCore.Signal(object)  # SphereTemplate
    save_view_requested = QtCore.Signal()
    draw_finished = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._specs: list[PanelSpec] = []
        self._layout = "grid"
        self._windows: dict[str, tuple[float, float]] = {}
        self._auto: dict[str, tuple[int, tuple[float, float]]] = {}  # name -> (id of values, window)
        self._user_windows: set[str] = set()
        self._panels: list[_Panel] = []
        self._raw: np.ndarray | None = None
        self._selected: tuple[int, int, int] | None = None
        self._overlay: np.ndarray | None = None
        self._show_clipped = True
        self._directions: dict[str, np.ndarray] | None = None
        self._slice_ratio = 1.0  # slice spacing / pixel spacing (reformats)
        # plane -> the range the user zoomed or panned to; a plane without one is fitted to its
        # cells (again on every resize): pyqtgraph's own auto-range was turned off by linked views.
        self._ranges: dict[str, QtCore.QRectF] = {}
        self._shape: tuple[int, ...] = ()
        self._columns = 0
        self._tables: dict[tuple[str, float, float], np.ndarray] = {}
        self._rois: list[DrawnRoi] = []
        self._selected_roi: str | None = None
        self._template: SphereTemplate | None = None
        self._syncing = False
        self.draw_kind: str | None = None
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#202020")
        self.graphics.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.graphics.installEventFilter(self)
        self.slice_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slice_label = QtWidgets.QLabel("slice 1/1")
        self.time_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.time_label = QtWidgets.QLabel("time point")
        for slider in (self.slice_slider, self.time_slider):
            # A fixed minimum: the histogram's stretch squeezed the sliders to 14 px squares.
            slider.setMinimumWidth(90)
            slider.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.slice_slider.setToolTip("slice (Page Up / Page Down, or the arrow keys on a map)")
        self.time_slider.setToolTip("time point of the raw images (Left / Right on the map)")
        self.window_map = QtWidgets.QComboBox()
        self.window_map.setToolTip("map whose display window the fields beside set")
        self.window_map.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.window_map.setMinimumContentsLength(9)
        self.lower = QtWidgets.QDoubleSpinBox()
        self.upper = QtWidgets.QDoubleSpinBox()
        for box, tip in ((self.lower, "lower window limit"), (self.upper, "upper window limit")):
            box.setRange(-99999, 99999)
            box.setDecimals(2)
            box.setKeyboardTracking(False)
            box.setToolTip(tip)
            box.setMaximumWidth(84)
        self.auto = QtWidgets.QPushButton("Auto")
        self.auto.setToolTip("window from percentiles of tissue (0 or 1st to 99th; clipped voxels left out)")
        controls = QtWidgets.QHBoxLayout()
        controls.addWidget(self.slice_label)
        controls.addWidget(self.slice_slider, 2)
        controls.addWidget(self.time_label)
        controls.addWidget(self.time_slider, 3)
        controls.addSpacing(12)
        self.histogram = WindowHistogram()
        for w in (QtWidgets.QLabel("window"), self.window_map, self.lower, self.upper, self.auto):
            controls.addWidget(w)
        controls.addWidget(self.histogram, 2)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(controls)
        layout.addWidget(self.graphics, 1)
        self.slice_slider.valueChanged.connect(self._slice_moved)
        self.time_slider.valueChanged.connect(self._time_moved)
        self.window_map.currentTextChanged.connect(self._show_window_fields)
        self.lower.valueChanged.connect(self._window_edited)
        self.upper.valueChanged.connect(self._window_edited)
        self.auto.clicked.connect(self._auto_window)
        self.histogram.window_changed.connect(lambda lo, hi: self.set_window(self.window_map.currentText(), lo, hi))
        self.graphics.scene().sigMouseMoved.connect(self._on_move)
        self.graphics.scene().sigMouseClicked.connect(self._on_click)
        self._relayout_timer = QtCore.QTimer(self)
        self._relayout_timer.setSingleShot(True)
        self._relayout_timer.setInterval(120)
        self._relayout_timer.timeout.connect(self._relayout_if_needed)
        self._template_timer = QtCore.QTimer(self)  # the template's items on the other panels, one per turn
        self._template_timer.setSingleShot(True)
        self._template_timer.setInterval(0)
        self._template_timer.timeout.connect(self._add_template_item)
        self._set_sliders(1, 1)

    # -- what is shown --------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """The keys of the panels shown, in order."""
        return [s.key for s in self._specs]

    @property
    def layout_mode(self) -> str:
        return self._layout

    @property
    def _layers(self) -> dict[str, tuple[np.ndarray, str]]:
        return {s.key: (s.values, s.unit) for s in self._specs}

    def current_slice(self) -> int:
        return self.slice_slider.value()

    def current_time(self) -> int:
        return self.time_slider.value()

    def set_geometry(self, directions: dict[str, np.ndarray] | None, slice_ratio: float = 1.0) -> None:
        """Orientation letters from LPS ``directions`` of x, y, z; ``slice_ratio``: slice / pixel spacing."""
        self._directions = directions
        self._slice_ratio = slice_ratio if np.isfinite(slice_ratio) and slice_ratio > 0 else 1.0

    def set_raw(self, magnitude: np.ndarray, z: int = 0, t: int = 0) -> None:
        """Show raw time-point images of slice ``z``; ``magnitude`` is (T, Z, Y, X)."""
        self._raw = magnitude
        spec = PanelSpec(RAW, RAW, magnitude[t], "a.u.", "signal (a.u.), raw images")
        self._set_sliders(magnitude.shape[1], magnitude.shape[0], z, t)
        self._show([spec], "grid")

    def set_panels(self, specs: list[PanelSpec], layout: str = "grid", z: int | None = None) -> None:
        """Show ``specs`` in ``layout`` ("grid", "compare" or "ortho"); the view stays where it was."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}")
        self._raw = None
        self._set_sliders(specs[0].values.shape[0], 0, self.current_slice() if z is None else z)
        self._show(specs, layout)

    def set_maps(self, layers: dict[str, tuple[np.ndarray, str]], z: int = 0) -> None:
        """Every map of a result in the grid: name -> ((Z, Y, X) values, unit)."""
        self.set_panels([PanelSpec(n, n, v, u, n) for n, (v, u) in layers.items()], "grid", z)

    def _show(self, specs: list[PanelSpec], layout: str) -> None:
        shape = specs[0].values.shape[-3:] if specs[0].values.ndim >= 3 else specs[0].values.shape
        if shape != self._shape:  # another series: the old zoom, outlines and voxel mean nothing here
            self._ranges.clear()
            self._overlay = None
            self._selected = None
            self._windows.clear()
            self._user_windows.clear()
            self._auto.clear()
            self._shape = shape
        structure = [(s.key, s.plane) for s in specs]
        same = structure == [(s.key, s.plane) for s in self._specs] and layout == self._layout and self._panels
        self._specs, self._layout = specs, layout
        self._auto_windows()
        if same:
            for panel, spec in zip(self._panels, specs, strict=True):
                panel.spec = spec
                panel.title.setText(spec.title)
        else:
            self._build()
        self._redraw()

    def _auto_windows(self) -> None:
        """Automatic windows for maps the user has not set (recomputed only for new values).

        Panels sharing a map name share the window of the first of them (DM in a comparison).
        """
        done = set()
        for spec in self._specs:
            if spec.name in self._user_windows or spec.name in done:
                continue
            done.add(spec.name)
            values = spec.values if spec.name != RAW else spec.values[self.current_slice()]
            known = self._auto.get(spec.name)
            if known is not None and known[0] == id(spec.values) and spec.name != RAW:
                self._windows[spec.name] = known[1]
                continue
            window = default_window(spec.name, values, spec.tissue if spec.name != RAW else None)
            self._auto[spec.name] = (id(spec.values), window)
            self._windows[spec.name] = window

    def show_slice(self, z: int) -> None:
        """Show slice ``z`` (set from outside, e.g. by the session)."""
        if z != self.slice_slider.value():
            self.slice_slider.setValue(z)

    def show_time(self, t: int) -> None:
        if t != self.time_slider.value():
            self.time_slider.setValue(t)

    def window(self, name: str) -> tuple[float, float]:
        return self._windows[name]

    def set_window(self, name: str, lower: float, upper: float) -> None:
        """Set the display window of map ``name`` (kept until Auto or another series)."""
        if upper <= lower:
            upper = lower + 1e-6
        self._windows[name] = (float(lower), float(upper))
        self._user_windows.add(name)
        if self.window_map.currentText() == name:
            self._show_window_fields(name)
        self._redraw()

    def select(self, pixel: tuple[int, int, int] | None) -> None:
        """Mark voxel (slice z, row y, column x) in every view (None: no mark)."""
        self._selected = pixel
        if pixel is not None and pixel[0] != self.current_slice():
            self.slice_slider.setValue(pixel[0])  # redraws
        elif self._layout == "ortho":
            self._redraw()  # the reformatted planes move to the voxel
        else:
            self._draw_cross()

    def set_overlay(self, labels: np.ndarray | None) -> None:
        """Outline the regions of a (Z, Y, X) label map on every view (``None`` hides it)."""
        self._overlay = labels
        self._redraw()

    def set_clipped_visible(self, on: bool) -> None:
        """Hatch the voxels clipped at a bound of the estimator's range (where the maps know them)."""
        self._show_clipped = bool(on)
        self._redraw()

    def value_at(self, key: str, z: int, y: int, x: int) -> float:
        spec = next(s for s in self._specs if s.key == key)
        if spec.name == RAW and self._raw is not None:
            return float(self._raw[self.current_time(), z, y, x])
        return float(spec.values[z, y, x])

    def first_view(self) -> pg.ViewBox | None:
        return self._panels[0].view if self._panels else None

    def first_image(self) -> pg.ImageItem | None:
        return self._panels[0].image if self._panels else None

    def panel(self, key: str) -> _Panel | None:
        return next((p for p in self._panels if p.spec.key == key), None)

    def reset_view(self) -> None:
        """Fit every map to its cell again (Home, double click)."""
        self._ranges.clear()
        for panel in self._leaders():
            self._fit(panel)

    def _leaders(self) -> list[_Panel]:
        """The first panel of each plane (the others are linked to it)."""
        leaders: dict[str, _Panel] = {}
        for panel in self._panels:
            leaders.setdefault(panel.spec.plane, panel)
        return list(leaders.values())

    def _fit(self, panel: _Panel) -> None:
        h, w = self._plane_shape(panel.spec.plane)
        sx, sy = panel.scale
        panel.view.setRange(QtCore.QRectF(0, 0, w * sx, h * sy), padding=0)

    def set_draw_mode(self, kind: str | None) -> None:
        """Drag on a map draws ``kind`` ("rectangle", "ellipse", "freehand"); None: drag pans."""
        self.draw_kind = kind
        for panel in self._panels:
            panel.view.draw_kind = kind
        cursor = QtCore.Qt.CursorShape.CrossCursor if kind else QtCore.Qt.CursorShape.ArrowCursor
        self.graphics.viewport().setCursor(cursor)

    # -- ROIs -----------------------------------------------------------------------------
    def set_rois(self, rois: list[DrawnRoi], selected: str | None, template: SphereTemplate | None) -> None:
        """Draw the session's ROIs (with a shape) on every panel of the acquired plane."""
        self._rois = [r for r in rois if r.state is not None and r.kind != "template"]
        self._selected_roi = selected
        self._template = template
        self._sync_rois()

    def _roi_panels(self) -> list[_Panel]:
        return [p for p in self._panels if p.spec.plane == "slice"]

    def _sync_rois(self) -> None:
        self._syncing = True
        try:
            wanted = {r.name: r for r in self._rois}
            for panel in self._roi_panels():
                for name in [n for n in panel.rois if n not in wanted]:
                    panel.view.removeItem(panel.rois.pop(name))
                for name, roi in wanted.items():
                    item = panel.rois.get(name)
                    if item is None:
                        item = make_roi_item(roi.kind, roi.state, roi.colour, name == self._selected_roi)
                        self._connect_roi(item, name)
                        panel.view.addItem(item)
                        panel.rois[name] = item
                    else:
                        if item.saveState() != roi.state:
                            item.setState(roi.state, update=True)
                        set_roi_colour(item, roi.colour, name == self._selected_roi)
            self._sync_template()
        finally:
            self._syncing = False

    def _sync_template(self, new: int = 1) -> None:
        """The template on every panel: moved where it exists, made on at most ``new`` panels now.

        A template item (a pyqtgraph ROI with handles) costs milliseconds to make; made on
        every panel at once, it stalled the event loop when a template fit ended (tens of
        ms with five maps). The other panels get theirs one per event-loop turn.
        """
        for panel in self._roi_panels():
            if self._template is None:
                if panel.template is not None:
                    panel.view.removeItem(panel.template)
                    panel.template = None
            elif panel.template is None:
                if new <= 0:
                    self._template_timer.start()
                    continue
                new -= 1
                panel.template = SphereTemplateROI(self._template)
                panel.template.sigRegionChanged.connect(lambda item: self._template_moved(item, final=False))
                panel.template.sigRegionChangeFinished.connect(lambda item: self._template_moved(item, final=True))
                panel.view.addItem(panel.template)
            elif panel.template.template() != self._template:
                panel.template.set_template(self._template, finish=False)

    def _add_template_item(self) -> None:
        self._syncing = True
        try:
            self._sync_template()
        finally:
            self._syncing = False

    def _connect_roi(self, item: pg.ROI, name: str) -> None:
        item.sigRegionChanged.connect(lambda it, n=name: self._roi_moved(n, it, final=False))
        item.sigRegionChangeFinished.connect(lambda it, n=name: self._roi_moved(n, it, final=True))
        item.sigClicked.connect(lambda *_, n=name: self.roi_clicked.emit(n))
        item.sigRemoveRequested.connect(lambda *_, n=name: self.roi_delete_requested.emit(n))
        menu = item.getMenu()
        rename = menu.addAction("Rename...")
        rename.triggered.connect(lambda *_, n=name: self.roi_rename_requested.emit(n))
        menu.actions()[0].setText("Delete ROI")

    def _roi_moved(self, name: str, item: pg.ROI, final: bool) -> None:
        """An ROI dragged on one panel: the others follow; when released, the session hears of it."""
        if self._syncing:
            return
        state = item.saveState()
        self._syncing = True
        try:
            for panel in self._roi_panels():
                other = panel.rois.get(name)
                if other is not None and other is not item:
                    other.setState(state, update=True)
        finally:
            self._syncing = False
        if final:
            image = next(p.image for p in self._roi_panels() if p.rois.get(name) is item)
            self.roi_edited.emit(name, item_polygon(item, image), state)

    def _template_moved(self, item: SphereTemplateROI, final: bool) -> None:
        if self._syncing:
            return
        template = item.template()
        self._syncing = True
        try:
            for panel in self._roi_panels():
                if panel.template is not None and panel.template is not item:
                    panel.template.set_template(template, finish=False)
        finally:
            self._syncing = False
        if final:
            self._template = template
            self.template_edited.emit(template)

    def _shape_drawn(self, kind: str, state: dict) -> None:
        self.roi_drawn.emit(kind, state_polygon(kind, state), state)
        self.set_draw_mode(None)  # one shape per choice of the tool
        self.draw_finished.emit()

    # -- internals --------------------------------------------------------------------------
    def _set_sliders(self, n_slices: int, n_time: int, z: int = 0, t: int | None = None) -> None:
        """Ranges and values of the sliders, without redrawing (the caller redraws once)."""
        for slider, top, value in ((self.slice_slider, n_slices, z), (self.time_slider, n_time, t)):
            slider.blockSignals(True)
            slider.setRange(0, max(top - 1, 0))
            if value is not None:
                slider.setValue(min(max(value, 0), max(top - 1, 0)))
            slider.blockSignals(False)
        self.slice_slider.setVisible(n_slices > 1)
        self.slice_label.setVisible(n_slices > 1)
        self.time_slider.setVisible(n_time > 1)
        self.time_label.setVisible(n_time > 1)
        self._update_labels()

    def _update_labels(self) -> None:
        self.slice_label.setText(f"slice {self.current_slice() + 1}/{self.slice_slider.maximum() + 1}")
        self.time_label.setText(f"time point {self.current_time() + 1}/{self.time_slider.maximum() + 1}")

    def _scale(self, plane: str) -> tuple[float, float]:
        r = self._slice_ratio
        return {"slice": (1.0, 1.0), "row": (1.0, r), "column": (r, 1.0)}[plane]

    def _best_columns(self) -> int:
        """Columns of the grid that give the maps the largest cells in the current widget size."""
        n = len(self._specs)
        if self._layout != "grid" or n <= 1:
            return max(n, 1)
        height, width = self._plane_shape("slice")
        aspect = width / max(height, 1)
        w, h = max(self.graphics.width(), 100), max(self.graphics.height(), 100)
        best, best_size = 1, 0.0
        for cols in range(1, n + 1):
            rows = math.ceil(n / cols)
            cell_w, cell_h = w / cols - 70, h / rows - 24  # colour bar and title
            size = min(cell_w, cell_h * aspect)
            if size > best_size + 1:
                best, best_size = cols, size
        return best

    def _plane_shape(self, plane: str) -> tuple[int, int]:
        z, y, x = self._shape[-3:] if len(self._shape) >= 3 else (1, *self._shape[-2:])
        return {"slice": (y, x), "row": (z, x), "column": (y, z)}[plane]

    def _build(self) -> None:
        self.graphics.clear()
        self._panels = []
        columns = self._best_columns()
        self._columns = columns
        grid = self.graphics.ci
        for i, spec in enumerate(self._specs):
            panel = _Panel(grid, i // columns, i % columns, spec, self._scale(spec.plane))
            panel.view.reset_requested.connect(self.reset_view)
            panel.view.context_requested.connect(lambda scene, screen, p=panel: self._context_menu(p, scene, screen))
            panel.view.shape_drawn.connect(self._shape_drawn)
            panel.view.draw_kind = self.draw_kind
            panel.view.sigRangeChangedManually.connect(lambda *_, p=panel: self._remember_range(p))
            if self._directions is not None:
                panel.set_letters(edge_labels(self._directions, spec.plane))
            self._panels.append(panel)
        # Maps take the space: titles and colour bars keep their natural size.
        for row in range(math.ceil(len(self._specs) / columns)):
            grid.layout.setRowStretchFactor(2 * row, 0)
            grid.layout.setRowStretchFactor(2 * row + 1, 1)
        for col in range(columns):
            grid.layout.setColumnStretchFactor(2 * col, 1)
            grid.layout.setColumnStretchFactor(2 * col + 1, 0)
        # Panels of one plane move together (DM | NN | difference; every map of a result).
        leaders: dict[str, _Panel] = {}
        for panel in self._panels:
            leader = leaders.setdefault(panel.spec.plane, panel)
            if leader is not panel:
                panel.view.setXLink(leader.view)
                panel.view.setYLink(leader.view)
        self.window_map.blockSignals(True)
        current = self.window_map.currentText()
        self.window_map.clear()
        names = list(dict.fromkeys(s.name for s in self._specs))
        self.window_map.addItems(names)
        if current in names:
            self.window_map.setCurrentText(current)
        self.window_map.blockSignals(False)
        self._show_window_fields(self.window_map.currentText())
        self._restore_ranges()
        self._sync_rois()

    def _remember_range(self, panel: _Panel) -> None:
        """The user zoomed or panned: keep it (across slices, windows, methods, layouts)."""
        self._ranges[panel.spec.plane] = panel.view.viewRect()

    def _restore_ranges(self) -> None:
        for panel in self._leaders():
            rect = self._ranges.get(panel.spec.plane)
            if rect is not None:
                panel.view.setRange(rect, padding=0)
            else:
                self._fit(panel)
            panel.view.sigResized.connect(lambda _, p=panel: self._refit(p))

    def _refit(self, panel: _Panel) -> None:
        if panel.spec.plane not in self._ranges and panel in self._panels:
            self._fit(panel)

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._relayout_timer.start()

    def _relayout_if_needed(self) -> None:
        if self._panels and self._layout == "grid" and self._best_columns() != self._columns:
            self._build()
            self._redraw()

    def _ortho_position(self) -> tuple[int, int]:
        """The row and column the reformatted planes cut through: the selected voxel's, else the centre."""
        if self._selected is not None:
            return self._selected[1], self._selected[2]
        y, x = self._plane_shape("slice")
        return y // 2, x // 2

    def _plane(self, spec: PanelSpec) -> np.ndarray:
        z = self.current_slice()
        if spec.name == RAW and self._raw is not None:
            return self._raw[self.current_time(), z]
        return self._cut(spec.values, spec.plane)

    def _cut(self, volume: np.ndarray, plane: str) -> np.ndarray:
        if plane == "slice":
            return volume[min(self.current_slice(), volume.shape[0] - 1)]
        y, x = self._ortho_position()
        return volume[:, y, :] if plane == "row" else volume[:, :, x].T

    def _table(self, name: str, window: tuple[float, float]) -> np.ndarray:
        key = (name, *window)
        table = self._tables.get(key)
        if table is None:
            if len(self._tables) > 64:
                self._tables.clear()
            table = self._tables[key] = relaxometry_table(name, *window)
        return table

    def _redraw(self) -> None:
        self._update_labels()
        if not self._panels:
            return
        if self._raw is not None and RAW not in self._user_windows:
            # Each time point its own automatic window: the first frames after the inversion
            # are several times brighter than the rest and saturated in a window of the middle one.
            self._windows[RAW] = default_window(RAW, self._raw[self.current_time(), self.current_slice()])
            if self.window_map.currentText() == RAW:
                self._show_window_fields(RAW)
        outlines: dict[str, np.ndarray | None] = {}
        for panel in self._panels:
            spec = panel.spec
            window = self._windows[spec.name]
            if spec.plane not in outlines:
                outlines[spec.plane] = None if self._overlay is None else _edges(self._cut(self._overlay, spec.plane))
            clipped = spec.clipped if self._show_clipped else None
            hatch = None if clipped is None else self._cut(clipped, spec.plane)
            panel.show(self._plane(spec), window, self._table(spec.name, window), outlines[spec.plane], hatch)
            if self._layout == "ortho":
                panel.title.setText(self._ortho_title(spec))
        self._update_histogram()
        self._draw_cross()

    def _ortho_title(self, spec: PanelSpec) -> str:
        name = plane_name(self._directions, spec.plane) if self._directions is not None else spec.plane
        y, x = self._ortho_position()
        where = {
            "slice": f"slice {self.current_slice() + 1}",
            "row": f"row {y + 1}",
            "column": f"column {x + 1}",
        }[spec.plane]
        return f"{spec.title} \u00b7 {name} ({where})"

    def _draw_cross(self) -> None:
        for panel in self._panels:
            point = self._cross_point(panel)
            panel.cross.setVisible(point is not None)
            if point is not None:
                panel.cross.setPos(point)
            ortho = self._layout == "ortho" and point is not None
            for line, value in zip(panel.lines, (point.y(), point.x()) if point is not None else (0, 0), strict=True):
                line.setVisible(ortho)
                if ortho:
                    line.setValue(value)

    def _cross_point(self, panel: _Panel) -> QtCore.QPointF | None:
        if self._selected is None:
            return None
        z, y, x = self._selected
        plane = panel.spec.plane
        if plane == "slice":
            return panel.to_view(x, y) if z == self.current_slice() else None
        if plane == "row":
            return panel.to_view(x, z)
        return panel.to_view(z, y)

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
        spec = next((s for s in self._specs if s.name == name), None)
        if spec is not None and name in self._windows:
            self.histogram.set_values(self._plane(spec), self._windows[name])

    def _window_edited(self) -> None:
        name = self.window_map.currentText()
        if name in self._windows:
            self.set_window(name, self.lower.value(), self.upper.value())

    def _auto_window(self) -> None:
        name = self.window_map.currentText()
        self._user_windows.discard(name)
        self._auto.pop(name, None)
        self._auto_windows()
        self._show_window_fields(name)
        self._redraw()

    def _slice_moved(self, z: int) -> None:
        self._redraw()

    def _time_moved(self, t: int) -> None:
        self._redraw()
        self.time_changed.emit(t)

    def _hit(self, scene_pos: QtCore.QPointF) -> tuple[_Panel, int, int, int] | None:
        """The panel and voxel (z, y, x) under a scene position, or None outside every image."""
        for panel in self._panels:
            if not panel.view.sceneBoundingRect().contains(scene_pos):
                continue
            point = panel.view.mapSceneToView(scene_pos)
            col = int(np.floor(point.x() / panel.scale[0]))
            row = int(np.floor(point.y() / panel.scale[1]))
            plane_h, plane_w = self._plane_shape(panel.spec.plane)
            if not (0 <= row < plane_h and 0 <= col < plane_w):
                return None
            plane = panel.spec.plane
            if plane == "slice":
                return panel, self.current_slice(), row, col
            y, x = self._ortho_position()
            return (panel, row, y, col) if plane == "row" else (panel, col, row, x)
        return None

    def _readout(self, panel: _Panel, z: int, y: int, x: int) -> str:
        value = self.value_at(panel.spec.key, z, y, x)
        unit = panel.spec.unit if panel.spec.unit not in ("1", "") else ""
        text = "invalid (outside the mask)" if not np.isfinite(value) else f"{value:.4g} {unit}".strip()
        return f"{panel.spec.title} = {text} at x {x}, y {y}, slice {z + 1}"

    def _on_move(self, scene_pos: QtCore.QPointF) -> None:
        hit = self._hit(scene_pos)
        if hit is not None:
            self.hovered.emit(self._readout(*hit))

    def _on_click(self, event) -> None:  # noqa: ANN001 - pyqtgraph mouse event
        if event.button() != QtCore.Qt.MouseButton.LeftButton or event.double():
            return
        self.graphics.setFocus()
        if self.draw_kind is not None:
            return
        hit = self._hit(event.scenePos())
        if hit is not None:
            _, z, y, x = hit
            self.pixel_clicked.emit(z, y, x)

    def _context_menu(self, panel: _Panel, scene_pos: QtCore.QPointF, screen_pos: QtCore.QPointF) -> None:
        menu = QtWidgets.QMenu(self)
        menu.addAction("Reset view\tHome", self.reset_view)
        hit = self._hit(scene_pos)
        copy = menu.addAction("Copy value")
        if hit is not None:
            text = self._readout(*hit)
            copy.triggered.connect(lambda: QtWidgets.QApplication.clipboard().setText(text))
        else:
            copy.setEnabled(False)
        menu.addAction("Save view as PNG...", self.save_view_requested.emit)
        menu.addSeparator()
        clipped = menu.addAction("Mark clipped voxels")
        clipped.setCheckable(True)
        clipped.setChecked(self._show_clipped)
        clipped.toggled.connect(self.set_clipped_visible)
        self._menu = menu  # kept for tests (a popup has no parent loop offscreen)
        menu.popup(QtCore.QPoint(int(screen_pos.x()), int(screen_pos.y())))

    def step(self, slices: int = 0, times: int = 0) -> None:
        """Move by ``slices`` slices and ``times`` time points (clamped)."""
        if slices:
            self.slice_slider.setValue(self.slice_slider.value() + slices)
        if times:
            self.time_slider.setValue(self.time_slider.value() + times)

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802 - Qt API
        if obj is self.graphics and event.type() == QtCore.QEvent.Type.KeyPress:
            return self._key(event)  # type: ignore[arg-type]
        return super().eventFilter(obj, event)

    def _key(self, event: QtGui.QKeyEvent) -> bool:
        key, keys = event.key(), QtCore.Qt.Key
        raw = self._raw is not None and self.time_slider.maximum() > 0
        if key in (keys.Key_Left, keys.Key_Right) and raw:
            self.step(times=1 if key == keys.Key_Right else -1)
        elif key in (keys.Key_Down, keys.Key_Right, keys.Key_PageDown):
            self.step(slices=1)
        elif key in (keys.Key_Up, keys.Key_Left, keys.Key_PageUp):
            self.step(slices=-1)
        elif key == keys.Key_Home:
            self.reset_view()
        elif key in (keys.Key_Delete, keys.Key_Backspace) and self._selected_roi is not None:
            self.roi_delete_requested.emit(self._selected_roi)
        elif key == keys.Key_Escape and self.draw_kind is not None:
            self.set_draw_mode(None)
            self.draw_finished.emit()
        else:
            return False
        return True
