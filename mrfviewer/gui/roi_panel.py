"""ROI panel: drawn ROIs and label maps, a live statistics table, CSV export."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from matplotlib.path import Path as PolygonPath
from PySide6 import QtCore, QtWidgets

from mrfviewer.phantom_fit import SphereTemplate, fit_nist_template
from mrfviewer.phantoms import NIST_T2_ARRAY, knee_tissue, nist_sphere_centres_mm
from mrfviewer.roi import RoiStats, roi_statistics

TABLE_COLUMNS = ("ROI", "map", "unit", "n", "mean", "SD", "median", "reference", "error %")
_TEMPLATE_MM = 140.0  # side of the template's square in mm


class SphereTemplateROI(pg.ROI):
    """The NIST sphere layout as one ROI: drag to move, handles to rotate and scale."""

    def __init__(self, template: SphereTemplate):
        side = _TEMPLATE_MM * template.px_per_mm
        super().__init__((0, 0), (side, side), pen=pg.mkPen((0, 255, 255), width=1, style=QtCore.Qt.PenStyle.DashLine))
        self.addRotateHandle((1, 0.5), (0.5, 0.5))
        self.addScaleHandle((1, 1), (0.5, 0.5), lockAspect=True)
        self.set_template(template)

    def set_template(self, t: SphereTemplate) -> None:
        side = _TEMPLATE_MM * t.px_per_mm
        a = np.deg2rad(t.angle_deg)
        half = np.array([side / 2, side / 2])
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        corner = np.array([t.cx, t.cy]) - rot @ half
        self.setSize((side, side), finish=False)
        self.setAngle(t.angle_deg, finish=False)
        self.setPos(tuple(corner), finish=True)

    def template(self) -> SphereTemplate:
        side = float(self.size().x())
        a = np.deg2rad(self.angle())
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        centre = np.array([self.pos().x(), self.pos().y()]) + rot @ np.array([side / 2, side / 2])
        return SphereTemplate(float(centre[0]), float(centre[1]), float(self.angle()), side / _TEMPLATE_MM)

    def paint(self, painter, option, widget=None) -> None:  # noqa: ANN001 - Qt API
        painter.save()  # the base class leaves the painter scaled to a unit square
        super().paint(painter, option, widget)
        painter.restore()
        side = float(self.size().x())
        scale = side / _TEMPLATE_MM
        painter.setPen(pg.mkPen((0, 255, 255), width=1.5))
        for i, (x, y) in enumerate(nist_sphere_centres_mm()):
            cx, cy = side / 2 + x * scale, side / 2 + y * scale
            r = 10.0 * scale
            painter.drawEllipse(QtCore.QPointF(cx, cy), r, r)
            painter.drawText(
                QtCore.QRectF(cx - r, cy - r, 2 * r, 2 * r), QtCore.Qt.AlignmentFlag.AlignCenter, str(i + 1)
            )


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
        self.template_button = QtWidgets.QPushButton("NIST template")
        self.template_button.setToolTip("overlay the NIST/ISMRM sphere template (drag, rotate, scale)")
        self.fit_button = QtWidgets.QPushButton("Fit template")
        self.fit_button.setToolTip("fit the sphere template to the PD map (T2 decides the orientation)")
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
        buttons.addWidget(self.template_button, 2, 0, 1, 2)
        buttons.addWidget(self.fit_button, 2, 2, 1, 2)
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
        self.template_button.clicked.connect(self.add_template)
        self.fit_button.clicked.connect(self.fit_template)
        self.template_roi: SphereTemplateROI | None = None
        self.references: dict[str, float] = {}
        self.rois: list[tuple[str, pg.ROI]] = []
        self._view: pg.ViewBox | None = None
        self._image: pg.ImageItem | None = None
        self._layers: dict[str, tuple[np.ndarray, str]] = {}
        self._slice = 0
        self._labels: np.ndarray | None = None
        self._truth: dict[str, np.ndarray] = {}
        self._label_names: dict[int, str] = {}
        self.stats: list[RoiStats] = []

    def attach(self, view: pg.ViewBox | None, image: pg.ImageItem | None) -> None:
        """Draw ROIs on ``view`` (over ``image``); existing ROIs are dropped."""
        self.rois = []
        self.template_roi = None
        self._view, self._image = view, image

    def set_layers(self, layers: dict[str, tuple[np.ndarray, str]], slice_index: int) -> None:
        self._layers = {k: v for k, v in layers.items() if k in ("T1", "T2", "T1rho", "B1", "PD", "raw")}
        self._slice = slice_index
        self.refresh()

    def set_labels(
        self, labels: np.ndarray | None, names: dict[int, str], truth: dict[str, np.ndarray] | None = None
    ) -> None:
        """Label map with names; ``truth`` holds ground-truth maps (Z, Y, X) of a digital phantom, if known."""
        self._labels, self._label_names = labels, names
        self._truth = truth or {}
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

    def add_template(self, template: SphereTemplate | None = None) -> SphereTemplateROI | None:
        """Overlay the NIST sphere template (centred, 1 mm per pixel, unless given)."""
        if self._view is None or self._image is None or self._image.image is None:
            return None
        if self.template_roi is not None:
            self._view.removeItem(self.template_roi)
        h, w = self._image.image.shape[:2]
        template = template or SphereTemplate(w / 2, h / 2, 0.0, min(h, w) / 150.0)
        self.template_roi = SphereTemplateROI(template)
        self._view.addItem(self.template_roi)
        self.template_roi.sigRegionChangeFinished.connect(lambda _: self.refresh())
        self.refresh()
        return self.template_roi

    def fit_template(self) -> SphereTemplate | None:
        """Fit the template to the current slice's PD map (and T2 for sphere identity)."""
        if "PD" not in self._layers:
            return None
        pd = self._layers["PD"][0][self._slice]
        t2 = self._layers["T2"][0][self._slice] if "T2" in self._layers else None
        fitted = fit_nist_template(pd, 1.0 / max(self._pixels_per_mm(), 1e-6), t2=t2)
        if self.template_roi is None:
            self.add_template(fitted)
        else:
            self.template_roi.set_template(fitted)
        self.refresh()
        return fitted

    def _pixels_per_mm(self) -> float:
        return 1.0 / getattr(self, "pixel_spacing_mm", 1.0)

    def clear(self) -> None:
        for _, roi in self.rois:
            if self._view is not None:
                self._view.removeItem(roi)
        if self.template_roi is not None and self._view is not None:
            self._view.removeItem(self.template_roi)
        self.rois = []
        self.template_roi = None
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
            if self.template_roi is not None:
                for i, disk in enumerate(self.template_roi.template().masks(shape[1:])):
                    mask = np.zeros(shape, dtype=bool)
                    mask[self._slice] = disk
                    out.append((f"sphere {i + 1}", mask))
            if self.labels_box.isChecked() and self._labels is not None and self._labels.shape == shape:
                for label in sorted(int(v) for v in np.unique(self._labels) if v != 0):
                    out.append((self._label_names.get(label, f"label {label}"), self._labels == label))
        return out

    def reference(self, label: str, map_name: str, mask: np.ndarray | None = None) -> float | None:
        """Reference value of an ROI, or None.

        Template spheres: the NIST T2 array (3 T; T1rho taken equal to T2). Labels
        of a digital phantom: the mean ground truth inside the ROI when the series
        carries it, else the nominal value of a knee tissue of that name.
        """
        if map_name not in ("T1", "T2", "T1rho", "PD"):
            return None
        if label.startswith("sphere ") and label.split()[1].isdigit():
            if map_name == "PD":
                return None
            i = int(label.split()[1]) - 1
            return float(NIST_T2_ARRAY["T1" if map_name == "T1" else "T2"][i])
        truth = self._truth.get(map_name)
        if truth is not None and mask is not None and truth.shape == mask.shape and mask.any():
            return float(np.mean(truth[mask]))
        tissue = knee_tissue(label)
        return None if tissue is None else float(tissue.value(map_name))

    def refresh(self) -> None:
        masks = self.masks()
        self.stats = [
            roi_statistics(values, mask, name, map_name, unit)
            for name, mask in masks
            for map_name, (values, unit) in self._layers.items()
        ]
        by_name = dict(masks)
        self.table.setRowCount(len(self.stats))
        for row, s in enumerate(self.stats):
            ref = self.reference(s.label, s.map, by_name.get(s.label))
            error = f"{100 * (s.mean / ref - 1):+.1f}" if ref and np.isfinite(s.mean) else ""
            cells = (
                s.label,
                s.map,
                s.unit,
                str(s.n_voxels),
                f"{s.mean:.4g}",
                f"{s.sd:.3g}",
                f"{s.median:.4g}",
                f"{ref:.4g}" if ref else "",
                error,
            )
            for col, text in enumerate(cells):
                self.table.setItem(row, col, QtWidgets.QTableWidgetItem(text))
