"""The map views, ROIs and the table, headless (pytest-qt, offscreen), driven by mouse, wheel and key events.

Results are added to the session directly (pipeline.run on the tiny fixtures): what is
tested here is what the viewer does with them.
"""

import guitools
import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from mrfviewer import pipeline
from mrfviewer.gui.main_window import MainWindow
from mrfviewer.phantoms import knee_phantom
from mrfviewer.series import Geometry
from mrfviewer.synthesis import synthesize_series

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
Qt = QtCore.Qt
Key = Qt.Key


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    yield w
    w.runner.cancel()
    w.runner.wait()
    w.stats_runner.wait()


@pytest.fixture(scope="module")
def knee_series(tiny_sequence):
    """A 4-slice knee in a coronal geometry (rows S to I, columns R to L), 3 mm slices of 2 mm pixels."""
    series = synthesize_series(knee_phantom((24, 24), n_slices=4), tiny_sequence, snr=80)
    series.geometry = Geometry(pixel_spacing_mm=(2.0, 2.0), slice_thickness_mm=3.0, orientation=(1, 0, 0, 0, 0, -1))
    return series


@pytest.fixture(scope="module")
def results(knee_series, tiny_dictionary, tiny_model):
    input = pipeline.input_from_series(knee_series)
    dm, nn = pipeline.DictionaryMatching(tiny_dictionary), pipeline.NeuralNetwork(tiny_model)
    return {"dm": (pipeline.run(input, dm), dm), "nn": (pipeline.run(input, nn), nn)}


def _show(qtbot, window, knee_series, results, methods=("dm",)):
    window.session.open(pipeline.input_from_series(knee_series))
    for method in methods:
        window.session.add_result(*results[method])
    qtbot.waitUntil(lambda: not window.session.label_statistics_pending(), timeout=30000)
    QtWidgets.QApplication.processEvents()
    return window.map_view


def _range(view):
    (x0, x1), (y0, y1) = view.viewRange()
    return np.array([x0, x1, y0, y1])


def test_zoom_and_pan_persist_across_slices_windows_methods_and_layouts(qtbot, window, knee_series, results):
    mv = _show(qtbot, window, knee_series, results, ("dm", "nn"))
    viewport = mv.graphics.viewport()
    panel = mv.panel("T1")
    guitools.wheel(viewport, guitools.view_point(mv, panel, 12, 12), steps=3)  # wheel zoom at the pointer
    zoomed = _range(panel.view)
    assert zoomed[1] - zoomed[0] < 20  # zoomed in on a 24-pixel image
    guitools.key(mv.graphics, Key.Key_Down)  # next slice
    assert window.session.slice == 1 and mv.current_slice() == 1
    mv.set_window("T1", 100, 2000)
    window.method.setCurrentText("NN")
    window.layout_box.setCurrentIndex(1)  # DM | NN | NN - DM
    assert mv.names == ["T1 dm", "T1 nn", "difference_T1"]
    for p in mv._panels:  # the same zoom, linked across the three panels
        np.testing.assert_allclose(
            _range(p.view)[[0, 2]] + np.diff(_range(p.view))[[0, 2]] / 2, (zoomed[0] + zoomed[1]) / 2, atol=1.5
        )
    window.layout_box.setCurrentIndex(0)
    guitools.key(mv.graphics, Key.Key_Home)  # reset view
    full = _range(mv.panel("T1").view)
    assert full[1] - full[0] >= 23.5 and full[3] - full[2] >= 23.5


