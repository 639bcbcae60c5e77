"""The Cramer-Rao bound: how precisely a sequence can measure T1, T2, T1rho and B1 of a tissue.

Signal model: ``s(theta) = rho * f(T1, T2, T1rho, B1)`` with the EPG fingerprint ``f`` and a
complex proton density ``rho = |rho| exp(i phi)``; ``|rho|`` and ``phi`` are nuisance
parameters, estimated jointly (DM and the network estimate them too). Noise: white
complex Gaussian with ``E|n|^2 = sigma^2`` per time point, ``sigma`` set by the SNR as in
:mod:`mrfviewer.synthesis` (time-RMS signal magnitude over sigma). Fisher information
``F = (2 / sigma^2) Re(J^H J)`` with ``J = ds / dtheta``; the bound on the variance of an
unbiased estimator of parameter i is ``(F^-1)_ii``.

The Jacobian is exact: forward-mode automatic differentiation (dual numbers) through the
general complex EPG of :mod:`mrfviewer.simulation`, one pass per parameter for all tissues
at once (tissues are independent). Tests compare it with a finite-difference Fisher matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.autograd.forward_ad as fwad

from mrfviewer.errors import MRFError
from mrfviewer.sequence import Sequence
from mrfviewer.simulation import simulate_fingerprints, states_for_t2

#: The relaxation and B1 parameters, in the column order of ``params``.
PARAMS = ("T1", "T2", "T1rho", "B1")


@dataclass(frozen=True)
class CRBResult:
    """Bounds per tissue: ``sd`` absolute (ms; B1 relative), ``relative`` = sd / value."""

    params: np.ndarray  # (N, 4) T1, T2, T1rho (ms), B1
    snr: float
    sd: np.ndarray  # (N, 4)
    fisher: np.ndarray  # (N, 6, 6): T1, T2, T1rho, B1, |rho|, phase

    @property
    def relative(self) -> np.ndarray:
        return self.sd / self.params


def _params(t1_ms: object, t2_ms: object, t1rho_ms: object, b1: object) -> np.ndarray:
    params = np.stack(
        np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (t1_ms, t2_ms, t1rho_ms, b1))),
        axis=1,
    )
    if not np.all(np.isfinite(params)) or np.any(params <= 0):
        raise MRFError("T1, T2, T1rho and B1 must be finite and positive")
    return params


def jacobian(sequence: Sequence, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprints (N, T) and their derivatives (N, T, 4) w.r.t. T1, T2, T1rho (per ms) and B1 (M0 = 1)."""
    primal = torch.as_tensor(params, dtype=torch.float64)
    n_states = states_for_t2(sequence, float(primal[:, 1].max()))
    columns = []
    fingerprints = None
    for i in range(len(PARAMS)):
        tangent = torch.zeros_like(primal)
        tangent[:, i] = 1.0
        with fwad.dual_level():
            dual = fwad.make_dual(primal, tangent)
            out = simulate_fingerprints(
                sequence, dual[:, 0], dual[:, 1], dual[:, 2], dual[:, 3], double=True, reference=True, n_states=n_states
            )
            unpacked = fwad.unpack_dual(out)
            columns.append(unpacked.tangent.numpy())
            fingerprints = unpacked.primal.numpy()
    assert fingerprints is not None
    return fingerprints, np.stack(columns, axis=2)


def fisher_information(fingerprints: np.ndarray, jac: np.ndarray, snr: float, pd: float = 1.0) -> np.ndarray:
    """Fisher matrices (N, 6, 6) of (T1, T2, T1rho, B1, |rho|, phase) for ``rho = pd`` at ``snr``."""
    if not snr > 0:
        raise MRFError(f"SNR must be positive, got {snr}")
    rms = np.sqrt(np.mean(np.abs(pd * fingerprints) ** 2, axis=1))  # (N,)
    sigma2 = (rms / snr) ** 2
    full = np.concatenate(
        [pd * jac, fingerprints[:, :, None], 1j * pd * fingerprints[:, :, None]], axis=2
    )  # d s / d(theta, |rho|, phase)
    gram = np.einsum("ntp,ntq->npq", full.conj(), full).real
    return 2.0 * gram / sigma2[:, None, None]


def cramer_rao(
    sequence: Sequence, t1_ms: object, t2_ms: object, t1rho_ms: object, b1: object = 1.0, snr: float = 50.0
) -> CRBResult:
    """The Cramer-Rao bound on T1, T2, T1rho (ms) and B1 of tissues at ``snr`` (see module docstring)."""
    params = _params(t1_ms, t2_ms, t1rho_ms, b1)
    fingerprints, jac = jacobian(sequence, params)
    fisher = fisher_information(fingerprints, jac, snr)
    try:
        inverse = np.linalg.inv(fisher)
    except np.linalg.LinAlgError:
        raise MRFError("the sequence does not encode these parameters independently (singular Fisher matrix)") from None
    variances = np.diagonal(inverse, axis1=1, axis2=2)[:, : len(PARAMS)]
    sd = np.sqrt(np.where(variances > 0, variances, np.inf))
    return CRBResult(params=params, snr=float(snr), sd=sd, fisher=fisher)


def crb_rows(
    sequence: Sequence, tissues: dict[str, tuple[float, float, float]], snr: float, b1: float = 1.0
) -> list[dict]:
    """A table of the bound for named tissues: name, value and CRB SD (absolute and %) per parameter."""
    names = list(tissues)
    values = np.array([tissues[n] for n in names], dtype=np.float64)
    result = cramer_rao(sequence, values[:, 0], values[:, 1], values[:, 2], b1, snr)
    rows = []
    for i, name in enumerate(names):
        row: dict = {"tissue": name, "snr": snr}
        for j, p in enumerate(PARAMS):
            row[p] = float(result.params[i, j])
            row[f"{p}_crb_sd"] = float(result.sd[i, j])
            row[f"{p}_crb_pct"] = float(100 * result.relative[i, j])
        rows.append(row)
    return rows
