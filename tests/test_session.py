"""The Qt-free session model: events, results per method, reset on open, ROI rows and references."""

import numpy as np
import pytest

from mrfviewer import pipeline
from mrfviewer.errors import MRFError
from mrfviewer.phantoms import NIST_T1_ARRAY, knee_phantom, nist_phantom
from mrfviewer.references import nist_array_of, roi_reference
from mrfviewer.session import Session
from mrfviewer.synthesis import synthesize_series


@pytest.fixture
def knee_input(tiny_sequence):
    return pipeline.input_from_series(synthesize_series(knee_phantom((20, 20), n_slices=2), tiny_sequence, snr=80))


@pytest.fixture
def estimators(tiny_dictionary, tiny_model):
    return pipeline.DictionaryMatching(tiny_dictionary), pipeline.NeuralNetwork(tiny_model)


def _record(session):
    seen = []
    for name in ("input", "results", "selection", "labels", "rois", "slice", "pixel"):
        getattr(session.events, name).connect(lambda *args, name=name: seen.append((name, *args)))
    return seen


def test_results_per_method_and_selection(knee_input, estimators):
    session = Session()
    seen = _record(session)
    session.open(knee_input)
    assert seen == [("input",)] and session.selected is None
    dm, nn = estimators
    for estimator in (nn, dm):
        session.add_result(pipeline.run(knee_input, estimator), estimator)
    assert session.method == "dm" and set(session.results) == {"dm", "nn"}
    session.select("nn")
    assert session.selected is session.results["nn"] and seen[-1] == ("selection", "nn")
    rows = session.roi_rows()
    assert rows and {r.method for r in rows} == {"nn"} and {r.scope for r in rows} == {"volume"}
    dm_t1 = {r.stats.label: r.stats.mean for r in session.roi_rows("dm") if r.stats.map == "T1"}
    nn_t1 = {r.stats.label: r.stats.mean for r in rows if r.stats.map == "T1"}
    assert dm_t1.keys() == nn_t1.keys() and dm_t1 != nn_t1
    # The curve of a voxel for each stored result: DM its atom, NN a simulation of its values.
    z, y, x = 0, 10, 6
    n_t = knee_input.sequence.n_timepoints
    assert session.curve("dm", z, y, x).shape == session.curve("nn", z, y, x).shape == (n_t,)


def test_opening_resets_everything_in_one_place(knee_input, estimators, tiny_sequence):
    session = Session()
    session.open(knee_input)
    dm, _ = estimators
    session.add_result(pipeline.run(knee_input, dm), dm)
    session.set_pixel(1, 3, 4)
    session.set_roi("box", np.ones((20, 20), bool))
    assert session.slice == 1
    other = pipeline.input_from_series(synthesize_series(nist_phantom((24, 24)), tiny_sequence, snr=80))
    seen = _record(session)
    session.open(other)
    assert seen == [("input",)]
    assert session.results == {} and session.rois == {} and session.pixel is None and session.slice == 0
    assert session.labels is other.labels and session.n_slices == 1
    with pytest.raises(MRFError, match="outside"):
        session.set_pixel(0, 30, 3)
    session.set_slice(5)  # clamped to the one slice
    assert session.slice == 0


def test_a_late_result_of_a_closed_series_is_dropped(knee_input, estimators, tiny_sequence):
    session = Session()
    session.open(knee_input)
    dm, _ = estimators
    late = pipeline.run(knee_input, dm)
    other_series = synthesize_series(knee_phantom((20, 20)), tiny_sequence, snr=80)
    other_series.uid = "another"
    session.open(pipeline.input_from_series(other_series))
    session.add_result(late, dm)
    assert session.results == {}


def test_drawn_rois_apply_to_the_current_slice(knee_input, estimators, tmp_path):
    import csv

    session = Session()
    session.open(knee_input)
    dm, _ = estimators
    session.add_result(pipeline.run(knee_input, dm), dm)
    mask = np.zeros((20, 20), bool)
    mask[8:12, 4:9] = True
    session.set_roi("box", mask)
    session.set_slice(1)
    row = next(r for r in session.roi_rows() if r.stats.label == "box" and r.stats.map == "T2")
    values = session.selected.values["T2"][1][mask]
    assert row.scope == "slice 2" and row.stats.mean == pytest.approx(np.nanmean(values))
    out = session.write_roi_csv(tmp_path / "rois.csv")
    rows = list(csv.DictReader(out.open()))
    assert {r["slice"] for r in rows if r["label"] == "box"} == {"2"}
    assert {r["slice"] for r in rows if r["label"] != "box"} == {"all"}
    session.set_label_statistics(False)
    assert {r.stats.label for r in session.roi_rows()} == {"box"}