def test_keys_step_slices_and_double_click_resets(qtbot, window, knee_series, results):
    mv = _show(qtbot, window, knee_series, results)
    mv.graphics.setFocus()
    for key, slice_after in ((Key.Key_PageDown, 1), (Key.Key_PageDown, 2), (Key.Key_Right, 3), (Key.Key_Down, 3)):
        guitools.key(mv.graphics, key)
        assert window.session.slice == slice_after  # clamped at the last slice
    for key, slice_after in ((Key.Key_Up, 2), (Key.Key_PageUp, 1), (Key.Key_Left, 0)):
        guitools.key(mv.graphics, key)
        assert window.session.slice == slice_after
    panel = mv.panel("T2")
    viewport = mv.graphics.viewport()
    guitools.wheel(viewport, guitools.view_point(mv, panel, 5, 5), steps=4)
    assert np.diff(_range(panel.view))[0] < 20
    x0, x1, y0, y1 = _range(panel.view)
    guitools.double_click(viewport, guitools.view_point(mv, panel, (x0 + x1) / 2, (y0 + y1) / 2))
    assert np.diff(_range(panel.view))[0] >= 23.5  # fitted again


def test_maps_fill_their_cells_when_the_window_grows(qtbot, window, knee_series, results):
    mv = _show(qtbot, window, knee_series, results)
    for size in ((1280, 800), (1920, 1080)):
        window.resize(*size)
        qtbot.wait(300)  # the grid is laid out again after a resize
        for p in mv._panels:
            box = p.view.sceneBoundingRect()
            image = p.image.sceneBoundingRect()
            # The image spans its cell in one direction (aspect kept): no small map in an empty cell.
            assert max(image.width() / box.width(), image.height() / box.height()) > 0.97


def test_context_menu_copies_the_value_and_resets(qtbot, window, knee_series, results):
    mv = _show(qtbot, window, knee_series, results)
    panel = mv.panel("T2")
    guitools.click(mv.graphics.viewport(), guitools.view_point(mv, panel, 10.5, 12.5), Qt.MouseButton.RightButton)
    menu = mv._menu
    texts = [a.text() for a in menu.actions() if a.text()]
    assert texts[:3] == ["Reset view\tHome", "Copy value", "Save view as PNG..."]
    next(a for a in menu.actions() if a.text() == "Copy value").trigger()
    value = window.maps["dm"].values["T2"][0, 12, 10]
    assert QtWidgets.QApplication.clipboard().text() == f"T2 (ms) = {value:.4g} ms at x 10, y 12, slice 1"
    menu.close()


def test_save_view_writes_a_png_and_never_replaces_without_asking(qtbot, window, knee_series, results, tmp_path):
    from PySide6 import QtGui

    from mrfviewer.errors import MRFError

    _show(qtbot, window, knee_series, results)
    out = window.save_view(tmp_path / "view.png")
    image = QtGui.QImage(str(out))
    assert image.width() > 300 and image.height() > 200
    with pytest.raises(MRFError, match="exists"):
        window.save_view(tmp_path / "view.png")


def test_comparison_shows_dm_nn_and_their_difference_with_bland_altman(qtbot, window, knee_series, results):
    mv = _show(qtbot, window, knee_series, results, ("dm", "nn"))
    window.param_box.setCurrentIndex(window.param_box.findData("T2"))
    window.layout_box.setCurrentIndex(1)
    qtbot.wait(50)  # the new panels are laid out
    assert window.agreement.isVisible()
    dm, nn = (window.maps[m].values["T2"] for m in ("dm", "nn"))
    diff = mv.panel("difference_T2").spec.values
    valid = np.isfinite(dm) & np.isfinite(nn)
    np.testing.assert_allclose(diff[valid], 100 * (nn - dm)[valid] / dm[valid], rtol=1e-5)
    assert mv.window("difference_T2")[0] == -mv.window("difference_T2")[1]  # centred on zero
    # Linked crosshair: a click on the NN panel marks the voxel on all three.
    panel = mv.panel("T2 nn")
    guitools.click(mv.graphics.viewport(), guitools.view_point(mv, panel, 7.5, 9.5))
    assert window.session.pixel == (0, 9, 7)
    assert all(p.cross.isVisible() and (p.cross.pos().x(), p.cross.pos().y()) == (7.5, 9.5) for p in mv._panels)
    agreement = window.agreement.agreement
    assert agreement is not None and agreement.param == "T2" and "muscle" in agreement.names
    muscle = agreement.names.index("muscle")
    region = window.session.labels.values == 5
    assert agreement.difference[muscle] == pytest.approx(np.nanmean(nn[region]) - np.nanmean(dm[region]))
    assert "bias" in window.agreement.caption.text() and "left out" in window.agreement.caption.text()


