"""The desktop application, headless (pytest-qt, offscreen): real signals, real clicks."""

import csv

import guitools
import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from mrfviewer.gui.main_window import MainWindow
from mrfviewer.io.series_h5 import write_series_h5
from mrfviewer.phantoms import knee_phantom
from mrfviewer.synthesis import synthesize_series

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def series_file(tmp_path, tiny_sequence):
    series = synthesize_series(knee_phantom((24, 24), n_slices=2), tiny_sequence, snr=80)
    return write_series_h5(series, tmp_path / "knee.h5"), series


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("gui-cache")


@pytest.fixture
def window(qtbot, tmp_path, shared_cache, monkeypatch):
    # One dictionary for all GUI tests (the cache is keyed by content, so sharing is safe).
    monkeypatch.setenv("MRFVIEWER_CACHE_DIR", str(shared_cache))
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.runner.cancel()
    w.runner.wait()


def _open(qtbot, window, path):
    with qtbot.waitSignal(window.loaded, timeout=60000):
        window.open_path(path)


def _reconstruct(qtbot, window, method="DM"):
    window.method.setCurrentText(method)
    with qtbot.waitSignal(window.reconstructed, timeout=120000):
        window.reconstruct()


def test_open_and_reconstruct_dm(qtbot, window, series_file):
    path, series = series_file
    _open(qtbot, window, path)
    assert window.map_view.names == ["raw"] and window.series.data.shape == series.data.shape
    _reconstruct(qtbot, window)
    from mrfviewer.gui.main_window import MAP_ORDER

    shown = window.map_view.names
    assert set(shown) == set(window.maps["dm"].values) and shown == [n for n in MAP_ORDER if n in shown]
    assert shown[:3] == ["T1", "T2", "T1rho"] and shown[-2:] == ["PD", "match"]
    assert window.map_view.slice_slider.maximum() == 1
    assert str(path) in window._recent()


def test_clicking_a_pixel_plots_its_fingerprint(qtbot, window, series_file):
    path, series = series_file
    _open(qtbot, window, path)
    _reconstruct(qtbot, window)
    view = window.map_view.first_view()
    scene = view.mapViewToScene(QtCore.QPointF(10.5, 12.5))
    widget_pos = window.map_view.graphics.mapFromScene(scene)
    qtbot.mouseClick(window.map_view.graphics.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=widget_pos)
    measured = window.fingerprint.curve_data("measured")
    assert measured is not None
    np.testing.assert_allclose(measured, np.abs(series.data[:, 0, 12, 10]), rtol=1e-6)
    dm = window.fingerprint.curve_data("DM atom")
    assert dm is not None and len(dm) == series.n_timepoints
    assert "pixel x 10, y 12" in window.fingerprint.info.text()
    for panel in window.map_view._panels:  # the crosshair marks the pixel in every map
        assert panel.cross.isVisible() and (panel.cross.pos().x(), panel.cross.pos().y()) == (10.5, 12.5)
    window.map_view.slice_slider.setValue(1)
    assert not window.map_view._panels[0].cross.isVisible()  # another slice: no crosshair
    _open(qtbot, window, path)  # a newly opened series starts with no fingerprint
    assert window.fingerprint.curve_data("measured") is None
    assert not window.fingerprint.legend.isVisible()


