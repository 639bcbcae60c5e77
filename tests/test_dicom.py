"""DICOM in and out: round trips, ordering rules, geometry, Parametric Maps, clear errors."""

import shutil
import warnings
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from mrfviewer.errors import MRFError
from mrfviewer.io.dicom_read import load_mrf_folder, scan_folder
from mrfviewer.io.dicom_write import write_mrf_dicom
from mrfviewer.io.export import export_nifti
from mrfviewer.io.parametric_map import export_parametric_maps, read_parametric_map
from mrfviewer.maps import ParameterMaps
from mrfviewer.phantoms import knee_phantom
from mrfviewer.series import Geometry
from mrfviewer.synthesis import synthesize_series

OBLIQUE = Geometry(
    pixel_spacing_mm=(0.8, 0.6),
    slice_thickness_mm=3.0,
    orientation=(0.0, np.cos(0.3), np.sin(0.3), 0.0, -np.sin(0.3), np.cos(0.3)),
    positions=np.array([[-10.0, 5.0, 2.0], [-7.0, 5.0, 2.0]]),
)


@pytest.fixture(scope="module")
def synthetic(tiny_sequence):
    series = synthesize_series(knee_phantom((16, 20), n_slices=2), tiny_sequence, snr=50)
    series.geometry = OBLIQUE
    return series


def _check_same(back, series):
    assert back.data.shape == series.data.shape and back.is_complex
    scale = np.abs(series.data).max()
    # Quantisation: 16-bit magnitude, 12-bit phase.
    assert np.abs(np.abs(back.data) - np.abs(series.data)).max() < 1e-4 * scale
    strong = np.abs(series.data) > 0.05 * scale
    assert np.abs(np.angle(back.data[strong] * np.conj(series.data[strong]))).max() < 2 * np.pi / 4096
    np.testing.assert_allclose(back.geometry.pixel_spacing_mm, series.geometry.pixel_spacing_mm)
    np.testing.assert_allclose(back.geometry.orientation, series.geometry.orientation, atol=1e-6)
    np.testing.assert_allclose(back.geometry.positions, series.geometry.positions, atol=1e-6)
    assert back.sequence.hash == series.sequence.hash


@pytest.mark.parametrize("layout", ["classic", "enhanced"])
def test_synthesize_read_round_trip(tmp_path, synthetic, layout):
    write_mrf_dicom(synthetic, tmp_path / "mrf", layout=layout)
    back = load_mrf_folder(tmp_path / "mrf")
    _check_same(back, synthetic)
    assert "TemporalPositionIdentifier" in back.description
    assert len(set(back.source_files)) == (2 if layout == "classic" else 1)


def test_file_names_do_not_decide_the_order(tmp_path, synthetic):
    write_mrf_dicom(synthetic, tmp_path / "mrf")
    files = sorted((tmp_path / "mrf" / "magnitude").glob("*.dcm"))
    rng = np.random.default_rng(0)
    names = [f.name for f in files]
    rng.shuffle(names)
    for f, name in zip(files, names, strict=True):
        f.rename(f.with_name("tmp_" + name))
    _check_same(load_mrf_folder(tmp_path / "mrf"), synthetic)


def test_instance_number_orders_when_temporal_tags_are_missing(tmp_path, synthetic):
    write_mrf_dicom(synthetic, tmp_path / "mrf")
    for sub in ("magnitude", "phase"):
        for f in (tmp_path / "mrf" / sub).glob("*.dcm"):
            ds = pydicom.dcmread(f)
            del ds.TemporalPositionIdentifier
            del ds.AcquisitionNumber
            ds.save_as(f)
    back = load_mrf_folder(tmp_path / "mrf")
    _check_same(back, synthetic)
    assert "InstanceNumber" in back.description


def _provenance(series_uid=""):
    from mrfviewer.provenance import InputIdentity, Provenance
    from mrfviewer.settings import ReconstructionSettings

    return Provenance("dm", "test", "0" * 16, ReconstructionSettings(), InputIdentity(series_uid=series_uid))


