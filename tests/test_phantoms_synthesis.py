import numpy as np
import pytest

from mrfviewer.errors import MRFError
from mrfviewer.io.series_h5 import read_series_h5, write_series_h5
from mrfviewer.phantoms import (
    CARTILAGE_LABELS,
    KNEE_TISSUES,
    NIST_T2_ARRAY,
    knee_phantom,
    make_phantom,
    nist_phantom,
    nist_sphere_centres_mm,
)
from mrfviewer.simulation import simulate_fingerprints
from mrfviewer.synthesis import synthesize_series


def test_knee_phantom_has_every_tissue_with_literature_values():
    ph = knee_phantom((128, 128), n_slices=2)
    assert ph.shape == (2, 128, 128)
    present = set(np.unique(ph.labels)) - {0}
    assert present == set(KNEE_TISSUES)
    for label in CARTILAGE_LABELS:
        roi = ph.labels == label
        assert roi.sum() >= 40
        nominal = KNEE_TISSUES[label]
        assert ph.t2_ms[roi].mean() == pytest.approx(nominal.t2_ms, rel=0.05)
        # Mild smooth variation: values are not all identical (not all on a grid).
        assert 0.005 < ph.t1rho_ms[roi].std() / ph.t1rho_ms[roi].mean() < 0.05
    fg = ph.labels > 0
    assert np.all(ph.t2_ms[fg] <= ph.t1rho_ms[fg]) and np.all(ph.pd[~fg] == 0)
    assert not np.array_equal(ph.t1_ms[0], ph.t1_ms[1])


def test_nist_phantom_geometry_and_reference_values():
    ph = nist_phantom((150, 150), array="T2", fov_mm=150.0)
    assert ph.pixel_spacing_mm == (1.0, 1.0)
    centres = nist_sphere_centres_mm()
    radii = np.hypot(centres[:, 0], centres[:, 1])
    np.testing.assert_allclose(radii[:10], 50.0)
    assert np.all(radii[10:] < 50)
    for i in range(14):
        roi = ph.labels[0] == i + 1
        # 20 mm diameter sphere through its centre: area pi * 10^2 mm^2 at 1 mm pixels.
        assert roi.sum() == pytest.approx(np.pi * 100, rel=0.05)
        assert ph.t2_ms[0][roi][0] == NIST_T2_ARRAY["T2"][i]
        assert ph.t1rho_ms[0][roi][0] == ph.t2_ms[0][roi][0]  # stated assumption
    with pytest.raises(MRFError):
        make_phantom("brain")


def test_synthesis_snr_definition(tiny_sequence):
    ph = knee_phantom((32, 32))
    clean = synthesize_series(ph, tiny_sequence, snr=None, with_coil_phase=False)
    noisy = synthesize_series(ph, tiny_sequence, snr=20.0, with_coil_phase=False, seed=1)
    fg = ph.pd > 0
    signal = clean.data[:, fg]
    noise = noisy.data[:, fg] - signal
    rms = np.sqrt(np.mean(np.abs(signal) ** 2, axis=0)).mean()
    assert rms / np.sqrt(np.mean(np.abs(noise) ** 2)) == pytest.approx(20.0, rel=0.02)
    assert abs(np.mean(noise.real * noise.imag)) < 0.05 * np.mean(noise.real**2)
    # Background holds only noise; the clean series is PD x fingerprint.
    assert np.all(clean.data[:, ~fg] == 0)
    i = np.argwhere(fg)[0]
    fp = simulate_fingerprints(tiny_sequence, ph.t1_ms[tuple(i)], ph.t2_ms[tuple(i)], ph.t1rho_ms[tuple(i)])[0]
    np.testing.assert_allclose(clean.data[:, i[0], i[1], i[2]], ph.pd[tuple(i)] * fp.numpy(), rtol=1e-5)


def test_series_file_round_trip(tmp_path, tiny_sequence):
    ph = nist_phantom((32, 32), n_slices=2)
    series = synthesize_series(ph, tiny_sequence, snr=50)
    path = write_series_h5(series, tmp_path / "s.h5")
    again = read_series_h5(path)
    np.testing.assert_array_equal(again.data, series.data)
    assert again.sequence.hash == tiny_sequence.hash
    assert again.geometry.pixel_spacing_mm == series.geometry.pixel_spacing_mm
    np.testing.assert_array_equal(again.labels, ph.labels)
    assert again.label_names[3] == "sphere 3"
    np.testing.assert_allclose(again.truth["T2"], ph.t2_ms.astype(np.float32))


def test_single_slice_series_file_is_t_y_x(tmp_path, tiny_sequence):
    import h5py

    series = synthesize_series(knee_phantom((16, 16)), tiny_sequence, snr=None)
    path = write_series_h5(series, tmp_path / "s.h5")
    with h5py.File(path) as f:
        assert f["series"].shape == (tiny_sequence.n_timepoints, 16, 16)
        assert f["series"].dtype == np.complex64
        assert "sequence" in f.attrs and "pixel_spacing_mm" in f.attrs


def _write_h5(path, **datasets):
    import h5py

    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f.create_dataset(name, data=value)
    return path


@pytest.mark.parametrize(
    ("datasets", "message"),
    [
        ({"other": np.zeros(3)}, "no 'series' dataset"),
        ({"series": np.zeros((4, 4))}, "3 or 4 dimensions"),
        ({"series": np.full((4, 2, 2), np.nan, dtype=np.complex64)}, "NaN"),
        ({"series": np.array([b"a", b"b"] * 4).reshape(2, 2, 2)}, "unsupported type"),
    ],
)
def test_bad_series_files_give_clear_errors(tmp_path, datasets, message):
    path = _write_h5(tmp_path / "bad.h5", **datasets)
    with pytest.raises(MRFError, match=message):
        read_series_h5(path)


def test_non_hdf5_file_is_rejected(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(MRFError, match="cannot read"):
        read_series_h5(path)
