"""Fast (coarse-to-fine) dictionary search against the exhaustive one; search and device settings."""

import json

import numpy as np
import pytest
import torch

from mrfviewer.errors import MRFError
from mrfviewer.matching import best_atoms, best_atoms_torch, match_compressed
from mrfviewer.sampling import sample_parameters
from mrfviewer.search import GridIndex, polish
from mrfviewer.simulation import simulate_fingerprints


def _noisy_voxels(dictionary, n=600, snr_sigma=0.01, seed=0):
    """Off-grid tissues inside the grid ranges (B1 free), with complex noise, compressed."""
    truth = sample_parameters(dictionary.grid, n, seed=seed)
    fp = simulate_fingerprints(dictionary.sequence, *truth.T).numpy()
    rng = np.random.default_rng(seed + 1)
    scale = snr_sigma * np.abs(fp).mean()
    fp = fp * np.exp(1j * rng.uniform(0, 2 * np.pi, (n, 1)))
    fp += scale * (rng.standard_normal(fp.shape) + 1j * rng.standard_normal(fp.shape))
    return truth, dictionary.project(fp)


def test_fast_search_finds_the_exhaustive_atom_on_a_four_parameter_grid(tiny_b1_dictionary):
    d = tiny_b1_dictionary
    assert d.grid.has_b1 and d.n_atoms > 3000
    _, y = _noisy_voxels(d, n=2000)
    fast = match_compressed(d, y, search="fast")
    exhaustive = match_compressed(d, y, search="exhaustive")
    same = np.mean(fast.atom == exhaustive.atom)
    # The stated exactness (>= 99.5 %) is measured on the knee grids (benchmark 9); this grid's
    # 15 % steps and the tiny sequence's weak T1rho encoding leave a flatter T1-T1rho valley
    # (99.1 % here, the misses on a second ridge 5-8 T1rho steps away).
    assert same >= 0.99, f"{100 * same:.2f} % on the exhaustive atom"
    # Where they differ, the fast atom is a local maximum almost as good as the global one.
    assert np.all(fast.match >= exhaustive.match - 2e-3)
    diff = np.abs(fast.params / exhaustive.params - 1)
    assert np.all(np.median(diff, axis=0) < 0.005)


def test_fast_search_returns_noiseless_on_grid_atoms_exactly(tiny_b1_dictionary):
    d = tiny_b1_dictionary
    atoms = np.random.default_rng(3).choice(d.n_atoms, 200, replace=False)
    fp = simulate_fingerprints(d.sequence, *d.params[atoms].T).numpy() * (0.6 * np.exp(0.3j))
    result = match_compressed(d, d.project(fp), search="fast")
    # Some neighbours along T1rho are one fingerprint in float32 (the tiny sequence's short
    # spin-locks: 1 - |corr| about 2e-7 at long T1rho): either atom is then a correct answer.
    c = d.coeffs / np.linalg.norm(d.coeffs, axis=1, keepdims=True)
    twin = 1 - np.abs(np.sum(c[result.atom].conj() * c[atoms], axis=1)) < 1e-6
    assert np.all((result.atom == atoms) | twin)
    assert np.mean(result.atom == atoms) >= 0.98
    same = result.atom == atoms
    np.testing.assert_allclose(result.params[same], d.params[atoms[same]], rtol=1e-12)


def test_fast_search_with_a_known_b1_stays_on_that_b1(tiny_b1_dictionary):
    d = tiny_b1_dictionary
    truth, y = _noisy_voxels(d, n=200, seed=5)
    b1 = np.full(len(y), 1.02)  # nearest grid B1: 1.0
    fast = match_compressed(d, y, b1=b1, search="fast")
    exhaustive = match_compressed(d, y, b1=b1, search="exhaustive")
    assert np.all(d.params[fast.atom, 3] == 1.0)
    assert np.mean(fast.atom == exhaustive.atom) >= 0.99


