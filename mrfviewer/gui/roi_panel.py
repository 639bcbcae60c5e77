"""ROI panel: drawn ROIs and label maps, a live statistics table, CSV export."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from matplotlib.path import Path as PolygonPath
from PySide6 import QtCore, QtWidgets

from mrfviewer.roi import RoiStats, roi_statistics

TABLE_COLUMNS = ("ROI", "map", "unit", "n", "mean", "SD", "median")


def roi_mask(roi: pg.ROI, image: pg.ImageItem, shape: tuple[int, int]) -> np.ndarray:
    """Pixels (row-major ``shape``) whose centres lie inside a drawn ROI."""
    path = roi.mapToItem(image, roi.shape())
    polygon = np.array([(p.x(), p.y()) for p in path.toFillPolygon()])
    if len(polygon) < 3:
        return np.zeros(shape, dtype=bool)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    centres = np.column_stack([xx.ravel() + 0.5, yy.ravel() + 0.5])
    return PolygonPath(polygon).contains_points(centres).reshape(shape)


class RoiPanel(QtWidgets.QWidget):
    """Draw ROIs on the map view and list their statistics for every map."""

    export_requested = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.rect_button = QtWidgets.QPushButton("Rectangle")
        self.ellipse_button = QtWidgets.QPushButton("Ellipse")
        self.polygon_button = QtWidgets.QPushButton("Polygon")
        self.clear_button = QtWidgets.QPushButton("Clear")
        self.export_button = QtWidgets.QPushButton("Export CSV...")
        self.labels_box = QtWidgets.QCheckBox("label map statistics")
        self.labels_box.setChecked(True)
        self.outline_box = QtWidgets.QCheckBox("outline labels")
        self.outline_box.setChecked(True)
        self.table = QtWidgets.QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        buttons = QtWidgets.QGridLayout()
        for i, b in enumerate((self.rect_button, self.ellipse_button, self.polygon_button, self.clear_button)):
            buttons.addWidget(b, 0, i)
        buttons.addWidget(self.labels_box, 1, 0, 1, 2)
        buttons.addWidget(self.outline_box, 1, 2)
        buttons.addWidget(self.export_button, 1, 3)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        self.rect_button.clicked.connect(lambda: self.add_roi("rectangle"))
        self.ellipse_button.clicked.connect(lambda: self.add_roi("ellipse"))
        self.polygon_button.clicked.connect(lambda: self.add_roi("polygon"))
        self.clear_button.clicked.connect(self.clear)
        self.export_button.clicked.connect(self.export_requested)
        self.labels_box.toggled.connect(lambda _: self.refresh())
        self.rois: list[tuple[str, pg.ROI]] = []
        self._view: pg.ViewBox | None = None
        self._image: pg.ImageItem | None = None
        self._layers: dict[str, tuple[np.ndarray, str]] = {}
        self._slice = 0
        self._labels: np.ndarray | None = None
        self._label_names: dict[int, str] = {}
        self.stats: list[RoiStats] = []

    def attach(self, view: pg.ViewBox | None, image: pg.ImageItem | None) -> None:
        """Draw ROIs on ``view`` (over ``image``); existing ROIs are dropped."""
        self.rois = []
        self._view, self._image = view, image

    def set_layers(self, layers: dict[str, tuple[np.ndarray, str]], slice_index: int) -> None:
        self._layers = {k: v for k, v in layers.items() if k in ("T1", "T2", "T1rho", "B1", "PD", "raw")}
        self._slice = slice_index
        self.refresh()

    def set_labels(self, labels: np.ndarray | None, names: dict[int, str]) -> None:
        self._labels, self._label_names = labels, names
        self.refresh()

    def add_roi(
        self, kind: str, pos: tuple[float, float] | None = None, size: tuple[float, float] | None = None
    ) -> pg.ROI | None:
        """Add a rectangle, ellipse or polygon ROI (default: centred, a fifth of the image)."""
        if self._view is None or self._image is None or self._image.image is None:
            return None
        h, w = self._image.image.shape[:2]
        size = size or (max(w / 5, 2), max(h / 5, 2))
        pos = pos or (w / 2 - size[0] / 2, h / 2 - size[1] / 2)
        pen = pg.mkPen((255, 255, 0), width=2)
        if kind == "rectangle":
            roi: pg.ROI = pg.RectROI(pos, size, pen=pen)
        elif kind == "ellipse":
            roi = pg.EllipseROI(pos, size, pen=pen)
        else:
            x, y = pos
            dx, dy = size
            roi = pg.PolyLineROI([(x, y), (x + dx, y), (x + dx * 0.7, y + dy), (x, y + dy * 0.8)], closed=True, pen=pen)
        self._view.addItem(roi)
        roi.sigRegionChangeFinished.connect(lambda _: self.refresh())
        self.rois.append((f"{kind} {len(self.rois) + 1}", roi))
        self.refresh()
        return roi

    def clear(self) -> None:
        for _, roi in self.rois:
            if self._view is not None:
                self._view.removeItem(roi)
        self.rois = []
        self.refresh()

    def masks(self) -> list[tuple[str, np.ndarray]]:
        """(name, (Z, Y, X) mask) of every drawn ROI (on the current slice) and label."""
        out = []
        if self._layers:
            shape = next(iter(self._layers.values()))[0].shape
            for name, roi in self.rois:
                mask = np.zeros(shape, dtype=bool)
                mask[self._slice] = roi_mask(roi, self._image, shape[1:])
                out.append((name, mask))
            if self.labels_box.isChecked() and self._labels is not None and self._labels.shape == shape:
                for label in sorted(int(v) for v in np.unique(self._labels) if v != 0):
                    out.append((self._label_names.get(label, f"label {label}"), self._labels == label))
        return out

    def refresh(self) -> None:
        self.stats = [
            roi_statistics(values, mask, name, map_name, unit)
            for name, mask in self.masks()
            for map_name, (values, unit) in self._layers.items()
        ]
        self.table.setRowCount(len(self.stats))
        for row, s in enumerate(self.stats):
            cells = (s.label, s.map, s.unit, str(s.n_voxels), f"{s.mean:.4g}", f"{s.sd:.3g}", f"{s.median:.4g}")
            for col, text in enumerate(cells):
                self.table.setItem(row, col, QtWidgets.QTableWidgetItem(text))