def test_orthogonal_views_of_a_3d_series_with_a_linked_crosshair(qtbot, window, knee_series, results):
    mv = _show(qtbot, window, knee_series, results)
    window.layout_box.setCurrentIndex(2)
    qtbot.wait(50)  # the new panels are laid out
    assert [p.spec.plane for p in mv._panels] == ["slice", "row", "column"]
    titles = [p.title.text for p in mv._panels]
    assert "coronal" in titles[0] and "axial" in titles[1] and "sagittal" in titles[2]
    # Orientation letters from the geometry: coronal rows run S to I, columns R to L.
    letters = [{edge: item.text() for edge, item in p.letters.items()} for p in mv._panels]
    assert letters[0] == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert letters[1] == {"left": "R", "right": "L", "top": "A", "bottom": "P"}  # axial: slices run A to P
    assert letters[2] == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    # A click in the axial reformat (rows = slices, columns = x) picks slice and column there.
    axial = mv._panels[1]
    ratio = 3.0 / 2.0  # slice spacing over pixel spacing: the reformat keeps the proportions
    assert axial.scale == (1.0, ratio)
    guitools.click(mv.graphics.viewport(), guitools.view_point(mv, axial, 6.5, 2.5 * ratio))
    z, y, x = window.session.pixel
    assert (z, x) == (2, 6) and window.session.slice == 2
    values = window.maps["dm"].values["T1"]
    np.testing.assert_array_equal(mv._plane(mv._panels[1].spec), values[:, y, :])
    np.testing.assert_array_equal(mv._plane(mv._panels[2].spec), values[:, :, x].T)
    assert all(p.cross.isVisible() for p in mv._panels)
    assert mv._panels[2].cross.pos() == QtCore.QPointF((z + 0.5) * ratio, y + 0.5)


def test_rois_drawn_on_any_panel_selected_renamed_deleted(qtbot, window, knee_series, results, monkeypatch):
    mv = _show(qtbot, window, knee_series, results)
    viewport = mv.graphics.viewport()
    session = window.session
    for shape, panel_key, corners in (("rectangle", "T1rho", (3, 3, 8, 7)), ("ellipse", "PD", (12, 12, 20, 18))):
        window.roi_panel.tools[shape].click()
        panel = mv.panel(panel_key)
        x0, y0, x1, y1 = corners
        guitools.drag(viewport, guitools.view_point(mv, panel, x0, y0), guitools.view_point(mv, panel, x1, y1))
    first, second = list(session.rois)
    assert session.rois[first].kind == "rectangle" and session.rois[second].kind == "ellipse"
    assert session.rois[first].colour != session.rois[second].colour
    assert session.rois[first].mask.sum() == 5 * 4 and session.selected_roi == second
    items = [p.rois[first] for p in mv._panels]
    assert len(items) == len(mv._panels) and all(
        i.pen.color().name().upper() == session.rois[first].colour for i in items
    )
    # The table: one row per ROI (then the labels), the name column frozen beside the scrolling rest.
    model, table = window.roi_panel.model, window.roi_panel.table
    assert [model.line(i).name for i in range(2)] == [first, second]
    assert table.frozen.isVisible() and not table.frozen.isColumnHidden(0) and table.frozen.isColumnHidden(1)
    table.horizontalScrollBar().setValue(table.horizontalScrollBar().maximum())
    assert table.frozen.geometry().x() <= table.verticalHeader().width() + table.frameWidth()
    # Select in the table: the ROI is selected in the session and drawn thicker on the maps.
    table.selectRow(0)
    assert (
        session.selected_roi == first
        and mv.panel("T1").rois[first].pen.widthF() > mv.panel("T1").rois[second].pen.widthF()
    )
    # Rename in the table (the name cell is editable for drawn ROIs).
    assert model.setData(model.index(0, 0), "femoral cartilage ROI") is False  # the session decides
    assert "femoral cartilage ROI" in session.rois and all("femoral cartilage ROI" in p.rois for p in mv._panels)
    monkeypatch.setattr(QtWidgets.QInputDialog, "getText", lambda *a, **k: ("muscle", True))
    window.roi_panel.rename_selected()  # a label's name: refused with a message
    assert "taken" in window.statusBar().currentMessage()
    # Delete with the Delete key on a focused map.
    mv.graphics.setFocus()
    guitools.key(mv.graphics, Key.Key_Delete)
    assert list(session.rois) == [second] and "femoral cartilage ROI" not in mv.panel("T1").rois