def test_rectangle_roi_drawn_by_drag_matches_numpy_and_exports(qtbot, window, series_file, tmp_path):
    path, _ = series_file
    _open(qtbot, window, path)
    _reconstruct(qtbot, window)
    window.roi_panel.labels_box.setChecked(False)
    window.roi_panel.tools["rectangle"].click()
    view = window.map_view
    panel = view.panel("T2")  # any panel: here the second
    graphics = view.graphics.viewport()
    guitools.drag(graphics, guitools.view_point(view, panel, 6.0, 8.0), guitools.view_point(view, panel, 11.0, 12.0))
    assert len(window.session.rois) == 1 and view.draw_kind is None  # one shape per choice of the tool
    name = next(iter(window.session.rois))
    t1 = window.maps["dm"].values["T1"][0]
    expected = t1[8:12, 6:11]  # pixel centres inside the dragged rectangle
    inside = np.zeros(t1.shape, dtype=bool)
    inside[8:12, 6:11] = True
    np.testing.assert_array_equal(window.session.rois[name].mask, inside)
    row = next(r.stats for r in window.roi_panel.rows if r.stats.map == "T1")
    assert row.n_voxels == np.isfinite(expected).sum() == 20
    assert row.mean == pytest.approx(np.nanmean(expected), rel=1e-6)
    assert row.sd == pytest.approx(np.nanstd(expected, ddof=1), rel=1e-6)
    assert window.roi_panel.model.rowCount() == 1  # one row per ROI, a column per map
    assert all(name in p.rois for p in view._panels)  # drawn on every panel
    out = window.export_roi_csv(tmp_path / "rois.csv")
    rows = list(csv.DictReader(out.open()))
    t1_row = next(r for r in rows if r["map"] == "T1")
    assert float(t1_row["mean"]) == pytest.approx(np.nanmean(expected), rel=1e-5)
    assert t1_row["method"] == "dm" and t1_row["slice"] == "1" and t1_row["n_at_range_limit"] == "0"


def test_label_map_statistics_appear(qtbot, window, series_file):
    path, _ = series_file
    _open(qtbot, window, path)
    with qtbot.waitSignal(window.statistics_ready, timeout=60000):  # computed in the background
        _reconstruct(qtbot, window)
    labels = {r.stats.label for r in window.roi_panel.rows}
    assert "medial femoral cartilage" in labels and "muscle" in labels


def test_cancel_leaves_no_result(qtbot, window, series_file):
    path, _ = series_file
    _open(qtbot, window, path)
    with qtbot.waitSignal(window.runner.cancelled, timeout=60000):
        window.reconstruct()
        window.runner.cancel()
    assert window.maps == {}
    assert not window.runner.busy
    _reconstruct(qtbot, window)  # the next job runs normally
    assert "dm" in window.maps


def test_second_job_is_refused_while_one_runs(qtbot, window, series_file):
    path, _ = series_file
    _open(qtbot, window, path)
    window.reconstruct()
    assert window.runner.busy
    window.reconstruct()
    assert "busy" in window.statusBar().currentMessage()
    window.runner.cancel()
    window.runner.wait()


def test_nn_for_another_sequence_fails_with_a_message_and_window_stays_usable(qtbot, window, series_file):
    path, _ = series_file
    _open(qtbot, window, path)
    window.method.setCurrentText("NN")
    with qtbot.waitSignal(window.job_failed, timeout=60000) as blocker:
        window.reconstruct()
    assert "NN" not in window.maps
    assert blocker.args[0]
    _reconstruct(qtbot, window, "DM")


def test_drop_a_folder_opens_it(qtbot, window, series_file):
    path, _ = series_file
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(path))])
    event = QtGui.QDropEvent(
        QtCore.QPointF(50, 50),
        QtCore.Qt.DropAction.CopyAction,
        mime,
        QtCore.Qt.MouseButton.LeftButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(window.loaded, timeout=60000):
        window.dropEvent(event)
    assert window.series is not None


def test_export_maps_in_the_background(qtbot, window, series_file, tmp_path):
    path, _ = series_file
    _open(qtbot, window, path)
    _reconstruct(qtbot, window)
    with qtbot.waitSignal(window.runner.finished, timeout=60000):
        window.export_maps("nifti", tmp_path / "out")
    assert (tmp_path / "out" / "T1map.nii.gz").exists()


def test_scripted_screenshot_through_the_cli(tmp_path, series_file, shared_cache):
    """``mrfviewer gui PATH --screenshot`` in its own process, as the README and packaging use it."""
    import os
    import subprocess
    import sys

    path, _ = series_file
    shot = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MRFVIEWER_CACHE_DIR=str(shared_cache))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mrfviewer.cli",
            "gui",
            str(path),
            "--screenshot",
            str(shot),
            "--method",
            "dm",
            "--click",
            "10,12",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    image = QtGui.QImage(str(shot))
    assert image.width() >= 1000 and image.height() >= 700


