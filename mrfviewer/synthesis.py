"""Synthetic MRF image series from a phantom and a sequence.

Signal model: ``sum over tissues l of fraction_l * PD_l * fingerprint(T1_l, T2_l, T1rho_l, B1)
* exp(1j * coil_phase) + noise`` with complex Gaussian noise; one tissue per voxel unless the
phantom has partial volume; B1 from the phantom's field (or the ``b1`` argument). SNR
definition: the mean, over voxels with PD > 0, of the root-mean-square (over time) signal
magnitude, divided by the noise standard deviation sigma of the complex noise
(E|n|^2 = sigma^2, i.e. sigma / sqrt(2) per real channel).

Model mismatch (:class:`Mismatch`): effects real scans have and the dictionary omits, for
testing how the methods degrade. All are exact consequences of the EPG model, built from
simulations of modified sequences:

* inversion efficiency ``eta < 1`` (the adiabatic pulse does not invert fully): the signal is
  affine in the longitudinal magnetisation after the inversion, so with ``s_inv`` (ideal
  inversion) and ``s_none`` (no inversion) it is ``(1 + eta) / 2 s_inv + (1 - eta) / 2 s_none``;
* the slice profile of 2D excitations: the flip angle falls off across the slice; the signal
  is the average over the profile of the signals at the local flip scale (a Hann-apodised
  sinc pulse of time-bandwidth product 4, sampled at 9 positions), which multiplies B1;
* imperfect spoiling of the FLASH trains: a fraction ``epsilon`` of the signal follows the
  unspoiled (gradient-echo, FISP-like) train: ``(1 - epsilon) s_spoiled + epsilon s_unspoiled``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mrfviewer.engine import CancelToken, ProgressCallback, report
from mrfviewer.errors import MRFError
from mrfviewer.phantoms import Phantom
from mrfviewer.sequence import Block, Delay, Inversion, Readout, Sequence
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


@dataclass(frozen=True)
class Mismatch:
    """Effects the dictionary omits (see the module docstring); the defaults are an ideal scan."""

    inversion_efficiency: float = 1.0
    slice_profile: bool = False
    spoiling_leak: float = 0.0  # epsilon: fraction of the FLASH signal that is not spoiled

    def validate(self) -> None:
        if not 0.5 <= self.inversion_efficiency <= 1.0:
            raise MRFError(f"inversion efficiency must lie in [0.5, 1], got {self.inversion_efficiency}")
        if not 0.0 <= self.spoiling_leak <= 0.5:
            raise MRFError(f"the spoiling leak must lie in [0, 0.5], got {self.spoiling_leak}")

    @property
    def ideal(self) -> bool:
        return self.inversion_efficiency == 1.0 and not self.slice_profile and self.spoiling_leak == 0.0


def slice_profile_weights(n: int = 9, time_bandwidth: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Relative flip scales and weights across the slice of a Hann-apodised sinc pulse (small-tip profile)."""
    # The excited profile of a windowed sinc is close to its Fourier transform: a smoothed rectangle.
    # Sampled over the nominal slice (|z| <= 1/2) and its skirts (to |z| = 1), weights = sample spacing.
    z = np.linspace(-1.0, 1.0, 4 * n + 1)
    t = np.linspace(-time_bandwidth / 2, time_bandwidth / 2, 513)
    pulse = np.sinc(t) * 0.5 * (1 + np.cos(2 * np.pi * t / time_bandwidth))
    # sinc(t) has zero crossings at integers, so its spectrum spans |f| <= 1/2: the nominal slice.
    profile = np.abs(np.exp(-2j * np.pi * z[:, None] * t[None]) @ pulse)
    profile /= profile[len(z) // 2]
    keep = profile > 0.02
    # Group the positions into n flip-scale levels (signal depends on the scale, not the position).
    scales = np.linspace(profile[keep].min(), 1.0, n)
    index = np.abs(profile[keep][:, None] - scales[None]).argmin(axis=1)
    weights = np.bincount(index, minlength=n).astype(np.float64)
    weights /= weights.sum()
    return scales[weights > 0], weights[weights > 0]


def _modified(sequence: Sequence, *, drop_inversion: bool = False, unspoiled: bool = False) -> Sequence:
    blocks: list[Block] = []
    for block in sequence.blocks:
        if drop_inversion and isinstance(block, Inversion):
            blocks.append(Delay(block.ti_ms))  # same timing, no inversion
        elif unspoiled and isinstance(block, Readout) and block.kind == "flash":
            blocks.append(dataclasses.replace(block, kind="fisp"))
        else:
            blocks.append(block)
    return dataclasses.replace(sequence, blocks=tuple(blocks))


def simulate_with_mismatch(
    sequence: Sequence,
    t1_ms: np.ndarray,
    t2_ms: np.ndarray,
    t1rho_ms: np.ndarray,
    b1: np.ndarray,
    mismatch: Mismatch,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Fingerprints (N, T) complex64 of tissues under ``mismatch`` (the ideal model when it is ideal)."""
    mismatch.validate()
    inversions = sum(isinstance(b, Inversion) for b in sequence.blocks)
    if mismatch.inversion_efficiency < 1 and (inversions != 1 or sequence.dummy_trains):
        raise MRFError("inversion efficiency is modelled for one inversion per train and no dummy trains")

    def run(seq: Sequence, b1_values: np.ndarray) -> np.ndarray:
        return simulate_fingerprints(seq, t1_ms, t2_ms, t1rho_ms, b1_values, cancel=cancel).numpy()

    def spoiling(seq: Sequence, b1_values: np.ndarray) -> np.ndarray:
        out = run(seq, b1_values)
        if mismatch.spoiling_leak > 0:
            out = (1 - mismatch.spoiling_leak) * out + mismatch.spoiling_leak * run(
                _modified(seq, unspoiled=True), b1_values
            )
        return out

    def inversion(b1_values: np.ndarray) -> np.ndarray:
        out = spoiling(sequence, b1_values)
        eta = mismatch.inversion_efficiency
        if eta < 1:
            out = (1 + eta) / 2 * out + (1 - eta) / 2 * spoiling(_modified(sequence, drop_inversion=True), b1_values)
        return out

    if not mismatch.slice_profile:
        return inversion(b1).astype(np.complex64)
    scales, weights = slice_profile_weights()
    total = np.zeros((np.size(t1_ms), sequence.n_timepoints), dtype=np.complex128)
    for i, (scale, weight) in enumerate(zip(scales, weights, strict=True)):
        report(progress, i / len(scales), "slice profile")
        total += weight * inversion(b1 * scale)
    return total.astype(np.complex64)


def _contributions(phantom: Phantom) -> list[tuple[np.ndarray, ...]]:
    """Per tissue: (voxel indices, T1, T2, T1rho, weight = fraction x PD) of every voxel holding it.

    Voxel indices are unique within a part, so parts can be added into the image one by one.
    """
    if phantom.fractions is None:
        voxels = np.flatnonzero(phantom.pd.reshape(-1) > 0)
        maps = (phantom.t1_ms, phantom.t2_ms, phantom.t1rho_ms, phantom.pd)
        return [(voxels, *(m.reshape(-1)[voxels] for m in maps))]
    variation = phantom.variation if phantom.variation is not None else np.ones((4, *phantom.shape))
    parts: list[tuple[np.ndarray, ...]] = []
    for label, tissue in phantom.nominal.items():
        fraction = phantom.fractions[label].reshape(-1)
        voxels = np.flatnonzero(fraction > 0)
        if voxels.size == 0 or tissue.pd <= 0:
            continue
        v = variation.reshape(4, -1)[:, voxels]
        t1, t2 = tissue.t1_ms * v[0], tissue.t2_ms * v[1]
        t1rho = np.maximum(tissue.t1rho_ms * v[2], t2)  # keep T2 <= T1rho, as the painted maps do
        parts.append((voxels, t1, t2, t1rho, fraction[voxels] * tissue.pd * v[3]))
    return parts


def synthesize_series(
    phantom: Phantom,
    sequence: Sequence,
    *,
    snr: float | None = 50.0,
    b1: np.ndarray | float | None = None,
    with_coil_phase: bool = True,
    magnitude: bool = False,
    seed: int = 0,
    mismatch: Mismatch | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Series:
    """Simulate the MRF series of ``phantom`` (see module docstring for the model).

    Parameters
    ----------
    snr
        Signal-to-noise ratio as defined above; ``None`` or ``inf`` for no noise.
    b1
        Relative B1 per voxel (Z, Y, X) or a scalar; ``None``: the phantom's field, else 1.
    magnitude
        Return magnitude images (float32) instead of complex data.
    mismatch
        Effects the dictionary omits (none by default).
    """
    if snr is not None and not (snr > 0):
        raise MRFError(f"SNR must be positive, got {snr}")
    mismatch = mismatch or Mismatch()
    n_t = sequence.n_timepoints
    data = np.zeros((n_t, *phantom.shape), dtype=np.complex64)
    if b1 is None and phantom.b1 is not None:
        b1 = phantom.b1
    b1_map = np.broadcast_to(np.asarray(1.0 if b1 is None else b1, dtype=np.float64), phantom.shape)
    parts = _contributions(phantom)
    voxels, t1, t2, t1rho, weight = (np.concatenate([part[i] for part in parts]) for i in range(5))
    if mismatch.ideal:
        fingerprints = simulate_fingerprints(
            sequence, t1, t2, t1rho, b1_map.reshape(-1)[voxels], progress=progress, cancel=cancel
        ).numpy()
    else:
        fingerprints = simulate_with_mismatch(
            sequence, t1, t2, t1rho, b1_map.reshape(-1)[voxels], mismatch, progress, cancel
        )
    weights = weight.astype(np.complex64)
    if with_coil_phase:
        weights = weights * np.exp(1j * coil_phase(phantom.shape).reshape(-1)[voxels]).astype(np.complex64)
    signal = fingerprints * weights[:, None]
    del fingerprints
    flat = data.reshape(n_t, -1)
    start = 0
    for part in parts:  # tissues one by one: voxel indices are unique within each
        stop = start + part[0].size
        flat[:, part[0]] += signal[start:stop].T
        start = stop
    fg = np.zeros(flat.shape[1], dtype=bool)
    fg[voxels] = True
    signal = flat[:, fg].T
    sigma = 0.0
    if snr is not None and np.isfinite(snr):
        data, sigma = add_noise(data, snr, np.random.default_rng(seed), reference=signal)
    truth = phantom.maps()
    if b1 is not None:
        truth["B1"] = np.asarray(b1_map, dtype=np.float64)
    if phantom.fractions is not None:
        truth["purity"] = phantom.purity()
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
