"""MRF time series from radial multi-coil k-space: per-time-point gridding and low-rank subspace CG.

Both work on one slice at a time (:class:`SliceKspace`: the k-space of a range of time points
read on demand), in chunks of time points, so that nothing of size T x image is held beyond the
chunk (the gridded series of a range of time points is what the caller asked for).

* **Coil sensitivities** (:func:`estimate_sensitivities`) come from the data: low-resolution coil
  images (density-compensated adjoint of the central k-space under a Hann window of radius
  ``N / 8`` cycles per field of view, every time point weighted by the first temporal basis
  vector, the dominant component of every fingerprint, so no tissue cancels out), divided by
  their root-sum-of-squares; zero where that is below 5 % of its 99th percentile (no signal).
* **Gridding** (:func:`grid_timepoints`): per time point, the density-compensated adjoint NUFFT of
  every coil (:func:`mrfviewer.acquisition.radial_dcf`), combined with the conjugate
  sensitivities (SENSE combination; the sensitivities have unit root-sum-of-squares). With few
  spokes per time point these images are aliased (streaks).
* **Subspace** (:func:`subspace_reconstruct`): the series is modelled as ``x_t = sum_k B[k, t] c_k``
  with the K-row temporal basis B (orthonormal rows, :func:`temporal_basis`) and solved for the K
  coefficient images by conjugate gradients on the normal equations
  ``(E^H E + lambda I) c = E^H y``, ``E c = {F_t S_j sum_k B[k, t] c_k}`` over time points t and
  coils j (plain least squares: white noise, no density weighting). ``lambda`` is a small
  Tikhonov term, ``tikhonov`` times the mean diagonal of ``E^H E`` (the samples per time point
  over the pixels). ``E^H E`` is applied by Toeplitz embedding (Fessler et al., IEEE TSP 2005;
  for subspaces e.g. Tamir et al., MRM 2017): a (K, K) matrix of point-spread functions on a 2x
  grid, computed once from the trajectory and the basis; each CG iteration is then 2K FFTs per
  coil instead of K x coils NUFFTs over all samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mrfviewer import nufft
from mrfviewer.acquisition import radial_dcf, to_radians
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report, scaled
from mrfviewer.errors import MRFError
from mrfviewer.grid import ParameterGrid
from mrfviewer.sequence import Sequence

#: Smallest rank of the temporal basis of subspace reconstructions: the shipped network uses 12
#: components. By default the rank is also at least the default dictionary's (99.99 % of the energy:
#: 17 for the knee sequence on the default grid with B1), so that DM loses nothing either.
DEFAULT_RANK = 12
#: Bytes a chunk of time points may take in temporaries (point-spread functions, coil images).
CHUNK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class SliceKspace:
    """The radial k-space of one slice, read on demand.

    ``read(t0, t1)`` gives data (t, spokes, coils, samples) complex64 and positions (t, spokes,
    samples, 2) as (ky, kx) in cycles per field of view; ``trajectory(t0, t1)`` the positions only.
    """

    read: Callable[[int, int], tuple[np.ndarray, np.ndarray]]
    trajectory: Callable[[int, int], np.ndarray]
    n_timepoints: int
    matrix: int
    n_coils: int
    samples_per_timepoint: int

    def chunks(self, bytes_per_timepoint: float) -> list[tuple[int, int]]:
        """Ranges of time points whose temporaries of ``bytes_per_timepoint`` each fit :data:`CHUNK_BYTES`."""
        step = max(1, int(CHUNK_BYTES // max(bytes_per_timepoint, 1)))
        return [(t0, min(t0 + step, self.n_timepoints)) for t0 in range(0, self.n_timepoints, step)]


@dataclass(frozen=True)
class SubspaceSettings:
    """Settings of the subspace reconstruction (see the module docstring).

    ``rank`` None: the larger of :data:`DEFAULT_RANK` and the rank a dictionary of ``grid`` would
    have (:func:`temporal_basis`); ``grid`` None: the default knee grid.
    """

    rank: int | None = None
    grid: ParameterGrid | None = None
    iterations: int = 40
    tolerance: float = 1e-4  # stop when the residual norm falls below this fraction of the right-hand side's
    tikhonov: float = 1e-2

    def validate(self) -> None:
        if self.rank is not None and not 1 <= self.rank <= 64:
            raise MRFError(f"the subspace rank must be 1 to 64, got {self.rank}")
        if not 1 <= self.iterations <= 1000:
            raise MRFError(f"CG iterations must be 1 to 1000, got {self.iterations}")
        if not (0 < self.tolerance < 1 and 0 <= self.tikhonov < 1):
            raise MRFError("the CG tolerance must lie in (0, 1) and the Tikhonov factor in [0, 1)")

    def describe(self, rank: int) -> str:
        return (
            f"subspace reconstruction (rank {rank}, CG up to {self.iterations} iterations to a relative "
            f"residual of {self.tolerance:g}, Tikhonov {self.tikhonov:g} x mean diagonal)"
        )


# -- temporal basis ---------------------------------------------------------------------------

_BASES: dict[tuple[str, str, int | None], np.ndarray] = {}


def temporal_basis(
    sequence: Sequence,
    rank: int | None = None,
    grid: ParameterGrid | None = None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """The first temporal SVD basis vectors (rank, T) complex64 of ``sequence``'s fingerprints on ``grid``.

    Computed as :mod:`mrfviewer.dictionary` computes a dictionary's basis, from the same seeded
    random subset of the grid (default: the default knee grid), so it equals the basis of the
    dictionary of that grid, whose first rows DM projects onto. ``rank`` None: the larger of
    :data:`DEFAULT_RANK` and that dictionary's rank (its energy criterion). Cached per sequence,
    grid and rank in this process.
    """
    from mrfviewer.dictionary import DictionarySettings, _choose_rank, _svd_basis
    from mrfviewer.grid import default_knee_grid
    from mrfviewer.simulation import simulate_fingerprints

    grid = grid or default_knee_grid()
    key = (sequence.hash, grid.hash, rank)
    if key not in _BASES:
        settings = DictionarySettings()
        params, _ = grid.atoms()
        n = params.shape[0]
        rng = np.random.default_rng(settings.seed)
        subset = np.arange(n) if n <= settings.svd_atoms else np.sort(rng.choice(n, settings.svd_atoms, replace=False))
        p = params[subset]
        fingerprints = simulate_fingerprints(sequence, p[:, 0], p[:, 1], p[:, 2], p[:, 3], cancel=cancel)
        basis, singular = _svd_basis(fingerprints)
        k = max(DEFAULT_RANK, _choose_rank(singular, settings)) if rank is None else rank
        if k > basis.shape[0]:
            raise MRFError(f"a rank-{k} basis needs at least {k} time points; the sequence has {basis.shape[0]}")
        _BASES[key] = np.ascontiguousarray(basis[:k]).astype(np.complex64)
    return _BASES[key]


# -- coil sensitivities and gridding ----------------------------------------------------------


def sensitivities_from_images(images: np.ndarray, smoothing: float | None = None) -> np.ndarray:
    """Sensitivities (C, N, N) from coil images (C, N, N) of one contrast, divided by their RSS.

    ``smoothing``: a Hann window over k-space of radius ``smoothing * N / 2`` cycles per field of
    view applied first (None: none; smoothing lowers noise but biases the sensitivities where they
    vary within the window). Voxels without signal in any coil get 0.
    """
    if smoothing is not None:
        n = images.shape[-1]
        spectrum = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1))), axes=(-2, -1))
        k = np.arange(n) - n // 2
        radius = np.hypot(*np.meshgrid(k, k, indexing="ij"))
        edge = max(smoothing * n / 2, 1.0)
        window = np.where(radius < edge, 0.5 * (1 + np.cos(np.pi * radius / edge)), 0.0)
        images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(spectrum * window, axes=(-2, -1))), axes=(-2, -1))
    rss = np.sqrt(np.sum(np.abs(images) ** 2, axis=0))
    if not np.any(rss > 0):
        raise MRFError("the k-space holds no signal (all coil images are zero)")
    return np.where(rss > 0, images / np.where(rss > 0, rss, 1.0), 0).astype(np.complex64)


def estimate_sensitivities(
    kernels: ToeplitzKernels,
    coil_rhs: np.ndarray,
    *,
    iterations: int = 20,
    tikhonov: float = 0.01,
    smoothing: float | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Coil sensitivities (C, N, N) from the data: the subspace reconstruction of every coil on its own.

    Each coil's K coefficient images are solved for (the same Toeplitz normal operator without
    sensitivities: ``E_j^H E_j`` does not mix coils), from ``coil_rhs`` (C, K, N, N) of
    :func:`coil_rhs`; the first coefficient image of every coil (the dominant component of every
    fingerprint, so no tissue is dark) goes to :func:`sensitivities_from_images`. Unlike a
    time-averaged gridding, this is free of the aliasing of the undersampled time points.
    """
    rhs = torch.from_numpy(coil_rhs)
    lam = tikhonov * kernels.mean_diagonal

    def apply(x: torch.Tensor) -> torch.Tensor:
        return kernels.normal_per_coil(x) + lam * x

    x, _, _ = conjugate_gradient(apply, rhs, iterations, 1e-6, progress=progress, cancel=cancel)
    return sensitivities_from_images(x[:, 0].numpy(), smoothing)


