"""The viewer driven by real X input events (xdotool) on an X server with a window manager.

Not collected by a plain ``pytest`` run: ``tests/test_gui_x11.py`` runs this file in its own
process under Xvfb (pytest-xvfb) with the xcb platform and a window manager, because the
rest of the suite runs Qt offscreen in one process and a process has one Qt platform.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from mrfviewer import pipeline
from mrfviewer.gui.main_window import MainWindow
from mrfviewer.phantoms import knee_phantom
from mrfviewer.series import Geometry
from mrfviewer.synthesis import synthesize_series

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="session", autouse=True)
def window_manager():
    """A window manager on the test display (focus, stacking and real pointer grabs as on a desktop)."""
    assert QtWidgets.QApplication.platformName() in ("", "xcb") or os.environ.get("QT_QPA_PLATFORM") == "xcb"
    wm = next(shutil.which(n) for n in ("openbox", "fluxbox", "xfwm4", "metacity") if shutil.which(n))
    process = subprocess.Popen([wm], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    yield wm
    process.terminate()
    process.wait(10)


def pump(ms: float = 150) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        QtWidgets.QApplication.processEvents()
        time.sleep(0.005)


def xdo(*args: object) -> None:
    """Run xdotool while the event loop keeps going (the events reach the window as the user's would)."""
    process = subprocess.Popen(["xdotool", *map(str, args)])
    while process.poll() is None:
        QtWidgets.QApplication.processEvents()
        time.sleep(0.005)
    assert process.returncode == 0
    pump()


def screen(map_view, panel, x: float, y: float) -> tuple[int, int]:
    """Screen coordinates of view position (x, y) of a map panel."""
    point = map_view.graphics.mapFromScene(panel.view.mapViewToScene(QtCore.QPointF(x, y)))
    global_point = map_view.graphics.viewport().mapToGlobal(point)
    return global_point.x(), global_point.y()


def center(widget) -> tuple[int, int]:
    point = widget.mapToGlobal(widget.rect().center())
    return point.x(), point.y()


@pytest.fixture
def window(qtbot, tmp_path, tiny_sequence, tiny_dictionary):
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.move(0, 0)
    w.show()
    qtbot.waitExposed(w)
    series = synthesize_series(knee_phantom((32, 32), n_slices=3), tiny_sequence, snr=80)
    series.geometry = Geometry(pixel_spacing_mm=(2.0, 2.0), slice_thickness_mm=3.0, orientation=(1, 0, 0, 0, 0, -1))
    input = pipeline.input_from_series(series)
    w.session.open(input)
    estimator = pipeline.DictionaryMatching(tiny_dictionary)
    w.session.add_result(pipeline.run(input, estimator), estimator)
    w.activateWindow()
    w.raise_()
    qtbot.waitUntil(lambda: not w.session.label_statistics_pending(), timeout=30000)
    pump(500)
    yield w
    w.close()


def _range(panel):
    (x0, x1), (y0, y1) = panel.view.viewRange()
    return x1 - x0, y1 - y0


def test_a_real_click_selects_the_voxel_and_keys_step_the_slices(window):
    mv = window.map_view
    panel = mv.panel("T2")
    xdo("mousemove", *screen(mv, panel, 10.5, 20.5), "click", 1)
    assert window.session.pixel == (0, 20, 10)
    assert window.fingerprint.curve_data("measured") is not None
    xdo("key", "Next")  # Page Down
    assert window.session.slice == 1
    xdo("key", "Down")  # on the focused map
    assert window.session.slice == 2
    xdo("key", "Prior", "Prior")  # Page Up twice
    assert window.session.slice == 0


def test_wheel_zoom_persists_and_a_double_click_resets(window):
    mv = window.map_view
    panel = mv.panel("T1")
    xdo("mousemove", *screen(mv, panel, 16, 16), "click", "--repeat", 3, "--delay", 60, 4)  # wheel up: zoom in
    zoomed = _range(panel)
    assert zoomed[0] < 30
    xdo("key", "Next")
    window.method.setCurrentText("DM")
    assert _range(mv.panel("T1")) == pytest.approx(zoomed, rel=1e-6)  # kept across the slice step
    xdo("mousemove", *screen(mv, mv.panel("T1"), 16, 16), "click", "--repeat", 2, "--delay", 80, 1)
    assert _range(mv.panel("T1"))[0] >= 31.5 or _range(mv.panel("T1"))[1] >= 31.5


def test_dragging_with_a_tool_draws_an_roi_on_the_map(window):
    mv = window.map_view
    xdo("mousemove", *center(window.roi_panel.tools["ellipse"]), "click", 1)
    assert mv.draw_kind == "ellipse"
    panel = mv.panel("PD")
    (x0, y0), (x1, y1) = screen(mv, panel, 8, 8), screen(mv, panel, 20, 16)
    steps = ["mousemove", x0, y0, "mousedown", 1]
    for f in np.linspace(0.1, 1.0, 8):
        steps += ["sleep", 0.03, "mousemove", round(x0 + f * (x1 - x0)), round(y0 + f * (y1 - y0))]
    xdo(*steps, "sleep", 0.05, "mouseup", 1)
    assert len(window.session.rois) == 1
    roi = next(iter(window.session.rois.values()))
    assert roi.kind == "ellipse" and 60 < roi.mask.sum() < 12 * 8  # an ellipse inside its 12 x 8 box
    assert all(roi.name in p.rois for p in mv._panels)


def test_the_context_menu_copies_the_value_under_the_pointer(window):
    mv = window.map_view
    panel = mv.panel("T2")
    xdo("mousemove", *screen(mv, panel, 12.5, 14.5), "click", 3)
    menu = QtWidgets.QApplication.activePopupWidget()
    assert menu is not None and [a.text() for a in menu.actions()][:2] == ["Reset view\tHome", "Copy value"]
    xdo("key", "Down", "Down", "Return")
    value = window.maps["dm"].values["T2"][0, 14, 12]
    assert QtWidgets.QApplication.clipboard().text() == f"T2 (ms) = {value:.4g} ms at x 12, y 14, slice 1"


def test_a_double_click_on_an_roi_name_renames_it(window):
    polygon = np.array([(2.0, 2.0), (8.0, 2.0), (8.0, 6.0), (2.0, 6.0)])
    name = window.session.add_roi("rectangle", polygon, {"pos": (2.0, 2.0), "size": (6.0, 4.0), "angle": 0.0})
    table = window.roi_panel.table
    pump(200)
    rect = table.frozen.visualRect(window.roi_panel.model.index(0, 0))
    point = table.frozen.viewport().mapToGlobal(rect.center())
    xdo("mousemove", point.x(), point.y(), "click", "--repeat", 2, "--delay", 80, 1)
    xdo("key", "ctrl+a", "type", "--delay", 20, "tibial ROI")
    xdo("key", "Return")
    assert "tibial ROI" in window.session.rois and name not in window.session.rois
