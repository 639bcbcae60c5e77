"""Measured B1 maps: placed by geometry, units recognised, and DM matched at each voxel's B1."""

import nibabel as nib
import numpy as np
import pytest

from mrfviewer import pipeline
from mrfviewer.b1map import at_b1, read_b1_map
from mrfviewer.cli import main
from mrfviewer.dictionary import generate_dictionary, save_dictionary
from mrfviewer.errors import MRFError
from mrfviewer.grid import grid_from_dict
from mrfviewer.io.series_h5 import write_series_h5
from mrfviewer.phantoms import knee_phantom
from mrfviewer.series import Geometry
from mrfviewer.simulation import simulate_fingerprints
from mrfviewer.synthesis import synthesize_series


@pytest.fixture(scope="module")
def b1_dictionary(tiny_sequence):
    grid = grid_from_dict(
        {
            "t1_ms": {"min": 200, "max": 2500, "step_percent": 15},
            "t2_ms": {"min": 8, "max": 200, "step_percent": 15},
            "t1rho_ms": {"min": 8, "max": 250, "step_percent": 15},
            "b1": {"min": 0.7, "max": 1.3, "n": 7, "spacing": "linear"},
        }
    )
    return generate_dictionary(tiny_sequence, grid)


def test_the_dictionary_interpolated_to_a_b1_equals_a_simulation_there(b1_dictionary, tiny_sequence):
    b1 = 0.934
    sub = at_b1(b1_dictionary, b1)
    atoms = np.random.default_rng(0).choice(sub.n_atoms, 50, replace=False)
    p = sub.params[atoms]
    direct = simulate_fingerprints(tiny_sequence, p[:, 0], p[:, 1], p[:, 2], np.full(len(p), b1)).numpy()
    expected = direct @ sub.basis.conj().T
    error = np.linalg.norm(sub.coeffs[atoms] - expected, axis=1) / np.linalg.norm(expected, axis=1)
    # Cubic interpolation across 0.1 B1 steps: 0.1 % typically, a few % for the fastest-varying atoms.
    assert np.median(error) < 2e-3 and error.max() < 0.04


def _b1_nifti(values, geometry, path):
    nib.save(
        nib.Nifti1Image(np.transpose(values, (2, 1, 0)).astype(np.float32), geometry.affine_ras(values.shape[0])), path
    )
    return path


def test_reconstruction_with_a_measured_b1_map(tmp_path, tiny_sequence, b1_dictionary):
    ph = knee_phantom((32, 32), b1_range=(0.76, 1.24))
    series = synthesize_series(ph, tiny_sequence, snr=None)
    path = write_series_h5(series, tmp_path / "s.h5")
    geometry = Geometry(pixel_spacing_mm=ph.pixel_spacing_mm, slice_thickness_mm=ph.slice_thickness_mm)
    b1_file = _b1_nifti(ph.b1, geometry, tmp_path / "b1.nii.gz")
    np.testing.assert_allclose(read_b1_map(b1_file, geometry, ph.shape), ph.b1, rtol=1e-6)
    percent = _b1_nifti(100 * ph.b1, geometry, tmp_path / "b1_percent.nii.gz")  # a scanner's percent map
    np.testing.assert_allclose(read_b1_map(percent, geometry, ph.shape), ph.b1, rtol=1e-6)
    estimator = pipeline.DictionaryMatching(b1_dictionary)
    free = pipeline.run(pipeline.open_input(path), estimator)
    known = pipeline.run(pipeline.open_input(path, b1_map=b1_file), estimator)
    tissue = ph.labels > 0
    np.testing.assert_allclose(known.values["B1"][tissue], ph.b1[tissue], rtol=1e-6)
    for name, truth in (("T1", ph.t1_ms), ("T2", ph.t2_ms), ("T1rho", ph.t1rho_ms)):
        err_known = np.median(np.abs(known.values[name][tissue] / truth[tissue] - 1))
        err_free = np.median(np.abs(free.values[name][tissue] / truth[tissue] - 1))
        # The coarse test grid (15 % steps): knowing B1 helps two- to fourfold.
        assert err_known < 0.04 and err_known < err_free, (name, err_known, err_free)
    assert "B1 from the measured map" in known.provenance.warnings
    assert "B1 from the measured map" not in free.provenance.warnings
    # The CLI: a B1 map that does not cover the series is refused before any work.
    save_dictionary(b1_dictionary, tmp_path / "d.h5")
    small = np.ones((1, 8, 8))
    _b1_nifti(small, geometry, tmp_path / "small.nii.gz")
    args = ["-q", "reconstruct", str(path), "--dictionary", str(tmp_path / "d.h5")]
    assert main([*args, "--b1-map", str(tmp_path / "small.nii.gz"), "--output", str(tmp_path / "x")]) == 2
    assert main([*args, "--b1-map", str(b1_file), "--output", str(tmp_path / "o")]) == 0


def test_b1_maps_of_unknown_unit_or_without_a_b1_dictionary_are_refused(tmp_path, tiny_dictionary):
    geometry = Geometry()
    weird = _b1_nifti(np.full((1, 8, 8), 3000.0), geometry, tmp_path / "weird.nii.gz")
    with pytest.raises(MRFError, match="cannot tell the unit"):
        read_b1_map(weird, geometry, (1, 8, 8))
    from mrfviewer.b1map import match_known_b1

    with pytest.raises(MRFError, match="needs a dictionary over B1"):
        match_known_b1(tiny_dictionary, np.zeros((3, tiny_dictionary.rank), np.complex64), np.ones(3))
