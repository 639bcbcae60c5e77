import json

import nibabel as nib
import numpy as np
import pytest

from mrfviewer.errors import MRFError
from mrfviewer.io.export import export_maps, export_nifti
from mrfviewer.phantoms import CARTILAGE_LABELS, knee_phantom
from mrfviewer.pipeline import input_from_series
from mrfviewer.reconstruction import reconstruct_dm
from mrfviewer.roi import label_statistics, roi_statistics, stats_to_csv
from mrfviewer.series import Geometry
from mrfviewer.settings import ReconstructionSettings
from mrfviewer.synthesis import synthesize_series


@pytest.fixture(scope="module")
def knee_maps(knee_sequence, knee_dictionary):
    ph = knee_phantom((64, 64))
    series = synthesize_series(ph, knee_sequence, snr=200)
    return ph, reconstruct_dm(series, knee_dictionary)


def test_background_is_nan_and_tissue_is_mapped(knee_maps):
    ph, maps = knee_maps
    assert set(maps.values) == {"T1", "T2", "T1rho", "PD", "match"}
    background = ph.labels[0] == 0
    assert np.all(np.isnan(maps.values["T1"][0][background]))
    tissue = ph.labels[0] > 0
    assert maps.mask[0][tissue].mean() > 0.99
    assert np.nanmin(maps.values["match"]) > 0.95
    muscle = ph.labels[0] == 5
    assert np.nanmean(maps.values["PD"][0][muscle]) == pytest.approx(0.75, rel=0.02)
    assert np.all(maps.atom[~maps.mask] == -1) and np.all(maps.atom[maps.mask] >= 0)


def test_dictionary_for_another_sequence_is_refused(tiny_sequence, knee_dictionary):
    series = synthesize_series(knee_phantom((16, 16)), tiny_sequence, snr=None)
    with pytest.raises(MRFError, match="sequence"):
        reconstruct_dm(series, knee_dictionary)


def test_magnitude_series_needs_magnitude_dictionary(knee_sequence, knee_dictionary):
    series = synthesize_series(knee_phantom((16, 16)), knee_sequence, snr=None, magnitude=True)
    with pytest.raises(MRFError, match="magnitude"):
        reconstruct_dm(series, knee_dictionary)


def test_series_without_sequence_and_unknown_method_are_refused(knee_sequence):
    series = synthesize_series(knee_phantom((16, 16)), knee_sequence, snr=None)
    series.sequence = None
    with pytest.raises(MRFError, match="no sequence"):
        input_from_series(series)
    with pytest.raises(MRFError, match="method"):
        ReconstructionSettings(method="xyz").validate()


def test_roi_statistics_match_numpy(knee_maps):
    ph, maps = knee_maps
    roi = ph.labels == 8
    values = maps.values["T2"][roi]
    s = roi_statistics(maps.values["T2"], roi, "MFC", "T2", "ms")
    assert s.n_voxels == np.isfinite(values).sum()
    assert s.mean == pytest.approx(np.nanmean(values))
    assert s.sd == pytest.approx(np.nanstd(values, ddof=1))
    assert s.median == pytest.approx(np.nanmedian(values))
    rows = label_statistics(maps, ph.labels, ph.label_names)
    text = stats_to_csv(rows, maps)
    header = text.splitlines()[0].split(",")
    assert header[:6] == ["label", "map", "unit", "n_voxels", "n_excluded", "mean"]
    assert "medial femoral cartilage,T2,ms" in text


def test_roi_with_only_masked_voxels_reports_exclusions():
    values = np.full((1, 4, 4), np.nan, dtype=np.float32)
    s = roi_statistics(values, np.ones((1, 4, 4), bool), "empty", "T1", "ms")
    assert s.n_voxels == 0 and s.n_excluded == 16 and np.isnan(s.mean)


def test_nifti_export_carries_geometry_units_and_provenance(tmp_path, knee_maps):
    _, maps = knee_maps
    report = export_maps(maps, tmp_path / "out")
    assert not report.failed
    names = {p.name for p in report.files}
    assert {"T1map.nii.gz", "T2map.nii.gz", "T1rhomap.nii.gz", "PDmap.nii.gz", "matchmap.nii.gz", "maps.npz"} <= names
    image = nib.load(tmp_path / "out" / "T2map.nii.gz")
    data = np.asarray(image.dataobj)
    np.testing.assert_array_equal(np.transpose(data, (2, 1, 0)), maps.values["T2"])
    np.testing.assert_allclose(np.abs(np.diag(image.affine))[:2], maps.geometry.pixel_spacing_mm)
    side = json.loads((tmp_path / "out" / "T1map.json").read_text())
    assert side["Units"] == "ms" and side["method"] == "dm"
    assert side["sequence_hash"] == maps.provenance.sequence_hash and side["software_version"]
    assert side["dictionary"]["key"] == maps.provenance.dictionary.key and side["settings"]["refine"] is True
    npz = np.load(tmp_path / "out" / "maps.npz")
    np.testing.assert_array_equal(npz["T1rho"], maps.values["T1rho"])
    # Seconds for BIDS, on request.
    export_nifti(maps, tmp_path / "bids", units="s")
    t1_s = np.asarray(nib.load(tmp_path / "bids" / "T1map.nii.gz").dataobj)
    np.testing.assert_allclose(np.transpose(t1_s, (2, 1, 0)), maps.values["T1"] / 1000, rtol=1e-6)
    assert json.loads((tmp_path / "bids" / "T1map.json").read_text())["Units"] == "s"