def test_nifti_affine_matches_dicom_geometry(tmp_path, synthetic):
    write_mrf_dicom(synthetic, tmp_path / "mrf")
    back = load_mrf_folder(tmp_path / "mrf")
    maps = ParameterMaps(
        {"T1": np.zeros((2, 16, 20), np.float32)}, np.ones((2, 16, 20), bool), _provenance(), geometry=back.geometry
    )
    export_nifti(maps, tmp_path / "out")
    affine = nib.load(tmp_path / "out" / "T1map.nii.gz").affine
    # Pixel (row 3, column 5) of slice 2, from the DICOM header of that image, in LPS:
    ds = pydicom.dcmread(sorted((tmp_path / "mrf" / "magnitude").glob("IM_t0001_z02.dcm"))[0])
    ipp, iop = np.array(ds.ImagePositionPatient), np.array(ds.ImageOrientationPatient)
    row_spacing, col_spacing = map(float, ds.PixelSpacing)
    lps = ipp + 5 * col_spacing * iop[:3] + 3 * row_spacing * iop[3:]
    np.testing.assert_allclose(affine @ [5, 3, 1, 1], [-lps[0], -lps[1], lps[2], 1], atol=1e-6)


def test_parametric_map_round_trip(tmp_path, synthetic):
    write_mrf_dicom(synthetic, tmp_path / "mrf")
    back = load_mrf_folder(tmp_path / "mrf")
    rng = np.random.default_rng(0)
    t1 = (rng.random((2, 16, 20)) * 2000 + 100).astype(np.float32)
    t1[0, 0, 0] = np.nan
    maps = ParameterMaps({"T1": t1}, np.isfinite(t1), _provenance(back.uid), geometry=back.geometry)
    (path,) = export_parametric_maps(maps, back.source_files, tmp_path / "pm")
    values, positions, unit = read_parametric_map(path)
    np.testing.assert_array_equal(values, t1)
    np.testing.assert_allclose(positions, OBLIQUE.positions, atol=1e-5)
    assert unit == "ms"
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == back.uid
    assert isinstance(hd.pm.ParametricMap.from_dataset(ds), hd.pm.ParametricMap)


def test_pydicom_mr_small_is_recognised_but_not_mrf(tmp_path):
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "MR_small.dcm")
    shutil.copy(get_testdata_file("rtdose.dcm"), tmp_path / "rtdose.dcm")
    (tmp_path / "notes.txt").write_text("not dicom")
    (tmp_path / "random.dcm").write_bytes(np.random.default_rng(0).bytes(500))
    scan = scan_folder(tmp_path)
    assert len(scan.series) == 2 and len(scan.skipped) == 2
    checks = {info.first.modality: info.mrf_check() for info in scan.series.values()}
    assert checks["MR"] == (False, "1 image: not an MRF time series (needs at least 50 or a mrf_sequence.json)")
    assert checks["RTDOSE"][0] is False and "not MR" in checks["RTDOSE"][1]
    with pytest.raises(MRFError, match="no MRF series"):
        load_mrf_folder(tmp_path)


def test_duplicated_time_points_are_an_error(tmp_path, synthetic):
    write_mrf_dicom(synthetic, tmp_path / "mrf")
    folder = tmp_path / "mrf" / "magnitude"
    ds = pydicom.dcmread(folder / "IM_t0002_z01.dcm")
    ds.TemporalPositionIdentifier = 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1
    ds.save_as(folder / "IM_t0002_z01.dcm")
    with pytest.raises(MRFError, match=r"duplicated time point .*IM_t000[12]_z01.dcm"):
        load_mrf_folder(tmp_path / "mrf")


def test_missing_time_point_is_an_error(tmp_path, synthetic):
    write_mrf_dicom(synthetic, tmp_path / "mrf")
    (tmp_path / "mrf" / "magnitude" / "IM_t0007_z02.dcm").unlink()
    with pytest.raises(MRFError, match="different numbers of images"):
        load_mrf_folder(tmp_path / "mrf" / "magnitude")


def test_inconsistent_sizes_and_missing_pixels(tmp_path, synthetic):
    write_mrf_dicom(synthetic, tmp_path / "mrf")
    folder = tmp_path / "mrf" / "magnitude"
    ds = pydicom.dcmread(folder / "IM_t0003_z01.dcm")
    ds.Rows = 8
    ds.PixelData = ds.PixelData[: 8 * 20 * 2]
    ds.save_as(folder / "IM_t0003_z01.dcm")
    with pytest.raises(MRFError, match="different sizes"):
        load_mrf_folder(folder)


