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
    # A DICOM folder from the scanner, in its own unit.
    dicom = _b1_dicom(tmp_path / "b1_dicom", ph.b1, geometry)
    assert main([*args, "--b1-map", str(dicom), "--b1-map-scale", "0.00125", "--output", str(tmp_path / "d")]) == 0
    from_dicom = np.load(tmp_path / "d" / "maps.npz")["B1"]
    np.testing.assert_allclose(from_dicom[tissue], np.round(ph.b1[tissue] * 800) / 800, rtol=1e-6)
    assert main([*args, "--b1-map-scale", "0.00125", "--output", str(tmp_path / "e")]) == 2


def test_b1_maps_of_unknown_unit_or_without_a_b1_dictionary_are_refused(tmp_path, tiny_dictionary):
    geometry = Geometry()
    weird = _b1_nifti(np.full((1, 8, 8), 3000.0), geometry, tmp_path / "weird.nii.gz")
    with pytest.raises(MRFError, match="cannot tell the unit"):
        read_b1_map(weird, geometry, (1, 8, 8))
    from mrfviewer.b1map import match_known_b1

    with pytest.raises(MRFError, match="needs a dictionary over B1"):
        match_known_b1(tiny_dictionary, np.zeros((3, tiny_dictionary.rank), np.complex64), np.ones(3))


def _b1_dicom(folder, values, geometry, *, stored_per_relative=800.0, value_map_unit=None, uid=None):
    """A B1 map as a scanner writes it (pydicom, one MR image per slice, files in reverse slice order).

    Like Siemens' tfl_b1map: unsigned 16-bit values of 10 x the flip angle at 80 degrees nominal.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = uid or generate_uid()
    n_z = values.shape[0]
    positions = geometry.slice_positions(n_z)
    for z in range(n_z):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"im{n_z - z:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientName, ds.PatientID = "MR", "B1^Test", "b1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "1.2.3", series_uid, "1.2.3.4"
        ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = "tfl_b1map", 7, n_z - z
        ds.ImageType = ["ORIGINAL", "PRIMARY", "B1", "NONE"]
        ds.Rows, ds.Columns = values.shape[1:]
        ds.PixelSpacing = [f"{geometry.pixel_spacing_mm[0]:.6g}", f"{geometry.pixel_spacing_mm[1]:.6g}"]
        ds.SliceThickness = f"{geometry.slice_thickness_mm:.6g}"
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in geometry.orientation]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[z]]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        stored = np.round(values[z] * stored_per_relative).astype(np.uint16)
        if value_map_unit is not None:
            from pydicom.dataset import Dataset

            item, unit = Dataset(), Dataset()
            unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = value_map_unit, "UCUM", value_map_unit
            item.MeasurementUnitsCodeSequence = [unit]
            item.RealWorldValueSlope, item.RealWorldValueIntercept = 1.0 / 8.0, 0.0
            item.RealWorldValueFirstValueMapped, item.RealWorldValueLastValueMapped = 0, 4095
            item.LUTLabel, item.LUTExplanation = "B1", "percent of nominal"
            ds.RealWorldValueMappingSequence = [item]
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / f"im{n_z - z:03d}.dcm", enforce_file_format=True)
    return folder


def _oblique_geometry(n_z):
    c, s = np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))
    return Geometry(
        pixel_spacing_mm=(1.5, 1.2),
        slice_thickness_mm=3.0,
        orientation=(c, s, 0.0, 0.0, 0.0, -1.0),  # oblique sagittal-coronal rows, columns head to foot
        positions=np.array([[10.0 + 3.0 * z * s, -20.0 - 3.0 * z * c, 50.0] for z in range(n_z)]),
    )


def test_a_dicom_b1_map_is_read_in_its_units_and_placed_by_geometry(tmp_path):
    rng = np.random.default_rng(3)
    geometry = _oblique_geometry(3)
    truth = 0.7 + 0.6 * rng.random((3, 12, 10))
    # Siemens-like: 10 x flip angle (80 degrees nominal) -> relative = stored / 800, given by the user.
    folder = _b1_dicom(tmp_path / "b1_siemens", truth, geometry)
    placed = read_b1_map(folder, geometry, truth.shape, scale=1 / 800)
    np.testing.assert_allclose(placed, np.round(truth * 800) / 800, rtol=1e-9)
    # Without the scale, 10 x degrees is not a unit that can be told: refused, naming the way out.
    with pytest.raises(MRFError, match="median"):
        read_b1_map(folder, geometry, truth.shape)
    # Percent through a Real World Value Mapping in "%": stored = 8 x percent.
    percent = _b1_dicom(tmp_path / "b1_rwvm", truth, geometry, stored_per_relative=800.0, value_map_unit="%")
    np.testing.assert_allclose(read_b1_map(percent, geometry, truth.shape), np.round(truth * 800) / 800, rtol=1e-9)
    # One file of the series is a map of one slice.
    one = read_b1_map(sorted(folder.iterdir())[0], Geometry(**{**vars(geometry), "positions": geometry.positions[2:]}),
                      (1, 12, 10), scale=1 / 800)  # fmt: skip
    np.testing.assert_allclose(one[0], np.round(truth[2] * 800) / 800, rtol=1e-9)
    # The same map on a series of the other slice order: placed by position, not by file order.
    flipped = Geometry(**{**vars(geometry), "positions": geometry.positions[::-1].copy()})
    np.testing.assert_allclose(read_b1_map(folder, flipped, truth.shape, scale=1 / 800)[::-1], placed, rtol=1e-12)


def test_dicom_b1_maps_that_are_not_one_map_are_refused(tmp_path):
    geometry = _oblique_geometry(2)
    truth = np.ones((2, 8, 8))
    mixed = tmp_path / "mixed"
    _b1_dicom(mixed / "a", truth, geometry)
    _b1_dicom(mixed / "b", truth, geometry)  # another series
    with pytest.raises(MRFError, match="2 image series"):
        read_b1_map(mixed, geometry, truth.shape)
    stacked = tmp_path / "stacked"
    uid = "1.2.826.0.1.3680043.8.498.1"
    _b1_dicom(stacked / "a", truth, geometry, uid=uid)
    _b1_dicom(stacked / "b", truth, geometry, uid=uid)  # the same slices twice: a time series, not a map
    with pytest.raises(MRFError, match="one image per slice"):
        read_b1_map(stacked, geometry, truth.shape)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MRFError, match="no DICOM image"):
        read_b1_map(tmp_path / "empty", geometry, truth.shape)
    with pytest.raises(MRFError, match="positive"):
        read_b1_map(mixed / "a", geometry, truth.shape, scale=-1.0)
