import h5py
import numpy as np
import pytest

from mrfviewer.dictionary import (
    DictionarySettings,
    cache_dir,
    dictionary_key,
    generate_dictionary,
    get_dictionary,
    load_dictionary,
    save_dictionary,
)
from mrfviewer.engine import CancelToken
from mrfviewer.errors import Cancelled, MRFError
from mrfviewer.simulation import simulate_fingerprints


def test_basis_is_orthonormal_and_coefficients_are_projections(tiny_dictionary, tiny_sequence):
    d = tiny_dictionary
    gram = d.basis @ d.basis.conj().T
    np.testing.assert_allclose(gram, np.eye(d.basis.shape[0]), atol=1e-5)
    p = d.params[:5]
    fp = simulate_fingerprints(tiny_sequence, p[:, 0], p[:, 1], p[:, 2]).numpy()
    np.testing.assert_allclose(d.project(fp, rank=d.basis.shape[0]), d.coeffs[:5], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(fp, axis=1), d.norms[:5], rtol=1e-5)


def test_rank_follows_energy_and_atoms_keep_their_energy(tiny_dictionary):
    d = tiny_dictionary
    curve = d.energy_curve()
    assert curve[d.rank - 1] >= 0.9999
    assert d.rank == 1 or curve[d.rank - 2] < 0.9999
    assert d.retained_energy.min() > 0.99


def test_subset_svd_matches_full_svd_basis(tiny_sequence, tiny_grid):
    full = generate_dictionary(tiny_sequence, tiny_grid, DictionarySettings(svd_atoms=100_000))
    sub = generate_dictionary(tiny_sequence, tiny_grid, DictionarySettings(svd_atoms=300), chunk_atoms=257)
    assert sub.n_atoms > 300
    # The basis from a random 300-atom subset keeps (nearly) as much energy of every
    # atom as the exact basis of all atoms does at the same rank.
    k = full.rank
    kept_full = np.sum(np.abs(full.coeffs[:, :k]) ** 2, axis=1) / full.norms**2
    kept_sub = np.sum(np.abs(sub.coeffs[:, :k]) ** 2, axis=1) / sub.norms**2
    assert kept_sub.mean() > kept_full.mean() - 1e-4
    assert kept_sub.min() > 0.99


def test_save_load_round_trip(tmp_path, tiny_dictionary):
    path = save_dictionary(tiny_dictionary, tmp_path / "d.h5")
    again = load_dictionary(path, expect_key=tiny_dictionary.key)
    np.testing.assert_array_equal(again.coeffs, tiny_dictionary.coeffs)
    np.testing.assert_array_equal(again.params, tiny_dictionary.params)
    assert again.rank == tiny_dictionary.rank and again.sequence.hash == tiny_dictionary.sequence.hash
    with pytest.raises(MRFError, match="exists"):
        save_dictionary(tiny_dictionary, path)


def test_cache_is_reused_and_stale_or_incomplete_files_are_not_trusted(tiny_sequence, tiny_grid, monkeypatch):
    calls = []
    import mrfviewer.dictionary as dm

    real = dm.generate_dictionary

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(dm, "generate_dictionary", counting)
    first = get_dictionary(tiny_sequence, tiny_grid)
    second = get_dictionary(tiny_sequence, tiny_grid)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.coeffs, second.coeffs)
    path = cache_dir() / f"{tiny_sequence.name}-{dictionary_key(tiny_sequence, tiny_grid, DictionarySettings())}.h5"
    assert path.exists()
    # A half-written file (no complete flag) is regenerated, not used.
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(MRFError, match="incomplete"):
        load_dictionary(path)
    get_dictionary(tiny_sequence, tiny_grid)
    assert len(calls) == 2
    # A file with a foreign key under the expected name is regenerated too.
    with h5py.File(path, "r+") as f:
        f.attrs["key"] = "someone-else"
    get_dictionary(tiny_sequence, tiny_grid)
    assert len(calls) == 3
    # Garbage under the expected name as well.
    path.write_bytes(b"not hdf5")
    get_dictionary(tiny_sequence, tiny_grid)
    assert len(calls) == 4


def test_generation_can_be_cancelled_and_reports_progress(tiny_sequence, tiny_grid):
    token = CancelToken()
    seen = []

    def progress(fraction, message):
        seen.append(fraction)
        if fraction > 0.3:
            token.cancel()

    with pytest.raises(Cancelled):
        generate_dictionary(
            tiny_sequence,
            tiny_grid,
            DictionarySettings(svd_atoms=200),
            chunk_atoms=100,
            progress=progress,
            cancel=token,
        )
    assert seen and all(0 <= f <= 1 for f in seen)
    assert not list(cache_dir().glob("*.h5")) if cache_dir().exists() else True


def test_magnitude_dictionary_holds_magnitudes(tiny_sequence, tiny_grid):
    d = generate_dictionary(tiny_sequence, tiny_grid, DictionarySettings(signal="magnitude"))
    p = d.params[:3]
    fp = np.abs(simulate_fingerprints(tiny_sequence, p[:, 0], p[:, 1], p[:, 2]).numpy())
    np.testing.assert_allclose(d.project(fp, rank=d.basis.shape[0]), d.coeffs[:3], rtol=1e-4, atol=1e-6)


def test_bad_settings_are_rejected():
    with pytest.raises(MRFError, match="signal"):
        DictionarySettings(signal="phase").validate()
    with pytest.raises(MRFError, match="energy"):
        DictionarySettings(energy=1.5).validate()


def test_rank_analysis_error_falls_with_rank(tiny_dictionary):
    from mrfviewer.rank import rank_analysis

    rows = rank_analysis(tiny_dictionary, [1, 2, tiny_dictionary.rank], n_test=150)
    assert [r.rank for r in rows] == [1, 2, tiny_dictionary.rank]
    energies = [r.energy for r in rows]
    assert energies == sorted(energies) and energies[-1] >= 0.9999
    worst = lambda r: max(r.mape_t1, r.mape_t2, r.mape_t1rho)  # noqa: E731
    # The tiny test sequence encodes T1rho weakly (two short spin-lock segments, 15 % grid).
    assert worst(rows[-1]) < 0.25 * worst(rows[0])


def test_grid_edge_voxels_are_counted(knee_dictionary):
    import numpy as np

    from mrfviewer.reconstruction import grid_edge_counts

    params = np.array([[1000.0, 300.0, 300.0, 1.0], [1000.0, 40.0, 50.0, 1.0]])
    params[0, 1] = knee_dictionary.grid.t2_ms.max()
    counts = grid_edge_counts(knee_dictionary, params)
    assert counts == {"T2 >= 300": 1, "T1rho >= 300": 1}
