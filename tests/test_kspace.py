"""Radial k-space: NUFFT, acquisition, gridding and subspace reconstruction, ISMRMRD files, the CLI.

Small on purpose (32 x 32 images, the tiny sequence of 100 time points, a few coils and spokes).
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from mrfviewer import kspace_recon as kr
from mrfviewer import nufft
from mrfviewer.acquisition import (
    GOLDEN_ANGLE_DEG,
    RadialSampling,
    coil_sensitivities,
    radial_dcf,
    simulate_radial,
    to_radians,
    write_radial,
)
from mrfviewer.errors import MRFError
from mrfviewer.io.ismrmrd_io import is_ismrmrd, open_radial
from mrfviewer.phantoms import Phantom, make_phantom
from mrfviewer.reconstruction import reconstruct_dm
from mrfviewer.series import Series
from mrfviewer.synthesis import synthesize_series

N = 32


def _exact_matrix(points: np.ndarray, n: int) -> np.ndarray:
    """The unitary non-uniform DFT E[p, (y, x)] = exp(-i (wy y + wx x)) / n, pixels -n/2..n/2-1."""
    grid = np.arange(n) - n // 2
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    return np.exp(-1j * (np.outer(points[:, 0], yy.ravel()) + np.outer(points[:, 1], xx.ravel()))) / n


def _smooth_phantom(n: int = N) -> Phantom:
    """A smooth object (Gaussian PD, linear T1/T2/T1rho ramps): its k-space lies inside the radial disk."""
    y, x = np.meshgrid((np.arange(n) - n // 2) / (n / 2), (np.arange(n) - n // 2) / (n / 2), indexing="ij")
    pd = np.exp(-(x**2 + y**2) / (2 * 0.35**2))
    pd = np.where(pd > 0.01, pd, 0.0)[None]
    t1 = (900 + 500 * x + 200 * y)[None]
    t2 = (40 + 15 * y - 10 * x)[None]
    t1rho = (55 + 15 * x + 10 * y)[None]
    labels = (pd > 0.05).astype(np.int32)
    return Phantom("smooth", t1, t2, t1rho, pd, labels, {1: "object"}, (1.25, 1.25), 5.0)


def _in_memory(simulation) -> kr.SliceKspace:  # noqa: ANN001 - a RadialSimulation
    """The one slice of a simulation as a SliceKspace (the data held in memory)."""
    data = np.concatenate([chunk.data for chunk in simulation.chunks()])
    s = simulation.sampling
    return kr.SliceKspace(
        read=lambda t0, t1: (data[t0:t1], s.kspace(t0, t1)),
        trajectory=s.kspace,
        n_timepoints=s.n_timepoints,
        matrix=s.matrix,
        n_coils=simulation.n_coils,
        samples_per_timepoint=s.samples_per_timepoint,
    )


# -- NUFFT ------------------------------------------------------------------------------------


def test_nufft_matches_the_exact_transform_and_is_its_own_adjoint():
    rng = np.random.default_rng(0)
    sampling = RadialSampling(matrix=N, n_timepoints=3, spokes=6)
    points = to_radians(sampling.kspace(0, 3), N).reshape(3, -1, 2)
    x = (rng.standard_normal((3, 2, N, N)) + 1j * rng.standard_normal((3, 2, N, N))).astype(np.complex64)
    y = (rng.standard_normal((3, 2, points.shape[1])) + 1j * rng.standard_normal((3, 2, points.shape[1]))).astype(
        np.complex64
    )
    ax, ahy = nufft.forward_frames(x, points), nufft.adjoint_frames(y, points, (N, N))
    # <A x, y> = <x, A^H y> over all frames and coils
    lhs, rhs = np.vdot(y, ax), np.vdot(ahy, x)
    assert abs(lhs - rhs) <= 1e-4 * abs(lhs)
    exact = _exact_matrix(points[1].astype(np.float64), N)
    reference = (exact @ x[1].reshape(2, -1).T.astype(np.complex128)).T
    assert np.linalg.norm(ax[1] - reference) <= 1e-4 * np.linalg.norm(reference)
    back = (exact.conj().T @ y[1].T.astype(np.complex128)).T.reshape(2, N, N)
    assert np.linalg.norm(ahy[1] - back) <= 1e-4 * np.linalg.norm(back)
    # A fully sampled Cartesian grid: the forward transform is unitary (the SNR definition relies on it).
    k = (np.arange(N) - N // 2) * 2 * math.pi / N
    cartesian = np.stack(np.meshgrid(k, k, indexing="ij"), axis=-1).reshape(-1, 2)
    assert np.linalg.norm(nufft.forward(x[0], cartesian)) == pytest.approx(np.linalg.norm(x[0]), rel=1e-4)


def test_points_outside_the_band_are_refused():
    with pytest.raises(MRFError, match="sampled band"):
        nufft.forward(np.zeros((1, 8, 8), np.complex64), np.array([[4.0, 0.0]]))


def test_toeplitz_normal_operator_equals_forward_then_adjoint(tiny_sequence, tiny_grid):
    simulation = simulate_radial(make_phantom("knee", (N, N)), tiny_sequence, spokes=3, coils=3, snr=None)
    kspace = _in_memory(simulation)
    basis = kr.temporal_basis(tiny_sequence, None, tiny_grid)
    kernels = kr.ToeplitzKernels.build(kspace, basis)
    rng = np.random.default_rng(1)
    k = basis.shape[0]
    x = (rng.standard_normal((k, N, N)) + 1j * rng.standard_normal((k, N, N))).astype(np.complex64)
    sens = simulation.sensitivities[:, 0]
    fast = kernels.normal(torch.from_numpy(x), torch.from_numpy(sens)).numpy()
    t = tiny_sequence.n_timepoints
    series = kr.expand(x, basis)  # (T, N, N)
    points = to_radians(simulation.sampling.kspace(0, t), N).reshape(t, -1, 2)
    samples = nufft.forward_frames(series[:, None] * sens[None], points)
    back = np.sum(nufft.adjoint_frames(samples, points, (N, N)) * np.conj(sens)[None], axis=1)
    slow = (np.conj(basis) @ back.reshape(t, -1)).reshape(k, N, N)
    assert np.linalg.norm(fast - slow) <= 1e-4 * np.linalg.norm(slow)
    per_coil = kernels.normal_per_coil(torch.from_numpy(x[None] * np.ones((2, 1, 1, 1), np.complex64))).numpy()
    assert np.allclose(per_coil[0], per_coil[1])


# -- acquisition ------------------------------------------------------------------------------


def test_golden_angle_trajectory_and_density_compensation():
    s = RadialSampling(matrix=N, n_timepoints=4, spokes=5)
    assert s.readout == 2 * N
    angles = s.angles_deg(0, 4)
    assert np.allclose(np.diff(angles.reshape(-1)) % 360, GOLDEN_ANGLE_DEG % 360)
    k = s.kspace(1, 2)
    assert np.abs(k).max() <= N / 2 and np.allclose(k[0, :, N], 0)  # the centre sample sits at k = 0
    w = radial_dcf(s.kspace(0, 4))
    assert w.shape == (4, 5, 2 * N) and (w >= 0).all()
    # Each frame's weights are a quadrature of the sampled disk (units of one Cartesian sample).
    assert np.allclose(w.sum(axis=(1, 2)), math.pi * (N / 2) ** 2, rtol=0.01)


def test_gridding_a_fully_sampled_radial_acquisition_recovers_the_image(tiny_sequence):
    phantom = _smooth_phantom()
    images = synthesize_series(phantom, tiny_sequence, snr=None, with_coil_phase=False).data[:3, 0]
    # pi/2 N spokes: the Nyquist rate of radial sampling at the edge of k-space.
    simulation = simulate_radial(phantom, tiny_sequence, spokes=int(math.pi / 2 * N) + 1, coils=2, snr=None)
    kspace = _in_memory(simulation)
    gridded = kr.grid_timepoints(kspace, simulation.sensitivities[:, 0], 0, 3)
    signal = phantom.pd[0] > 0.2
    error = np.abs(gridded - images)[:, signal] / np.abs(images)[:, signal].mean()
    assert np.median(error) < 0.02


def test_kspace_noise_follows_the_image_domain_snr(tiny_sequence):
    phantom = make_phantom("knee", (N, N))
    noisy = simulate_radial(phantom, tiny_sequence, spokes=4, coils=2, snr=20.0, seed=3)
    clean = simulate_radial(phantom, tiny_sequence, spokes=4, coils=2, snr=None, seed=3)
    noisy_data = np.concatenate([c.data for c in noisy.chunks()])
    clean_data = np.concatenate([c.data for c in clean.chunks()])
    images = synthesize_series(phantom, tiny_sequence, snr=None, with_coil_phase=False).data
    signal = np.any(images != 0, axis=0)
    level = np.sqrt(np.mean(np.abs(images[:, signal]) ** 2, axis=0)).mean()
    assert noisy.sigma == pytest.approx(level / 20.0, rel=1e-5)
    noise = noisy_data - clean_data
    assert np.std(noise) == pytest.approx(noisy.sigma, rel=0.01)
    assert abs(np.mean(noise.real * noise.imag)) < 0.02 * noisy.sigma**2  # circular complex noise


def test_coil_sensitivities_are_smooth_with_unit_rss():
    maps = coil_sensitivities(6, (2, N, N), 5.0, 160.0)
    assert maps.shape == (6, 2, N, N)
    assert np.allclose(np.sum(np.abs(maps) ** 2, axis=0), 1, atol=1e-5)
    assert np.abs(np.diff(maps, axis=-1)).max() < 0.5  # no jumps between neighbouring pixels
    with pytest.raises(MRFError, match="coils"):
        coil_sensitivities(0, (1, N, N))


# -- subspace reconstruction -------------------------------------------------------------------


def test_subspace_reconstruction_of_noiseless_data_is_within_1_percent_of_the_fully_sampled_maps(
    tiny_sequence, tiny_grid, tiny_dictionary
):
    """Noiseless, 8 spokes per time point, 4 coils with sensitivities estimated from the data.

    The object is smooth, so that its k-space lies within the sampled disk (a pixel-sharp edge has
    k-space in the corners no radial spoke reaches: its ringing is not the reconstruction's error).
    The basis comes from the dictionary's grid, as the dictionary's own basis does.
    """
    phantom = _smooth_phantom()
    reference = reconstruct_dm(synthesize_series(phantom, tiny_sequence, snr=None), tiny_dictionary)
    simulation = simulate_radial(phantom, tiny_sequence, spokes=8, coils=4, snr=None)
    kspace = _in_memory(simulation)
    basis = kr.temporal_basis(tiny_sequence, None, tiny_grid)
    assert basis.shape[0] >= kr.DEFAULT_RANK
    kernels = kr.ToeplitzKernels.build(kspace, basis)
    settings = kr.SubspaceSettings(iterations=100, tolerance=1e-6)
    result = kr.subspace_reconstruct(kspace, basis, kernels, settings)
    assert result.relative_residual < 1e-5
    series = Series(data=kr.expand(result.coefficients, basis)[:, None], sequence=tiny_sequence)
    maps = reconstruct_dm(series, tiny_dictionary)
    bright, tissue = phantom.pd[0] >= 0.5, phantom.pd[0] >= 0.2
    for p in ("T1", "T2", "T1rho"):
        error = np.abs(maps.values[p][0] / reference.values[p][0] - 1)
        assert error[bright].max() < 0.01, p
        assert np.percentile(error[tissue], 95) < 0.01, p
    # Gridding the same data (4 coils, 8 spokes of 64 samples for 32 x 32 pixels) aliases: DM is
    # fairly robust to it in the median (aliasing is incoherent across time points), not in the tail.
    gridded = kr.grid_timepoints(kspace, result.sensitivities, 0, tiny_sequence.n_timepoints)
    aliased = reconstruct_dm(Series(data=gridded[:, None], sequence=tiny_sequence), tiny_dictionary)
    for p in ("T1", "T2", "T1rho"):
        subspace_error = np.abs(maps.values[p][0] / reference.values[p][0] - 1)[tissue]
        gridding_error = np.abs(aliased.values[p][0] / reference.values[p][0] - 1)[tissue]
        assert np.percentile(gridding_error, 95) > 3 * np.percentile(subspace_error, 95), p
        assert np.percentile(gridding_error, 95) > 0.01, p


def test_sensitivities_from_the_data_match_the_true_ones(tiny_sequence, tiny_grid):
    phantom = _smooth_phantom()
    simulation = simulate_radial(phantom, tiny_sequence, spokes=8, coils=4, snr=None)
    kspace = _in_memory(simulation)
    basis = kr.temporal_basis(tiny_sequence, None, tiny_grid)
    kernels = kr.ToeplitzKernels.build(kspace, basis)
    estimated = kr.estimate_sensitivities(kernels, kr.coil_rhs(kspace, basis))
    true = simulation.sensitivities[:, 0]
    # Equal up to a phase common to the coils in each voxel (the object's own phase).
    common = np.exp(1j * np.angle(np.sum(estimated * np.conj(true), axis=0)))
    signal = phantom.pd[0] > 0.2
    assert np.linalg.norm((estimated - true * common)[:, signal]) < 0.01 * np.linalg.norm(true[:, signal])


def test_conjugate_gradient_solves_a_hermitian_system():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((20, 20)) + 1j * rng.standard_normal((20, 20))
    h = torch.from_numpy((a @ a.conj().T + 20 * np.eye(20)).astype(np.complex64))
    b = torch.from_numpy((rng.standard_normal(20) + 1j * rng.standard_normal(20)).astype(np.complex64))
    x, iterations, residual = kr.conjugate_gradient(lambda v: h @ v, b, 100, 1e-6)
    assert residual <= 1e-6 and iterations <= 40
    assert torch.allclose(h @ x, b, atol=1e-4)


# -- ISMRMRD files -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def radial_file(tmp_path_factory, tiny_sequence):
    """A two-slice radial knee acquisition written as ISMRMRD, with the simulation that made it."""
    sequence = tiny_sequence
    simulation = simulate_radial(make_phantom("knee", (16, 16), 2), sequence, spokes=3, coils=2, snr=40.0, seed=5)
    path = tmp_path_factory.mktemp("raw") / "k.h5"
    write_radial(simulation, path, description="tiny radial knee")
    return path, simulation, sequence


def test_ismrmrd_round_trip(radial_file):
    import ismrmrd

    path, simulation, sequence = radial_file
    assert is_ismrmrd(path)
    raw = open_radial(path)
    h = raw.header
    assert (h.matrix, h.n_slices, h.n_timepoints, h.spokes, h.readout, h.n_coils) == (16, 2, 100, 3, 32, 2)
    assert h.sequence is not None and h.sequence.hash == sequence.hash
    assert h.angle_step_deg == pytest.approx(GOLDEN_ANGLE_DEG)
    # The same k-space and trajectory as simulated (a second pass of the simulation is bit-identical).
    expected = {(c.z, c.t0): c.data for c in simulation.chunks()}
    for (z, t0), data in list(expected.items())[::3]:
        t1 = t0 + data.shape[0]
        read, kspace = raw.read(z, t0, t1)
        assert np.array_equal(read, data)
        assert np.allclose(kspace, simulation.sampling.kspace(t0, t1), atol=1e-5)
    truth = raw.ground_truth()
    assert truth is not None and np.array_equal(truth.labels, simulation.phantom.labels)
    assert np.allclose(truth.maps["T1"], simulation.phantom.t1_ms) and truth.attributes["snr"] == 40.0
    assert np.allclose(truth.sensitivities, simulation.sensitivities)
    # An ISMRMRD reader sees a valid file: the header parses, acquisitions carry data, trajectory, counters.
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    header = ismrmrd.xsd.CreateFromDocument(dataset.read_xml_header())
    enc = header.encoding[0]
    assert enc.trajectory.value == "goldenangle" and enc.reconSpace.matrixSize.x == 16
    assert enc.encodingLimits.contrast.maximum == 99 and enc.encodingLimits.slice.maximum == 1
    assert len(header.sequenceParameters.flipAngle_deg) == 100
    assert dataset.number_of_acquisitions() == 2 * 100 * 3
    acq = dataset.read_acquisition(3 * 7 + 2)  # slice 0, time point 7, spoke 2
    assert (acq.idx.slice, acq.idx.contrast, acq.idx.kspace_encode_step_1) == (0, 7, 2)
    assert np.array_equal(acq.data, expected[(0, 0)][7, 2])
    assert np.allclose(acq.traj[:, ::-1], simulation.sampling.kspace(7, 8)[0, 2], atol=1e-5)  # (kx, ky)
    dataset.close()


def test_damaged_or_foreign_raw_files_are_one_line_errors(radial_file, tmp_path):
    path, _, _ = radial_file
    assert not is_ismrmrd(tmp_path / "missing.h5")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["series"] = np.zeros((3, 4, 4), np.complex64)
    assert not is_ismrmrd(plain)
    broken = tmp_path / "broken.h5"
    broken.write_bytes(path.read_bytes())
    with h5py.File(broken, "r+") as f:
        f["dataset/xml"][0] = b"<ismrmrdHeader><not-closed>"
    with pytest.raises(MRFError, match="XML header cannot be parsed"):
        open_radial(broken)
    twice = tmp_path / "twice.h5"
    twice.write_bytes(path.read_bytes())
    with h5py.File(twice, "r+") as f:
        ds = f["dataset/data"]
        head = ds.fields("head")[()]
        head["idx"]["kspace_encode_step_1"][1] = 0  # two spokes 0 in the first time point, no spoke 1
        rows = ds[()]
        rows["head"] = head
        ds[...] = rows
    with pytest.raises(MRFError, match="more than once"):
        open_radial(twice)
    short = tmp_path / "short.h5"
    short.write_bytes(path.read_bytes())
    with h5py.File(short, "r+") as f:
        f["dataset/data"].resize(10, axis=0)
    with pytest.raises(MRFError, match="imaging acquisitions"):
        open_radial(short)


def test_raw_source_reads_the_reconstructed_series_in_slabs_and_time_ranges(radial_file, tiny_grid):
    from mrfviewer.raw_source import open_raw_source

    path, _, sequence = radial_file
    settings = kr.SubspaceSettings(grid=tiny_grid)
    for recon in ("subspace", "gridding"):
        series = open_raw_source(path, recon=recon, settings=settings)
        source = series.source
        assert source.shape == (100, 2, 16, 16) and source.is_complex and series.pending
        whole = source.read(0, 2)
        assert not series.pending
        assert np.allclose(source.read_times(1, 2, 40, 60), whole[40:60, 1:2], atol=1e-6)
        assert recon in series.describe()
    with pytest.raises(MRFError, match="k-space reconstruction"):
        open_raw_source(path, recon="sense")


# -- the command line --------------------------------------------------------------------------


def test_cli_synthesize_radial_then_reconstruct(tmp_path, tiny_files):
    import json

    from mrfviewer.cli import main

    seq, grid = tiny_files
    raw = tmp_path / "k.h5"
    common = ["--sequence", str(seq), "--phantom", "knee", "--size", "24", "--snr", "40"]
    assert main(["-q", "synthesize", *common, "--acquisition", "radial", "--spokes", "4", "--coils", "3",
                 "--output", str(raw)]) == 0  # fmt: skip
    assert is_ismrmrd(raw)
    for recon, folder in ((None, "subspace"), ("gridding", "gridding")):
        extra = ["--kspace-recon", recon] if recon else []
        out = tmp_path / folder
        assert main(["-q", "reconstruct", str(raw), "--grid", str(grid), "--output", str(out), *extra]) == 0
        sidecar = json.loads((out / "T1map.json").read_text())
        assert any(f"{folder} reconstruction" in w or (folder == "gridding" and "gridding" in w)
                   for w in sidecar["warnings"])  # fmt: skip
        assert (out / "roi_stats.csv").exists()  # the labels stored in the file
    # Bad combinations are one-line errors (exit 2).
    images = tmp_path / "images.h5"
    assert main(["-q", "synthesize", *common, "--output", str(images)]) == 0
    assert main(["-q", "reconstruct", str(images), "--kspace-recon", "gridding", "--output", str(tmp_path / "x")]) == 2
    assert main(["-q", "synthesize", *common, "--spokes", "4", "--output", str(tmp_path / "y.h5")]) == 2
    bad = ["--acquisition", "radial", "--output", str(tmp_path / "z")]
    assert main(["-q", "synthesize", *common, "--format", "dicom", *bad]) == 2
    assert main(["-q", "synthesize", *common, "--magnitude", *bad]) == 2
    assert main(["-q", "synthesize", *common, "--spokes", "0", *bad]) == 2
