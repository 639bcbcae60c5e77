"""Radial raw k-space (ISMRMRD) as a slab source: the time series reconstructed slice by slice on demand.

:func:`open_raw_source` reads the headers of a file written by
:func:`mrfviewer.acquisition.write_radial` (or any ISMRMRD file of that profile, see
:mod:`mrfviewer.io.ismrmrd_io`) and returns a :class:`KspaceSeries` whose :attr:`~KspaceSeries.source`
behaves like any other series: ``read(z0, z1)`` and ``read_times(z0, z1, t0, t1)`` give the
(T, Z, Y, X) time series of those slices, computed from k-space:

* ``subspace`` (the default): per slice, the K coefficient images of the low-rank subspace
  reconstruction (:func:`mrfviewer.kspace_recon.subspace_reconstruct`); the series is ``B^T c``
  expanded on demand for the time points asked for. What is kept for the whole volume is K
  complex images per slice, never T.
* ``gridding``: per slice, the coil sensitivities (estimated as for ``subspace``); the asked-for
  time points are gridded when read (aliased images).

:meth:`KspaceSeries.prepare` does the per-slice work up front with progress and cancellation
(:func:`mrfviewer.pipeline.run` calls it); reads do it lazily otherwise. Both methods use the
same sensitivities, so they differ only in how the time series is formed.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrfviewer import kspace_recon as kr
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report, scaled
from mrfviewer.errors import MRFError
from mrfviewer.io.ismrmrd_io import RadialFile, open_radial
from mrfviewer.provenance import InputIdentity
from mrfviewer.sequence import Sequence
from mrfviewer.volume import SlabSource

#: How a time series is formed from k-space.
KSPACE_RECONS = ("subspace", "gridding")


@dataclass
class _Slice:
    """What is kept per slice: the sensitivities, and the coefficient images of a subspace reconstruction."""

    sensitivities: np.ndarray
    coefficients: np.ndarray | None = None
    iterations: int = 0
    residual: float = 0.0


@dataclass
class KspaceSeries:
    """A radial raw-data file and how its series is reconstructed; ``source`` is the slab source."""

    file: RadialFile
    recon: str
    sequence: Sequence
    settings: kr.SubspaceSettings
    cancel: CancelToken | None = None
    source: SlabSource = field(init=False)
    _slices: dict[int, _Slice] = field(default_factory=dict, init=False)
    _kernels: tuple[np.ndarray, kr.ToeplitzKernels] | None = field(default=None, init=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False)

    def __post_init__(self) -> None:
        h = self.file.header
        truth = self.file.ground_truth()
        self.source = SlabSource(
            shape=(h.n_timepoints, h.n_slices, h.matrix, h.matrix),
            is_complex=True,
            read=lambda z0, z1: self.read(z0, z1, 0, h.n_timepoints),
            read_times=self.read,
            sequence=self.sequence,
            geometry=h.geometry,
            description=h.description or f"radial MRF k-space ({self.recon})",
            uid=self.file.path.stem,
            labels=truth.labels if truth is not None else None,
            label_names=truth.label_names if truth is not None else {},
            identity=InputIdentity(
                path=str(self.file.path), kind="ismrmrd", series_uid=self.file.path.stem, description=h.description
            ),
        )

    @property
    def basis(self) -> np.ndarray:
        return kr.temporal_basis(self.sequence, self.settings.rank, self.settings.grid, cancel=self.cancel)

    @property
    def pending(self) -> bool:
        """True while some slice still has to be reconstructed (see :meth:`prepare`)."""
        return len(self._slices) < self.file.header.n_slices

    def describe(self) -> str:
        """One line for the provenance: the acquisition and how its series was formed."""
        h = self.file.header
        how = (
            self.settings.describe(self.basis.shape[0])
            if self.recon == "subspace"
            else "per-time-point gridding (density-compensated adjoint NUFFT, aliased)"
        )
        record = ""
        if self.recon == "subspace" and self._slices:
            its = [s.iterations for s in self._slices.values()]
            record = f"; CG took {min(its)}-{max(its)} iterations"
        return (
            f"raw k-space: golden-angle radial, {h.spokes} spokes x {h.readout} samples per time point, "
            f"{h.n_coils} coils, {h.n_slices} slice(s); {how}; coil sensitivities from the data{record}"
        )

    def slice_kspace(self, z: int) -> kr.SliceKspace:
        h = self.file.header
        return kr.SliceKspace(
            read=lambda t0, t1: self.file.read(z, t0, t1),
            trajectory=lambda t0, t1: self.file.read_trajectory(z, t0, t1),
            n_timepoints=h.n_timepoints,
            matrix=h.matrix,
            n_coils=h.n_coils,
            samples_per_timepoint=h.spokes * h.readout,
        )

    def _kernels_for(
        self, kspace: kr.SliceKspace, progress: ProgressCallback | None, cancel: CancelToken | None
    ) -> kr.ToeplitzKernels:
        """The Toeplitz kernels of a slice's trajectory; built once when every slice has the same trajectory."""
        trajectory = kspace.trajectory(0, kspace.n_timepoints)
        if self._kernels is not None and np.array_equal(self._kernels[0], trajectory):
            report(progress, 1.0, "Toeplitz kernels (same trajectory as before)")
            return self._kernels[1]
        kernels = kr.ToeplitzKernels.build(kspace, self.basis, progress=progress, cancel=cancel)
        self._kernels = (trajectory, kernels)
        return kernels

    def _reconstruct(self, z: int, progress: ProgressCallback | None, cancel: CancelToken | None) -> _Slice:
        with self._lock:
            if z in self._slices:
                return self._slices[z]
            kspace = self.slice_kspace(z)
            basis = self.basis
            kernels = self._kernels_for(kspace, scaled(progress, 0.0, 0.3), cancel)
            per_coil = kr.coil_rhs(kspace, basis, progress=scaled(progress, 0.3, 0.6), cancel=cancel)
            sensitivities = kr.estimate_sensitivities(
                kernels, per_coil, progress=scaled(progress, 0.6, 0.75), cancel=cancel
            )
            if self.recon == "gridding":
                result = _Slice(sensitivities)
            else:
                rhs = np.einsum("ckyx,cyx->kyx", per_coil, np.conj(sensitivities))
                solved = kr.solve_subspace(
                    kernels, rhs, sensitivities, self.settings, progress=scaled(progress, 0.75, 1.0), cancel=cancel
                )
                result = _Slice(sensitivities, solved.coefficients, solved.iterations, solved.relative_residual)
            self._slices[z] = result
            return result

    def prepare(self, progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> None:
        """Reconstruct every slice not done yet (subspace: coefficient images; gridding: sensitivities)."""
        n_z = self.file.header.n_slices
        for z in range(n_z):
            check_cancel(cancel)
            self._reconstruct(z, scaled(progress, z / n_z, (z + 1) / n_z), cancel)
        report(progress, 1.0, f"{self.recon} reconstruction of {n_z} slice(s) done")

    def read(self, z0: int, z1: int, t0: int, t1: int) -> np.ndarray:
        """The series (t1 - t0, z1 - z0, N, N) complex64 of slices z0:z1 and time points t0:t1."""
        h = self.file.header
        out = np.empty((t1 - t0, z1 - z0, h.matrix, h.matrix), dtype=np.complex64)
        for z in range(z0, z1):
            done = self._reconstruct(z, None, self.cancel)
            if done.coefficients is not None:
                out[:, z - z0] = kr.expand(done.coefficients, self.basis, t0, t1)
            else:
                out[:, z - z0] = kr.grid_timepoints(self.slice_kspace(z), done.sensitivities, t0, t1, self.cancel)
        return out

    def truth_maps(self) -> dict[str, np.ndarray]:
        """Ground-truth maps (Z, Y, X) of a synthetic file, else empty."""
        truth = self.file.ground_truth()
        return dict(truth.maps) if truth is not None else {}


def open_raw_source(
    path: str | Path,
    *,
    recon: str = "subspace",
    sequence: Sequence | None = None,
    settings: kr.SubspaceSettings | None = None,
    cancel: CancelToken | None = None,
) -> KspaceSeries:
    """Open a radial MRF raw-data file (headers only; nothing is reconstructed before the first read).

    ``sequence`` overrides the one in the file's header; ``cancel`` is polled by reads that
    reconstruct a slice (they have no progress of their own: :meth:`KspaceSeries.prepare` has).
    """
    if recon not in KSPACE_RECONS:
        raise MRFError(f"k-space reconstruction must be one of {', '.join(KSPACE_RECONS)}, got {recon!r}")
    settings = settings or kr.SubspaceSettings()
    settings.validate()
    raw = open_radial(path)
    sequence = sequence or raw.header.sequence
    if sequence is None:
        raise MRFError(f"{path} names no sequence (user parameter mrfviewer.sequence): give one with --sequence")
    if sequence.n_timepoints != raw.header.n_timepoints:
        raise MRFError(
            f"{path} holds {raw.header.n_timepoints} time points but the sequence '{sequence.name}' has "
            f"{sequence.n_timepoints}"
        )
    if settings.rank is not None and settings.rank > sequence.n_timepoints:
        settings = dataclasses.replace(settings, rank=sequence.n_timepoints)
    return KspaceSeries(file=raw, recon=recon, sequence=sequence, settings=settings, cancel=cancel)