def test_moving_an_roi_on_one_panel_moves_it_everywhere_and_updates_the_mask(qtbot, window, knee_series, results):
    mv = _show(qtbot, window, knee_series, results)
    session = window.session
    polygon = np.array([(2.0, 2.0), (6.0, 2.0), (6.0, 5.0), (2.0, 5.0)])
    name = session.add_roi("rectangle", polygon, {"pos": (2.0, 2.0), "size": (4.0, 3.0), "angle": 0.0})
    viewport = mv.graphics.viewport()
    panel = mv.panel("T2")
    guitools.drag(viewport, guitools.view_point(mv, panel, 4.0, 3.5), guitools.view_point(mv, panel, 14.0, 13.5))
    expected = np.zeros((24, 24), bool)
    expected[12:15, 12:16] = True
    np.testing.assert_array_equal(session.rois[name].mask, expected)
    positions = {(round(p.rois[name].pos().x(), 6), round(p.rois[name].pos().y(), 6)) for p in mv._panels}
    assert len(positions) == 1  # every panel's copy followed the one dragged
    assert np.allclose(positions.pop(), (12.0, 12.0), atol=0.2)


def test_clipped_voxels_are_hatched_and_counted(qtbot, window, knee_series, results):
    mv = _show(qtbot, window, knee_series, results)
    clipped = window.session.bounded()["T2"][0]
    assert clipped.any()  # synovial fluid beyond the tiny grid's T2 range
    panel = mv.panel("T2")
    np.testing.assert_array_equal(panel.hatch, clipped)  # stripes over the clipped voxels
    assert mv.panel("match").hatch is None  # only bounded maps are marked
    hatched = panel.image.image.copy()
    window.clipped_action.setChecked(False)
    assert panel.hatch is None
    plain = panel.image.image
    assert (hatched[clipped] != plain[clipped]).any() and (hatched[~clipped] == plain[~clipped]).all()
    fluid = next(line for line in window.roi_panel.model.lines if line.name == "synovial fluid")
    region = window.session.labels.values == 6
    assert fluid.cells["T2"].n_clipped == np.count_nonzero(window.session.bounded()["T2"] & region)
    row = window.roi_panel.model.lines.index(fluid)
    column = window.roi_panel.model.columns.index(("value", "T2"))
    assert "clipped" in window.roi_panel.model.data(window.roi_panel.model.index(row, column))


def test_label_statistics_per_slice_follow_the_slice_from_the_cache(qtbot, window, knee_series, results):
    mv = _show(qtbot, window, knee_series, results)
    jobs = []
    window.stats_runner.started.connect(jobs.append)
    window.roi_panel.scope.setCurrentIndex(1)  # per slice: one background job for every slice
    qtbot.waitUntil(lambda: not window.session.label_statistics_pending(), timeout=30000)
    assert len(jobs) == 1
    for z in (1, 2, 3, 0):
        guitools.key(mv.graphics, Key.Key_PageDown if z else Key.Key_Home)
        window.session.set_slice(z)
        muscle = next(line for line in window.roi_panel.model.lines if line.name == "muscle")
        region = window.session.labels.values[z] == 5
        assert muscle.scope == f"slice {z + 1}"
        assert muscle.cells["T1"].stats.mean == pytest.approx(np.nanmean(window.maps["dm"].values["T1"][z][region]))
    assert len(jobs) == 1  # slice steps read the cache


