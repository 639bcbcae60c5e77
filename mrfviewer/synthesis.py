"""Synthetic MRF image series from a phantom and a sequence.

Signal model: ``PD * fingerprint(T1, T2, T1rho, B1) * exp(1j * coil_phase) + noise``
with complex Gaussian noise. SNR definition: the mean, over voxels with PD > 0,
of the root-mean-square (over time) signal magnitude, divided by the noise
standard deviation sigma of the complex noise (E|n|^2 = sigma^2, i.e.
sigma / sqrt(2) per real channel).
"""

from __future__ import annotations

import numpy as np

from mrfviewer.engine import CancelToken, ProgressCallback
from mrfviewer.errors import MRFError
from mrfviewer.phantoms import Phantom
from mrfviewer.sequence import Sequence
from mrfviewer.series import Geometry, Series
from mrfviewer.simulation import simulate_fingerprints


def coil_phase(shape: tuple[int, ...]) -> np.ndarray:
    """A smooth receive-coil phase map in radians (a tilted, slightly curved ramp)."""
    nz, ny, nx = shape
    z, y, x = np.meshgrid(np.linspace(-1, 1, nz), np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    return 0.9 * x - 0.6 * y + 0.5 * (x * x + y * y) + 0.2 * z + 0.3


def add_noise(
    signal: np.ndarray, snr: float, rng: np.random.Generator, reference: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Add complex Gaussian noise at ``snr`` (module definition) to ``signal`` (..., T).

    ``reference`` (n, T) are the noise-free fingerprints that define the signal
    level (default: ``signal`` itself, all rows). Returns the noisy signal and sigma.
    """
    ref = signal if reference is None else reference
    rms = np.sqrt(np.mean(np.abs(ref.reshape(-1, ref.shape[-1])) ** 2, axis=-1))
    sigma = float(rms.mean() / snr)
    noise = rng.standard_normal((2, *signal.shape), dtype=np.float32) * np.float32(sigma / np.sqrt(2))
    return (signal + (noise[0] + 1j * noise[1])).astype(np.complex64), sigma


def synthesize_series(
    phantom: Phantom,
    sequence: Sequence,
    *,
    snr: float | None = 50.0,
    b1: np.ndarray | float | None = None,
    with_coil_phase: bool = True,
    magnitude: bool = False,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Series:
    """Simulate the MRF series of ``phantom`` (see module docstring for the model).

    Parameters
    ----------
    snr
        Signal-to-noise ratio as defined above; ``None`` or ``inf`` for no noise.
    b1
        Relative B1 per voxel (Z, Y, X) or a scalar; ``None`` means 1.
    magnitude
        Return magnitude images (float32) instead of complex data.
    """
    if snr is not None and not (snr > 0):
        raise MRFError(f"SNR must be positive, got {snr}")
    fg = phantom.pd > 0
    n_t = sequence.n_timepoints
    data = np.zeros((n_t, *phantom.shape), dtype=np.complex64)
    b1_map = np.broadcast_to(np.asarray(1.0 if b1 is None else b1, dtype=np.float64), phantom.shape)
    fingerprints = simulate_fingerprints(
        sequence,
        phantom.t1_ms[fg],
        phantom.t2_ms[fg],
        phantom.t1rho_ms[fg],
        b1_map[fg],
        progress=progress,
        cancel=cancel,
    ).numpy()
    weights = phantom.pd[fg].astype(np.complex64)
    if with_coil_phase:
        weights = weights * np.exp(1j * coil_phase(phantom.shape)[fg]).astype(np.complex64)
    signal = fingerprints * weights[:, None]
    data[:, fg] = signal.T
    sigma = 0.0
    if snr is not None and np.isfinite(snr):
        data, sigma = add_noise(data, snr, np.random.default_rng(seed), reference=signal)
    truth = phantom.maps()
    if b1 is not None:
        truth["B1"] = np.asarray(b1_map, dtype=np.float64)
    series = Series(
        data=np.abs(data).astype(np.float32) if magnitude else data,
        sequence=sequence,
        geometry=Geometry(pixel_spacing_mm=phantom.pixel_spacing_mm, slice_thickness_mm=phantom.slice_thickness_mm),
        description=f"synthetic MRF, {phantom.name}, SNR {snr if snr else 'inf'}",
        truth={k: v.astype(np.float32) for k, v in truth.items()},
        labels=phantom.labels,
        label_names=phantom.label_names,
    )
    return series
