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
    assert max(np.diff(fractions)) < 0.3  # and never skips a quarter of the bar
