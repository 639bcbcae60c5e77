"""The shipped networks match the shipped sequence and reach their recorded validation error.

``knee_t1_t2_t1rho_b1`` (the default: T1, T2, T1rho and B1+), and the B1 = 1 networks
``knee_t1_t2_t1rho`` (3 x 256) and ``knee_t1_t2_t1rho_fast`` (3 x 128, twice the inference speed).
"""

import numpy as np
import pytest

from mrfviewer.grid import grid_from_dict
from mrfviewer.nn.inference import predict
from mrfviewer.nn.model_io import default_model_path, load_model
from mrfviewer.resources import default_sequence_path, models_dir
from mrfviewer.sampling import sample_parameters
from mrfviewer.sequence import load_sequence
from mrfviewer.simulation import simulate_fingerprints
from mrfviewer.synthesis import add_noise

pytestmark = pytest.mark.skipif(
    not (default_model_path() / "model.json").exists(), reason="no shipped model in models/"
)


SHIPPED = [p for p in sorted(models_dir().iterdir()) if (p / "model.json").exists()]


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_matches_the_shipped_sequence(folder):
    model = load_model(folder)
    sequence = load_sequence(default_sequence_path())
    assert model.metadata["sequence_hash"] == sequence.hash
    assert model.metadata["n_timepoints"] == sequence.n_timepoints
    assert (folder / "model.pt").stat().st_size < 5 * 2**20


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_reaches_its_recorded_error_on_a_fresh_set(folder, precision):
    model = load_model(folder)
    sequence = load_sequence(default_sequence_path())
    recorded = model.metadata["validation_mape_pct"]["snr_50"]
    # The network's own training ranges (its validation set was drawn log-uniformly inside them).
    ranges = model.metadata["parameter_ranges"]
    axes = {"t1_ms": "T1", "t2_ms": "T2", "t1rho_ms": "T1rho", "b1": "B1"}
    grid = grid_from_dict(
        {a: {"min": ranges[p][0], "max": ranges[p][1], "n": 2, "spacing": "linear"} for a, p in axes.items()}
        | {"constraints": model.metadata["constraints"]}
    )
    truth = sample_parameters(grid, 1500, seed=20261125)  # not the training or validation seed
    clean = simulate_fingerprints(sequence, *truth.T).numpy()
    noisy, _ = add_noise(clean, 50.0, np.random.default_rng(7))
    est = predict(model, noisy @ model.basis.conj().T, precision=precision).params
    for i, name in enumerate(model.param_names):
        mape = 100 * np.mean(np.abs(est[:, i] / truth[:, i] - 1))
        # A fresh set of 1500 samples: within 25 % (relative) of the recorded error on 20000.
        assert mape < 1.25 * recorded[name], (name, mape, recorded[name])
