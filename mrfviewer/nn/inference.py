"""Applying a trained network to compressed fingerprints."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report
from mrfviewer.nn.features import complex_row_norm, fingerprint_features
from mrfviewer.nn.model_io import LoadedModel


@dataclass
class NNResult:
    """Per-voxel NN outputs (1-D over the voxels)."""

    params: np.ndarray  # (n, P) ms (B1 relative)
    sd: np.ndarray  # (n, P) predicted standard deviation, same units
    pd: np.ndarray  # (n,) float32, |PD| in M0 units


def predict(
    model: LoadedModel,
    y: np.ndarray,
    *,
    chunk: int = 8192,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> NNResult:
    """Parameters, their uncertainty and |PD| for compressed signals ``y`` (n, K).

    ``chunk`` voxels go through the network at a time: 8192 keeps the activations in
    cache (measured 2x the throughput of 65536 on 2 cores).
    """
    n = y.shape[0]
    p = len(model.param_names)
    params = np.empty((n, p))
    sd = np.empty((n, p))
    pd = np.empty(n, dtype=np.float32)
    mean, scale = model.mean, model.sd
    with torch.inference_mode():
        for start in range(0, n, chunk):
            check_cancel(cancel)
            yc = torch.from_numpy(np.ascontiguousarray(y[start : start + chunk], dtype=np.complex64))
            out, log_var = model.net(fingerprint_features(yc))
            log_values = out.double() * scale + mean
            params[start : start + len(yc)] = torch.exp(log_values[:, :-1]).numpy()
            # Delta method: SD in ms = value * SD of log(value).
            sd_log = torch.exp(0.5 * log_var.double()) * scale[:-1]
            sd[start : start + len(yc)] = (torch.exp(log_values[:, :-1]) * sd_log).numpy()
            norm = complex_row_norm(yc).double()
            pd[start : start + len(yc)] = (norm / torch.exp(log_values[:, -1])).numpy()
            report(progress, min(start + chunk, n) / n, "NN inference")
    return NNResult(params=params, sd=sd, pd=pd)