def test_mixed_series_in_one_folder_need_a_choice(tmp_path, synthetic, tiny_sequence):
    write_mrf_dicom(synthetic, tmp_path / "a")
    other = synthesize_series(knee_phantom((16, 20)), tiny_sequence, snr=None, with_coil_phase=False)
    write_mrf_dicom(other, tmp_path / "b")
    with pytest.raises(MRFError, match="holds 2 MRF series; choose one with --series"):
        load_mrf_folder(tmp_path)
    uid = scan_folder(tmp_path / "b").mrf_series()[0].uid
    chosen = load_mrf_folder(tmp_path, series_uid=uid)
    assert chosen.data.shape[1] == 1


def test_sequence_with_other_time_point_count_is_refused(tmp_path, synthetic, knee_sequence):
    write_mrf_dicom(synthetic, tmp_path / "mrf")
    with pytest.raises(MRFError, match="has 100 time points but the sequence 'knee_t1_t2_t1rho' has 1750"):
        load_mrf_folder(tmp_path / "mrf", sequence=knee_sequence)


def test_synthetic_patient_is_never_real(tmp_path, synthetic):
    write_mrf_dicom(synthetic, tmp_path / "mrf")
    ds = pydicom.dcmread(next((tmp_path / "mrf" / "magnitude").glob("*.dcm")))
    assert str(ds.PatientName) == "MRFVIEWER^SYNTHETIC"
    assert ds.ImageType[2] == "M" and ds.NumberOfTemporalPositions == 100
    assert (tmp_path / "mrf" / "phase" / "mrf_sequence.json").exists()


def test_dicom_reconstruct_through_the_cli(tmp_path, tiny_files):
    from mrfviewer.cli import main

    seq, grid = tiny_files
    folder = tmp_path / "dicom"
    assert (
        main(["-q", "synthesize", "--sequence", str(seq), "--format", "dicom", "--size", "24", "--output", str(folder)])
        == 0
    )
    out = tmp_path / "maps"
    assert main(["-q", "reconstruct", str(folder), "--grid", str(grid), "--output", str(out)]) == 0
    for name in ("T1map.nii.gz", "T1map.png", "dicom/T1map.dcm", "roi_stats.csv"):
        assert (out / name).exists(), name
    text = (out / "roi_stats.csv").read_text()
    assert "medial femoral cartilage,T1,ms" in text


def test_dicom_seg_labels_are_placed_by_position(tmp_path, synthetic):
    from highdicom.seg import Segmentation, SegmentDescription
    from pydicom.sr.codedict import codes

    from mrfviewer.io.labels import read_label_map

    write_mrf_dicom(synthetic, tmp_path / "mrf")
    back = load_mrf_folder(tmp_path / "mrf")
    # A SEG drawn on time point 5 (any time point must do).
    sources = [pydicom.dcmread(tmp_path / "mrf" / "magnitude" / f"IM_t0005_z{z:02d}.dcm") for z in (1, 2)]
    labels = np.zeros((2, 16, 20), dtype=np.uint8)
    labels[0, 2:6, 3:9] = 1
    labels[1, 8:12, 10:15] = 2
    descriptions = [
        SegmentDescription(i, name, codes.SCT.Tissue, codes.SCT.Tissue, "MANUAL")
        for i, name in ((1, "lesion A"), (2, "lesion B"))
    ]
    seg = Segmentation(
        sources,
        labels,
        "BINARY",
        descriptions,
        pydicom.uid.generate_uid(),
        50,
        pydicom.uid.generate_uid(),
        1,
        "test",
        "test",
        "1",
        "1",
    )
    seg.save_as(tmp_path / "seg.dcm")
    got = read_label_map(tmp_path / "seg.dcm", back.geometry, back.spatial_shape)
    np.testing.assert_array_equal(got.values, labels)
    assert got.names == {1: "lesion A", 2: "lesion B"}
    with pytest.raises(MRFError, match="not a DICOM Segmentation"):
        read_label_map(sources[0].filename, back.geometry, back.spatial_shape)


