import numpy as np
import pytest

from mrfviewer.errors import MRFError
from mrfviewer.grid import default_knee_grid, grid_from_dict, load_grid
from mrfviewer.sampling import sample_parameters


def test_default_knee_grid_is_log_spaced_and_constrained():
    g = default_knee_grid()
    assert g.t1_ms[0] == pytest.approx(100) and g.t1_ms[-1] == pytest.approx(3000)
    assert g.t2_ms[0] == pytest.approx(5) and g.t2_ms[-1] == pytest.approx(300)
    ratios = g.t2_ms[1:] / g.t2_ms[:-1]
    np.testing.assert_allclose(ratios, ratios[0])
    assert ratios[0] <= 1.07 + 1e-9
    np.testing.assert_allclose(g.b1, np.linspace(0.6, 1.4, 9))  # B1+ is a fitted fourth parameter
    assert g.has_b1
    params, index = g.atoms()
    assert np.all(params[:, 1] <= params[:, 0]) and np.all(params[:, 1] <= params[:, 2])
    assert np.all(params[:, 2] <= params[:, 0])
    assert params.shape[0] == g.n_atoms and index.shape == (g.n_atoms, 4)


def test_lookup_inverts_atom_indices():
    g = grid_from_dict({"t1_ms": [500, 1000], "t2_ms": [20, 40, 600], "t1rho_ms": [30, 50], "b1": [0.9, 1.1]})
    table = g.lookup()
    params, index = g.atoms()
    for atom, (i1, i2, i3, ib) in enumerate(index):
        assert table[ib, i1, i2, i3] == atom
    # T2 = 600 exceeds every T1 and T1rho: excluded everywhere.
    assert np.all(table[:, :, 2, :] == -1)
    assert g.has_b1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"t1_ms": [1000], "t2_ms": [50]}, "t1rho_ms: Field required"),
        ({"t1_ms": {"min": 10, "max": 5, "n": 3}, "t2_ms": [5], "t1rho_ms": [5]}, "need min <= max"),
        ({"t1_ms": {"min": 10, "max": 50}, "t2_ms": [5], "t1rho_ms": [5]}, "'n' or 'step_percent'"),
        ({"t1_ms": [-1, 5], "t2_ms": [5], "t1rho_ms": [5]}, "t1_ms[0]: Input should be greater than or equal to"),
        ({"t1_ms": {"min": 1e-300, "max": 1e300, "n": 3}, "t2_ms": [5], "t1rho_ms": [5]}, "must lie within"),
        ({"t1_ms": [100], "t2_ms": [500], "t1rho_ms": [600]}, "no grid point"),
        ({"t1_ms": [100], "t2_ms": [5], "t1rho_ms": [5], "constraints": ["t2<t1"]}, "constraints[0]: Input should be"),
        ({"t1_ms": [100], "t2_ms": [5], "t1rho_ms": [5], "t3": 1}, "t3: Extra inputs are not permitted"),
        (
            {"t1_ms": {"min": 1, "max": 1e6, "n": 100000}, "t2_ms": {"min": 1, "max": 2, "n": 1000}, "t1rho_ms": [5]},
            "limit",
        ),
    ],
)
def test_invalid_grids_name_the_problem(raw, message):
    with pytest.raises(MRFError) as info:
        grid_from_dict(raw)
    assert message in str(info.value)


def test_load_grid_errors_name_the_file(tmp_path):
    bad = tmp_path / "grid.json"
    bad.write_text("{nope")
    with pytest.raises(MRFError, match="grid.json: not valid JSON"):
        load_grid(bad)


def test_hash_changes_with_content():
    a = grid_from_dict({"t1_ms": [1000], "t2_ms": [50], "t1rho_ms": [60]})
    b = grid_from_dict({"t1_ms": [1000], "t2_ms": [50], "t1rho_ms": [61]})
    assert a.hash != b.hash


def test_sampled_parameters_respect_ranges_and_constraints():
    g = default_knee_grid()
    p = sample_parameters(g, 5000, seed=3)
    assert p.shape == (5000, 4)
    assert p[:, 0].min() >= 100 and p[:, 0].max() <= 3000
    assert np.all(p[:, 1] <= p[:, 2]) and np.all(p[:, 2] <= p[:, 0])
    # Log-uniform: the median T2 lies near the geometric mean of the admissible region, far below 150 ms.
    assert np.median(p[:, 1]) < 60
    np.testing.assert_array_equal(p, sample_parameters(g, 5000, seed=3))
