"""Label maps are placed by geometry, found by one rule, and read from NIfTI and every DICOM SEG type."""

import csv

import nibabel as nib
import numpy as np
import pydicom
import pytest

from mrfviewer.cli import main
from mrfviewer.errors import MRFError
from mrfviewer.io.dicom_write import write_mrf_dicom
from mrfviewer.io.labels import discover_labels, names_path, read_label_map, write_label_map
from mrfviewer.phantoms import knee_phantom
from mrfviewer.series import Geometry
from mrfviewer.synthesis import synthesize_series

# An oblique, two-slice geometry: a label map has to follow the affine, not the array shape.
OBLIQUE = Geometry(
    pixel_spacing_mm=(0.8, 0.6),
    slice_thickness_mm=3.0,
    orientation=(0.0, np.cos(0.3), np.sin(0.3), 0.0, -np.sin(0.3), np.cos(0.3)),
    positions=np.array([[-10.0, 5.0, 2.0], [-7.0, 5.0, 2.0]]),
)
SHAPE = (2, 16, 20)


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.int16)
    labels[0, 2:6, 3:9] = 1
    labels[1, 8:12, 10:15] = 2
    labels[1, 0, 0] = 3  # a corner voxel: an off-by-one flip would move it
    return labels


def _save(data_xyz: np.ndarray, affine: np.ndarray, path) -> None:
    nib.save(nib.Nifti1Image(data_xyz.astype(np.int16), affine), path)


def test_the_same_grid_is_read_back_exactly(tmp_path):
    labels = _labels()
    path = write_label_map(labels, {1: "a", 2: "b"}, tmp_path / "l.nii.gz", OBLIQUE.affine_ras(2))
    got = read_label_map(path, OBLIQUE, SHAPE)
    np.testing.assert_array_equal(got.values, labels)
    assert got.names == {1: "a", 2: "b"} and got.note == ""


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_label_names_survive_both_nifti_suffixes(tmp_path, suffix):
    path = write_label_map(_labels(), {1: "femur"}, tmp_path / f"labels{suffix}", OBLIQUE.affine_ras(2))
    assert names_path(path).name == "labels.json"
    assert read_label_map(path, OBLIQUE, SHAPE).names == {1: "femur"}


@pytest.mark.parametrize("order", ["rows bottom-up", "columns reversed", "slices reversed", "x and y swapped"])
def test_another_voxel_order_with_a_consistent_affine_gives_the_same_labels(tmp_path, order):
    labels = _labels()
    data = np.transpose(labels, (2, 1, 0))  # (x, y, z) as NIfTI stores it
    affine = OBLIQUE.affine_ras(2)
    flip = np.eye(4)
    if order == "rows bottom-up":
        data, flip[1, 1], flip[1, 3] = data[:, ::-1], -1, data.shape[1] - 1
    elif order == "columns reversed":
        data, flip[0, 0], flip[0, 3] = data[::-1], -1, data.shape[0] - 1
    elif order == "slices reversed":
        data, flip[2, 2], flip[2, 3] = data[:, :, ::-1], -1, data.shape[2] - 1
    else:
        data, flip = np.transpose(data, (1, 0, 2)), np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    _save(data, affine @ flip, tmp_path / "other.nii.gz")
    got = read_label_map(tmp_path / "other.nii.gz", OBLIQUE, SHAPE)
    np.testing.assert_array_equal(got.values, labels)


def test_a_finer_grid_is_resampled_by_nearest_neighbour(tmp_path):
    labels = _labels()
    fine = np.repeat(np.repeat(np.transpose(labels, (2, 1, 0)), 2, axis=0), 2, axis=1)  # half the pixel size
    affine = OBLIQUE.affine_ras(2).copy()
    affine[:3, :2] /= 2
    # Voxel centres of the fine grid sit a quarter of a coarse pixel before the coarse centres.
    affine[:3, 3] -= (affine[:3, 0] + affine[:3, 1]) / 2
    _save(fine, affine, tmp_path / "fine.nii.gz")
    got = read_label_map(tmp_path / "fine.nii.gz", OBLIQUE, SHAPE)
    np.testing.assert_array_equal(got.values, labels)
    assert "resampled" in got.note


def test_a_shifted_label_map_is_refused_naming_both_geometries(tmp_path):
    affine = OBLIQUE.affine_ras(2).copy()
    affine[0, 3] += 50.0  # 50 mm off
    _save(np.transpose(_labels(), (2, 1, 0)), affine, tmp_path / "shifted.nii.gz")
    with pytest.raises(MRFError) as info:
        read_label_map(tmp_path / "shifted.nii.gz", OBLIQUE, SHAPE)
    message = str(info.value)
    assert "does not lie on the series" in message and "shifted.nii.gz" in message
    assert "series grid 20x16x2" in message and "origin" in message


def test_a_rotated_label_map_is_refused(tmp_path):
    angle = np.deg2rad(20)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    _save(np.transpose(_labels(), (2, 1, 0)), rotation @ OBLIQUE.affine_ras(2), tmp_path / "rotated.nii.gz")
    with pytest.raises(MRFError, match="rotated by 20.0 degrees"):
        read_label_map(tmp_path / "rotated.nii.gz", OBLIQUE, SHAPE)


def test_non_integer_and_huge_label_maps_are_refused(tmp_path):
    affine = OBLIQUE.affine_ras(2)
    nib.save(nib.Nifti1Image(np.full((20, 16, 2), 0.5, np.float32), affine), tmp_path / "float.nii.gz")
    with pytest.raises(MRFError, match="integer labels"):
        read_label_map(tmp_path / "float.nii.gz", OBLIQUE, SHAPE)
    header = nib.Nifti1Header()
    header.set_data_shape((1200, 1200, 200))
    header.set_data_dtype(np.float64)
    image = nib.Nifti1Image(np.zeros((1, 1, 1)), affine, header)
    image.header.set_data_shape((1200, 1200, 200))
    with open(tmp_path / "huge.nii", "wb") as fh:  # the header declares 2.3 GB; the file is tiny
        fh.write(image.header.binaryblock + b"\0" * 4)
    with pytest.raises(MRFError, match="too large"):
        read_label_map(tmp_path / "huge.nii", OBLIQUE, SHAPE)