@pytest.mark.parametrize(
    "change",
    ["none", "signed", "implicit_vr", "signed_12_bits", "rle_compressed"],
)
def test_raw_pixel_reads_equal_pydicom_decoding(tmp_path, change):
    """Native pixel data are read straight from the file; anything unusual goes through pydicom."""
    from mrfviewer.io.dicom_read import _read_pixels, read_header

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))  # 64 x 64, signed 16 bit, explicit VR LE
    ds.PixelRepresentation = 0 if change == "none" else ds.PixelRepresentation
    if change == "signed_12_bits":
        ds.BitsStored, ds.HighBit = 12, 11
    path = tmp_path / "im.dcm"
    if change == "implicit_vr":
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
    elif change == "rle_compressed":
        ds.compress(pydicom.uid.RLELossless)
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, enforce_file_format=True)
    (record,) = read_header(path)
    native = change in ("none", "signed", "implicit_vr")
    assert (record.pixel_offset is not None) == native
    ours = _read_pixels([[record]], (1, 1, 64, 64))[0, 0]
    reference = pydicom.dcmread(path).pixel_array.astype(np.float32) * record.slope + record.intercept
    np.testing.assert_array_equal(ours, reference)


def test_truncated_native_pixel_data_is_a_clear_error(tmp_path, synthetic):
    write_mrf_dicom(synthetic, tmp_path / "d")
    victim = sorted((tmp_path / "d" / "magnitude").glob("*.dcm"))[3]
    scan = scan_folder(tmp_path / "d")
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(MRFError, match="end early|cannot read"):
        load_mrf_folder(tmp_path / "d", scan=scan)


def _header_variants(tmp_path):
    """Files whose header values exercise every branch of the scan's raw decoding."""
    charset_dir = Path(pydicom.__file__).parent / "data" / "charset_files"
    yield from sorted(charset_dir.glob("chr*.dcm"))  # ISO 2022 escapes, Latin-1, UTF-8, Korean...
    for change in ("plain", "implicit_vr", "padding_and_multiple_values", "empty_values", "latin1"):
        ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
        if change == "padding_and_multiple_values":
            ds.SeriesDescription = " knee MRF  "
            ds.StudyDescription = "left\\right"
            ds.PatientName = "Doe^Jane^^Dr.=ideo^graphic "
            ds.ImagePositionPatient = ["-10.5", "2.25 ", "1e1"]
            ds.AcquisitionTime = "101530.25 "
        if change == "empty_values":
            for keyword in ("SeriesDescription", "SliceThickness", "InstanceNumber", "PatientName", "ImageType"):
                setattr(ds, keyword, "")
        if change == "latin1":
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.PatientName = "Müller^Jürgen"
            ds.SeriesDescription = "Knie rechts, Ölbad"
        if change == "implicit_vr":
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        path = tmp_path / f"{change}.dcm"
        ds.save_as(path, enforce_file_format=True)
        yield path


def _as_text(value):
    if isinstance(value, list | pydicom.multival.MultiValue):
        return [str(v) for v in value]
    return None if value is None else str(value)


def test_scan_decodes_header_values_as_pydicom_does(tmp_path):
    """The scan's raw decoding (half of the scan time saved) agrees with pydicom's conversion."""
    from mrfviewer.io.dicom_read import _HEADER_TAGS, _fast_get, _records

    paths = list(_header_variants(tmp_path))
    assert len(paths) > 15
    for path in paths:
        ours = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
        reference = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
        for keyword in _HEADER_TAGS:
            if keyword.endswith("Sequence"):
                continue
            fast, slow = _fast_get(ours, keyword), reference.get(keyword)
            if isinstance(slow, int) and not isinstance(slow, bool):
                assert fast == slow, (path.name, keyword)
            else:
                assert _as_text(fast) == _as_text(slow), (path.name, keyword, fast, slow)
        if "Rows" in reference:
            assert _records(path, ours, True) == _records(path, reference, True, get=reference.get)


# -- hostile and real-world headers ------------------------------------------------------------


