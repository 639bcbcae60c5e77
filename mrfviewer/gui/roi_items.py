"""Graphics items of ROIs on a map: drawn shapes, the NIST sphere template, the shape being drawn.

Items only draw what the session holds (:class:`~mrfviewer.session.DrawnRoi`: a kind, a
colour and a view state); their outline polygon, in image pixels, goes back to the session,
which makes the mask.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from mrfviewer.session import SphereTemplate

#: Shapes that can be drawn by dragging on a map.
SHAPES = ("rectangle", "ellipse", "freehand")
_TEMPLATE_MM = 140.0  # side of the template's square in mm
_SPHERE_CENTRES_MM = SphereTemplate(0.0, 0.0, 0.0, 1.0).centres()
_ELLIPSE_POINTS = 72


def _pen(colour: str, selected: bool) -> QtGui.QPen:
    pen = pg.mkPen(colour, width=3.5 if selected else 2)
    pen.setCosmetic(True)
    return pen


class FreehandROI(pg.ROI):
    """A closed outline drawn by hand: moved by dragging (no handles: it has too many points)."""

    def __init__(self, points: np.ndarray, **kwargs: object):
        points = np.asarray(points, dtype=np.float64)
        origin = points.min(axis=0)
        size = np.maximum(points.max(axis=0) - origin, 1e-3)
        super().__init__(tuple(origin), tuple(size), rotatable=False, resizable=False, **kwargs)
        self._unit = (points - origin) / size  # the outline in the ROI's unit square
        self._path = QtGui.QPainterPath()
        self._rebuild()
        self.sigRegionChanged.connect(lambda _: self._rebuild())

    def _rebuild(self) -> None:
        size = np.array([self.size().x(), self.size().y()])
        pts = self._unit * size
        path = QtGui.QPainterPath(QtCore.QPointF(*pts[0]))
        for x, y in pts[1:]:
            path.lineTo(x, y)
        path.closeSubpath()
        self.prepareGeometryChange()
        self._path = path

    def saveState(self) -> dict:
        state = super().saveState()
        state["points"] = self._unit.tolist()
        return state

    def setState(self, state: dict, update: bool = True) -> None:  # noqa: N802 - pyqtgraph API
        if "points" in state:
            self._unit = np.asarray(state["points"], dtype=np.float64)
        super().setState(state, update=update)
        self._rebuild()

    def shape(self) -> QtGui.QPainterPath:
        return self._path

    def boundingRect(self) -> QtCore.QRectF:  # noqa: N802 - Qt API
        return self._path.boundingRect().adjusted(-1, -1, 1, 1)

    def paint(self, painter: QtGui.QPainter, *args: object) -> None:
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        painter.setPen(self.currentPen)
        painter.drawPath(self._path)


def make_roi_item(kind: str, state: dict, colour: str, selected: bool = False) -> pg.ROI:
    """The item of a drawn ROI of ``kind`` in ``state`` (pos, size, angle; points of a freehand outline)."""
    pen = _pen(colour, selected)
    hover = _pen("#FFFFFF", True)
    if kind == "rectangle":
        item = pg.RectROI(state["pos"], state["size"], pen=pen, hoverPen=hover, removable=True)
    elif kind == "ellipse":
        item = pg.EllipseROI(state["pos"], state["size"], pen=pen, hoverPen=hover, removable=True)
    else:
        pos, size = np.array(state["pos"]), np.array(state["size"])
        item = FreehandROI(np.asarray(state["points"]) * size + pos, pen=pen, hoverPen=hover, removable=True)
    item.setState(state, update=False)
    item.setAcceptedMouseButtons(QtCore.Qt.MouseButton.LeftButton)  # a click selects it (sigClicked)
    item.setZValue(20)
    return item


def set_roi_colour(item: pg.ROI, colour: str, selected: bool) -> None:
    item.setPen(_pen(colour, selected))


def shape_state(kind: str, start: QtCore.QPointF, end: QtCore.QPointF, points: list[QtCore.QPointF]) -> dict:
    """The view state of a shape dragged from ``start`` to ``end`` (``points``: the freehand path)."""
    if kind == "freehand":
        xy = np.array([(p.x(), p.y()) for p in points])
        origin = xy.min(axis=0)
        size = np.maximum(xy.max(axis=0) - origin, 1e-3)
        return {"pos": tuple(origin), "size": tuple(size), "angle": 0.0, "points": ((xy - origin) / size).tolist()}
    x0, x1 = sorted((start.x(), end.x()))
    y0, y1 = sorted((start.y(), end.y()))
    return {"pos": (x0, y0), "size": (max(x1 - x0, 1e-3), max(y1 - y0, 1e-3)), "angle": 0.0}


def state_polygon(kind: str, state: dict) -> np.ndarray:
    """The outline (N, 2) x, y in image pixels of a shape in ``state`` (unrotated, as drawn)."""
    (x, y), (w, h) = state["pos"], state["size"]
    if kind == "rectangle":
        return np.array([(x, y), (x + w, y), (x + w, y + h), (x, y + h)])
    if kind == "ellipse":
        a = np.linspace(0, 2 * np.pi, _ELLIPSE_POINTS, endpoint=False)
        return np.column_stack([x + w / 2 * (1 + np.cos(a)), y + h / 2 * (1 + np.sin(a))])
    return np.asarray(state["points"]) * np.array([w, h]) + np.array([x, y])


def item_polygon(item: pg.ROI, image: pg.ImageItem) -> np.ndarray:
    """The outline of an item in the pixel coordinates of ``image`` (moved, scaled or rotated)."""
    path = item.mapToItem(image, item.shape())
    return np.array([(p.x(), p.y()) for p in path.toFillPolygon()])


class SphereTemplateROI(pg.ROI):
    """The NIST sphere layout as one ROI: drag to move, handles to rotate and scale."""

    def __init__(self, template: SphereTemplate):
        side = _TEMPLATE_MM * template.px_per_mm
        pen = pg.mkPen((0, 255, 255), width=1, style=QtCore.Qt.PenStyle.DashLine)
        super().__init__((0, 0), (side, side), pen=pen)
        self.addRotateHandle((1, 0.5), (0.5, 0.5))
        self.addScaleHandle((1, 1), (0.5, 0.5), lockAspect=True)
        self.setZValue(15)
        self.set_template(template)

    def set_template(self, t: SphereTemplate, finish: bool = True) -> None:
        side = _TEMPLATE_MM * t.px_per_mm
        a = np.deg2rad(t.angle_deg)
        half = np.array([side / 2, side / 2])
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        corner = np.array([t.cx, t.cy]) - rot @ half
        self.setSize((side, side), update=False, finish=False)
        self.setAngle(t.angle_deg, update=False, finish=False)
        self.setPos(tuple(corner), update=True, finish=finish)

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


class RubberBand(QtWidgets.QGraphicsPathItem):
    """The outline of a shape while it is dragged (view coordinates)."""

    def __init__(self) -> None:
        super().__init__()
        pen = pg.mkPen("#FFFFFF", width=1.5, style=QtCore.Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.setPen(pen)
        self.setZValue(30)

    def show_shape(self, kind: str, start: QtCore.QPointF, end: QtCore.QPointF, points: list[QtCore.QPointF]) -> None:
        path = QtGui.QPainterPath()
        if kind == "freehand":
            if points:
                path.moveTo(points[0])
                for p in points[1:]:
                    path.lineTo(p)
        else:
            rect = QtCore.QRectF(start, end).normalized()
            path.addRect(rect) if kind == "rectangle" else path.addEllipse(rect)
        self.setPath(path)
