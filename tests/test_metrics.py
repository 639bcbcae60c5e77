import numpy as np
import pytest

from mrfviewer.metrics import bland_altman, error_summary, r_squared


def test_error_summary_by_hand():
    truth = np.array([100.0, 200.0, 400.0, 50.0])
    est = np.array([110.0, 190.0, 400.0, np.nan])
    s = error_summary(est, truth)
    rel = np.array([0.1, -0.05, 0.0])
    assert s.n == 3 and s.n_failed == 1
    assert s.bias == pytest.approx(100 * rel.mean())
    assert s.mape == pytest.approx(100 * np.abs(rel).mean())
    assert s.sd == pytest.approx(100 * rel.std(ddof=1))
    assert s.nrmse == pytest.approx(100 * np.sqrt((100 + 100 + 0) / 3) / truth[:3].mean())


def test_r_squared_and_bland_altman():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    assert r_squared(t, t) == 1.0
    assert r_squared(t + 1, t) < 1.0
    ba = bland_altman(t + 0.5, t)
    assert ba.mean_difference == pytest.approx(0.5) and ba.lower == pytest.approx(0.5)
    assert ba.n == 4
