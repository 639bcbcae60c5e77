"""Data from an independent simulator, reconstructed with the defaults (issue: realistic conditions).

A knee phantom with a smooth B1+ field from 0.8 to 1.2, off-grid tissues (the phantom's values
vary smoothly by a few percent), SNR 30, on the shipped sequence, simulated by the numpy EPG of
``tests/epg_reference.py`` (independent of mrfviewer's simulator) and reconstructed by
``reconstruct --method dm`` and ``--method nn`` with their defaults: median errors of T1, T2,
T1rho and B1 below 3 %. Slow (the default dictionary and a 64 x 64 slice): ``pytest -m slow``.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from epg_reference import simulate  # noqa: E402

from mrfviewer.cli import main  # noqa: E402
from mrfviewer.io.series_h5 import write_series_h5  # noqa: E402
from mrfviewer.phantoms import knee_phantom  # noqa: E402
from mrfviewer.resources import default_sequence_path  # noqa: E402
from mrfviewer.sequence import load_sequence  # noqa: E402
from mrfviewer.series import Geometry, Series  # noqa: E402

pytestmark = pytest.mark.slow


def outside_series(size: int = 64, snr: float = 30.0, seed: int = 3) -> tuple[Series, dict]:
    """The phantom simulated by the reference EPG, with complex noise at ``snr`` (mrfviewer's definition)."""
    sequence = load_sequence(default_sequence_path())
    ph = knee_phantom((size, size), b1_range=(0.8, 1.2))
    fg = ph.pd > 0
    fp = simulate(sequence, ph.t1_ms[fg], ph.t2_ms[fg], ph.t1rho_ms[fg], ph.b1[fg])
    signal = fp * ph.pd[fg][:, None]
    rng = np.random.default_rng(seed)
    sigma = np.mean(np.sqrt(np.mean(np.abs(signal) ** 2, axis=1))) / snr
    data = np.zeros((sequence.n_timepoints, *ph.shape), np.complex64)
    data[:, fg] = signal.T
    data += (sigma / np.sqrt(2) * (rng.standard_normal(data.shape) + 1j * rng.standard_normal(data.shape))).astype(
        np.complex64
    )
    truth = {"T1": ph.t1_ms, "T2": ph.t2_ms, "T1rho": ph.t1rho_ms, "B1": ph.b1}
    geometry = Geometry(pixel_spacing_mm=ph.pixel_spacing_mm, slice_thickness_mm=ph.slice_thickness_mm)
    series = Series(data=data, sequence=sequence, geometry=geometry, labels=ph.labels, label_names=ph.label_names)
    return series, truth | {"labels": ph.labels}


@pytest.mark.parametrize("method", ["dm", "nn"])
def test_outside_simulation_with_b1_field_at_snr_30(tmp_path, method):
    import nibabel as nib

    series, truth = outside_series()
    path = write_series_h5(series, tmp_path / "outside.h5")
    out = tmp_path / method
    assert main(["-q", "reconstruct", str(path), "--method", method, "--output", str(out)]) == 0
    tissue = (truth["labels"] > 0) & (truth["labels"] != 6)  # synovial fluid lies outside the ranges
    for name, stem in (("T1", "T1map"), ("T2", "T2map"), ("T1rho", "T1rhomap"), ("B1", "B1map")):
        est = np.transpose(np.asarray(nib.load(out / f"{stem}.nii.gz").dataobj), (2, 1, 0))
        error = np.median(np.abs(est[tissue] / truth[name][tissue] - 1))
        print(f"{method} {name}: median error {100 * error:.2f} %")
        assert error < 0.03, (method, name, error)