def _reconstruct_message(folder, tiny_files, tmp_path, capsys):
    """Exit code and the stderr lines of ``mrfviewer reconstruct folder`` (fails before any dictionary)."""
    from mrfviewer.cli import main

    _, grid = tiny_files
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        code = main(["-q", "reconstruct", str(folder), "--grid", str(grid), "--output", str(out)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert not leaked, [str(w.message) for w in leaked]
    assert not out.exists()
    return code, lines


@pytest.mark.parametrize(
    ("keyword", "value", "field"),
    [
        ("PixelSpacing", "0\\0", "PixelSpacing"),
        ("PixelSpacing", "0.8", "PixelSpacing"),
        ("PixelSpacing", "-0.8\\0.6", "PixelSpacing"),
        ("SliceThickness", "-3", "SliceThickness"),
        ("ImagePositionPatient", "0\\0\\1e308", "ImagePositionPatient"),
        ("ImagePositionPatient", "-1e308\\0\\0", "ImagePositionPatient"),
        ("ImageOrientationPatient", "2\\0\\0\\0\\1\\0", "ImageOrientationPatient"),
        ("ImageOrientationPatient", "1\\0\\0\\1\\0\\0", "ImageOrientationPatient"),
        ("BitsStored", 0, "BitsStored"),
        ("BitsStored", 40, "BitsStored"),
        ("HighBit", 40, "HighBit"),
        ("PhotometricInterpretation", "PALETTE COLOR", "PALETTE COLOR"),
        ("RescaleSlope", "1e39", "RescaleSlope"),
        ("RescaleSlope", "0", "RescaleSlope"),
    ],
)
def test_hostile_header_values_are_one_line_errors(tmp_path, synthetic, tiny_files, capsys, keyword, value, field):
    write_mrf_dicom(synthetic, tmp_path / "mrf")
    victim = tmp_path / "mrf" / "magnitude" / "IM_t0003_z02.dcm"
    ds = pydicom.dcmread(victim)
    setattr(ds, keyword, value)
    ds.save_as(victim)
    code, lines = _reconstruct_message(tmp_path / "mrf", tiny_files, tmp_path, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert victim.name in lines[0] and field in lines[0]


def test_signed_phase_and_rescale_are_kept(tmp_path, synthetic):
    """Phase stored as signed values (-2048..2047, no rescale) reads as the unsigned vendor convention does."""
    write_mrf_dicom(synthetic, tmp_path / "mrf")
    for path in (tmp_path / "mrf" / "phase").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        signed = ds.pixel_array.astype(np.int16) - 2048
        ds.PixelRepresentation = 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        ds.PixelData = signed.tobytes()
        ds.save_as(path)
    _check_same(load_mrf_folder(tmp_path / "mrf"), synthetic)


def test_phase_rules():
    from mrfviewer.io.dicom_read import phase_of_stored

    def record(**kwargs):
        (r,) = _header_records()
        for k, v in kwargs.items():
            setattr(r, k, v)
        return r

    stored = np.array([0, 1024, 2048, 4095])
    siemens = phase_of_stored(record(bits_stored=12, signed=False, slope=2.0, intercept=-4096.0), stored)
    np.testing.assert_allclose(siemens, (stored * 2 - 4096) / 4096 * np.pi)
    signed = phase_of_stored(record(bits_stored=12, signed=True, slope=1.0, intercept=0.0), np.array([-2048, 0, 1024]))
    np.testing.assert_allclose(signed, [-np.pi, 0, np.pi / 2])
    radians = record(
        bits_stored=12, signed=False, slope=2.0, intercept=-4096.0, value_map=(np.pi / 2048, -np.pi, "rad")
    )
    np.testing.assert_allclose(phase_of_stored(radians, stored), stored * np.pi / 2048 - np.pi)
    degrees = record(bits_stored=16, signed=True, slope=0.01, intercept=0.0, rescale_type="deg")
    np.testing.assert_allclose(phase_of_stored(degrees, np.array([9000, -18000])), [np.pi / 2, -np.pi])


def _header_records():
    from mrfviewer.io.dicom_read import read_header

    return read_header(Path(get_testdata_file("MR_small.dcm")))


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEG2000Lossless", "JPEGLSLossless"])
def test_compressed_series_are_found_and_decoded(tmp_path, synthetic, syntax):
    """Compressed pixel data are recognised from the header (not the file size) and decoded."""
    uid = getattr(pydicom.uid, syntax)
    write_mrf_dicom(synthetic, tmp_path / "mrf")
    reference = load_mrf_folder(tmp_path / "mrf")
    for path in (tmp_path / "mrf").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        try:
            ds.compress(uid)
        except RuntimeError as exc:  # no encoder plugin installed for this syntax
            pytest.skip(f"cannot encode {uid.name}: {exc}")
        ds.save_as(path)
    back = load_mrf_folder(tmp_path / "mrf")
    np.testing.assert_array_equal(back.data, reference.data)


def test_missing_decoder_is_named_in_one_line(tmp_path, synthetic, tiny_files, capsys, monkeypatch):
    import pydicom.pixels

    write_mrf_dicom(synthetic, tmp_path / "mrf")
    for path in (tmp_path / "mrf").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.compress(pydicom.uid.RLELossless)
        ds.save_as(path)

    class Unavailable:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-rle>=2.0"]

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: Unavailable())
    code, lines = _reconstruct_message(tmp_path / "mrf", tiny_files, tmp_path, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert "RLE Lossless" in lines[0] and "pylibjpeg-rle" in lines[0]


def _testdata(name):
    path = get_testdata_file(name, download=False)  # never the network
    if path is None:
        pytest.skip(f"{name} is not installed (pydicom-data)")
    return Path(path)


def _as_time_series(source, folder, n, modality=None):
    """``n`` copies of one image as time points of a series (the real file's pixel data and encoding kept)."""
    from tests.conftest import make_tiny_sequence

    folder.mkdir(parents=True)
    for t in range(n):
        ds = pydicom.dcmread(source)
        ds.TemporalPositionIdentifier = t + 1
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        if modality:
            ds.Modality = modality
        ds.save_as(folder / f"t{t:02d}.dcm")
    make_tiny_sequence(n_fisp=n - 3, n_flash=1).save(folder / "mrf_sequence.json")
    return folder


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_jp2klossless.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR-SIEMENS-DICOM-WithOverlays.dcm",
        "MR2_J2KI.dcm",
        "MR2_J2KR.dcm",
    ],
)
def test_real_mr_files_read_correctly(tmp_path, name):
    """pydicom's (and pydicom-data's) MR files, compressed or not, as time points of a series: pydicom's values."""
    from mrfviewer.io.dicom_read import find_mrf_series, plan_series

    source = _testdata(name) if name.startswith("MR2") else Path(get_testdata_file(name))
    folder = _as_time_series(source, tmp_path / "series", 5)
    plan = plan_series(find_mrf_series(folder))
    ds = pydicom.dcmread(source)
    expected = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    data = plan.read()
    assert data.shape == (5, 1, *expected.shape)
    np.testing.assert_allclose(data[3, 0], expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "modality", "says"),
    [
        ("emri_small.dcm", None, "10 frames without per-frame functional groups"),
        ("emri_small_jpeg_2k_lossless.dcm", None, "10 frames without per-frame functional groups"),
        ("emri_small_big_endian.dcm", None, "10 frames without per-frame functional groups"),
        ("SC_rgb_jpeg.dcm", None, "modality OT"),  # pydicom warns on reading it; the header cannot be re-saved
        ("SC_rgb_small_odd_jpeg.dcm", "MR", "colour image"),
        ("OBXXXX1A.dcm", "MR", "colour image"),
        ("JPEG-LL.dcm", None, "modality NM"),
        ("liver.dcm", None, "modality SEG"),
        ("MR_truncated.dcm", "MR", "the pixel data of t00.dcm"),
        ("emri_small_jpeg_2k_lossless_too_short.dcm", None, "frames without per-frame"),
    ],
)
def test_real_files_that_cannot_be_mrf_say_why_in_one_line(tmp_path, tiny_files, capsys, name, modality, says):
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed (pydicom-data)")
    if modality is None:  # the file as it is (some cannot be re-saved), with a sequence sidecar
        folder = tmp_path / "series"
        folder.mkdir()
        shutil.copy(path, folder / name)
        shutil.copy(tiny_files[0], folder / "mrf_sequence.json")
    else:
        folder = _as_time_series(Path(path), tmp_path / "series", 5, modality)
    code, lines = _reconstruct_message(folder, tiny_files, tmp_path, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert says in lines[0] and lines[0].startswith("mrfviewer: error:")