def _seg(tmp_path, seg_type, frames_from):
    from highdicom.seg import Segmentation, SegmentDescription
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(frames_from / f"IM_t0003_z{z:02d}.dcm") for z in (1, 2)]
    labels = _labels().astype(np.uint8)
    descriptions = [
        SegmentDescription(i, name, codes.SCT.Tissue, codes.SCT.Tissue, "MANUAL")
        for i, name in ((1, "lesion A"), (2, "lesion B"), (3, "corner"))
    ]
    uid = pydicom.uid.generate_uid
    seg = Segmentation(sources, labels, seg_type, descriptions, uid(), 50, uid(), 1, "test", "test", "1", "1")
    seg.save_as(tmp_path / f"{seg_type}.dcm")
    return tmp_path / f"{seg_type}.dcm", labels


@pytest.mark.parametrize("seg_type", ["BINARY", "FRACTIONAL", "LABELMAP"])
def test_every_dicom_seg_type_is_placed_by_its_frames(tmp_path, tiny_sequence, seg_type):
    from mrfviewer.io.dicom_read import load_mrf_folder

    series = synthesize_series(knee_phantom((16, 20), n_slices=2), tiny_sequence, snr=50)
    series.geometry = OBLIQUE
    write_mrf_dicom(series, tmp_path / "mrf")
    back = load_mrf_folder(tmp_path / "mrf")
    path, labels = _seg(tmp_path, seg_type, tmp_path / "mrf" / "magnitude")
    got = read_label_map(path, back.geometry, back.spatial_shape)
    np.testing.assert_array_equal(got.values, labels)
    assert got.names == {1: "lesion A", 2: "lesion B", 3: "corner"}


def test_one_discovery_rule(tmp_path):
    (tmp_path / "study" / "magnitude").mkdir(parents=True)
    (tmp_path / "study" / "labels.nii.gz").write_bytes(b"")
    series = tmp_path / "study" / "magnitude"
    assert discover_labels(series, tmp_path / "study") == tmp_path / "study" / "labels.nii.gz"
    assert discover_labels(series, series) is None  # never above the folder the user gave
    (series / "labels.nii").write_bytes(b"")
    assert discover_labels(series, tmp_path) == series / "labels.nii"  # the series folder first
    h5 = tmp_path / "h5"
    h5.mkdir()
    (h5 / "s.h5").write_bytes(b"")
    (h5 / "labels.nii.gz").write_bytes(b"")
    assert discover_labels(h5 / "s.h5") == h5 / "labels.nii.gz"
    (h5 / "s_labels.nii.gz").write_bytes(b"")
    assert discover_labels(h5 / "s.h5") == h5 / "s_labels.nii.gz"


def _roi_means(path):
    with open(path, newline="") as fh:
        return {(r["label"], r["map"]): float(r["mean"]) for r in csv.DictReader(fh)}


def test_reconstruct_batch_and_evaluate_find_labels_beside_magnitude_and_phase(tmp_path, tiny_files):
    """``synthesize --format dicom`` puts labels.nii.gz beside magnitude/ and phase/: every front-end
    finds it there, and a label map stored bottom-up gives the same ROI statistics."""
    seq, grid = tiny_files
    cohort = tmp_path / "cohort"
    args = ["-q", "synthesize", "--sequence", str(seq), "--format", "dicom", "--size", "24", "--snr", "80"]
    assert main([*args, "--output", str(cohort / "sub-01")]) == 0
    series = cohort / "sub-01"
    assert main(["-q", "reconstruct", str(series), "--grid", str(grid), "--output", str(tmp_path / "r")]) == 0
    reference = _roi_means(tmp_path / "r" / "roi_stats.csv")
    assert ("medial femoral cartilage", "T1") in reference
    out = tmp_path / "b"
    assert main(["-q", "batch", str(cohort), "--grid", str(grid), "--output", str(out), "--workers", "1"]) == 0
    with open(out / "cohort_summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["label"] for r in rows} >= {"medial femoral cartilage", "muscle"}
    # The same labels stored bottom-up, with the affine that says so.
    image = nib.load(series / "labels.nii.gz")
    data = np.asarray(image.dataobj)[:, ::-1]
    flip = np.eye(4)
    flip[1, 1], flip[1, 3] = -1, data.shape[1] - 1
    nib.save(nib.Nifti1Image(data, image.affine @ flip), tmp_path / "flipped.nii.gz")
    (tmp_path / "flipped.json").write_text((series / "labels.json").read_text())
    assert (
        main(
            ["-q", "reconstruct", str(series), "--grid", str(grid), "--labels", str(tmp_path / "flipped.nii.gz")]
            + ["--output", str(tmp_path / "f")]
        )
        == 0
    )
    assert _roi_means(tmp_path / "f" / "roi_stats.csv") == reference
    # 50 mm off: refused before any reconstruction, one line.
    shifted = image.affine.copy()
    shifted[0, 3] += 50
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), shifted), tmp_path / "shifted.nii.gz")
    code = main(
        ["-q", "reconstruct", str(series), "--grid", str(grid), "--labels", str(tmp_path / "shifted.nii.gz")]
        + ["--output", str(tmp_path / "s")]
    )
    assert code == 2 and not (tmp_path / "s").exists()
