"""What other tools make of our files: dcmqi (3D Slicer), dciodvfy (dicom3tools), dcm2niix, SimpleITK; BIDS.

Each tool test is skipped with the reason when the tool is not installed (the dev extra
installs them from the package index). Series are tiny (16 x 20, 3 oblique slices, the
tiny sequence) so that the suite stays fast.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from mrfviewer import pipeline
from mrfviewer.io.dicom_read import load_mrf_folder
from mrfviewer.io.dicom_write import write_mrf_dicom
from mrfviewer.phantoms import knee_phantom
from mrfviewer.series import Geometry
from mrfviewer.synthesis import synthesize_series

OBLIQUE = Geometry(
    pixel_spacing_mm=(0.8, 2 / 3),  # 2/3 prints with 17 digits: decimal strings must be shortened
    slice_thickness_mm=3.0,
    orientation=(0.0, np.cos(0.3), np.sin(0.3), 0.0, -np.sin(0.3), np.cos(0.3)),
    positions=np.array([[-10.0, 5.0, 2.0], [-7.0, 5.0, 2.0], [-4.0, 5.0, 2.0]]),
)


def _tool(name: str) -> str:
    """A command-line tool installed beside this Python (the venv) or on PATH; skip the test otherwise."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install '.[dev]' brings it)")
    return found


@pytest.fixture(scope="module")
def series(tiny_sequence):
    s = synthesize_series(knee_phantom((16, 20), n_slices=3), tiny_sequence, snr=50)
    s.geometry = OBLIQUE
    return s


@pytest.fixture(scope="module", params=["classic", "enhanced"])
def written(request, series, tiny_dictionary, tmp_path_factory):
    """(DICOM folder, maps folder) of the series written in one layout and reconstructed by DM."""
    root = tmp_path_factory.mktemp(request.param)
    write_mrf_dicom(series, root / "dicom", layout=request.param)
    source = pipeline.open_input(root / "dicom", find_labels=False)
    maps = pipeline.run(source, pipeline.DictionaryMatching(tiny_dictionary))
    report = pipeline.export(maps, root / "maps", ("nifti", "dicom"), input=source)
    assert not report.failed, report.failed
    return root / "dicom", root / "maps"


def _itk_affine(image) -> np.ndarray:
    """4 x 4 index -> LPS affine of a SimpleITK image."""
    affine = np.eye(4)
    affine[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return affine


def _lps(nifti: nib.Nifti1Image) -> np.ndarray:
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ nifti.affine


def test_dcmqi_converts_parametric_maps_like_our_nifti(written, tmp_path):
    """paramap2itkimage (the converter behind 3D Slicer) gives our values at our positions."""
    sitk = pytest.importorskip("SimpleITK")
    tool = _tool("paramap2itkimage")
    _, maps = written
    files = sorted((maps / "dicom").glob("*.dcm"))
    assert len(files) == 5
    for dcm in files:
        out = tmp_path / dcm.stem
        out.mkdir()
        run = subprocess.run([tool, "--inputDICOM", str(dcm), "--outputDirectory", str(out)], capture_output=True)
        assert run.returncode == 0, (dcm.name, run.returncode, run.stderr[-500:])
        image = sitk.ReadImage(str(out / "pmap.nrrd"))
        ours = nib.load(maps / f"{dcm.stem}.nii.gz")
        np.testing.assert_allclose(_itk_affine(image), _lps(ours), atol=1e-4)  # NIfTI holds float32 affines
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), np.asarray(ours.dataobj).transpose(2, 1, 0))


def _dciodvfy_errors(tool: str, path: Path) -> list[str]:
    run = subprocess.run([tool, "-allpffgitems", str(path)], capture_output=True, text=True)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def test_dciodvfy_finds_no_errors(written):
    """Source images (classic or Enhanced MR, magnitude and phase) and Parametric Maps pass dciodvfy."""
    tool = _tool("dciodvfy")
    dicom, maps = written
    files = [sorted((dicom / part).glob("*.dcm"))[-1] for part in ("magnitude", "phase")]
    files += sorted((maps / "dicom").glob("*.dcm"))
    for path in files:
        assert _dciodvfy_errors(tool, path) == [], path.name


def test_dcm2niix_reads_our_source_series(written, tmp_path):
    """dcm2niix gives our reader's magnitude images at our reader's positions (both made canonical)."""
    tool = _tool("dcm2niix")
    dicom, _ = written
    run = subprocess.run(
        [tool, "-m", "y", "-z", "n", "-f", "%s", "-o", str(tmp_path), str(dicom / "magnitude")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-500:]
    (converted,) = tmp_path.glob("*.nii")
    theirs = nib.as_closest_canonical(nib.load(converted))
    back = load_mrf_folder(dicom)
    magnitude = np.abs(back.data).transpose(3, 2, 1, 0)  # (X, Y, Z, T)
    ours = nib.as_closest_canonical(nib.Nifti1Image(magnitude, back.geometry.affine_ras(back.data.shape[1])))
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs.affine, ours.affine, atol=1e-4)
    np.testing.assert_allclose(np.asarray(theirs.dataobj), np.asarray(ours.dataobj), rtol=1e-4, atol=1e-6)


