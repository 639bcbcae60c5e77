"""Error metrics for estimated parameters against a reference (percentages relative to the truth)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ErrorSummary:
    """Errors of estimates vs truth over a set of voxels or samples, in percent of the truth.

    ``bias`` is the mean signed relative error, ``mape`` the mean absolute one,
    ``sd`` the SD of the relative error (ddof = 1) and ``nrmse`` the RMS error
    divided by the mean truth. Non-finite estimates are counted in ``n_failed``
    and left out.
    """

    n: int
    n_failed: int
    bias: float
    mape: float
    sd: float
    nrmse: float


def error_summary(estimate: np.ndarray, truth: np.ndarray) -> ErrorSummary:
    """Relative error statistics of ``estimate`` against ``truth`` (same shape)."""
    estimate = np.asarray(estimate, dtype=np.float64).ravel()
    truth = np.asarray(truth, dtype=np.float64).ravel()
    ok = np.isfinite(estimate) & np.isfinite(truth) & (truth != 0)
    e, t = estimate[ok], truth[ok]
    if e.size == 0:
        nan = float("nan")
        return ErrorSummary(0, int((~ok).sum()), nan, nan, nan, nan)
    rel = e / t - 1
    return ErrorSummary(
        n=int(e.size),
        n_failed=int((~ok).sum()),
        bias=float(100 * rel.mean()),
        mape=float(100 * np.abs(rel).mean()),
        sd=float(100 * rel.std(ddof=1)) if e.size > 1 else float("nan"),
        nrmse=float(100 * np.sqrt(np.mean((e - t) ** 2)) / np.mean(t)),
    )


def r_squared(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Coefficient of determination of ``estimate`` as a prediction of ``truth``."""
    e, t = np.asarray(estimate, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    ok = np.isfinite(e) & np.isfinite(t)
    e, t = e[ok], t[ok]
    if t.size < 2:
        return float("nan")
    ss_res = np.sum((t - e) ** 2)
    ss_tot = np.sum((t - t.mean()) ** 2)
    return float(1 - ss_res / ss_tot) if ss_tot > 0 else float("nan")


@dataclass
class BlandAltman:
    """Mean difference (a - b) and 95 % limits of agreement, in the units of the inputs."""

    n: int
    mean_difference: float
    lower: float
    upper: float


def bland_altman(a: np.ndarray, b: np.ndarray) -> BlandAltman:
    """Bland-Altman agreement of two methods on paired values."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    if d.size < 2:
        nan = float("nan")
        return BlandAltman(int(d.size), nan, nan, nan)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    return BlandAltman(int(d.size), mean, mean - 1.96 * sd, mean + 1.96 * sd)
