"""The Cramer-Rao bound: exact derivatives, the Fisher matrix against finite differences, the CLI."""

import numpy as np

from mrfviewer.cli import main
from mrfviewer.crb import cramer_rao, fisher_information, jacobian
from mrfviewer.simulation import simulate_fingerprints


def _finite_difference_jacobian(sequence, params, rel=1e-5):
    cols = []
    for i in range(4):
        step = np.zeros_like(params)
        step[:, i] = rel * params[:, i]
        up = simulate_fingerprints(sequence, *(params + step).T, double=True).numpy()
        down = simulate_fingerprints(sequence, *(params - step).T, double=True).numpy()
        cols.append((up - down) / (2 * step[:, i : i + 1]))
    return np.stack(cols, axis=2)


def test_forward_mode_derivatives_equal_finite_differences(tiny_sequence):
    params = np.array([[1200.0, 35.0, 45.0, 1.0], [600.0, 12.0, 15.0, 0.8], [2000.0, 90.0, 120.0, 1.2]])
    fingerprints, jac = jacobian(tiny_sequence, params)
    np.testing.assert_allclose(
        fingerprints, simulate_fingerprints(tiny_sequence, *params.T, double=True).numpy(), atol=1e-12
    )
    fd = _finite_difference_jacobian(tiny_sequence, params)
    scale = np.abs(fd).max(axis=1, keepdims=True)
    np.testing.assert_allclose(jac / scale, fd / scale, atol=1e-6)


def test_the_bound_equals_the_inverse_finite_difference_fisher_matrix(tiny_sequence):
    params = np.array([[1200.0, 35.0, 45.0, 1.0], [800.0, 25.0, 30.0, 0.9]])
    result = cramer_rao(tiny_sequence, *params.T, snr=40.0)
    fingerprints = simulate_fingerprints(tiny_sequence, *params.T, double=True).numpy()
    fisher = fisher_information(fingerprints, _finite_difference_jacobian(tiny_sequence, params), 40.0)
    np.testing.assert_allclose(result.fisher, fisher, rtol=1e-5)
    np.testing.assert_allclose(
        result.sd, np.sqrt(np.diagonal(np.linalg.inv(fisher), axis1=1, axis2=2)[:, :4]), rtol=1e-5
    )
    # The bound scales as 1 / SNR.
    np.testing.assert_allclose(cramer_rao(tiny_sequence, *params.T, snr=80.0).sd, result.sd / 2, rtol=1e-9)


def test_the_bound_matches_the_spread_of_a_least_squares_fit(tiny_sequence):
    """Monte Carlo at high SNR: the ML estimate's SD of T1 approaches the bound (an independent check)."""
    from scipy.optimize import least_squares

    truth = np.array([1000.0, 40.0, 50.0, 1.0])
    bound = cramer_rao(tiny_sequence, *truth, snr=200.0).sd[0]
    clean = simulate_fingerprints(tiny_sequence, *truth, double=True).numpy()[0]
    rng = np.random.default_rng(0)
    estimates = []
    for _ in range(40):
        sigma = np.sqrt(np.mean(np.abs(clean) ** 2)) / 200.0  # the SNR definition of mrfviewer.synthesis
        noisy = clean + sigma / np.sqrt(2) * (rng.standard_normal(clean.size) + 1j * rng.standard_normal(clean.size))

        def residual(q, noisy=noisy):
            model = simulate_fingerprints(tiny_sequence, *q[:4], double=True).numpy()[0] * (q[4] + 1j * q[5])
            r = model - noisy
            return np.concatenate([r.real, r.imag])

        fit = least_squares(residual, np.concatenate([truth, [1.0, 0.0]]), x_scale=np.concatenate([truth, [1, 1]]))
        estimates.append(fit.x[:4])
    sd = np.std(np.array(estimates), axis=0, ddof=1)
    # 40 fits: the SD estimate itself scatters by about 11 %; an efficient estimator sits at the bound.
    assert np.all(sd / bound > 0.7) and np.all(sd / bound < 1.4), sd / bound


def test_crb_through_the_cli(tiny_files, tmp_path, capsys):
    seq, _ = tiny_files
    assert (
        main(
            [
                "crb",
                "--sequence",
                str(seq),
                "--t1",
                "1200",
                "--t2",
                "35",
                "--t1rho",
                "45",
                "--output",
                str(tmp_path / "c.csv"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Cramer-Rao bound" in out and "tissue" in out
    assert (tmp_path / "c.csv").read_text().startswith("tissue,snr,T1,T1_crb_sd")
    assert main(["-q", "crb", "--sequence", str(seq), "--t1", "1200"]) == 2
