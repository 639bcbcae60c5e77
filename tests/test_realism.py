"""Realistic phantoms (B1+ field, partial volume) and model mismatch of the synthesis."""

import numpy as np
import pytest

from mrfviewer.errors import MRFError
from mrfviewer.phantoms import knee_phantom, make_phantom, nist_phantom
from mrfviewer.sequence import sequence_from_dict
from mrfviewer.simulation import simulate_fingerprints
from mrfviewer.synthesis import Mismatch, simulate_with_mismatch, slice_profile_weights, synthesize_series


def test_partial_volume_fractions_and_the_b1_field():
    ph = knee_phantom((64, 64), n_slices=2, b1_range=(0.8, 1.2), partial_volume=True)
    np.testing.assert_allclose(ph.fractions.sum(axis=0), 1.0, atol=1e-6)
    assert ph.b1.min() == pytest.approx(0.8) and ph.b1.max() == pytest.approx(1.2)
    edges = ph.purity() < 0.999
    assert 0.02 < edges.mean() < 0.3  # edges mix tissues, interiors do not
    np.testing.assert_array_equal(ph.labels, np.argmax(ph.fractions, axis=0))
    ideal = knee_phantom((64, 64), n_slices=2)
    assert ideal.b1 is None and ideal.fractions is None
    # The dominant label agrees with the ideal (point-sampled) label almost everywhere.
    assert (ph.labels == ideal.labels).mean() > 0.95
    nist = nist_phantom((48, 48), b1_range=(0.9, 1.1), partial_volume=True)
    np.testing.assert_allclose(nist.fractions.sum(axis=0), 1.0, atol=1e-6)


def test_synthesis_mixes_tissues_at_edges(tiny_sequence):
    ph = make_phantom("knee", (48, 48))
    series = synthesize_series(ph, tiny_sequence, snr=None, with_coil_phase=False)
    assert set(series.truth) >= {"B1", "purity"}
    pure = (ph.purity() == 1) & (ph.labels > 0)
    z, y, x = np.argwhere(pure)[0]
    expected = (
        ph.pd[z, y, x]
        * simulate_fingerprints(
            tiny_sequence, ph.t1_ms[z, y, x], ph.t2_ms[z, y, x], ph.t1rho_ms[z, y, x], ph.b1[z, y, x]
        ).numpy()[0]
    )
    np.testing.assert_allclose(series.data[:, z, y, x], expected, rtol=1e-4, atol=1e-6)
    # A mixed voxel is the fraction-weighted sum of its tissues' signals.
    mixed = np.argwhere((ph.purity() < 0.8) & (ph.purity() > 0.2))[0]
    z, y, x = mixed
    total = 0
    for label, tissue in ph.nominal.items():
        f = ph.fractions[label, z, y, x]
        if f > 0:
            v = ph.variation[:, z, y, x]
            t2 = tissue.t2_ms * v[1]
            fp = simulate_fingerprints(
                tiny_sequence, tissue.t1_ms * v[0], t2, max(tissue.t1rho_ms * v[2], t2), ph.b1[z, y, x]
            )
            total = total + f * tissue.pd * v[3] * fp.numpy()[0]
    np.testing.assert_allclose(series.data[:, z, y, x], total, rtol=1e-4, atol=1e-6)


def _inversion_recovery(ti_ms: float) -> dict:
    return {
        "name": "ir",
        "blocks": [
            {"type": "inversion", "ti_ms": ti_ms},
            {"type": "flash", "flip_angle_deg": [5.0], "tr_ms": 5.0, "te_ms": 0.0},
        ],
    }


@pytest.mark.parametrize("eta", [1.0, 0.9, 0.75])
def test_inversion_efficiency_matches_the_closed_form(eta):
    """Inversion recovery read by one 5 degree pulse: Mz(TI) = 1 - (1 + eta) exp(-TI / T1)."""
    t1, ti = 900.0, 300.0
    seq = sequence_from_dict(_inversion_recovery(ti))
    out = simulate_with_mismatch(
        seq, np.array([t1]), np.array([50.0]), np.array([60.0]), np.array([1.0]), Mismatch(eta)
    )
    expected = np.sin(np.deg2rad(5.0)) * (1 - (1 + eta) * np.exp(-ti / t1))
    assert abs(out[0, 0]) == pytest.approx(abs(expected), rel=1e-4)


def test_slice_profile_and_spoiling_leak(tiny_sequence):
    scales, weights = slice_profile_weights()
    assert weights.sum() == pytest.approx(1.0) and scales.max() == pytest.approx(1.0) and scales.min() > 0
    args = (np.array([1000.0]), np.array([40.0]), np.array([50.0]), np.array([1.0]))
    ideal = simulate_fingerprints(tiny_sequence, *args).numpy()
    np.testing.assert_allclose(simulate_with_mismatch(tiny_sequence, *args, Mismatch()), ideal, rtol=1e-6)
    profiled = simulate_with_mismatch(tiny_sequence, *args, Mismatch(slice_profile=True))
    by_hand = sum(
        w * simulate_fingerprints(tiny_sequence, *args[:3], args[3] * s).numpy()
        for s, w in zip(scales, weights, strict=True)
    )
    np.testing.assert_allclose(profiled, by_hand, rtol=1e-5, atol=1e-7)
    leak = simulate_with_mismatch(tiny_sequence, *args, Mismatch(spoiling_leak=0.1))
    assert np.abs(leak - ideal).max() > 1e-4 * np.abs(ideal).max()  # the FLASH trains change
    with pytest.raises(MRFError, match="inversion efficiency"):
        Mismatch(inversion_efficiency=0.2).validate()