def test_roi_table_refresh_repaints_without_resetting(qtbot, window, knee_series, results):
    _show(qtbot, window, knee_series, results)
    model = window.roi_panel.model
    resets = []
    model.modelReset.connect(lambda: resets.append(1))
    window.session.set_slice(1)  # label statistics per volume: the same rows and columns
    assert resets == [] and model.rowCount() == len(window.session.labels.labels())


def test_roi_table_refresh_writes_only_the_cells_that_changed(qtbot, window, knee_series, results):
    from mrfviewer.gui.roi_table import cell_text, cell_tooltip

    _show(qtbot, window, knee_series, results)
    session, model = window.session, window.roi_panel.model
    square = np.array([(2.0, 2.0), (6.0, 2.0), (6.0, 5.0), (2.0, 5.0)])
    name = session.add_roi("rectangle", square, {"pos": (2.0, 2.0), "size": (4.0, 3.0), "angle": 0.0})
    changed = []
    model.dataChanged.connect(lambda top, bottom, *_: changed.append((top.row(), bottom.row())))
    window.roi_panel.refresh()
    assert changed == []  # nothing changed: nothing written, nothing to repaint
    session.set_slice(1)  # the drawn ROI's statistics follow the slice; the labels' (per volume) stay
    row = model.row_of(name)
    assert changed and set(changed) == {(row, row)}
    column = model.columns.index(("value", "T1"))
    cell = model.line(row).cells["T1"]
    assert cell.slice == 1 and model.data(model.index(row, column)) == cell_text(cell)
    assert model.tooltip(model.index(row, column)) == cell_tooltip(cell)  # made when asked
    assert model.flags(model.index(row, 0)) & QtCore.Qt.ItemFlag.ItemIsEditable  # a drawn ROI is renamed here
    label_row = next(i for i, line in enumerate(model.lines) if line.source == "labels")
    assert not model.flags(model.index(label_row, 0)) & QtCore.Qt.ItemFlag.ItemIsEditable


def test_raw_view_sliders_stay_usable_and_each_frame_has_its_window(qtbot, window, knee_series):
    window.session.open(pipeline.input_from_series(knee_series))
    mv = window.map_view
    QtWidgets.QApplication.processEvents()
    assert mv.names == ["raw"]
    assert mv.slice_slider.width() >= 90 and mv.time_slider.width() >= 90  # no 14 px squares
    for t in (0, 40):
        mv.time_slider.setValue(t)
        frame = np.abs(knee_series.data[t, 0])
        assert mv.window("raw")[1] == pytest.approx(np.percentile(frame, 99), rel=1e-5)  # the first frame unsaturated
        assert window.session.time_point == t


def test_crosshair_is_outlined_and_colour_bars_have_no_unit_label(qtbot, window, knee_series, results):
    mv = _show(qtbot, window, knee_series, results)
    panel = mv.panel("T1")
    pens = panel.cross._pens
    assert [p.color().name() for p in pens] == ["#000000", "#ffffff"] and pens[0].widthF() > pens[1].widthF()
    assert panel.title.text == "T1 (ms)" and not panel.bar.axis.labelText  # the unit is in the title


def test_a_click_outside_the_image_is_refused(qtbot, window, knee_series, results):
    mv = _show(qtbot, window, knee_series, results)
    panel = mv.panel("T1")
    guitools.click(mv.graphics.viewport(), guitools.view_point(mv, panel, -3.0, 5.0))
    assert window.session.pixel is None
    window.show_pixel(0, 50, 50)
    assert window.session.pixel is None and "outside" in window.statusBar().currentMessage()