def grid_timepoints(
    kspace: SliceKspace, sensitivities: np.ndarray, t0: int, t1: int, cancel: CancelToken | None = None
) -> np.ndarray:
    """Gridded, coil-combined images (t1 - t0, N, N) complex64 of time points t0:t1 (aliased when undersampled)."""
    n = kspace.matrix
    out = np.empty((t1 - t0, n, n), dtype=np.complex64)
    for a, b in _subranges(t0, t1, kspace.chunks(n * n * kspace.n_coils * 8 * 2)):
        check_cancel(cancel)
        data, k = kspace.read(a, b)
        weighted = (data * radial_dcf(k)[:, :, None, :]).transpose(0, 2, 1, 3).reshape(b - a, kspace.n_coils, -1)
        coil_images = nufft.adjoint_frames(weighted, to_radians(k, n).reshape(b - a, -1, 2), (n, n))
        out[a - t0 : b - t0] = np.sum(coil_images * np.conj(sensitivities)[None], axis=1)
    return out


def _subranges(t0: int, t1: int, chunks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    step = max(b - a for a, b in chunks)
    return [(a, min(a + step, t1)) for a in range(t0, t1, step)]


# -- subspace reconstruction ------------------------------------------------------------------


@dataclass
class ToeplitzKernels:
    """Spectra of the point-spread functions of E^H E (module docstring): a torch tensor (2N, 2N, K, K).

    Frequencies first, so that mixing the K components at every frequency is one batched matrix product.
    """

    spectra: torch.Tensor
    mean_diagonal: float  # mean of the diagonal of E^H E per coil (samples per time point / pixels)

    @classmethod
    def build(
        cls,
        kspace: SliceKspace,
        basis: np.ndarray,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> ToeplitzKernels:
        """From the trajectory of every time point and the basis B (K, T).

        ``H[k, l](d) = sum_t conj(B[k, t]) B[l, t] psf_t(d)``, ``psf_t(d) = sum_p exp(i omega_p . d) / N^2``
        over the samples p of time point t, on offsets -N <= d < N: one NUFFT per time point, then
        one matrix product per chunk of time points.
        """
        n, k = kspace.matrix, basis.shape[0]
        m = 2 * n
        total = np.zeros((k * k, m * m), dtype=np.complex64)
        chunks = kspace.chunks(m * m * 8 * 2)
        for i, (t0, t1) in enumerate(chunks):
            check_cancel(cancel)
            report(progress, i / len(chunks), "Toeplitz kernels")
            points = to_radians(kspace.trajectory(t0, t1), n).reshape(t1 - t0, -1, 2)
            ones = np.ones((t1 - t0, 1, points.shape[1]), dtype=np.complex64)
            # nufft's adjoint divides by sqrt(2N * 2N) = 2N; the normal operator needs 1 / N^2.
            psf = nufft.adjoint_frames(ones, points, (m, m)).reshape(t1 - t0, m * m) * np.float32(m / (n * n))
            b = basis[:, t0:t1]
            weights = (np.conj(b)[:, None, :] * b[None, :, :]).reshape(k * k, t1 - t0)
            total += weights @ psf
        report(progress, 1.0, "Toeplitz kernels")
        kernels = np.fft.ifftshift(total.reshape(k, k, m, m), axes=(-2, -1))  # offset 0 at index 0 (circulant)
        spectra = torch.fft.fft2(torch.from_numpy(np.ascontiguousarray(kernels))).permute(2, 3, 0, 1).contiguous()
        return cls(spectra=spectra, mean_diagonal=kspace.samples_per_timepoint / (n * n))

    @property
    def rank(self) -> int:
        return int(self.spectra.shape[-1])

    def _mix(self, images: torch.Tensor) -> torch.Tensor:
        """The Toeplitz product of K images (K, N, N): zero-padded FFT, K x K mixing per frequency, crop."""
        n = images.shape[-1]
        spectrum = torch.fft.fft2(images, s=(2 * n, 2 * n)).permute(1, 2, 0).unsqueeze(-1)  # (2N, 2N, K, 1)
        mixed = torch.matmul(self.spectra, spectrum).squeeze(-1).permute(2, 0, 1)
        return torch.fft.ifft2(mixed)[:, :n, :n]

    def normal(self, x: torch.Tensor, sensitivities: torch.Tensor) -> torch.Tensor:
        """E^H E x for coefficient images x (K, N, N) and sensitivities (C, N, N)."""
        out = torch.zeros_like(x)
        for coil in sensitivities:  # one coil at a time bounds the 2N x 2N temporaries to K images
            out += coil.conj() * self._mix(coil * x)
        return out

    def normal_per_coil(self, x: torch.Tensor) -> torch.Tensor:
        """E_j^H E_j x_j for the coefficient images (C, K, N, N) of every coil j (no sensitivities)."""
        return torch.stack([self._mix(coil) for coil in x])


@dataclass
class SubspaceResult:
    """Coefficient images (K, N, N) complex64 of a slice, with the sensitivities used and the CG record."""

    coefficients: np.ndarray
    sensitivities: np.ndarray
    iterations: int
    relative_residual: float


def coil_rhs(
    kspace: SliceKspace,
    basis: np.ndarray,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """E_j^H y_j (C, K, N, N) of every coil j: per time point the adjoint NUFFT, projected on the basis."""
    n, c = kspace.matrix, kspace.n_coils
    out = np.zeros((c, basis.shape[0], n * n), dtype=np.complex64)
    chunks = kspace.chunks(n * n * c * 8 * 2)
    for i, (t0, t1) in enumerate(chunks):
        check_cancel(cancel)
        report(progress, i / len(chunks), "adjoint NUFFT of the data")
        data, k = kspace.read(t0, t1)
        samples = data.transpose(0, 2, 1, 3).reshape(t1 - t0, c, -1)
        images = nufft.adjoint_frames(samples, to_radians(k, n).reshape(t1 - t0, -1, 2), (n, n))
        projected = np.conj(basis[:, t0:t1]) @ images.reshape(t1 - t0, c * n * n)  # a GEMM over time points
        out += projected.reshape(basis.shape[0], c, n * n).transpose(1, 0, 2)
    report(progress, 1.0, "adjoint NUFFT of the data")
    return out.reshape(c, basis.shape[0], n, n)


def conjugate_gradient(
    apply: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    iterations: int,
    tolerance: float,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[torch.Tensor, int, float]:
    """Solve ``apply(x) = rhs`` (Hermitian positive definite) from x = 0: (x, iterations, relative residual)."""
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rr = float(torch.vdot(r.reshape(-1), r.reshape(-1)).real)
    norm_b = math.sqrt(rr)
    if norm_b == 0:
        return x, 0, 0.0
    done = 0
    for done in range(1, iterations + 1):
        check_cancel(cancel)
        ap = apply(p)
        alpha = rr / float(torch.vdot(p.reshape(-1), ap.reshape(-1)).real)
        x += alpha * p
        r -= alpha * ap
        rr_new = float(torch.vdot(r.reshape(-1), r.reshape(-1)).real)
        report(progress, done / iterations, f"CG iteration {done}, residual {math.sqrt(rr_new) / norm_b:.1e}")
        if math.sqrt(rr_new) <= tolerance * norm_b:
            rr = rr_new
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, done, math.sqrt(rr) / norm_b


def subspace_reconstruct(
    kspace: SliceKspace,
    basis: np.ndarray,
    kernels: ToeplitzKernels,
    settings: SubspaceSettings | None = None,
    *,
    sensitivities: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> SubspaceResult:
    """The K coefficient images of one slice by CG on the normal equations (module docstring).

    ``sensitivities`` (C, N, N): known coil sensitivities; by default they are estimated from the
    same data (:func:`estimate_sensitivities`, from the one pass over the data).
    """
    settings = settings or SubspaceSettings()
    settings.validate()
    if basis.shape[0] != kernels.rank:
        raise MRFError(f"the Toeplitz kernels have rank {kernels.rank}, the basis {basis.shape[0]}")
    per_coil = coil_rhs(kspace, basis, progress=scaled(progress, 0.0, 0.4), cancel=cancel)
    if sensitivities is None:
        sensitivities = estimate_sensitivities(kernels, per_coil, progress=scaled(progress, 0.4, 0.6), cancel=cancel)
    rhs = np.einsum("ckyx,cyx->kyx", per_coil, np.conj(sensitivities))
    return solve_subspace(kernels, rhs, sensitivities, settings, progress=scaled(progress, 0.6, 1.0), cancel=cancel)


def solve_subspace(
    kernels: ToeplitzKernels,
    rhs: np.ndarray,
    sensitivities: np.ndarray,
    settings: SubspaceSettings,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> SubspaceResult:
    """CG on ``(E^H E + lambda I) c = rhs`` (``rhs`` = E^H y, (K, N, N)) for the coefficient images c."""
    sens = torch.from_numpy(np.ascontiguousarray(sensitivities, dtype=np.complex64))
    lam = settings.tikhonov * kernels.mean_diagonal

    def apply(x: torch.Tensor) -> torch.Tensor:
        return kernels.normal(x, sens) + lam * x

    x, iterations, residual = conjugate_gradient(
        apply,
        torch.from_numpy(np.ascontiguousarray(rhs, dtype=np.complex64)),
        settings.iterations,
        settings.tolerance,
        progress=progress,
        cancel=cancel,
    )
    return SubspaceResult(x.numpy().astype(np.complex64), sensitivities, iterations, residual)


def expand(coefficients: np.ndarray, basis: np.ndarray, t0: int = 0, t1: int | None = None) -> np.ndarray:
    """The series (t1 - t0, ...) of coefficient images (K, ...) in the basis (K, T): ``B[:, t0:t1]^T c``."""
    b = basis[:, t0:t1]
    k = coefficients.shape[0]
    return (b.T @ coefficients.reshape(k, -1)).reshape(b.shape[1], *coefficients.shape[1:]).astype(np.complex64)