def test_simpleitk_reads_our_source_geometry(written):
    """SimpleITK (GDCM) reads the first time point where our reader puts it.

    ITK reads an Enhanced MR object as one stack of all its frames: the first three
    frames are the slices of the first time point, in ascending order along the normal.
    """
    sitk = pytest.importorskip("SimpleITK")
    dicom, _ = written
    back = load_mrf_folder(dicom)
    n_z = back.data.shape[1]
    files = sorted((dicom / "magnitude").glob("*.dcm"))
    if len(files) > 1:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(p) for p in files if "_t0001_" in p.name])
        image = reader.Execute()
    else:
        image = sitk.ReadImage(str(files[0]))
    values = sitk.GetArrayFromImage(image)[:n_z]
    expected = np.abs(back.data[0])
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6 * expected.max())
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ back.geometry.affine_ras(n_z)
    np.testing.assert_allclose(_itk_affine(image), lps, atol=1e-6)


# -- BIDS --------------------------------------------------------------------------------------


def test_bids_layout_of_reconstruct(tmp_path, tiny_files):
    """``--layout bids``: a derivatives dataset with BIDS names, sidecars in CamelCase, times in seconds."""
    from mrfviewer.cli import main

    seq, grid = tiny_files
    dicom = tmp_path / "knee"
    size = ["--size", "16", "--slices", "2"]
    assert main(["-q", "synthesize", "--sequence", str(seq), "--format", "dicom", *size, "--output", str(dicom)]) == 0
    flat, bids = tmp_path / "flat", tmp_path / "bids"
    assert main(["-q", "reconstruct", str(dicom), "--grid", str(grid), "--output", str(flat)]) == 0
    assert main(["-q", "reconstruct", str(dicom), "--grid", str(grid), "--output", str(bids), "--layout", "bids"]) == 0
    description = json.loads((bids / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "mrfviewer"
    subject = pydicom.dcmread(next((dicom / "magnitude").glob("*.dcm"))).PatientID
    anat = bids / f"sub-{subject}" / "anat"
    for flat_stem, suffix, unit, scale in (
        ("T1map", "T1map", "s", 1e-3),
        ("T2map", "T2map", "s", 1e-3),
        ("T1rhomap", "T1rho", "s", 1e-3),
        ("PDmap", "PDmap", "arbitrary", 1.0),
        ("matchmap", "desc-match_T1map", "1", 1.0),
    ):
        path = anat / f"sub-{subject}_{suffix}.nii.gz"
        np.testing.assert_allclose(
            np.asarray(nib.load(path).dataobj),
            np.asarray(nib.load(flat / f"{flat_stem}.nii.gz").dataobj) * scale,
            rtol=1e-6,  # float32 ms / 1000 against float32 s
        )
        info = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        assert info["Units"] == unit
        assert info["MagneticFieldStrength"] == 3.0 and info["Sources"] == [str(dicom)]
        assert {"EstimationAlgorithm", "EstimationReference", "Description"} <= set(info)
        assert all(key[0].isupper() for key in info), sorted(info)
    extra = bids / f"sub-{subject}" / "mrfviewer"
    assert (extra / "roi_stats.csv").exists() and (extra / "dicom" / "T1map.dcm").exists()
    assert "mrfviewer/" in (bids / ".bidsignore").read_text()
    assert not list(bids.glob("*.nii.gz"))  # nothing flat at the dataset root


def test_bids_uncertainty_maps_are_desc_entities_in_seconds(tmp_path, tiny_model, tiny_sequence):
    """NN uncertainty maps: ``desc-uncertainty`` on the parameter's suffix, in seconds like the maps."""
    from mrfviewer.io.bids import BidsLayout

    s = synthesize_series(knee_phantom((16, 16)), tiny_sequence, snr=50)
    source = pipeline.input_from_series(s)
    maps = pipeline.run(source, pipeline.NeuralNetwork(tiny_model))
    layout = BidsLayout(subject="01")
    pipeline.export(maps, tmp_path / "flat", ("nifti",), units="s")
    pipeline.export(maps, tmp_path / "bids", ("nifti",), layout=layout)
    for name, suffix in (
        ("T1uncertaintymap", "desc-uncertainty_T1map"),
        ("T1rhouncertaintymap", "desc-uncertainty_T1rho"),
    ):
        ours = tmp_path / "bids" / "sub-01" / "anat" / f"sub-01_{suffix}"
        flat = tmp_path / "flat" / name
        np.testing.assert_array_equal(
            np.asarray(nib.load(f"{ours}.nii.gz").dataobj), np.asarray(nib.load(f"{flat}.nii.gz").dataobj)
        )
        assert json.loads(Path(f"{ours}.json").read_text())["Units"] == "s"
        assert json.loads(Path(f"{flat}.json").read_text())["Units"] == "s"  # --units s: uncertainty too
