import tracemalloc

import numpy as np
import pytest

from mrfviewer.engine import CancelToken
from mrfviewer.errors import Cancelled, MRFError
from mrfviewer.matching import best_atoms, chunk_sizes, match_compressed
from mrfviewer.sampling import sample_parameters
from mrfviewer.simulation import simulate_fingerprints


def _fingerprints(dictionary, params, pd=1.0):
    fp = simulate_fingerprints(dictionary.sequence, params[:, 0], params[:, 1], params[:, 2], params[:, 3]).numpy()
    return fp * pd


def test_on_grid_noiseless_voxels_come_back_exactly(knee_dictionary):
    d = knee_dictionary
    rng = np.random.default_rng(0)
    # Realistic knee tissues: T1 300-2000 ms, T2 10-100 ms.
    ok = (d.params[:, 0] > 300) & (d.params[:, 0] < 2000) & (d.params[:, 1] > 10) & (d.params[:, 1] < 100)
    atoms = rng.choice(np.flatnonzero(ok), 300, replace=False)
    pd = 0.7 * np.exp(0.4j)
    y = d.project(_fingerprints(d, d.params[atoms], pd))
    result = match_compressed(d, y)
    np.testing.assert_array_equal(result.atom, atoms)
    np.testing.assert_allclose(result.params, d.params[atoms], rtol=1e-12)
    np.testing.assert_allclose(result.pd, pd, rtol=1e-4)
    assert result.match.min() > 0.9999


def test_refinement_goes_below_the_grid_step(knee_dictionary):
    d = knee_dictionary
    truth = sample_parameters(d.grid, 400, seed=5)
    truth = truth[(truth[:, 0] > 300) & (truth[:, 1] > 10) & (truth[:, 1] < 120)]
    y = d.project(_fingerprints(d, truth))
    coarse = match_compressed(d, y, refine=False)
    fine = match_compressed(d, y, refine=True)
    err_coarse = np.abs(coarse.params[:, :3] / truth[:, :3] - 1).mean(axis=0)
    err_fine = np.abs(fine.params[:, :3] / truth[:, :3] - 1).mean(axis=0)
    assert np.all(err_fine < 0.5 * err_coarse)
    # Grid step 9 %: T1 and T2 refine to well under 1 %; T1rho, which trades off
    # against T1 along a tilted valley, to under a quarter of the step.
    assert np.all(err_fine < [0.01, 0.01, 0.0225])


def test_chunked_matching_equals_one_block(tiny_dictionary):
    d = tiny_dictionary
    truth = sample_parameters(d.grid, 500, seed=1)
    fp = _fingerprints(d, truth)
    rng = np.random.default_rng(2)
    fp += 0.02 * (rng.standard_normal(fp.shape) + 1j * rng.standard_normal(fp.shape))
    y = d.project(fp)
    _, atoms, _ = d.compressed()
    # Reference: one dense block, plain numpy.
    corr = np.abs(y @ atoms.conj().T)
    expected = np.argmax(corr, axis=1)
    assert chunk_sizes(len(y), len(atoms), 0.05) < (len(y), len(atoms))
    got, power = best_atoms(y, atoms, memory_mb=0.05)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(np.sqrt(power), corr.max(axis=1), rtol=1e-5)


def test_matching_memory_stays_under_its_setting():
    """A 4000 x 60000 correlation (2.9 GB in one block) runs within a 16 MiB budget."""
    rng = np.random.default_rng(0)
    k = 8
    atoms = rng.standard_normal((60000, k)) + 1j * rng.standard_normal((60000, k))
    atoms = (atoms / np.linalg.norm(atoms, axis=1, keepdims=True)).astype(np.complex64)
    y = (rng.standard_normal((4000, k)) + 1j * rng.standard_normal((4000, k))).astype(np.complex64)
    budget_mb = 16
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    best, _ = best_atoms(y, atoms, memory_mb=budget_mb)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    cv, ca = chunk_sizes(len(y), len(atoms), budget_mb)
    assert cv < len(y) or ca < len(atoms)  # really chunked
    # Blocks plus the conjugated atom copy (60000 x 8 x 8 B = 3.8 MB) and per-voxel outputs.
    assert peak < budget_mb * 2**20 + atoms.nbytes + 1 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    sample = slice(0, 50)
    np.testing.assert_array_equal(best[sample], np.argmax(np.abs(y[sample] @ atoms.conj().T), axis=1))


def test_matching_can_be_cancelled(tiny_dictionary):
    d = tiny_dictionary
    y = d.project(_fingerprints(d, d.params[:100]))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        match_compressed(d, y, cancel=token)


def test_b1_map_restricts_matching(tiny_sequence):
    from mrfviewer.dictionary import generate_dictionary
    from mrfviewer.grid import grid_from_dict

    grid = grid_from_dict(
        {"t1_ms": [400, 800, 1600], "t2_ms": [20, 40, 80], "t1rho_ms": [30, 60, 100], "b1": [0.8, 0.9, 1.0, 1.1]}
    )
    d = generate_dictionary(tiny_sequence, grid)
    atoms = np.flatnonzero(d.params[:, 3] == 0.9)[:20]
    y = d.project(_fingerprints(d, d.params[atoms]))
    free = match_compressed(d, y, refine=False)
    np.testing.assert_array_equal(free.atom, atoms)
    # Told B1 = 1.08 (nearest grid 1.1), the match must come from the B1 = 1.1 atoms.
    fixed = match_compressed(d, y, b1=np.full(len(atoms), 1.08), refine=True)
    assert np.all(d.params[fixed.atom, 3] == 1.1)
    assert np.all(fixed.params[:, 3] == 1.1)
    with pytest.raises(MRFError, match="B1 map"):
        match_compressed(d, y, b1=np.ones(3))


def test_magnitude_data_match_a_magnitude_dictionary(tiny_sequence, tiny_grid):
    from mrfviewer.dictionary import DictionarySettings, generate_dictionary

    d = generate_dictionary(tiny_sequence, tiny_grid, DictionarySettings(signal="magnitude"))
    atoms = np.arange(0, d.n_atoms, max(1, d.n_atoms // 50))
    fp = np.abs(_fingerprints(d, d.params[atoms], 0.5 * np.exp(1j)))
    result = match_compressed(d, d.project(fp))
    np.testing.assert_array_equal(result.atom, atoms)
    np.testing.assert_allclose(np.abs(result.pd), 0.5, rtol=1e-4)


def test_wrong_shapes_are_rejected(tiny_dictionary):
    with pytest.raises(MRFError, match="shape"):
        match_compressed(tiny_dictionary, np.zeros((5, tiny_dictionary.rank + 1), dtype=np.complex64))