def test_nist_references_follow_the_array_the_series_shows(tiny_sequence):
    t1_array = synthesize_series(nist_phantom((24, 24), array="T1"), tiny_sequence, snr=80)
    session = Session()
    session.open(pipeline.input_from_series(t1_array))
    assert session.nist_array == "T1"
    assert nist_array_of("MRF demo NIST/ISMRM system phantom, T2 array (magnitude)") == "T2"
    assert roi_reference("template sphere 3", "T1", nist_array="T1") == NIST_T1_ARRAY["T1"][2]
    assert roi_reference("sphere 3", "T2", nist_array="T1") == NIST_T1_ARRAY["T2"][2]
    assert roi_reference("template sphere 3", "T1rho", nist_array="T1") == NIST_T1_ARRAY["T2"][2]
    assert roi_reference("muscle", "T2") == 26.0 and roi_reference("muscle", "B1") is None


def test_reconstruction_progress_rises_once_over_the_whole_bar(knee_input, tiny_files):
    _, grid = tiny_files
    fractions = []
    pipeline.reconstruct_input(
        knee_input,
        pipeline.EstimatorChoice(grid=grid),
        cache=pipeline.EstimatorCache(),
        progress=lambda f, m: fractions.append(f),
    )
    assert fractions[-1] == pytest.approx(1.0) and max(fractions) <= 1.0
    assert all(b >= a - 1e-9 for a, b in zip(fractions, fractions[1:], strict=False))  # never jumps back
    # Both stages report within their halves (a tiny dictionary reports only a few chunks).
    assert any(f < 0.5 for f in fractions) and any(0.5 < f < 1 for f in fractions)


# -- the dataset ------------------------------------------------------------------------------


