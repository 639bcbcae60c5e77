"""The EPG simulator against closed forms and against its own reference path."""

import numpy as np
import pytest

from mrfviewer.errors import MRFError
from mrfviewer.sequence import sequence_from_dict
from mrfviewer.simulation import simulate_fingerprints, simulate_one


def _seq(*blocks):
    return sequence_from_dict({"blocks": list(blocks)})


def _flash(n, fa=10.0, tr=6.0, te=2.0, **kw):
    return {"type": "flash", "flip_angle_deg": [fa] * n, "tr_ms": tr, "te_ms": te, **kw}


def test_inversion_recovery_flash_matches_closed_form():
    t1, t2, fa, tr, te, ti, n = 900.0, 40.0, 12.0, 6.0, 2.0, 50.0, 200
    sig = simulate_one(_seq({"type": "inversion", "ti_ms": ti}, _flash(n, fa, tr, te)), t1, t2, 60.0, double=True)
    a, e1 = np.deg2rad(fa), np.exp(-tr / t1)
    mz0 = 1 - 2 * np.exp(-ti / t1)
    mss = (1 - e1) / (1 - np.cos(a) * e1)
    mz = mss + (mz0 - mss) * (np.cos(a) * e1) ** np.arange(n)
    expected = -1j * np.sin(a) * mz * np.exp(-te / t2)
    np.testing.assert_allclose(sig, expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(("fa", "t1", "t2"), [(30.0, 800.0, 50.0), (60.0, 1200.0, 35.0), (15.0, 300.0, 20.0)])
def test_fisp_steady_state_matches_closed_form(fa, t1, t2):
    # Haenicke & Vogel, MRM 2003;49:771 (and Zur et al. 1991): the FID of unbalanced SSFP.
    tr, te = 6.0, 2.0
    fisp = {"type": "fisp", "flip_angle_deg": [fa] * 3000, "tr_ms": tr, "te_ms": te}
    sig = simulate_one(_seq(fisp), t1, t2, t2, n_states=200, double=True)
    a, e1, e2 = np.deg2rad(fa), np.exp(-tr / t1), np.exp(-tr / t2)
    p = 1 - e1 * np.cos(a) - e2**2 * (e1 - np.cos(a))
    q = e2 * (1 - e1) * (1 + np.cos(a))
    ss = np.tan(a / 2) * (1 - (e1 - np.cos(a)) * (1 - e2**2) / np.sqrt(p * p - q * q)) * np.exp(-te / t2)
    assert abs(sig[-1]) == pytest.approx(ss, rel=1e-6)
    assert np.angle(sig[-1]) == pytest.approx(-np.pi / 2)


@pytest.mark.parametrize("t1", [1e7, 300.0])
def test_t2prep_scales_mz_by_exp_minus_te_over_t2(t1):
    t2, te, fa = 45.0, 40.0, 10.0
    seq = _seq({"type": "t2prep", "te_ms": te}, _flash(3, fa))
    sig = simulate_one(seq, t1, t2, 60.0, double=True)
    # The recovered part is tipped into the transverse plane and spoiled, so the
    # result is exact for any T1, not only for T1 >> TE.
    expected = np.sin(np.deg2rad(fa)) * np.exp(-te / t2) * np.exp(-2.0 / t2)
    assert abs(sig[0]) == pytest.approx(expected, rel=1e-12)


def test_spinlock_scales_mz_by_exp_minus_tsl_over_t1rho():
    t1rho, tsl, fa = 48.0, 24.0, 10.0
    seq = _seq({"type": "spinlock", "tsl_ms": tsl}, _flash(2, fa))
    sig = simulate_one(seq, 1200.0, 30.0, t1rho, double=True)
    expected = np.sin(np.deg2rad(fa)) * np.exp(-tsl / t1rho) * np.exp(-2.0 / 30.0)
    assert abs(sig[0]) == pytest.approx(expected, rel=1e-12)


def test_spinlock_is_independent_of_t2_and_prep_of_b1():
    seq = _seq({"type": "spinlock", "tsl_ms": 13}, _flash(1, 10, te=0.0))
    a = simulate_one(seq, 1000.0, 20.0, 50.0, b1=0.5, double=True)
    b = simulate_one(seq, 1000.0, 40.0, 50.0, b1=0.5, double=True)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    assert abs(a[0]) == pytest.approx(np.sin(np.deg2rad(5.0)) * np.exp(-13 / 50), rel=1e-12)


def test_b1_scales_readout_flip_angles(tiny_sequence):
    raw = tiny_sequence.to_dict()
    scaled = dict(raw, blocks=[dict(b) for b in raw["blocks"]])
    for b in scaled["blocks"]:
        if b["type"] in ("fisp", "flash"):
            b["flip_angle_deg"] = [0.8 * v for v in np.atleast_1d(b["flip_angle_deg"])]
    a = simulate_one(tiny_sequence, 800.0, 40.0, 50.0, b1=0.8, double=True)
    b = simulate_one(sequence_from_dict(scaled), 800.0, 40.0, 50.0, b1=1.0, double=True)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_fast_real_path_equals_reference_path(knee_sequence):
    rng = np.random.default_rng(1)
    n = 64
    t1 = np.exp(rng.uniform(np.log(100), np.log(3000), n))
    t2 = np.exp(rng.uniform(np.log(5), np.log(300), n))
    t1rho = t2 * rng.uniform(1, 2, n)
    b1 = rng.uniform(0.6, 1.3, n)
    fast = simulate_fingerprints(knee_sequence, t1, t2, t1rho, b1, n_states=30, double=True)
    ref = simulate_fingerprints(knee_sequence, t1, t2, t1rho, b1, n_states=30, double=True, reference=True)
    np.testing.assert_allclose(fast.numpy(), ref.numpy(), rtol=0, atol=1e-12)


def test_phase_180_is_a_negative_flip_angle_on_both_paths():
    seq_neg = _seq({"type": "fisp", "flip_angle_deg": [20, -30, 40, -10], "tr_ms": 6, "te_ms": 2})
    seq_phase = _seq(
        {"type": "fisp", "flip_angle_deg": [20, 30, 40, 10], "phase_deg": [0, 180, 0, 180], "tr_ms": 6, "te_ms": 2}
    )
    a = simulate_one(seq_neg, 800.0, 50.0, 50.0, double=True)
    b = simulate_one(seq_phase, 800.0, 50.0, 50.0, double=True)
    c = simulate_one(seq_phase, 800.0, 50.0, 50.0, double=True, reference=True)
    np.testing.assert_allclose(a, b, atol=1e-14)
    np.testing.assert_allclose(a, c, atol=1e-14)


def test_constant_rf_phase_rotates_the_signal(tiny_sequence):
    raw = tiny_sequence.to_dict()
    for b in raw["blocks"]:
        if b["type"] in ("fisp", "flash"):
            b["phase_deg"] = 30.0
    rotated = simulate_one(sequence_from_dict(raw), 800.0, 40.0, 50.0, double=True)
    plain = simulate_one(tiny_sequence, 800.0, 40.0, 50.0, double=True)
    # Only the readout pulses change phase; preparations stay along x, so only readout
    # segments without preceding FISP mixing would differ. Check the first FISP segment.
    np.testing.assert_allclose(rotated[:40], plain[:40] * np.exp(1j * np.deg2rad(30)), atol=1e-12)


def test_state_truncation_converges(knee_sequence):
    """The default (adaptive) state count is within 5e-4 of a 512-state simulation."""
    t2 = np.geomspace(5, 300, 24)
    t1 = np.full_like(t2, 2500.0)
    ref = simulate_fingerprints(knee_sequence, t1, t2, t2 * 1.2, n_states=512, double=True)
    default = simulate_fingerprints(knee_sequence, t1, t2, t2 * 1.2)
    err = np.linalg.norm((default - ref).numpy(), axis=1) / np.linalg.norm(ref.numpy(), axis=1)
    assert err.max() < 5e-4
    few = simulate_fingerprints(knee_sequence, t1, t2, t2 * 1.2, n_states=4, double=True)
    assert (np.linalg.norm((few - ref).numpy(), axis=1) / np.linalg.norm(ref.numpy(), axis=1)).max() > 1e-2


def test_batch_equals_one_by_one_and_chunking_is_invisible(tiny_sequence):
    t1 = np.array([300.0, 800.0, 1500.0, 2500.0, 1000.0])
    t2 = np.array([10.0, 40.0, 200.0, 80.0, 35.0])
    t1rho = t2 * 1.3
    batch = simulate_fingerprints(tiny_sequence, t1, t2, t1rho, chunk_size=2).numpy()
    for i in range(t1.size):
        one = simulate_one(tiny_sequence, t1[i], t2[i], t1rho[i])
        np.testing.assert_allclose(batch[i], one, rtol=1e-5, atol=1e-7)


def test_dummy_trains_reach_train_to_train_steady_state(tiny_sequence):
    raw = tiny_sequence.to_dict()
    raw["dummy_trains"] = 6
    six = simulate_one(sequence_from_dict(raw), 1200.0, 40.0, 50.0, double=True)
    raw["dummy_trains"] = 7
    seven = simulate_one(sequence_from_dict(raw), 1200.0, 40.0, 50.0, double=True)
    fresh = simulate_one(tiny_sequence, 1200.0, 40.0, 50.0, double=True)
    np.testing.assert_allclose(six, seven, atol=1e-6)
    assert np.abs(six - fresh).max() > 1e-3


@pytest.mark.parametrize("bad", [0.0, -5.0, float("nan")])
def test_invalid_tissue_values_are_rejected(tiny_sequence, bad):
    with pytest.raises(MRFError, match="T2 must be finite and positive"):
        simulate_fingerprints(tiny_sequence, 1000.0, bad, 50.0)


def test_mismatched_lengths_are_rejected(tiny_sequence):
    with pytest.raises(MRFError, match="expected 3"):
        simulate_fingerprints(tiny_sequence, [1000.0, 900.0, 800.0], [40.0, 30.0], 50.0)


@pytest.mark.parametrize("t2", [0.5, 2.0, 300.0])
def test_deferred_relaxation_survives_very_short_and_long_t2_in_float32(knee_sequence, t2):
    """The fast path carries relaxation as per-tissue factors; they must never underflow (T2 << TR)."""
    t1 = np.array([300.0, 1200.0, 2500.0])
    t2s = np.full(3, t2)
    fast = simulate_fingerprints(knee_sequence, t1, t2s, t2s, n_states=40).numpy()
    ref = simulate_fingerprints(knee_sequence, t1, t2s, t2s, n_states=40, double=True, reference=True).numpy()
    assert np.all(np.isfinite(fast))
    scale = np.abs(ref).max(axis=1, keepdims=True)
    np.testing.assert_allclose(fast / scale, ref / scale, rtol=0, atol=2e-5)


def _grid_like_tissues(n_groups: int = 12, per_group: int = 5, seed: int = 3):
    """Tissues in groups of equal T1, T2, B1 with different T1rho (as on a dictionary grid)."""
    rng = np.random.default_rng(seed)
    t1 = np.repeat(np.exp(rng.uniform(np.log(200), np.log(3000), n_groups)), per_group)
    t2 = np.repeat(np.exp(rng.uniform(np.log(5), np.log(150), n_groups)), per_group)
    b1 = np.repeat(rng.uniform(0.6, 1.4, n_groups), per_group)
    t1rho = t2 * rng.uniform(1, 3, t2.size)
    order = rng.permutation(t1.size)  # groups scattered through the input, as a grid's B1 planes are
    return t1[order], t2[order], t1rho[order], b1[order]


@pytest.mark.parametrize("dummy_trains", [0, 2])
def test_shared_prefixes_and_one_state_tail_equal_the_reference_path(knee_sequence, dummy_trains):
    """The fast path shares everything before the first spin-lock between tissues of equal T1, T2, B1
    and runs the blocks after the last FISP train on one state; the reference path does neither."""
    raw = knee_sequence.to_dict()
    raw["dummy_trains"] = dummy_trains
    seq = sequence_from_dict(raw)
    t1, t2, t1rho, b1 = _grid_like_tissues()
    fast = simulate_fingerprints(seq, t1, t2, t1rho, b1, n_states=30, double=True, chunk_size=7, threads=2)
    ref = simulate_fingerprints(seq, t1, t2, t1rho, b1, n_states=30, double=True, reference=True)
    np.testing.assert_allclose(fast.numpy(), ref.numpy(), rtol=0, atol=1e-12)


def test_threads_and_chunks_do_not_change_the_result(knee_sequence):
    t1, t2, t1rho, b1 = _grid_like_tissues(40, 3, seed=4)
    one = simulate_fingerprints(knee_sequence, t1, t2, t1rho, b1, threads=1)
    two = simulate_fingerprints(knee_sequence, t1, t2, t1rho, b1, threads=2, chunk_size=64)
    np.testing.assert_allclose(two.numpy(), one.numpy(), rtol=0, atol=1e-6)


def test_simulation_on_cpu_device_and_cost_grows_with_the_work(tiny_sequence):
    from mrfviewer.simulation import simulation_cost

    a = simulate_fingerprints(tiny_sequence, 800.0, 40.0, 50.0, device="cpu")
    assert a.device.type == "cpu" and a.shape == (1, tiny_sequence.n_timepoints)
    t1 = np.full(10, 800.0)
    # Ten tissues sharing T1, T2, B1 cost less than ten distinct ones, more than one.
    shared = simulation_cost(tiny_sequence, t1, 40.0, np.linspace(40, 90, 10))
    distinct = simulation_cost(tiny_sequence, np.linspace(500, 900, 10), 40.0, np.linspace(40, 90, 10))
    single = simulation_cost(tiny_sequence, 800.0, 40.0, 50.0)
    assert single < shared < distinct