def test_nn_reconstruction_and_nn_fingerprint(qtbot, window, series_file, tiny_model_dir):
    path, series = series_file
    _open(qtbot, window, path)
    window.use_model(tiny_model_dir)
    assert window.model_label.text() == f"NN: {tiny_model_dir.name}"
    float32 = next(a for a in window.nn_precision_group.actions() if a.data() == "float32")
    float32.trigger()  # the File > Network for NN > Precision choice
    _reconstruct(qtbot, window, "NN")
    assert "uncertainty_T1" in window.map_view.names
    assert window.maps["nn"].provenance.model.precision == "float32"
    assert window.settings.value("nn_precision") == "float32"  # remembered for the next session
    assert "(float32)" in window.statusBar().currentMessage()
    with qtbot.waitSignal(window.nn_curve_added, timeout=30000):
        window.show_pixel(0, 12, 10)
    nn = window.fingerprint.curve_data("NN")
    assert nn is not None and len(nn) == series.n_timepoints and np.all(np.isfinite(nn))


def test_label_outline_overlay(qtbot, window, series_file):
    path, _ = series_file
    _open(qtbot, window, path)
    panel = window.map_view._panels[0]
    labels = window.session.labels.values[0]
    edges = np.zeros(labels.shape, dtype=bool)
    edges[:-1] |= labels[:-1] != labels[1:]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    np.testing.assert_array_equal(panel.outline, edges)  # label edges drawn
    with_edges = panel.image.image.copy()
    window.roi_panel.outline_box.setChecked(False)
    assert panel.outline is None and not window.outline_action.isChecked()
    plain = panel.image.image
    assert (with_edges[edges][:, :3].astype(int) >= plain[edges][:, :3]).all()  # lightened towards white
    assert (with_edges[edges] != plain[edges]).any() and (with_edges[~edges] == plain[~edges]).all()


def test_load_labels_sequence_and_model_choices(qtbot, window, series_file, tmp_path, knee_sequence):
    from mrfviewer.io.labels import write_label_map

    path, series = series_file
    _open(qtbot, window, path)
    labels = np.zeros(series.spatial_shape, dtype=np.int16)
    labels[0, 2:5, 2:6] = 3
    write_label_map(labels, {3: "my ROI"}, tmp_path / "mine.nii.gz", series.geometry.affine_ras(2))
    window.load_labels(tmp_path / "mine.nii.gz")
    assert window.session.labels.names == {3: "my ROI"}
    np.testing.assert_array_equal(window.session.labels.values, labels)
    # A sequence with another number of time points is refused with a message.
    knee_sequence.save(tmp_path / "knee.json")
    window.use_sequence(tmp_path / "knee.json")
    assert "1750" in window.statusBar().currentMessage()
    window.use_model(tmp_path)  # not a model folder
    assert "not a model folder" in window.statusBar().currentMessage()


