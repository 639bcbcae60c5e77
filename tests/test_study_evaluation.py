"""The --quick study and evaluation run end to end on tiny settings with plausible numbers."""

import csv
import json

import numpy as np
import pytest

from mrfviewer.evaluation import EvaluationSettings, run_evaluation
from mrfviewer.nn.model_io import load_model, save_model
from mrfviewer.nn.training import TrainConfig, train
from mrfviewer.study import quick_preset, run_study, select_best


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_sequence, tiny_dictionary):
    config = TrainConfig(
        hidden=[64, 64], n_train=6000, n_val=500, epochs=8, rank=8, grid=tiny_dictionary.grid.to_dict()
    )
    folder = tmp_path_factory.mktemp("model") / "tiny"
    return load_model(save_model(train(tiny_sequence, config), folder))


def test_quick_evaluation_writes_report_tables_and_figures(tmp_path, tiny_dictionary, tiny_model):
    from mrfviewer.realism import RealismSettings

    settings = EvaluationSettings(
        snrs=(20, 50, None), n_test=200, image_size=32, realism=RealismSettings.quick(), radial=False
    )
    path = run_evaluation(tmp_path, tiny_dictionary, tiny_model, settings)
    text = path.read_text()
    for section in ("## 5. Knee-range tissues", "## 6. B1+ inhomogeneity", "## 8. Model mismatch", "## 9.", "## 10."):
        assert section in text
    knee_range = list(csv.DictReader((tmp_path / "knee_range_errors.csv").open()))
    assert {r["method"] for r in knee_range} == {"DM", "NN"}
    for r in knee_range:  # the bound is below every unbiased RMSE; efficiency is finite and positive
        assert float(r["crb_rmse_pct"]) > 0 and 0 < float(r["efficiency"]) < 10
    mismatch = list(csv.DictReader((tmp_path / "model_mismatch.csv").open()))
    assert {r["condition"] for r in mismatch} >= {"ideal", "inversion efficiency 0.9", "slice profile (2D, TBW 4)"}
    coverage = list(csv.DictReader((tmp_path / "nn_calibration.csv").open()))
    assert all(0 <= float(r["coverage_1.96sd_pct"]) <= 100 for r in coverage)
    assert "All results below come from simulation" in text and "no in vivo data" in text
    for name in ("robustness_vs_snr.png", "nist_measured_vs_reference.png", "bland_altman.png", "difference_maps.png"):
        assert (tmp_path / name).stat().st_size > 1000
    rows = list(csv.DictReader((tmp_path / "synthetic_errors.csv").open()))
    assert {r["snr"] for r in rows} == {"20", "50", "inf"} and {r["method"] for r in rows} == {"DM", "NN"}
    for r in rows:
        assert np.isfinite(float(r["mape"])) and 0 <= float(r["mape"]) < 100
    dm_clean = [float(r["mape"]) for r in rows if r["snr"] == "inf" and r["method"] == "DM"]
    assert max(dm_clean[:2]) < 10  # T1 and T2 of a tiny sequence on a 15 % grid, refined
    knee = list(csv.DictReader((tmp_path / "knee_rois.csv").open()))
    assert len(knee) == 7 and "medial femoral cartilage" in {r["roi"] for r in knee}
    timing = list(csv.DictReader((tmp_path / "timing.csv").open()))
    assert all(float(t["seconds"]) > 0 for t in timing)


def test_quick_study_writes_csv_figures_and_best_config(tmp_path, tiny_sequence):
    preset = quick_preset()
    preset.factors = {"learning_rate": [3e-3], "depth": [1], "train_snr": ["noiseless"], "rank": [4]}
    preset.baseline.n_train, preset.baseline.epochs, preset.n_test = 3000, 3, 150
    preset.dm_steps, preset.dm_ranks = [25.0], [4, 8]
    result = run_study(tiny_sequence, tmp_path, preset)
    rows = list(csv.DictReader((tmp_path / "study.csv").open()))
    assert len([r for r in rows if r["kind"] == "nn"]) == 5
    assert any(r["kind"] == "dm" for r in rows)
    for r in rows:
        for key in ("mape_T1", "mape_T2", "mape_T1rho", "voxels_per_s", "train_seconds"):
            assert np.isfinite(float(r[key])) and float(r[key]) >= 0
    assert (tmp_path / "study_learning_rate.png").exists() and (tmp_path / "study_dm.png").exists()
    best = json.loads((tmp_path / "best_config.json").read_text())
    assert "hidden" in best and "learning_rate" in best
    lowest = min(r["mape_mean"] for r in result["rows"] if r["kind"] == "nn")
    assert result["best"]["kind"] == "nn" and result["best"]["mape_mean"] <= 1.02 * lowest
    assert "Selection rule" in (tmp_path / "study.md").read_text()


def test_selection_rule_prefers_speed_within_two_percent():
    rows = [
        {"mape_mean": 1.00, "voxels_per_s": 10.0},
        {"mape_mean": 1.01, "voxels_per_s": 50.0},
        {"mape_mean": 1.10, "voxels_per_s": 99.0},
    ]
    assert select_best(rows) is rows[1]
