"""ROI panel: shapes drawn on the map view, the NIST template, and the statistics table.

The panel owns only what is drawn (pyqtgraph ROI items); every mask it draws goes to the
:class:`~mrfviewer.session.Session`, and the table lists the session's statistics of the
shown result (with its method and the scope of each row).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from matplotlib.path import Path as PolygonPath
from PySide6 import QtCore, QtWidgets

from mrfviewer.session import RoiRow, Session, SphereTemplate

TABLE_COLUMNS = ("ROI", "map", "method", "scope", "unit", "n", "mean", "SD", "median", "reference", "error %")
_TEMPLATE_MM = 140.0  # side of the template's square in mm
_SPHERE_CENTRES_MM = SphereTemplate(0.0, 0.0, 0.0, 1.0).centres()


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
        for i, (x, y) in enumerate(_SPHERE_CENTRES_MM):
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


def _make_roi(kind: str, pos: tuple[float, float], size: tuple[float, float]) -> pg.ROI:
    pen = pg.mkPen((255, 255, 0), width=2)
    if kind == "rectangle":
        return pg.RectROI(pos, size, pen=pen)
    if kind == "ellipse":
        return pg.EllipseROI(pos, size, pen=pen)
    x, y = pos
    dx, dy = size
    return pg.PolyLineROI([(x, y), (x + dx, y), (x + dx * 0.7, y + dy), (x, y + dy * 0.8)], closed=True, pen=pen)


class RoiPanel(QtWidgets.QWidget):
    """Draw ROIs on the map view and list the session's statistics for every map."""

    export_requested = QtCore.Signal()
    fit_requested = QtCore.Signal()

    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.session = session
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
        self.labels_box.setChecked(session.label_statistics)
        self.outline_box = QtWidgets.QCheckBox("outline labels")
        self.outline_box.setChecked(True)
        self.table = QtWidgets.QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Interactive)
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
        self.labels_box.toggled.connect(session.set_label_statistics)
        self.template_button.clicked.connect(lambda: self.add_template())
        self.fit_button.clicked.connect(self.fit_requested)
        self.template_roi: SphereTemplateROI | None = None
        # What is drawn, by ROI name: (kind, pyqtgraph item). Items live on the first map panel.
        self.rois: dict[str, tuple[str, pg.ROI]] = {}
        self._view: pg.ViewBox | None = None
        self._image: pg.ImageItem | None = None
        self.rows: list[RoiRow] = []
        for event in (session.events.rois, session.events.selection, session.events.labels, session.events.slice):
            event.connect(lambda *_: self.refresh())

    # -- drawing ----------------------------------------------------------------------------
    def attach(self, view: pg.ViewBox | None, image: pg.ImageItem | None) -> None:
        """Draw on ``view`` (over ``image``): the shapes drawn so far move there (the views were rebuilt)."""
        states = {name: (kind, roi.saveState()) for name, (kind, roi) in self.rois.items()}
        template = self.template_roi.template() if self.template_roi is not None else None
        self.rois, self.template_roi = {}, None
        self._view, self._image = view, image
        if view is None:
            return
        for name, (kind, state) in states.items():
            roi = _make_roi(kind, (0, 0), (1, 1))
            roi.setState(state)
            self._add(name, kind, roi, push=False)
        if template is not None:
            self.add_template(template, push=False)

    def forget(self) -> None:
        """A new series: nothing drawn on the last one applies."""
        self.rois, self.template_roi = {}, None
        self._view = self._image = None

    def _plane_shape(self) -> tuple[int, int] | None:
        if self._image is None or self._image.image is None:
            return None
        return tuple(self._image.image.shape[:2])  # type: ignore[return-value]

    def _add(self, name: str, kind: str, roi: pg.ROI, push: bool = True) -> None:
        assert self._view is not None
        self._view.addItem(roi)
        roi.sigRegionChangeFinished.connect(lambda _, n=name: self._push(n))
        self.rois[name] = (kind, roi)
        if push:
            self._push(name)

    def _push(self, name: str) -> None:
        shape = self._plane_shape()
        if shape is None or name not in self.rois:
            return
        self.session.set_roi(name, roi_mask(self.rois[name][1], self._image, shape))

    def add_roi(
        self, kind: str, pos: tuple[float, float] | None = None, size: tuple[float, float] | None = None
    ) -> pg.ROI | None:
        """Add a rectangle, ellipse or polygon ROI (default: centred, a fifth of the image)."""
        shape = self._plane_shape()
        if self._view is None or shape is None:
            return None
        h, w = shape
        size = size or (max(w / 5, 2), max(h / 5, 2))
        pos = pos or (w / 2 - size[0] / 2, h / 2 - size[1] / 2)
        number = 1 + max((int(n.split()[-1]) for n in self.rois if n.split()[-1].isdigit()), default=0)
        roi = _make_roi(kind, pos, size)
        self._add(f"{kind} {number}", kind, roi)
        return roi

    def add_template(self, template: SphereTemplate | None = None, push: bool = True) -> SphereTemplateROI | None:
        """Overlay the NIST sphere template (centred, 1 mm per pixel, unless given)."""
        shape = self._plane_shape()
        if self._view is None or shape is None:
            return None
        if self.template_roi is not None:
            self._view.removeItem(self.template_roi)
        h, w = shape
        template = template or SphereTemplate(w / 2, h / 2, 0.0, min(h, w) / 150.0)
        self.template_roi = SphereTemplateROI(template)
        self._view.addItem(self.template_roi)
        self.template_roi.sigRegionChangeFinished.connect(lambda _: self._push_template())
        if push:
            self._push_template()
        return self.template_roi

    def set_template(self, template: SphereTemplate) -> None:
        """Place the template (e.g. where the fit put it)."""
        if self.template_roi is None:
            self.add_template(template)
        else:
            self.template_roi.set_template(template)
            self._push_template()

    def _push_template(self) -> None:
        self.session.set_template(self.template_roi.template() if self.template_roi is not None else None)

    def clear(self) -> None:
        for _, roi in self.rois.values():
            if self._view is not None:
                self._view.removeItem(roi)
        if self.template_roi is not None and self._view is not None:
            self._view.removeItem(self.template_roi)
        self.rois, self.template_roi = {}, None
        self.session.remove_rois()

    # -- the table --------------------------------------------------------------------------
    def refresh(self) -> None:
        """The table of the session's statistics of the shown result."""
        self.rows = self.session.roi_rows()
        self.table.setUpdatesEnabled(False)
        self.table.setRowCount(len(self.rows))
        for row, r in enumerate(self.rows):
            s = r.stats
            error = r.error_pct
            cells = (
                s.label,
                s.map,
                r.method.upper(),
                r.scope,
                s.unit,
                str(s.n_voxels),
                f"{s.mean:.4g}",
                f"{s.sd:.3g}",
                f"{s.median:.4g}",
                f"{r.reference:.4g}" if r.reference else "",
                f"{error:+.1f}" if error is not None else "",
            )
            for col, text in enumerate(cells):
                item = self.table.item(row, col)
                if item is None:
                    self.table.setItem(row, col, QtWidgets.QTableWidgetItem(text))
                elif item.text() != text:
                    item.setText(text)
        self.table.setUpdatesEnabled(True)
