"""DM versus NN under the conditions real knee scans bring: the sections of the evaluation report.

* **Knee-range tissues** (T1 300-2000, T2 20-120 ms, T1rho 1-1.8 T2, B1+ 0.8-1.2) at SNR 30
  and 50: bias, MAPE and relative RMSE of both methods against the Cramer-Rao bound (the
  efficiency ``CRB / MSE``: 1 for an efficient unbiased estimator; a method that uses a
  prior, as a network trained on one does, may go above 1).
* **B1+ inhomogeneity**: the digital knee with a smooth B1+ field 0.8-1.2; DM and NN fitting
  B1, and DM assuming B1 = 1 (what a three-parameter dictionary does).
* **Model mismatch**: data simulated with effects the dictionary omits (inversion
  efficiency, the slice profile of 2D excitations, imperfect spoiling).
* **Calibration and out-of-range tissue**: the coverage of the network's uncertainty
  intervals in its training range, and what both methods do for tissue outside it.
* **Memory and time** of the four-parameter DM against the NN.

Every figure is measured here, on fresh data (seeds differ from training and validation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mrfviewer import crb
from mrfviewer.dictionary import Dictionary, DictionarySettings, get_dictionary
from mrfviewer.engine import CancelToken, check_cancel
from mrfviewer.grid import grid_from_dict
from mrfviewer.matching import match_compressed
from mrfviewer.nn.inference import predict
from mrfviewer.nn.model_io import LoadedModel
from mrfviewer.phantoms import CARTILAGE_LABELS, KNEE_TISSUES, knee_phantom
from mrfviewer.reconstruction import reconstruct_dm, reconstruct_nn
from mrfviewer.sampling import sample_knee
from mrfviewer.settings import EVALUATION_PRECISION, ReconstructionSettings
from mrfviewer.simulation import simulate_fingerprints
from mrfviewer.synthesis import Mismatch, add_noise, synthesize_series

PARAMS = ("T1", "T2", "T1rho", "B1")
KNEE_ROIS = (*CARTILAGE_LABELS, 7, 5)  # cartilage compartments, meniscus, muscle
NN_SETTINGS = ReconstructionSettings(method="nn", nn_precision=EVALUATION_PRECISION)
MISMATCH_CONDITIONS = {
    "ideal": Mismatch(),
    "inversion efficiency 0.9": Mismatch(inversion_efficiency=0.9),
    "slice profile (2D, TBW 4)": Mismatch(slice_profile=True),
    "spoiling leak 5 %": Mismatch(spoiling_leak=0.05),
}


@dataclass(frozen=True)
class RealismSettings:
    """Sizes of the realism sections; ``quick()`` for tests."""

    snrs: tuple[float, ...] = (30.0, 50.0)
    n_test: int = 2000
    n_crb: int = 200
    image_size: int = 128
    snr: float = 30.0
    seed: int = 20261202

    @classmethod
    def quick(cls) -> RealismSettings:
        return cls(snrs=(50.0,), n_test=200, n_crb=20, image_size=32)


def _errors(estimate: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    rel = estimate / truth - 1
    ok = np.isfinite(rel)
    rel = rel[ok]
    return {
        "n": int(ok.sum()),
        "bias_pct": float(100 * rel.mean()),
        "mape_pct": float(100 * np.abs(rel).mean()),
        "rrmse_pct": float(100 * np.sqrt(np.mean(rel**2))),
    }


def _names(dictionary: Dictionary) -> list[str]:
    return list(PARAMS) if dictionary.grid.has_b1 else list(PARAMS[:3])


def knee_range_errors(
    dictionary: Dictionary, model: LoadedModel, settings: RealismSettings, cancel: CancelToken | None = None
) -> list[dict]:
    """Relative errors of DM and NN on fresh knee-range tissues at each SNR, with the CRB and the efficiency."""
    rng = np.random.default_rng(settings.seed)
    truth = sample_knee(dictionary.grid, settings.n_test, rng)
    truth[:, 3] = rng.uniform(0.8, 1.2, len(truth)) if dictionary.grid.has_b1 else 1.0
    seq = dictionary.sequence
    clean = simulate_fingerprints(seq, *truth.T).numpy()
    # The bound of each tissue at SNR 1, for a subset (it varies smoothly); it scales as 1 / SNR.
    subset = truth[: settings.n_crb]
    bound = crb.cramer_rao(seq, subset[:, 0], subset[:, 1], subset[:, 2], subset[:, 3], snr=1.0).relative
    names = _names(dictionary)
    rows = []
    for snr in settings.snrs:
        check_cancel(cancel)
        noisy = add_noise(clean, snr, rng)[0]
        dm = match_compressed(dictionary, dictionary.project(noisy), cancel=cancel).params
        nn = predict(model, noisy @ model.basis.conj().T, precision=EVALUATION_PRECISION).params
        # Both give parameters in the order T1, T2, T1rho (, B1).
        for method, est, cols in (("DM", dm, names), ("NN", nn, model.param_names)):
            for p in cols:
                i = PARAMS.index(p)
                e = _errors(est[:, i], truth[:, i])
                crb_rmse = 100 * float(np.sqrt(np.mean(bound[:, i] ** 2))) / snr
                rows.append(
                    {
                        "snr": snr,
                        "method": method,
                        "param": p,
                        **e,
                        "crb_rmse_pct": crb_rmse,
                        "efficiency": (crb_rmse / e["rrmse_pct"]) ** 2 if e["rrmse_pct"] > 0 else float("nan"),
                    }
                )
    return rows


def _pure_rois(phantom) -> dict[str, np.ndarray]:  # noqa: ANN001 - a Phantom
    pure = phantom.purity() > 0.999
    return {phantom.label_names[label]: (phantom.labels == label) & pure for label in KNEE_ROIS}


def _roi_rows(condition: str, maps: dict, phantom, truth: dict) -> list[dict]:  # noqa: ANN001
    rows = []
    for roi, mask in _pure_rois(phantom).items():
        for method, result in maps.items():
            for p in ("T1", "T2", "T1rho", "B1"):
                if p not in result.values or p not in truth:
                    continue
                est, ref = result.values[p][mask], truth[p][mask]
                rows.append({"condition": condition, "roi": roi, "method": method, "param": p, **_errors(est, ref)})
    return rows


def b1_inhomogeneity(
    dictionary: Dictionary, model: LoadedModel, settings: RealismSettings, cancel: CancelToken | None = None
) -> list[dict]:
    """ROI errors on the knee with a smooth B1+ field 0.8-1.2: DM and NN fitting B1, and DM assuming B1 = 1."""
    ph = knee_phantom((settings.image_size, settings.image_size), b1_range=(0.8, 1.2))
    series = synthesize_series(ph, dictionary.sequence, snr=settings.snr, seed=settings.seed + 1)
    truth = {"T1": ph.t1_ms, "T2": ph.t2_ms, "T1rho": ph.t1rho_ms, "B1": ph.b1}
    fixed_grid = grid_from_dict({**_grid_json(dictionary), "b1": [1.0]})
    fixed = get_dictionary(dictionary.sequence, fixed_grid, DictionarySettings(signal=dictionary.signal), cancel=cancel)
    maps = {
        "DM (B1 fitted)": reconstruct_dm(series, dictionary, cancel=cancel),
        "NN (B1 fitted)": reconstruct_nn(series, model, NN_SETTINGS, cancel=cancel),
        "DM (B1 = 1 assumed)": reconstruct_dm(series, fixed, cancel=cancel),
    }
    return _roi_rows("B1+ 0.8-1.2", maps, ph, truth)


def _grid_json(dictionary: Dictionary) -> dict:
    raw = dictionary.grid.to_dict()
    return {k: raw[k] for k in ("t1_ms", "t2_ms", "t1rho_ms", "constraints")}


def model_mismatch(
    dictionary: Dictionary, model: LoadedModel, settings: RealismSettings, cancel: CancelToken | None = None
) -> list[dict]:
    """ROI errors under each mismatch condition (B1+ field 0.8-1.2 throughout; both methods fit B1)."""
    ph = knee_phantom((settings.image_size, settings.image_size), b1_range=(0.8, 1.2))
    truth = {"T1": ph.t1_ms, "T2": ph.t2_ms, "T1rho": ph.t1rho_ms, "B1": ph.b1}
    rows = []
    for condition, mismatch in MISMATCH_CONDITIONS.items():
        check_cancel(cancel)
        series = synthesize_series(ph, dictionary.sequence, snr=settings.snr, seed=settings.seed + 2, mismatch=mismatch)
        maps = {
            "DM": reconstruct_dm(series, dictionary, cancel=cancel),
            "NN": reconstruct_nn(series, model, NN_SETTINGS, cancel=cancel),
        }
        rows += _roi_rows(condition, maps, ph, truth)
    return rows


def calibration(
    dictionary: Dictionary, model: LoadedModel, settings: RealismSettings, cancel: CancelToken | None = None
) -> tuple[list[dict], list[dict]]:
    """Coverage of the NN's intervals in its training range; what both methods do outside the ranges.

    Returns (coverage rows per parameter, out-of-range rows per tissue).
    """
    rng = np.random.default_rng(settings.seed + 3)
    grid = dictionary.grid
    truth = sample_knee(grid, settings.n_test, rng)
    seq = dictionary.sequence
    noisy = add_noise(simulate_fingerprints(seq, *truth.T).numpy(), 50.0, rng)[0]
    result = predict(model, noisy @ model.basis.conj().T, precision=EVALUATION_PRECISION)
    coverage = []
    for j, p in enumerate(model.param_names):
        err = np.abs(result.params[:, j] - truth[:, PARAMS.index(p)])
        sd = result.sd[:, j]
        coverage.append(
            {
                "param": p,
                "coverage_1sd_pct": float(100 * np.mean(err <= sd)),
                "coverage_1.96sd_pct": float(100 * np.mean(err <= 1.96 * sd)),
                "median_error_over_sd": float(np.median(err / sd)),
            }
        )
    # Tissue outside the ranges: synovial fluid, and the extremes of the NIST spheres.
    outside = {
        "synovial fluid": (KNEE_TISSUES[6].t1_ms, KNEE_TISSUES[6].t2_ms, KNEE_TISSUES[6].t1rho_ms),
        "NIST T2 sphere 1": (2480.0, 581.3, 581.3),
        "NIST T2 sphere 14": (90.9, 5.59, 5.59),
    }
    rows = []
    for name, (t1, t2, t1rho) in outside.items():
        params = np.tile([t1, t2, t1rho, 1.0], (200, 1))
        y = add_noise(simulate_fingerprints(seq, *params.T).numpy(), 50.0, rng)[0]
        dm = match_compressed(dictionary, dictionary.project(y)).params
        nn = predict(model, y @ model.basis.conj().T, precision=EVALUATION_PRECISION)
        for method, est in (("DM", dm), ("NN", nn.params)):
            for j, p in enumerate(("T1", "T2", "T1rho")):
                col = j  # T1, T2, T1rho lead in both
                lo, hi = grid.ranges()[p]
                flagged = (est[:, col] <= lo * (1 + 1e-3)) | (est[:, col] >= hi * (1 - 1e-3))
                rows.append(
                    {
                        "tissue": name,
                        "method": method,
                        "param": p,
                        "truth": [t1, t2, t1rho][j],
                        "median_estimate": float(np.median(est[:, col])),
                        "flagged_pct": float(100 * np.mean(flagged)),
                        "nn_claimed_sd": float(np.median(nn.sd[:, j])) if method == "NN" else float("nan"),
                    }
                )
    return coverage, rows


def cost(
    dictionary: Dictionary, model: LoadedModel, settings: RealismSettings, cancel: CancelToken | None = None
) -> list[dict]:
    """Memory and time of the four-parameter DM and of the NN on one slice of the knee."""
    ph = knee_phantom((settings.image_size, settings.image_size), b1_range=(0.8, 1.2))
    series = synthesize_series(ph, dictionary.sequence, snr=settings.snr, seed=settings.seed + 4)
    t0 = time.perf_counter()
    dm = reconstruct_dm(series, dictionary, cancel=cancel)
    t1 = time.perf_counter()
    nn = reconstruct_nn(series, model, NN_SETTINGS, cancel=cancel)
    t2 = time.perf_counter()
    voxels = int(dm.mask.sum())
    dm_mib = (dictionary.coeffs.nbytes + dictionary.params.nbytes + dictionary.index.nbytes) / 2**20
    nn_mib = sum(p.numel() * p.element_size() for p in model.net.parameters()) / 2**20
    return [
        {
            "method": "DM",
            "what": f"{dictionary.n_atoms:,} atoms ({'4' if dictionary.grid.has_b1 else '3'} parameters)",
            "memory_mib": dm_mib,
            "seconds": t1 - t0,
            "matching_seconds": dm.provenance.matching_seconds,
            "voxels": voxels,
        },
        {
            "method": "NN",
            "what": f"{sum(p.numel() for p in model.net.parameters()):,} weights",
            "memory_mib": nn_mib,
            "seconds": t2 - t1,
            "matching_seconds": float("nan"),
            "voxels": int(nn.mask.sum()),
        },
    ]
