"""DM and NN on undersampled radial data: gridding against subspace reconstruction, per knee tissue.

:func:`radial_comparison` simulates the digital knee (the default phantom: its B1+ field and
partial volume included) as a golden-angle radial multi-coil acquisition with noise in k-space
(:mod:`mrfviewer.acquisition`), writes it as an ISMRMRD file in a temporary folder, opens it
through the pipeline (:func:`mrfviewer.pipeline.open_input`, as ``reconstruct RAW.h5`` does) with
each k-space reconstruction, and runs the DM and NN estimators of the pipeline on it. As a
reference, the same phantom synthesised in the image domain at the same SNR ("fully sampled":
every pixel's k-space, noise of the same SD per sample) goes through the same estimators.

Errors are those of :func:`mrfviewer.metrics.error_summary` (percent of the truth) over the
voxels of each tissue that hold that tissue only (purity 1; partial-volume voxels have no single
true value), and over all those tissues together.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from mrfviewer import pipeline
from mrfviewer.acquisition import simulate_radial, write_radial
from mrfviewer.dictionary import Dictionary
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report, scaled
from mrfviewer.maps import ParameterMaps
from mrfviewer.metrics import error_summary
from mrfviewer.nn.model_io import LoadedModel
from mrfviewer.phantoms import CARTILAGE_LABELS, Phantom, make_phantom
from mrfviewer.sequence import Sequence
from mrfviewer.settings import EVALUATION_PRECISION, ReconstructionSettings
from mrfviewer.synthesis import synthesize_series

#: Tissues reported: the cartilage compartments, meniscus and muscle (as in the evaluation report).
TISSUES = (*CARTILAGE_LABELS, 7, 5)
#: Acquisitions compared: the image-domain reference, then the two k-space reconstructions.
RECONS = ("fully sampled", "gridding", "subspace")


def _rows(
    maps: ParameterMaps, truth: dict[str, np.ndarray], phantom: Phantom, recon: str, method: str, seconds: float
) -> list[dict]:
    params = [p for p in ("T1", "T2", "T1rho", "B1") if p in maps.values and p in truth]
    pure = truth["purity"] >= 0.999 if "purity" in truth else np.ones(phantom.shape, dtype=bool)
    groups = [(phantom.label_names.get(t, str(t)), (phantom.labels == t) & pure) for t in TISSUES]
    groups.append(("all of these", np.isin(phantom.labels, TISSUES) & pure))
    out = []
    for name, voxels in groups:
        row: dict = {"recon": recon, "method": method, "tissue": name, "n": int(voxels.sum())}
        for p in params:
            s = error_summary(maps.values[p][voxels], truth[p][voxels])
            row[f"{p}_bias_pct"], row[f"{p}_mape_pct"], row[f"{p}_nrmse_pct"] = s.bias, s.mape, s.nrmse
        row["kspace_seconds"] = seconds
        out.append(row)
    return out


def radial_comparison(
    sequence: Sequence,
    dictionary: Dictionary,
    model: LoadedModel,
    spokes: int = 8,
    snr: float | None = 30.0,
    *,
    coils: int = 8,
    image_size: int = 128,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> list[dict]:
    """DM and NN errors per knee tissue on radial data, gridding and subspace against fully sampled images.

    Parameters
    ----------
    sequence
        The sequence simulated (that of ``dictionary`` and ``model``).
    dictionary, model
        What DM matches against and the network NN runs (the pipeline's estimators are built on them).
    spokes, coils, snr
        The acquisition: golden-angle spokes per time point, receive coils, SNR (image-domain
        definition, noise added in k-space; ``None``: noiseless).
    image_size
        Size of the knee slice in pixels.

    Returns
    -------
    list of dict
        One row per reconstruction (``fully sampled``, ``gridding``, ``subspace``), method (DM, NN) and
        tissue (and all of them together): ``n`` voxels, and ``<param>_bias_pct``, ``_mape_pct``,
        ``_nrmse_pct`` for T1, T2, T1rho (and B1 where both the maps and the truth have it), and
        ``kspace_seconds``, the time the k-space reconstruction of the series took (0 for images).
    """
    phantom = make_phantom("knee", (image_size, image_size), 1)
    settings = ReconstructionSettings(nn_precision=EVALUATION_PRECISION)
    estimators = (("DM", pipeline.DictionaryMatching(dictionary)), ("NN", pipeline.NeuralNetwork(model)))
    rows: list[dict] = []
    report(progress, 0.0, "fully sampled images")
    series = synthesize_series(phantom, sequence, snr=snr, seed=seed, cancel=cancel)
    truth = series.truth
    reference = pipeline.input_from_series(series)
    for name, estimator in estimators:
        rows += _rows(pipeline.run(reference, estimator, settings, cancel=cancel), truth, phantom, RECONS[0], name, 0.0)
    del series, reference
    with tempfile.TemporaryDirectory(prefix="mrfviewer-radial-") as folder:
        path = Path(folder) / "radial.h5"
        simulation = simulate_radial(phantom, sequence, spokes=spokes, coils=coils, snr=snr, seed=seed)
        write_radial(simulation, path, progress=scaled(progress, 0.1, 0.3), cancel=cancel)
        for i, recon in enumerate(RECONS[1:]):
            check_cancel(cancel)
            start = time.perf_counter()
            # Gridding is held in memory (computed once for both estimators); the subspace series is
            # expanded from its K coefficient images whenever it is read.
            raw = pipeline.open_input(
                path,
                kspace_recon=recon,
                in_memory=recon == "gridding",
                progress=scaled(progress, 0.3 + 0.35 * i, 0.5 + 0.35 * i),
                cancel=cancel,
            )
            if raw.kspace is not None and raw.kspace.pending:
                raw.kspace.prepare(scaled(progress, 0.3 + 0.35 * i, 0.5 + 0.35 * i), cancel)
            seconds = time.perf_counter() - start
            for name, estimator in estimators:
                maps = pipeline.run(raw, estimator, settings, cancel=cancel)
                rows += _rows(maps, truth, phantom, recon, name, seconds)
    report(progress, 1.0, "radial comparison done")
    return rows
