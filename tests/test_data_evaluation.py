"""DM versus NN on the user's own series: one series, a cohort, labels, failures, the CLI."""

import csv

import pytest

from mrfviewer.data_evaluation import TISSUE_ROI, run_data_evaluation, with_labels
from mrfviewer.errors import MRFError
from mrfviewer.io.dicom_write import write_mrf_dicom
from mrfviewer.io.labels import write_label_map
from mrfviewer.io.series_h5 import write_series_h5
from mrfviewer.phantoms import knee_phantom
from mrfviewer.pipeline import EstimatorChoice, find_cohort
from mrfviewer.synthesis import synthesize_series


def _rows(path):
    return list(csv.DictReader(path.open()))


@pytest.fixture(scope="module")
def choices(tmp_path_factory, tiny_dictionary, tiny_model_dir):
    """DM with the tiny dictionary (as a file) and NN with the tiny network."""
    from mrfviewer.dictionary import save_dictionary

    path = save_dictionary(tiny_dictionary, tmp_path_factory.mktemp("dict") / "dict.h5")
    return EstimatorChoice(dictionary_file=path), EstimatorChoice("nn", model=tiny_model_dir)


@pytest.fixture
def cohort(tmp_path, tiny_sequence):
    """Two subjects: one DICOM series with labels.nii.gz beside it, one HDF5 series (labels inside)."""
    root = tmp_path / "cohort"
    knee = knee_phantom((24, 24))
    first = synthesize_series(knee, tiny_sequence, snr=60, seed=1)
    write_mrf_dicom(first, root / "a", description="MRF knee", patient_id="subject-a")
    affine = first.geometry.affine_ras(1)
    write_label_map(knee.labels, knee.label_names, root / "a" / "magnitude" / "labels.nii.gz", affine)
    second = synthesize_series(knee_phantom((24, 24)), tiny_sequence, snr=60, seed=2)
    write_series_h5(second, root / "b" / "knee.h5")
    return root, knee


def test_cohort_report_compares_both_methods_per_roi(tmp_path, cohort, choices):
    root, knee = cohort
    items = find_cohort(root)
    assert len(items) == 2
    out = tmp_path / "report"
    path, comparisons = run_data_evaluation(out, items, *choices)
    assert [c.status for c in comparisons] == ["done", "done"]
    text = path.read_text()
    assert "no ground truth" in text and "inference in float32" in text
    rows = _rows(out / "rois.csv")
    assert {r["subject"] for r in rows} == {"a", "b"}  # the folders below the cohort
    muscle = [r for r in rows if r["roi"] == "muscle" and r["param"] == "T1"]
    assert len(muscle) == 2
    for r in muscle:  # both methods near the phantom's muscle T1 (950 ms) and close to each other
        assert float(r["DM_mean"]) == pytest.approx(950, rel=0.15)
        assert float(r["NN_mean"]) == pytest.approx(950, rel=0.15)
        assert abs(float(r["NN_minus_DM_pct"])) < 15
        assert float(r["nominal"]) == 950
    agreement = _rows(out / "agreement.csv")
    assert {(a["level"], a["param"]) for a in agreement} == {
        (level, p) for level in ("ROI means", "voxels") for p in ("T1", "T2", "T1rho")
    }
    # Synovial fluid (T1 3000, T2 500 ms) lies outside the dictionary: DM is clipped at its bounds
    # there, so those ROIs and voxels are left out of the agreement, and the report says so.
    fluid = [r for r in rows if r["roi"] == "synovial fluid"]
    assert fluid and all(float(r["DM_at_range_limit_pct"]) > 90 for r in fluid)
    assert "a / synovial fluid" in text
    muscle_limit = [float(r["DM_at_range_limit_pct"]) for r in rows if r["roi"] == "muscle"]
    assert max(muscle_limit) < 5
    roi_means = [a for a in agreement if a["level"] == "ROI means"]
    n_rois = len({(r["subject"], r["roi"]) for r in rows if r["roi"] != "synovial fluid"})
    assert all(int(a["n"]) == n_rois for a in roi_means)
    for a in agreement:
        assert float(a["lower"]) <= float(a["mean_difference"]) <= float(a["upper"])
    for name in ("bland_altman_roi_means.png", "bland_altman_voxels.png", "difference_maps_000.png"):
        assert (out / name).stat().st_size > 1000


