"""Golden-angle radial MRF acquisitions: trajectory, density compensation, coil sensitivities, k-space.

Sampling: at every time point of the sequence, ``spokes`` full-diameter spokes of ``readout``
samples (default ``2 N``: 2x readout oversampling, spacing 1/2 cycle per field of view), each
spoke rotated by the golden angle (180 / phi = 111.246 degrees) from the one before, across time
points too, so that any run of consecutive spokes covers k-space almost uniformly. Sample ``j`` of
a spoke at angle theta lies at ``s_j (cos theta, sin theta)`` cycles per field of view with
``s_j = (j - readout / 2) N / readout``: the centre sample is ``k = 0``. 3D volumes are stacks of
stars: every slice has the same in-plane trajectory (multi-slice, or a stack whose partitions were
Fourier-decoded along z).

Coils: ``C`` loop coils on a ring around the field of view (1.6 half-fields of view from the
centre), each with a smooth sensitivity (the near field of a small loop: magnitude
``(d^2 + a^2)^(-3/2)``, phase turning with the direction from the coil), normalised to a
root-sum-of-squares of 1 in every voxel. ASSUMPTION: the receive bias (the RSS profile) is left
out, so PD keeps its meaning and the SNR keeps the definition of :mod:`mrfviewer.synthesis`.

k-space SNR: each sample of each coil gets complex white noise of SD ``sigma`` (``sigma / sqrt(2)``
per real channel), with ``sigma`` from the noiseless images exactly as in
:mod:`mrfviewer.synthesis` (the mean over voxels with signal of the time-RMS signal magnitude,
divided by the SNR). With the unitary NUFFT of :mod:`mrfviewer.nufft` and unit-RSS coils, a fully
sampled Cartesian acquisition with this noise reconstructs (SENSE coil combination) with noise of
SD sigma per voxel: the image-domain SNR. A radial acquisition with fewer samples than pixels per
time point then has the lower SNR per time point that its shorter readout time would have.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrfviewer import nufft
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report
from mrfviewer.errors import MRFError
from mrfviewer.phantoms import Phantom
from mrfviewer.sequence import Sequence
from mrfviewer.synthesis import Mismatch, synthesize_series

#: The golden angle of radial MRI, 180 degrees over the golden ratio.
GOLDEN_ANGLE_DEG = 180.0 / ((1 + math.sqrt(5)) / 2)
#: Limits of the command-line knobs (a spoke costs memory and time at every time point).
MAX_SPOKES, MAX_COILS = 512, 64
#: Time points simulated and sampled together (bounds the temporaries to a few tens of MB).
CHUNK_TIMEPOINTS = 64


@dataclass(frozen=True)
class RadialSampling:
    """Golden-angle radial sampling of an ``matrix`` x ``matrix`` slice (see the module docstring)."""

    matrix: int
    n_timepoints: int
    spokes: int
    readout: int = 0  # samples per spoke; 0: 2 * matrix
    angle_step_deg: float = GOLDEN_ANGLE_DEG

    def __post_init__(self) -> None:
        if self.readout == 0:
            object.__setattr__(self, "readout", 2 * self.matrix)
        if not 1 <= self.spokes <= MAX_SPOKES:
            raise MRFError(f"spokes per time point must be 1 to {MAX_SPOKES}, got {self.spokes}")
        if self.readout < 2 or self.readout % 2:
            raise MRFError(f"samples per spoke must be a positive even number, got {self.readout}")
        if not 8 <= self.matrix <= 2048:
            raise MRFError(f"the image matrix must be 8 to 2048 pixels, got {self.matrix}")

    @property
    def samples_per_timepoint(self) -> int:
        return self.spokes * self.readout

    def angles_deg(self, t0: int, t1: int) -> np.ndarray:
        """Spoke angles (t1 - t0, spokes) in degrees, modulo 360."""
        index = np.arange(t0 * self.spokes, t1 * self.spokes, dtype=np.float64)
        return np.mod(index * self.angle_step_deg, 360.0).reshape(t1 - t0, self.spokes)

    def kspace(self, t0: int, t1: int) -> np.ndarray:
        """Sample positions (t1 - t0, spokes, readout, 2) as (ky, kx) in cycles per field of view."""
        theta = np.deg2rad(self.angles_deg(t0, t1))[..., None]
        s = (np.arange(self.readout) - self.readout / 2) * (self.matrix / self.readout)
        return np.stack([np.sin(theta) * s, np.cos(theta) * s], axis=-1)


def to_radians(kspace: np.ndarray, matrix: int) -> np.ndarray:
    """k-space positions in cycles per field of view -> radians per pixel (the NUFFT's points)."""
    return kspace * (2 * math.pi / matrix)


def radial_dcf(kspace: np.ndarray) -> np.ndarray:
    """Density compensation (..., spokes, readout) of radial spokes (..., spokes, readout, 2), cycles/FOV.

    Each sample's weight is the area of k-space it represents, in units of one Cartesian sample
    (1 / FOV^2): along the spoke it covers ``[s - ds/2, s + ds/2]``, across it the angular width of
    its spoke, half the gap to each angular neighbour among the spokes of the same frame (angles
    modulo 180 degrees, as a spoke covers both directions). The area is ``width * integral |u| du``
    over that interval: ``|s| ds width`` away from the centre, ``width (ds/2)^2`` at ``k = 0``.
    Angles and spacing come from the trajectory itself.
    """
    ends = kspace[..., -1, :] - kspace[..., 0, :]
    theta = np.mod(np.arctan2(ends[..., 0], ends[..., 1]), np.pi)  # (..., spokes)
    order = np.argsort(theta, axis=-1)
    sorted_theta = np.take_along_axis(theta, order, axis=-1)
    gaps = np.diff(sorted_theta, axis=-1, append=sorted_theta[..., :1] + np.pi)  # gap to the next, circular
    width_sorted = 0.5 * (gaps + np.roll(gaps, 1, axis=-1))
    width = np.empty_like(width_sorted)
    np.put_along_axis(width, order, width_sorted, axis=-1)
    unit = ends / np.maximum(np.linalg.norm(ends, axis=-1, keepdims=True), 1e-12)
    s = np.sum(kspace * unit[..., None, :], axis=-1)  # signed position along each spoke
    ds = np.abs(np.diff(s, axis=-1)).mean(axis=-1, keepdims=True)
    a, b = s - ds / 2, s + ds / 2
    radial_integral = (np.sign(b) * b * b - np.sign(a) * a * a) / 2
    return (width[..., None] * radial_integral).astype(np.float32)


def coil_sensitivities(
    n_coils: int, shape: tuple[int, int, int], slice_thickness_mm: float = 1.0, fov_mm: float = 160.0
) -> np.ndarray:
    """Smooth receive sensitivities (C, Z, Y, X) complex64 with a root-sum-of-squares of 1 (module docstring)."""
    if not 1 <= n_coils <= MAX_COILS:
        raise MRFError(f"coils must be 1 to {MAX_COILS}, got {n_coils}")
    nz, ny, nx = shape
    half = fov_mm / 2
    z = (np.arange(nz) - (nz - 1) / 2) * slice_thickness_mm / half
    y = (np.arange(ny) - ny // 2) / (ny / 2)
    x = (np.arange(nx) - nx // 2) / (nx / 2)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    angles = 2 * np.pi * (np.arange(n_coils) + 0.25) / n_coils
    coils = []
    for c, angle in enumerate(angles):
        # Coils on a ring of 1.6 half-fields of view (outside the corners of the square field of view),
        # alternating a little above and below the centre slice.
        cy, cx, cz = 1.6 * np.sin(angle), 1.6 * np.cos(angle), 0.2 * (-1) ** c
        dy, dx, dz = yy - cy, xx - cx, zz - cz
        magnitude = (dy * dy + dx * dx + dz * dz + 0.5**2) ** -1.5
        phase = np.arctan2(dy, dx) + 0.7 * c
        coils.append(magnitude * np.exp(1j * phase))
    maps = np.stack(coils)
    return (maps / np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))).astype(np.complex64)


def _slice_phantom(phantom: Phantom, z: int) -> Phantom:
    """Slice ``z`` of a phantom as a one-slice phantom (every per-voxel array cut, whatever its layout)."""
    shape = phantom.t1_ms.shape
    cut: dict[str, Any] = {}
    for f in dataclasses.fields(phantom):
        value = getattr(phantom, f.name)
        if isinstance(value, np.ndarray):
            if value.shape == shape:
                cut[f.name] = value[z : z + 1]
            elif value.ndim == 4 and value.shape[1:] == shape:  # (channels, Z, Y, X): fractions, variation
                cut[f.name] = value[:, z : z + 1]
    return dataclasses.replace(phantom, **cut)


@dataclass
class KspaceChunk:
    """k-space of time points ``t0:t1`` of slice ``z``: (t1 - t0, spokes, coils, readout) complex64."""

    z: int
    t0: int
    t1: int
    data: np.ndarray


@dataclass
class RadialSimulation:
    """A radial acquisition of a phantom, simulated a slice and a range of time points at a time.

    Iterate :meth:`chunks` once (it yields the k-space in slice, then time order); afterwards
    ``truth`` holds the ground-truth maps (Z, Y, X) of the synthetic series and ``sigma`` the noise SD.
    """

    phantom: Phantom
    sequence: Sequence
    sampling: RadialSampling
    sensitivities: np.ndarray  # (C, Z, Y, X)
    snr: float | None
    seed: int = 0
    mismatch: Mismatch | None = None  # effects the dictionary omits, passed to the image synthesis
    truth: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    sigma: float = 0.0

    @property
    def n_coils(self) -> int:
        return int(self.sensitivities.shape[0])

    def _images(self, z: int, cancel: CancelToken | None) -> np.ndarray:
        # Noiseless, no image-domain coil phase: the coil sensitivities carry the receive phase.
        series = synthesize_series(
            _slice_phantom(self.phantom, z),
            self.sequence,
            snr=None,
            with_coil_phase=False,
            mismatch=self.mismatch,
            cancel=cancel,
        )
        for name, values in series.truth.items():
            if name not in self.truth:
                self.truth[name] = np.zeros(self.phantom.shape, dtype=np.float32)
            self.truth[name][z] = values[0]
        return series.data[:, 0]

    def chunks(
        self, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> Iterator[KspaceChunk]:
        n_z = self.phantom.shape[0]
        n_t = self.sequence.n_timepoints
        kept: tuple[int, np.ndarray] | None = None
        if self.snr is not None:
            # The noise level needs the signal of every slice first (the SNR is a whole-volume mean).
            total, count = 0.0, 0
            for z in range(n_z):
                check_cancel(cancel)
                report(progress, 0.3 * z / n_z, f"signal level, slice {z + 1} of {n_z}")
                images = self._images(z, cancel)
                rms = np.sqrt(np.mean(np.abs(images) ** 2, axis=0))
                signal = np.any(images != 0, axis=0)
                total, count = total + float(rms[signal].sum()), count + int(signal.sum())
                kept = (z, images) if n_z == 1 else None
            self.sigma = total / max(count, 1) / self.snr
        start = 0.3 if self.snr is not None else 0.0
        seeds = np.random.SeedSequence(self.seed).spawn(n_z)
        for z in range(n_z):
            images = kept[1] if kept is not None and kept[0] == z else self._images(z, cancel)
            rng = np.random.default_rng(seeds[z])
            for t0 in range(0, n_t, CHUNK_TIMEPOINTS):
                check_cancel(cancel)
                t1 = min(t0 + CHUNK_TIMEPOINTS, n_t)
                report(progress, start + (1 - start) * (z + t0 / n_t) / n_z, f"k-space, slice {z + 1} of {n_z}")
                yield KspaceChunk(z, t0, t1, self._sample(images[t0:t1], z, t0, t1, rng))
        report(progress, 1.0, "k-space simulated")

    def _sample(self, images: np.ndarray, z: int, t0: int, t1: int, rng: np.random.Generator) -> np.ndarray:
        """k-space (t1 - t0, spokes, C, readout) of images (t1 - t0, Y, X) of slice z, noise added."""
        s = self.sampling
        coil_images = images[:, None] * self.sensitivities[None, :, z]  # (t, C, Y, X)
        points = to_radians(s.kspace(t0, t1), s.matrix).reshape(t1 - t0, -1, 2)
        data = nufft.forward_frames(coil_images, points)  # (t, C, spokes * readout)
        data = data.reshape(t1 - t0, self.n_coils, s.spokes, s.readout).transpose(0, 2, 1, 3)
        if self.sigma > 0:
            noise = rng.standard_normal((2, *data.shape), dtype=np.float32) * np.float32(self.sigma / math.sqrt(2))
            data = data + (noise[0] + 1j * noise[1])
        return np.ascontiguousarray(data, dtype=np.complex64)


def simulate_radial(
    phantom: Phantom,
    sequence: Sequence,
    *,
    spokes: int,
    coils: int = 8,
    snr: float | None = 50.0,
    readout: int = 0,
    seed: int = 0,
    mismatch: Mismatch | None = None,
) -> RadialSimulation:
    """A golden-angle radial multi-coil acquisition of ``phantom`` (k-space made when iterated).

    Parameters
    ----------
    spokes
        Spokes per time point.
    coils
        Receive coils (smooth sensitivities of unit root-sum-of-squares).
    snr
        SNR as defined in the module docstring; ``None`` for noiseless data.
    readout
        Samples per spoke (0: twice the image size).
    mismatch
        Effects the dictionary omits (:class:`mrfviewer.synthesis.Mismatch`), in the images sampled.
    """
    nz, ny, nx = phantom.shape
    if ny != nx:
        raise MRFError(f"radial acquisitions need square images, the phantom is {ny} x {nx}")
    if snr is not None and not (math.isfinite(snr) and snr > 0):
        raise MRFError(f"SNR must be a positive finite number, got {snr}")
    sampling = RadialSampling(matrix=nx, n_timepoints=sequence.n_timepoints, spokes=spokes, readout=readout)
    fov_mm = float(nx * phantom.pixel_spacing_mm[1])
    sensitivities = coil_sensitivities(coils, (nz, ny, nx), phantom.slice_thickness_mm, fov_mm)
    return RadialSimulation(phantom, sequence, sampling, sensitivities, snr, seed, mismatch)


def write_radial(
    simulation: RadialSimulation,
    path: str | Path,
    *,
    description: str = "",
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """Simulate the acquisition and write it as an ISMRMRD file, ground truth included (atomically).

    The file layout is described in :mod:`mrfviewer.io.ismrmrd_io`; the ground truth (the
    synthetic series' truth maps, labels, coil sensitivities, SNR, noise SD and seed) goes to its
    ``/mrfviewer`` group, which ISMRMRD readers do not look at.
    """
    from mrfviewer.io.ismrmrd_io import GroundTruth, RadialHeader, write_radial_ismrmrd
    from mrfviewer.series import Geometry

    phantom, s = simulation.phantom, simulation.sampling
    header = RadialHeader(
        matrix=s.matrix,
        n_slices=phantom.shape[0],
        n_timepoints=s.n_timepoints,
        spokes=s.spokes,
        readout=s.readout,
        n_coils=simulation.n_coils,
        fov_mm=float(s.matrix * phantom.pixel_spacing_mm[1]),
        slice_thickness_mm=float(phantom.slice_thickness_mm),
        sequence=simulation.sequence,
        description=description,
        angle_step_deg=s.angle_step_deg,
        geometry=Geometry(pixel_spacing_mm=phantom.pixel_spacing_mm, slice_thickness_mm=phantom.slice_thickness_mm),
    )

    def truth() -> GroundTruth:
        return GroundTruth(
            maps=simulation.truth,
            labels=phantom.labels,
            label_names=dict(phantom.label_names),
            sensitivities=simulation.sensitivities,
            attributes={
                "phantom": phantom.name,
                "snr": float(simulation.snr) if simulation.snr is not None else 0.0,
                "sigma": float(simulation.sigma),
                "seed": int(simulation.seed),
            },
        )

    return write_radial_ismrmrd(
        path,
        header,
        simulation.chunks(progress=progress, cancel=cancel),
        trajectory=s.kspace,
        ground_truth=truth,
        overwrite=overwrite,
        cancel=cancel,
    )
