"""Mouse, wheel and key events for GUI tests, sent to widgets as Qt delivers them (offscreen or on X).

QTest's mouseMove carries no pressed buttons, so drags are made of explicit press, move and
release events with the button state; pyqtgraph ignores moves closer than 10 ms apart, so
the moves are spaced.
"""

from __future__ import annotations

import time

from PySide6 import QtCore, QtGui, QtWidgets

Qt = QtCore.Qt


def view_point(map_view, panel, x: float, y: float) -> QtCore.QPoint:
    """The viewport position of view coordinates (x, y) in a map panel (pixel x, y: voxel corner)."""
    scene = panel.view.mapViewToScene(QtCore.QPointF(x, y))
    return map_view.graphics.mapFromScene(scene)


def _send(
    widget: QtWidgets.QWidget, kind, pos: QtCore.QPoint, button, buttons, modifiers=Qt.KeyboardModifier.NoModifier
):
    local = QtCore.QPointF(pos)
    event = QtGui.QMouseEvent(kind, local, QtCore.QPointF(widget.mapToGlobal(pos)), button, buttons, modifiers)
    QtWidgets.QApplication.sendEvent(widget, event)
    QtWidgets.QApplication.processEvents()


def press(widget, pos, button=Qt.MouseButton.LeftButton) -> None:
    _send(widget, QtCore.QEvent.Type.MouseButtonPress, pos, button, button)


def release(widget, pos, button=Qt.MouseButton.LeftButton) -> None:
    _send(widget, QtCore.QEvent.Type.MouseButtonRelease, pos, button, Qt.MouseButton.NoButton)


def move(widget, pos, buttons=Qt.MouseButton.NoButton) -> None:
    time.sleep(0.012)
    _send(widget, QtCore.QEvent.Type.MouseMove, pos, Qt.MouseButton.NoButton, buttons)


def click(widget, pos, button=Qt.MouseButton.LeftButton) -> None:
    move(widget, pos)
    press(widget, pos, button)
    release(widget, pos, button)


def double_click(widget, pos) -> None:
    click(widget, pos)
    _send(widget, QtCore.QEvent.Type.MouseButtonDblClick, pos, Qt.MouseButton.LeftButton, Qt.MouseButton.LeftButton)
    release(widget, pos)


def drag(widget, start: QtCore.QPoint, end: QtCore.QPoint, steps: int = 6, button=Qt.MouseButton.LeftButton) -> None:
    """Press at ``start``, move in ``steps`` to ``end``, release."""
    move(widget, start)
    press(widget, start, button)
    for i in range(1, steps + 1):
        f = i / steps
        point = QtCore.QPoint(
            round(start.x() + f * (end.x() - start.x())), round(start.y() + f * (end.y() - start.y()))
        )
        move(widget, point, button)
    release(widget, end, button)


def wheel(widget, pos: QtCore.QPoint, steps: int = 1) -> None:
    """``steps`` wheel notches away from the user (zoom in)."""
    event = QtGui.QWheelEvent(
        QtCore.QPointF(pos),
        QtCore.QPointF(widget.mapToGlobal(pos)),
        QtCore.QPoint(0, 0),
        QtCore.QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QtWidgets.QApplication.sendEvent(widget, event)
    QtWidgets.QApplication.processEvents()


def key(widget, key_code, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    for kind in (QtCore.QEvent.Type.KeyPress, QtCore.QEvent.Type.KeyRelease):
        QtWidgets.QApplication.sendEvent(widget, QtGui.QKeyEvent(kind, key_code, modifiers))
    QtWidgets.QApplication.processEvents()