def test_series_without_labels_uses_the_tissue_mask(tmp_path, tiny_sequence, choices):
    series = synthesize_series(knee_phantom((20, 20)), tiny_sequence, snr=60)
    series.labels, series.label_names = None, {}
    path = write_series_h5(series, tmp_path / "s" / "plain.h5")
    _, comparisons = run_data_evaluation(tmp_path / "out", find_cohort(path), *choices)
    assert {r["roi"] for r in comparisons[0].rows} == {TISSUE_ROI}
    assert comparisons[0].rows[0]["n_voxels"] > 100


def test_a_failing_series_is_reported_and_the_rest_evaluated(tmp_path, cohort, choices, knee_sequence):
    root, _ = cohort
    other = synthesize_series(knee_phantom((16, 16)), knee_sequence, snr=60)
    (root / "c").mkdir()
    write_series_h5(other, root / "c" / "other_sequence.h5")
    out = tmp_path / "report"
    _, comparisons = run_data_evaluation(out, find_cohort(root), *choices)
    failed = [c for c in comparisons if c.status == "failed"]
    assert len(failed) == 1 and "sequence" in failed[0].message
    series_rows = _rows(out / "series.csv")
    assert [r["status"] for r in series_rows].count("failed") == 1
    with pytest.raises(MRFError, match="no series could be evaluated"):
        run_data_evaluation(tmp_path / "none", find_cohort(root / "c"), *choices)


def test_explicit_labels_need_a_single_series(tmp_path, cohort):
    root, _ = cohort
    items = find_cohort(root)
    with pytest.raises(MRFError, match="2 series"):
        with_labels(items, tmp_path / "labels.nii.gz")
    with pytest.raises(MRFError, match="not found"):
        with_labels(items[:1], tmp_path / "missing.nii.gz")


def test_evaluate_data_through_the_cli(tmp_path, cohort, tiny_sequence, tiny_dictionary, tiny_model_dir):
    from mrfviewer.cli import main
    from mrfviewer.dictionary import save_dictionary

    root, _ = cohort
    dictionary = save_dictionary(tiny_dictionary, tmp_path / "dict.h5")
    out = tmp_path / "report"
    args = ["-q", "evaluate", "--data", str(root), "--dictionary", str(dictionary), "--model", str(tiny_model_dir)]
    assert main([*args, "--output", str(out)]) == 0
    assert (out / "report.md").exists() and len(_rows(out / "rois.csv")) > 10
    assert main([*args, "--output", str(out)]) == 2  # report.md exists: refused without --overwrite
    assert main(["-q", "evaluate", "--data", str(tmp_path / "nothing"), "--output", str(tmp_path / "x")]) == 2
    assert main(["-q", "evaluate", "--labels", str(tmp_path / "l.nii.gz"), "--output", str(tmp_path / "y")]) == 2


def test_a_cancelled_evaluation_leaves_nothing(tmp_path, cohort, choices):
    from mrfviewer.engine import CancelToken
    from mrfviewer.errors import Cancelled

    root, _ = cohort
    token = CancelToken()

    def cancel_in_the_second_series(fraction, message):
        if "series 2" in message:
            token.cancel()

    out = tmp_path / "new" / "report"
    with pytest.raises(Cancelled):
        run_data_evaluation(out, find_cohort(root), *choices, progress=cancel_in_the_second_series, cancel=token)
    assert not out.exists()  # the first series' figure was staged, then removed with the folder


def test_staged_folder_moves_all_or_nothing(tmp_path):
    from mrfviewer.io.atomic import staged_folder

    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "b.txt").write_text("theirs")
    with pytest.raises(MRFError, match="already exists"), staged_folder(folder) as stage:
        (stage / "a.txt").write_text("new")
        (stage / "b.txt").write_text("new")
    assert sorted(p.name for p in folder.iterdir()) == ["b.txt"] and (folder / "b.txt").read_text() == "theirs"
    with staged_folder(folder, overwrite=True) as stage:
        (stage / "a.txt").write_text("new")
        (stage / "b.txt").write_text("new")
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "b.txt"] and (folder / "b.txt").read_text() == "new"