def test_nist_template_fit_gives_reference_and_error(qtbot, window, tmp_path, tiny_sequence, tiny_grid):
    from mrfviewer.phantoms import NIST_T2_ARRAY, nist_phantom

    series = synthesize_series(nist_phantom((96, 96)), tiny_sequence, snr=200)
    series.labels = None  # the template must find the spheres on its own
    path = write_series_h5(series, tmp_path / "nist.h5")
    _open(qtbot, window, path)
    (tmp_path / "grid.json").write_text(tiny_grid.to_json())
    window.use_grid(tmp_path / "grid.json")  # T1, T2, T1rho only: the tiny sequence cannot tell B1 from T2
    _reconstruct(qtbot, window)
    window.roi_panel.labels_box.setChecked(False)
    with qtbot.waitSignal(window.runner.finished, timeout=120000):
        window.roi_panel.fit_button.click()  # a background job: the window stays responsive
    assert window.session.template is not None
    assert window.map_view._panels[0].template is not None
    # the template on every map (the other maps' items follow, one per event-loop turn)
    qtbot.waitUntil(lambda: all(p.template is not None for p in window.map_view._panels), timeout=2000)
    rows = {(r.stats.label, r.stats.map): r.stats for r in window.roi_panel.rows}
    # Spheres 4-13 lie inside the tiny test grid's T2 range (8-200 ms): matched to within 10 %.
    for i in range(4, 14):
        assert rows[(f"template sphere {i}", "T2")].mean == pytest.approx(NIST_T2_ARRAY["T2"][i - 1], rel=0.1)
    model = window.roi_panel.model
    headers = [model.headerData(c, QtCore.Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    assert headers[:3] == ["ROI", "scope", "T1 (ms)"] and "T2 reference" in headers and "T2 error %" in headers
    row = model.row_of("template sphere 6")
    assert model.rowCount() == 14  # one row per sphere
    reference = float(model.data(model.index(row, headers.index("T2 reference"))))
    assert reference == pytest.approx(96.89, rel=1e-3)
    error = float(model.data(model.index(row, headers.index("T2 error %"))))
    assert abs(error) < 10
    stats = rows[("template sphere 6", "T2")]
    assert model.data(model.index(row, headers.index("T2 (ms)"))).startswith(f"{stats.mean:.4g} \u00b1")


def test_dicom_folder_fills_the_browser(qtbot, window, tmp_path, tiny_sequence):
    from mrfviewer.io.dicom_write import write_mrf_dicom

    series = synthesize_series(knee_phantom((16, 16)), tiny_sequence, snr=50)
    write_mrf_dicom(series, tmp_path / "dicom", description="MRF test")
    _open(qtbot, window, tmp_path / "dicom")
    patient = window.browser.topLevelItem(0)
    assert patient.text(0).startswith("MRFVIEWER^SYNTHETIC")
    study = patient.child(0)
    assert study.childCount() == 1  # magnitude and phase: one item showing both
    item = study.child(0)
    assert item.text(0) == "MRF test" and item.text(1) == "magnitude + phase"  # the suffix is in column 1
    assert item.text(2) == "100" and item.text(3) == "1" and item.font(0).bold()  # the open series in bold
    assert "series UID" in item.toolTip(0) and window.browser.textElideMode() == QtCore.Qt.TextElideMode.ElideMiddle


def test_open_demo_shows_progress_and_can_be_cancelled(qtbot, window, monkeypatch):
    import mrfviewer.demo as demo

    def slow_demo(progress=None, cancel=None, **_):
        import time

        for i in range(200):
            progress(i / 200, "simulating")
            cancel.raise_if_cancelled()
            time.sleep(0.01)
        return {}

    monkeypatch.setattr(demo, "ensure_demo_data", slow_demo)
    monkeypatch.setattr(demo, "demo_ready", lambda: False)
    with qtbot.waitSignal(window.runner.cancelled, timeout=30000):
        window.open_demo()
        assert window.demo_dialog is not None
        qtbot.wait(700)  # the dialog appears after its minimum duration
        from PySide6 import QtWidgets

        button = window.demo_dialog.findChild(QtWidgets.QPushButton)
        qtbot.mouseClick(button, QtCore.Qt.MouseButton.LeftButton)
    assert window.demo_dialog is None and window.series is None


def test_histogram_region_sets_the_window_and_follows_the_fields(qtbot, window, series_file):
    path, _ = series_file
    _open(qtbot, window, path)
    _reconstruct(qtbot, window)
    view = window.map_view
    view.window_map.setCurrentText("T2")
    hist = view.histogram
    x, counts = hist.curve.getData()
    assert counts.sum() > 0 and x[0] <= view.window("T2")[0]
    hist.region.setRegion((20.0, 60.0))
    hist.region.sigRegionChangeFinished.emit(hist.region)
    assert view.window("T2") == pytest.approx((20.0, 60.0))
    assert view.upper.value() == pytest.approx(60.0)
    view.lower.setValue(25.0)
    assert hist.region.getRegion() == pytest.approx((25.0, 60.0))


def test_dm_uses_the_chosen_grid_or_dictionary_file(qtbot, window, series_file, tmp_path, tiny_grid, tiny_dictionary):

    from mrfviewer.dictionary import save_dictionary

    path, _ = series_file
    _open(qtbot, window, path)
    (tmp_path / "grid.json").write_text(tiny_grid.to_json())
    window.use_grid(tmp_path / "grid.json")
    assert f"{tiny_grid.n_atoms:,} atoms" in window.dictionary_label.text()
    _reconstruct(qtbot, window)
    assert window.maps["dm"].provenance.dictionary.n_atoms == tiny_grid.n_atoms
    save_dictionary(tiny_dictionary, tmp_path / "d.h5")
    window.use_dictionary_file(tmp_path / "d.h5")
    assert window.dictionary_label.text() == "DM: d.h5"
    _reconstruct(qtbot, window)
    assert window.maps["dm"].provenance.dictionary.key == tiny_dictionary.key
    window.use_dictionary_file(tmp_path / "missing.h5")
    assert "not found" in window.statusBar().currentMessage()


def test_knee_labels_show_ground_truth_references(qtbot, window, series_file):
    path, series = series_file
    _open(qtbot, window, path)
    _reconstruct(qtbot, window)
    qtbot.waitUntil(lambda: not window.session.label_statistics_pending(), timeout=60000)
    model = window.roi_panel.model
    headers = [model.headerData(c, QtCore.Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    row = next(i for i, line in enumerate(model.lines) if line.name == "muscle")
    truth = float(np.mean(series.truth["T2"][series.labels == 5]))
    assert float(model.data(model.index(row, headers.index("T2 reference")))) == pytest.approx(truth, rel=1e-3)
    assert abs(float(model.data(model.index(row, headers.index("T2 error %"))))) < 10  # error in percent


def test_dm_vs_nn_report_for_the_open_series(qtbot, window, series_file, tmp_path, tiny_model_dir):
    path, _ = series_file
    _open(qtbot, window, path)
    window.use_model(tiny_model_dir)
    out = tmp_path / "report"
    with qtbot.waitSignal(window.runner.finished, timeout=120000):
        assert window.compare_methods(out)
    text = (out / "report.md").read_text()
    assert "DM versus NN on measured data" in text and "1 of 1 series evaluated" in text
    rows = list(csv.DictReader((out / "rois.csv").open()))
    assert "medial femoral cartilage" in {r["roi"] for r in rows}  # the series' own labels
    assert "DM vs NN report" in window.statusBar().currentMessage()
    assert not window.compare_methods(out)  # an existing report is not replaced
    assert "exists" in window.statusBar().currentMessage()


def test_switching_methods_shows_each_stored_result_and_exports_the_shown_one(
    qtbot, window, series_file, tiny_model_dir, tmp_path
):
    import json

    path, _ = series_file
    _open(qtbot, window, path)
    window.use_model(tiny_model_dir)
    _reconstruct(qtbot, window, "NN")
    _reconstruct(qtbot, window, "DM")
    assert set(window.maps) == {"dm", "nn"}
    runs = []
    window.runner.started.connect(runs.append)
    for method, marker in (("NN", "uncertainty_T1"), ("DM", "match"), ("NN", "uncertainty_T1rho")):
        window.method.setCurrentText(method)  # no job: the stored result is shown at once
        assert not window.runner.busy and marker in window.map_view.names
        assert window.map_view._layers["T1"][0] is window.maps[method.lower()].values["T1"]
        qtbot.waitUntil(lambda: not window.session.label_statistics_pending(), timeout=60000)
        rows = window.roi_panel.rows
        assert rows and {r.method for r in rows} == {method.lower()}
        muscle = next(line for line in window.roi_panel.model.lines if line.name == "muscle")
        t1 = window.maps[method.lower()].values["T1"][window.session.labels.values == 5]
        assert muscle.cells["T1"].stats.mean == pytest.approx(np.nanmean(t1), rel=1e-6)
    assert runs == []
    # NN is shown: the exports write NN, and say so in file names and sidecars.
    folder = window.session.default_export_folder(tmp_path)
    assert folder.name == "mrfviewer_nn"
    with qtbot.waitSignal(window.runner.finished, timeout=60000):
        assert window.export_maps("nifti", folder)
    assert json.loads((folder / "T1map.json").read_text())["method"] == "nn"
    assert (folder / "T1rhouncertaintymap.nii.gz").exists()
    rows = list(csv.DictReader(window.export_roi_csv(tmp_path / "roi_stats_nn.csv").open()))
    assert rows and {r["method"] for r in rows} == {"nn"}
    assert {r["slice"] for r in rows} == {"all"}  # label statistics cover the volume, and say so
    # The session's ROI rows for DM are DM's values, not NN's.
    dm_rows = window.session.roi_rows("dm")
    muscle_dm = next(r.stats.mean for r in dm_rows if r.stats.label == "muscle" and r.stats.map == "T1")
    muscle_nn = next(float(r["mean"]) for r in rows if r["label"] == "muscle" and r["map"] == "T1")
    assert muscle_dm != pytest.approx(muscle_nn, rel=1e-9)


def test_opening_a_one_slice_series_while_on_slice_two(qtbot, window, series_file, tmp_path, tiny_sequence):
    from mrfviewer.phantoms import nist_phantom

    path, _ = series_file  # two slices, knee labels
    _open(qtbot, window, path)
    _reconstruct(qtbot, window)
    window.map_view.slice_slider.setValue(1)
    window.show_pixel(1, 5, 5)
    assert window.session.slice == 1
    one = write_series_h5(synthesize_series(nist_phantom((20, 20)), tiny_sequence, snr=80), tmp_path / "one.h5")
    _open(qtbot, window, one)
    assert window.session.slice == 0 and window.map_view.current_slice() == 0
    assert window.maps == {} and window.map_view.names == ["raw"] and window.session.pixel is None
    assert window.windowTitle().startswith("mrfviewer - one.h5")
    assert window.browser.topLevelItem(0).child(0).child(0).text(1) == "complex (HDF5)"
    assert window.session.labels.values.shape == (1, 20, 20)  # the new series' own labels
    outline = window.map_view._panels[0].outline
    assert outline is not None and outline.shape == (20, 20)
    # Before a reconstruction: the raw images' statistics of the new series' labels.
    assert {line.cells["signal"].method for line in window.roi_panel.model.lines} == {"raw"}
    with qtbot.waitSignal(window.statistics_ready, timeout=60000):
        _reconstruct(qtbot, window)
    assert {r.stats.label for r in window.roi_panel.rows} >= {"sphere 1", "sphere 14"}


# -- the dataset browser ------------------------------------------------------------------------


def _write_dicom(folder, phantom, tiny_sequence, description):
    from mrfviewer.io.dicom_write import write_mrf_dicom

    series = synthesize_series(phantom, tiny_sequence, snr=80)
    series.uid = ""
    write_mrf_dicom(series, folder, description=description)
    return series


def test_a_folder_with_several_series_opens_one_and_lists_all(qtbot, window, tmp_path, tiny_sequence):
    import pydicom
    from pydicom.uid import generate_uid

    from mrfviewer.phantoms import nist_phantom

    root = tmp_path / "study"
    _write_dicom(root / "knee", knee_phantom((12, 12)), tiny_sequence, "MRF knee")
    _write_dicom(root / "nist", nist_phantom((12, 12)), tiny_sequence, "MRF nist")
    ds = pydicom.dcmread(sorted((root / "knee" / "magnitude").glob("*.dcm"))[0])
    ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SeriesDescription = generate_uid(), generate_uid(), "localizer"
    (root / "localizer").mkdir()
    ds.save_as(root / "localizer" / "1.dcm")
    _open(qtbot, window, root)
    items = window.browser.items
    assert len(items) == 3 and window.series is not None  # the first MRF series opened, none refused
    localizer = next(i for i in items.values() if i.text(0) == "localizer")
    assert "not an MRF time series" in localizer.text(5) and not localizer.flags() & QtCore.Qt.ItemFlag.ItemIsSelectable
    grey = localizer.foreground(0).color()
    assert grey != next(i for i in items.values() if i.text(0) == "MRF nist").foreground(0).color()
    window.browser.itemClicked.emit(localizer, 0)  # a click on a non-MRF series explains itself
    assert "cannot be opened" in window.statusBar().currentMessage() and not window.runner.busy
    opened = window.session.input.identity.series_uid
    other = next(i for k, i in items.items() if k != opened and i.text(0).startswith("MRF"))
    assert {i.text(0) for i in items.values()} == {"MRF knee", "MRF nist", "localizer"}
    with qtbot.waitSignal(window.loaded, timeout=60000):
        window.browser.itemClicked.emit(other, 0)  # a click opens it
    assert window.session.input.identity.series_uid != opened and other.font(0).bold()
    assert window.session.input.signal == "complex"  # its phase partner came along


def test_the_demo_lists_the_knee_and_the_nist_phantom(qtbot, window, monkeypatch, tiny_sequence):
    import mrfviewer.demo as demo
    from mrfviewer.phantoms import nist_phantom

    def tiny_demo(progress=None, cancel=None, **_):
        folders = demo.demo_cases()
        _write_dicom(folders["knee"], knee_phantom((12, 12)), tiny_sequence, "MRF demo digital knee")
        _write_dicom(folders["nist"], nist_phantom((12, 12)), tiny_sequence, "MRF demo NIST phantom")
        return folders

    monkeypatch.setattr(demo, "ensure_demo_data", tiny_demo)
    monkeypatch.setattr(demo, "demo_ready", lambda: True)
    with qtbot.waitSignal(window.loaded, timeout=60000):
        window.start_page.demo_button.click()
    assert window.demo_dialog is None  # the data were there: no "preparing" dialog
    names = {i.text(0) for i in window.browser.items.values()}
    assert names == {"MRF demo digital knee", "MRF demo NIST phantom"}
    assert "knee" in window.session.input.name
    assert str(demo.demo_dir()) in window._recent()


def test_the_demo_dialog_goes_when_the_data_are_ready(qtbot, window, monkeypatch):
    import mrfviewer.demo as demo

    def quick(progress=None, cancel=None, **_):
        import time

        time.sleep(0.8)  # longer than the dialog's minimum duration
        demo.demo_dir().mkdir(parents=True, exist_ok=True)
        return {}

    monkeypatch.setattr(demo, "ensure_demo_data", quick)
    monkeypatch.setattr(demo, "demo_ready", lambda: False)
    window.open_demo()
    assert window.demo_dialog is not None
    qtbot.waitUntil(lambda: window.demo_dialog is None, timeout=30000)
    qtbot.wait(1000)  # the dialog's own timer must not bring it back
    shown = [w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, QtWidgets.QProgressDialog)]
    assert not [w for w in shown if w.isVisible()]


# -- the fingerprint ----------------------------------------------------------------------------


def test_fingerprint_curves_differ_in_colour_and_dash_with_residuals(qtbot, window, series_file, tiny_model_dir):
    from mrfviewer.gui.fingerprint_plot import scaled_to

    path, series = series_file
    _open(qtbot, window, path)
    window.show_pixel(0, 12, 10)  # selected before any reconstruction: refreshed after each run
    assert window.fingerprint.curve_data("DM atom") is None
    _reconstruct(qtbot, window)
    fp = window.fingerprint
    dm = fp.curve_data("DM atom")
    assert dm is not None  # the run refreshed the plot of the selected voxel
    window.use_model(tiny_model_dir)
    with qtbot.waitSignal(window.nn_curve_added, timeout=60000):
        _reconstruct(qtbot, window, "NN")
    measured, dm_item, nn_item = (fp.items[k] for k in ("measured", "DM atom", "NN"))
    assert QtGui.QPen(measured.opts["pen"]).style() == QtCore.Qt.PenStyle.NoPen and measured.opts["symbol"] == "s"
    dm_pen, nn_pen = (QtGui.QPen(pg_pen) for pg_pen in (dm_item.opts["pen"], nn_item.opts["pen"]))
    assert dm_pen.color() != nn_pen.color() and dm_pen.style() != nn_pen.style()  # colour and dash
    signal = series.data[:, 0, 12, 10]
    atom = window.session.curve("dm", 0, 12, 10)
    fitted = scaled_to(signal.astype(np.complex128), atom.astype(np.complex128))
    np.testing.assert_allclose(fp.residual_data("DM atom"), np.abs(signal) - np.abs(fitted), atol=1e-6)
    assert list(fp.legend.entries) == ["measured", "DM atom", "NN"] and fp.legend.isVisible()
    assert fp.legend.geometry().bottom() <= fp.graphics.geometry().top()  # above the plot, not over the curves
    assert "residual" in fp.legend.entries["NN"].text()


# -- help, settings and messages -------------------------------------------------------------


def test_help_shortcuts_guide_and_notice(qtbot, window):
    from mrfviewer.gui.help import RESEARCH_NOTICE, GuideDialog, ShortcutsDialog, guide_path

    dialog = ShortcutsDialog(window)
    rows = {dialog.table.item(i, 0).text(): dialog.table.item(i, 1).text() for i in range(dialog.table.rowCount())}
    assert rows["Ctrl+R"] == "Reconstruct: Reconstruct" and rows["Esc"] == "Reconstruct: Cancel"
    assert rows["Home"] == "View: Reset view" and rows["Ctrl+2"].startswith("View: DM | NN")
    assert rows["Drag"] == "pan; with a drawing tool chosen: draw an ROI" and rows["F1"] == "Help: User guide"
    guide = GuideDialog(window)
    text = guide.browser.toPlainText()
    assert guide_path().is_file() and "Dataset" in text and RESEARCH_NOTICE[:40] in text
    labels = [w.text() for w in window.start_page.findChildren(QtWidgets.QLabel)]
    assert any("not a medical device" in t for t in labels)


def test_the_bundled_guide_is_the_readmes_gui_section():
    from pathlib import Path

    from mrfviewer.gui.help import guide_from_readme, guide_path

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert guide_path().read_text(encoding="utf-8") == guide_from_readme(
        readme
    )  # rebuild: python -m mrfviewer.gui.help


def test_file_dialogs_remember_the_last_folder(qtbot, window, series_file, monkeypatch, tmp_path):
    asked = []

    def fake_folder(parent, title, start=""):
        asked.append(start)
        return str(tmp_path)

    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", fake_folder)
    monkeypatch.setattr(window, "open_path", lambda path, series_uid=None: None)
    window.open_folder_dialog()
    window.open_folder_dialog()
    assert asked == ["", str(tmp_path)]
    opened = []
    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName", lambda *a: (opened.append(a[2]), ("", ""))[1])
    window.load_labels_dialog()  # another kind of file: the last folder of any kind to start with
    assert opened == [str(tmp_path)]


def test_status_messages_do_not_go_stale(qtbot, window, monkeypatch):
    import mrfviewer.gui.main_window as mw

    monkeypatch.setattr(mw, "STATUS_MS", 200)
    window._status("NN reconstruction done")
    assert window.statusBar().currentMessage() == "NN reconstruction done"
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() == "", timeout=3000)


def test_dm_takes_a_measured_b1_map_from_the_menu(qtbot, window, series_file, tmp_path, tiny_sequence):
    import nibabel as nib

    from mrfviewer.dictionary import generate_dictionary, save_dictionary
    from mrfviewer.grid import grid_from_dict
    from mrfviewer.series import Geometry

    path, series = series_file
    _open(qtbot, window, path)
    grid = grid_from_dict(
        {
            "t1_ms": {"min": 200, "max": 2500, "step_percent": 20},
            "t2_ms": {"min": 8, "max": 200, "step_percent": 20},
            "t1rho_ms": {"min": 8, "max": 250, "step_percent": 20},
            "b1": {"min": 0.8, "max": 1.2, "n": 5, "spacing": "linear"},
        }
    )
    save_dictionary(generate_dictionary(tiny_sequence, grid), tmp_path / "b1.h5")
    window.use_dictionary_file(tmp_path / "b1.h5")
    b1 = np.full(series.data.shape[1:], 0.93)
    geometry = series.geometry or Geometry()
    nib.save(nib.Nifti1Image(np.transpose(b1, (2, 1, 0)), geometry.affine_ras(b1.shape[0])), tmp_path / "b1.nii.gz")
    window.use_b1_map(tmp_path / "b1.nii.gz")
    assert window.dictionary_label.text() == "DM: b1.h5, measured B1" and window.clear_b1_action.isEnabled()
    _reconstruct(qtbot, window)
    maps = window.maps["dm"]
    assert "B1 from the measured map" in maps.provenance.warnings
    np.testing.assert_allclose(maps.values["B1"][maps.mask], 0.93, rtol=1e-6)
    # A map that does not cover the series: one message, the measured map kept out.
    window.session.clear_b1_map()
    assert window.dictionary_label.text() == "DM: b1.h5" and not window.clear_b1_action.isEnabled()
    nib.save(nib.Nifti1Image(np.ones((4, 4, 1)), geometry.affine_ras(1)), tmp_path / "small.nii.gz")
    window.use_b1_map(tmp_path / "small.nii.gz")
    assert "B1 map small.nii.gz" in window.statusBar().currentMessage() and not window.session.measured_b1
