"""SVD rank analysis: energy curve and matching error versus the number of components K."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mrfviewer.dictionary import Dictionary
from mrfviewer.matching import match_compressed
from mrfviewer.sampling import sample_parameters
from mrfviewer.simulation import simulate_fingerprints
from mrfviewer.synthesis import add_noise


@dataclass
class RankRow:
    """Matching error at one SVD rank (MAPE in percent, time in seconds)."""

    rank: int
    energy: float
    min_atom_energy: float
    mape_t1: float
    mape_t2: float
    mape_t1rho: float
    seconds: float


def rank_analysis(
    dictionary: Dictionary,
    ranks: list[int] | None = None,
    *,
    n_test: int = 500,
    snr: float | None = None,
    refine: bool = True,
    seed: int = 0,
) -> list[RankRow]:
    """Match ``n_test`` off-grid fingerprints (log-uniform in the grid ranges) at each rank.

    ``snr`` adds complex Gaussian noise (``None``: noiseless). Ranks default to
    1..store rank in a roughly doubling series.
    """
    k_max = dictionary.basis.shape[0]
    ranks = ranks or sorted({k for k in (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64) if k <= k_max})
    rng = np.random.default_rng(seed)
    params = sample_parameters(dictionary.grid, n_test, rng)
    fp = simulate_fingerprints(dictionary.sequence, params[:, 0], params[:, 1], params[:, 2], params[:, 3]).numpy()
    if dictionary.signal == "magnitude":
        fp = np.abs(fp).astype(np.complex64)
    if snr is not None:
        fp, _ = add_noise(fp, snr, rng)
    energy = dictionary.energy_curve()
    norms2 = dictionary.norms.astype(np.float64) ** 2
    rows = []
    for k in ranks:
        start = time.perf_counter()
        result = match_compressed(dictionary, dictionary.project(fp, rank=k), rank=k, refine=refine)
        seconds = time.perf_counter() - start
        err = 100 * np.abs(result.params[:, :3] / params[:, :3] - 1).mean(axis=0)
        kept = np.sum(np.abs(dictionary.coeffs[:, :k]) ** 2, axis=1) / np.maximum(norms2, 1e-30)
        mape_t1, mape_t2, mape_t1rho = (float(e) for e in err)
        rows.append(RankRow(k, float(energy[k - 1]), float(kept.min()), mape_t1, mape_t2, mape_t1rho, seconds))
    return rows