def test_polish_makes_every_atom_a_float64_local_maximum(tiny_b1_dictionary):
    d = tiny_b1_dictionary
    _, y = _noisy_voxels(d, n=100, seed=7)
    _, atoms, _ = d.compressed()
    grid = GridIndex(d.index, d.grid.lookup())
    start = np.random.default_rng(8).choice(d.n_atoms, len(y))  # anywhere: polish climbs from there
    best, _ = polish(grid, y, torch.from_numpy(np.conjugate(atoms)), start, moves=50)
    offsets = np.array(np.meshgrid(*[[-1, 0, 1]] * 4, indexing="ij")).reshape(4, -1).T
    neighbours = grid.atom_at(d.index[best][:, None, :] + offsets[None])
    y64, a64 = y.astype(np.complex128), atoms.astype(np.complex128)
    own = np.abs(np.einsum("nk,nk->n", a64[best].conj(), y64))
    around = np.abs(np.einsum("nmk,nk->nm", a64[np.maximum(neighbours, 0)].conj(), y64))
    around[neighbours < 0] = 0
    assert np.all(own >= around.max(axis=1) - 1e-12)


def test_torch_gemm_matching_equals_numpy_blocks(tiny_dictionary):
    """The device path (torch GEMMs; run on the CPU here) finds the atoms the numpy blocks find."""
    d = tiny_dictionary
    _, y = _noisy_voxels(d, n=300, seed=9)
    _, atoms, _ = d.compressed()
    expected, power = best_atoms(y, atoms, memory_mb=0.05)
    got, got_power = best_atoms_torch(y, torch.from_numpy(np.conjugate(atoms)), memory_mb=0.05)
    np.testing.assert_allclose(got_power, power, rtol=1e-5)
    # Two float32 GEMMs round differently: atoms may differ only where two correlate alike.
    exact = np.abs(y.astype(np.complex128) @ atoms.astype(np.complex128).conj().T) ** 2
    differ = got != expected
    np.testing.assert_allclose(exact[differ, got[differ]], exact[differ, expected[differ]], rtol=1e-5)
    assert differ.mean() < 0.02


@pytest.mark.parametrize("search", ["fast", "exhaustive"])
def test_search_and_device_reach_the_sidecars(tmp_path, tiny_files, search):
    from mrfviewer.cli import main

    seq, grid = tiny_files
    series = tmp_path / "s.h5"
    argv = ["-q", "synthesize", "--sequence", str(seq), "--phantom", "nist", "--size", "24", "--output", str(series)]
    assert main(argv) == 0
    out = tmp_path / "maps"
    argv = ["-q", "reconstruct", str(series), "--sequence", str(seq), "--grid", str(grid), "--output", str(out)]
    assert main([*argv, "--search", search, "--device", "cpu"]) == 0
    side = json.loads((out / "T1map.json").read_text())
    assert side["search"] == search
    assert side["settings"]["search"] == search and side["settings"]["device"] == "cpu"
    assert 0 < side["matching_seconds"] <= side["seconds"]


def test_cuda_without_a_gpu_falls_back_to_the_cpu_with_a_warning(tiny_dictionary):
    from mrfviewer import pipeline
    from mrfviewer.devices import cuda_available
    from mrfviewer.phantoms import make_phantom
    from mrfviewer.synthesis import synthesize_series

    if cuda_available():
        pytest.skip("a CUDA device is present: no fallback to test")
    series = synthesize_series(make_phantom("nist", (16, 16), realistic=False), tiny_dictionary.sequence, snr=50)
    source = pipeline.input_from_series(series)
    settings = pipeline.ReconstructionSettings(device="cuda")
    maps = pipeline.run(source, pipeline.DictionaryMatching(tiny_dictionary), settings)
    assert any("ran on the CPU" in w for w in maps.provenance.warnings)
    assert np.isfinite(maps.values["T1"][maps.mask]).all()


@pytest.mark.parametrize(("field", "value"), [("search", "greedy"), ("device", "tpu")])
def test_bad_search_or_device_is_one_line(field, value):
    from mrfviewer.settings import ReconstructionSettings

    with pytest.raises(MRFError, match=field):
        ReconstructionSettings(**{field: value}).validate()
    if field == "search":
        from mrfviewer.search import check_search

        with pytest.raises(MRFError, match="search"):
            check_search(value)
    else:
        from mrfviewer.devices import resolve_device

        with pytest.raises(MRFError, match="device"):
            resolve_device(value)