@pytest.fixture
def dicom_folder(tmp_path, tiny_sequence):
    """Two MRF acquisitions (magnitude + phase each) and a one-image localizer in one folder."""
    import pydicom
    from pydicom.uid import generate_uid

    from mrfviewer.io.dicom_write import write_mrf_dicom

    root = tmp_path / "study"
    for name, phantom in (("knee", knee_phantom((12, 12))), ("nist", nist_phantom((12, 12)))):
        series = synthesize_series(phantom, tiny_sequence, snr=80)
        series.uid = ""
        write_mrf_dicom(series, root / name, description=f"MRF {name}")
    first = sorted((root / "knee" / "magnitude").glob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SeriesDescription = generate_uid(), generate_uid(), "localizer"
    (root / "localizer").mkdir()
    ds.save_as(root / "localizer" / "1.dcm")
    return root


def test_the_dataset_lists_every_series_with_magnitude_and_phase_as_one(dicom_folder, tiny_sequence):
    session = Session()
    seen = _record(session)
    session.events.dataset.connect(lambda: seen.append(("dataset",)))
    session.set_dataset(session.browse_job(dicom_folder)(lambda f, m: None, None))
    assert seen == [("dataset",)]
    entries = {e.description: e for e in session.dataset.entries}
    assert set(entries) == {"MRF knee (magnitude)", "MRF nist (magnitude)", "localizer"}  # phase folded in
    knee, localizer = entries["MRF knee (magnitude)"], entries["localizer"]
    assert knee.usable and knee.components == "magnitude + phase"
    assert knee.n_timepoints == tiny_sequence.n_timepoints and knee.n_slices == 1
    assert not localizer.usable and "not an MRF time series" in localizer.reason
    with pytest.raises(MRFError, match="cannot be reconstructed"):
        session.open_entry_job(localizer)
    nist = entries["MRF nist (magnitude)"]
    opened = session.open_entry_job(nist)(lambda f, m: None, None)
    session.open(opened)
    assert session.input.identity.series_uid == nist.series_uid and session.input.signal == "complex"
    assert session.entry == nist and session.dataset is not None  # the dataset stays when a series opens


# -- drawn ROIs, their statistics and the table -------------------------------------------------


@pytest.fixture
def knee_session(knee_input, estimators):
    session = Session()
    session.open(knee_input)
    for estimator in estimators[::-1]:
        session.add_result(pipeline.run(knee_input, estimator), estimator)
    return session


def test_drawn_rois_have_their_own_colours_names_and_masks(knee_session):
    from mrfviewer.session import ROI_COLOURS, polygon_mask

    session = knee_session
    square = np.array([(4.0, 5.0), (9.0, 5.0), (9.0, 8.0), (4.0, 8.0)])  # x, y corners
    a = session.add_roi("rectangle", square)
    b = session.add_roi("ellipse", square + 6)
    assert session.selected_roi == b
    assert session.rois[a].colour != session.rois[b].colour and {session.rois[a].colour} <= set(ROI_COLOURS)
    expected = np.zeros((20, 20), bool)
    expected[5:8, 4:9] = True  # pixel centres inside the rectangle
    np.testing.assert_array_equal(session.rois[a].mask, expected)
    np.testing.assert_array_equal(polygon_mask(square, (20, 20)), expected)
    with pytest.raises(MRFError, match="taken"):
        session.rename_roi(a, b)
    with pytest.raises(MRFError, match="taken"):
        session.rename_roi(a, "muscle")  # a label's name
    session.rename_roi(a, "my cartilage")
    assert "my cartilage" in session.rois and a not in session.rois
    session.select_roi("my cartilage")
    session.remove_rois(["my cartilage"])
    assert session.selected_roi is None and list(session.rois) == [b]
    session.update_roi(b, square)  # moved back onto the first place
    np.testing.assert_array_equal(session.rois[b].mask, expected)


def test_drawn_roi_rows_are_reused_until_the_roi_slice_or_result_changes(knee_session, monkeypatch):
    import mrfviewer.session as session_module

    session = knee_session
    square = np.array([(4.0, 5.0), (9.0, 5.0), (9.0, 8.0), (4.0, 8.0)])
    name = session.add_roi("rectangle", square)
    calls = []
    real = session_module.roi_statistics
    monkeypatch.setattr(session_module, "roi_statistics", lambda *a: calls.append(a[2]) or real(*a))

    def t2_mean() -> float:
        return next(r.stats.mean for r in session.roi_rows() if r.stats.label == name and r.stats.map == "T2")

    first = t2_mean()
    n = len(calls)
    assert n > 0 and t2_mean() == first and len(calls) == n  # nothing recomputed
    session.update_roi(name, square + 6)  # an edited ROI is a new object: its rows are recomputed
    moved = session.selected.values["T2"][session.slice][session.rois[name].mask]
    assert t2_mean() == pytest.approx(np.nanmean(moved)) and len(calls) > n
    n = len(calls)
    session.select(next(m for m in session.results if m != session.method))
    other = session.selected.values["T2"][session.slice][session.rois[name].mask]
    assert t2_mean() == pytest.approx(np.nanmean(other)) and len(calls) > n


def test_a_replaced_result_is_not_kept_alive_by_the_caches(knee_input, estimators):
    import gc
    import weakref

    session = Session()
    session.open(knee_input)
    session.set_roi("box", np.ones((20, 20), bool))
    session.label_statistics = True
    estimator = estimators[0]
    first = pipeline.run(knee_input, estimator)
    session.add_result(first, estimator)
    assert session.roi_rows() and session.bounded() is not None and session.tissue_mask() is not None
    gone = weakref.ref(first)
    del first
    session.add_result(pipeline.run(knee_input, estimator), estimator)  # the method's new result
    assert session.roi_rows()
    gc.collect()
    assert gone() is None


def test_roi_lines_one_per_roi_with_a_cell_per_map(knee_session):
    session = knee_session
    mask = np.zeros((20, 20), bool)
    mask[8:12, 4:9] = True
    session.set_roi("box", mask)
    lines = session.roi_lines()
    names = [line.name for line in lines]
    assert names[0] == "box" and "muscle" in names and len(names) == len(set(names))
    box = lines[0]
    assert set(box.cells) == {"T1", "T2", "T1rho", "PD"} and box.editable and box.scope == "slice 1"
    t2 = session.selected.values["T2"][0][mask]
    assert box.cells["T2"].stats.mean == pytest.approx(np.nanmean(t2))
    assert not next(line for line in lines if line.name == "muscle").editable


def test_label_statistics_per_slice_and_volume_with_clipped_voxels(knee_session, tmp_path):
    import csv

    session = knee_session
    maps, labels = session.selected, session.labels.values
    fluid = labels == 6  # synovial fluid: T1 3000, T2 500 ms, outside the tiny grid (T1 <= 2500, T2 <= 200)
    limit = maps.at_range_limit(("T2",))
    assert session.label_statistics_pending()
    computed = session.label_statistics_job()(lambda f, m: None, None)  # what the GUI runs in the background
    session.add_label_statistics(computed)
    assert not session.label_statistics_pending()
    row = next(r for r in session.roi_rows(wait=False) if r.stats.label == "synovial fluid" and r.stats.map == "T2")
    assert row.scope == "volume" and row.n_clipped == np.count_nonzero(limit & fluid) > 0
    assert row.stats.mean == pytest.approx(np.nanmean(maps.values["T2"][fluid]))
    session.set_label_scope("slice")
    assert session.label_statistics_pending()  # cached per scope: per slice is computed anew
    session.add_label_statistics(session.label_statistics_job()(lambda f, m: None, None))
    session.set_slice(1)
    row = next(r for r in session.roi_rows(wait=False) if r.stats.label == "synovial fluid" and r.stats.map == "T2")
    assert row.scope == "slice 2" and row.n_clipped == np.count_nonzero(limit[1] & fluid[1])
    assert row.stats.mean == pytest.approx(np.nanmean(maps.values["T2"][1][fluid[1]]))
    session.set_slice(0)
    assert not session.label_statistics_pending()  # a slice step reads the cache
    rows = list(csv.DictReader(session.write_roi_csv(tmp_path / "rois.csv").open()))
    fluid_rows = [r for r in rows if r["label"] == "synovial fluid" and r["map"] == "T2"]
    assert [r["slice"] for r in fluid_rows] == ["1", "2"]  # every slice, each stated
    assert [int(r["n_at_range_limit"]) for r in fluid_rows] == [np.count_nonzero(limit[z] & fluid[z]) for z in (0, 1)]


def test_label_statistics_of_a_replaced_label_map_are_dropped(knee_session):
    session = knee_session
    job = session.label_statistics_job()
    session.set_labels(None)
    session.add_label_statistics(job(lambda f, m: None, None))
    assert session._label_rows == {}


def test_raw_image_statistics_follow_the_time_point(knee_input):
    session = Session()
    session.open(knee_input)
    mask = np.zeros((20, 20), bool)
    mask[8:12, 4:9] = True
    session.set_roi("box", mask)
    for t in (0, 5):
        session.set_time_point(t)
        row = next(r for r in session.roi_rows() if r.stats.label == "box")
        expected = np.abs(knee_input.series.data[t, 0])[mask]
        assert row.method == "raw" and row.scope == f"slice 1, time point {t + 1}"
        assert row.stats.mean == pytest.approx(expected.mean(), rel=1e-6)


def test_comparison_difference_map_and_bland_altman(knee_session):
    session = knee_session
    dm, nn = session.results["dm"].values["T2"], session.results["nn"].values["T2"]
    diff = session.difference_map("T2")
    valid = np.isfinite(dm) & np.isfinite(nn)
    np.testing.assert_allclose(diff[valid], 100 * (nn[valid] - dm[valid]) / dm[valid], rtol=1e-5)
    assert np.isnan(diff[~valid]).all()
    agreement = session.agreement("T2")
    labels = session.labels
    for name, a, b in zip(agreement.names, agreement.dm, agreement.nn, strict=True):
        label = next(v for v in labels.labels() if labels.name(v) == name)
        region = labels.values == label
        assert a == pytest.approx(np.nanmean(dm[region])) and b == pytest.approx(np.nanmean(nn[region]))
    clipped = dict(zip(agreement.names, agreement.clipped, strict=True))
    assert clipped["synovial fluid"] and not clipped["muscle"]
    used = (agreement.nn - agreement.dm)[~agreement.clipped]
    assert agreement.bias == pytest.approx(used.mean())
    assert agreement.limits[1] - agreement.limits[0] == pytest.approx(2 * 1.96 * used.std(ddof=1))


def test_tissue_for_windows_leaves_out_clipped_voxels_and_fluid(knee_session):
    from mrfviewer.colormaps import FLUID_T2_MS

    session = knee_session
    tissue = session.tissue_mask("nn")
    clipped = session.clipped_mask("dm") | session.clipped_mask("nn")
    with np.errstate(invalid="ignore"):
        fluid = session.results["nn"].values["T2"] > FLUID_T2_MS
    np.testing.assert_array_equal(tissue, ~clipped & ~fluid)
    assert not tissue[session.labels.values == 6].any()  # synovial fluid never sets a window