def test_export_never_overwrites_without_permission_and_leaves_no_partial_set(tmp_path, knee_maps):
    _, maps = knee_maps
    out = tmp_path / "out"
    out.mkdir()
    (out / "T2map.json").write_text("precious")
    with pytest.raises(MRFError, match="already exists"):
        export_maps(maps, out)
    assert sorted(p.name for p in out.iterdir()) == ["T2map.json"]
    assert (out / "T2map.json").read_text() == "precious"
    export_maps(maps, out, overwrite=True)
    assert (out / "T2map.json").read_text() != "precious"


def test_failed_write_leaves_no_file(tmp_path, knee_maps, monkeypatch):
    import os

    _, maps = knee_maps

    real_replace = os.replace
    for fail_at in (0, 3, 7, 12):  # the disk fills before the first file, or after some were written
        calls = []

        def full_disk(src, dst, fail_at=fail_at, calls=calls):
            # The disk fills while files are written (renaming a finished file needs no space).
            if ".mrfviewer-staging-" in str(dst):
                calls.append(dst)
                if len(calls) > fail_at:
                    raise OSError(28, "No space left on device")
            real_replace(src, dst)

        out = tmp_path / f"out{fail_at}"
        monkeypatch.setattr(os, "replace", full_disk)
        report = export_maps(maps, out)
        monkeypatch.setattr(os, "replace", real_replace)
        # Formats finished before the disk filled are kept whole; the one it hit and those after it
        # are named and leave no file, no temporary and no empty folder.
        assert set(report.written) | set(report.failed) == {"nifti", "npz", "png"}, fail_at
        assert report.failed and all("No space left" in reason for reason in report.failed.values())
        expected = sorted(p.name for paths in report.written.values() for p in paths)
        present = sorted(p.name for p in out.rglob("*") if p.is_file()) if out.exists() else []
        assert present == expected, fail_at
        assert out.exists() == bool(report.written)
    assert not list(tmp_path.glob("out0"))  # the disk full from the first file: nothing at all
    # A folder that existed before stays, with what it held.
    monkeypatch.setattr(os, "replace", real_replace)
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    monkeypatch.setattr(os, "replace", full_disk)
    assert export_maps(maps, tmp_path / "keep").failed
    assert [p.name for p in (tmp_path / "keep").iterdir()] == ["notes.txt"]


def test_a_failing_format_keeps_the_others(tmp_path, knee_maps, monkeypatch):
    """PNG export breaks (as a third-party writer may): NIfTI and npz are written and kept, PNG is named."""
    import mrfviewer.io.png as png

    _, maps = knee_maps

    def broken(*args, **kwargs):
        raise AttributeError("'FileDataset' object has no attribute 'PatientBirthDate'")

    monkeypatch.setattr(png, "export_png", broken)
    report = export_maps(maps, tmp_path / "out")
    assert set(report.failed) == {"png"} and "PatientBirthDate" in report.failed["png"]
    assert set(report.written) == {"nifti", "npz"}
    assert (tmp_path / "out" / "T1map.nii.gz").exists() and not list((tmp_path / "out").glob("*.png"))


def test_oblique_geometry_affine():
    # Rows along +y, columns along +z (a sagittal-like slice), slices along +x.
    geom = Geometry(
        pixel_spacing_mm=(0.5, 0.7),
        slice_thickness_mm=3.0,
        orientation=(0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        positions=np.array([[10.0, -20.0, 30.0], [13.0, -20.0, 30.0]]),
    )
    a = geom.affine_ras(2)
    # Voxel (i=col, j=row, k=slice) -> LPS = pos + i*0.7*row_dir + j*0.5*col_dir + k*slice; RAS flips x, y.
    lps = (
        np.array([10.0, -20.0, 30.0])
        + 2 * 0.7 * np.array([0, 1, 0])
        + 3 * 0.5 * np.array([0, 0, 1])
        + np.array([3, 0, 0])
    )
    ras = lps * [-1, -1, 1]
    np.testing.assert_allclose(a @ [2, 3, 1, 1], [*ras, 1])


def test_cartilage_done_criterion_through_the_cli(tmp_path):
    """synthesize --snr 1000 then reconstruct --method dm: cartilage within 3 % of the truth."""
    from mrfviewer.cli import main

    grid = tmp_path / "grid.json"
    grid.write_text(
        json.dumps(
            {
                a: {"min": lo, "max": hi, "step_percent": 9}
                for a, lo, hi in (("t1_ms", 100, 3000), ("t2_ms", 5, 300), ("t1rho_ms", 5, 300))
            }
        )
    )
    series = tmp_path / "knee.h5"
    assert (
        main(
            [
                "-q",
                "synthesize",
                "--phantom",
                "knee",
                "--ideal",
                "--snr",
                "1000",
                "--size",
                "96",
                "--output",
                str(series),
            ]
        )
        == 0
    )
    out = tmp_path / "maps"
    assert main(["-q", "reconstruct", str(series), "--method", "dm", "--grid", str(grid), "--output", str(out)]) == 0
    ph = knee_phantom((96, 96))
    for label in CARTILAGE_LABELS:
        roi = np.transpose(ph.labels, (2, 1, 0)) == label
        for name, truth in (("T1", ph.t1_ms), ("T2", ph.t2_ms), ("T1rho", ph.t1rho_ms)):
            est = np.asarray(nib.load(out / f"{name}map.nii.gz").dataobj)[roi]
            ref = np.transpose(truth, (2, 1, 0))[roi]
            assert abs(est.mean() / ref.mean() - 1) < 0.03, (label, name)
            assert np.max(np.abs(est / ref - 1)) < 0.05, (label, name)


def test_written_files_get_normal_permissions(tmp_path):
    import os

    from mrfviewer.io.atomic import atomic_write_text

    path = atomic_write_text(tmp_path / "x.txt", "hello")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
