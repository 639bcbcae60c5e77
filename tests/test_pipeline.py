"""The one road: inputs checked before the long work, tolerant exports, typed provenance, progress."""

import io
import json
import time

import highdicom as hd
import numpy as np
import pydicom
import pytest

from mrfviewer import pipeline
from mrfviewer.cli import main
from mrfviewer.dictionary import cache_dir, save_dictionary
from mrfviewer.errors import MRFError
from mrfviewer.io.dicom_write import write_mrf_dicom
from mrfviewer.phantoms import knee_phantom
from mrfviewer.progress import progress_reporter
from mrfviewer.synthesis import synthesize_series

TYPE2 = (
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
)


def _strip(folder, keywords):
    for path in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        for keyword in keywords:
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(path)


@pytest.fixture
def dicom_series(tmp_path, tiny_sequence, tiny_dictionary):
    series = synthesize_series(knee_phantom((16, 16)), tiny_sequence, snr=100)
    write_mrf_dicom(series, tmp_path / "dcm")
    return tmp_path / "dcm", save_dictionary(tiny_dictionary, tmp_path / "dict.h5")


@pytest.mark.parametrize(
    "missing", [TYPE2, (*TYPE2, "PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID")]
)
def test_anonymised_dicom_gives_every_export(tmp_path, dicom_series, missing):
    folder, dictionary = dicom_series
    _strip(folder, missing)
    out = tmp_path / "out"
    assert main(["-q", "reconstruct", str(folder), "--dictionary", str(dictionary), "--output", str(out)]) == 0
    for name in ("T1map.nii.gz", "T1map.png", "maps.npz", "dicom/T1map.dcm", "dicom/PDmap.dcm"):
        assert (out / name).exists(), name
    side = json.loads((out / "T1map.json").read_text())
    pm = pydicom.dcmread(out / "dicom" / "T1map.dcm")
    assert isinstance(hd.pm.ParametricMap.from_dataset(pm), hd.pm.ParametricMap)
    assert pm.PatientBirthDate == "" and pm.StudyID == ""
    generated = side["input"]["generated_uids"]
    if "SeriesInstanceUID" in missing:
        assert set(generated) >= {"SeriesInstanceUID", "StudyInstanceUID"}
        # The maps reference the UIDs the series was read with, and they are recorded in the sidecar.
        assert pm.ReferencedSeriesSequence[0].SeriesInstanceUID == generated["SeriesInstanceUID"]
        assert pm.StudyInstanceUID == generated["StudyInstanceUID"] == side["input"]["study_uid"]
        # ... and the same UIDs again on a second read (derived from the location, not random).
        again = pipeline.open_input(folder)
        assert again.identity.generated_uids["SeriesInstanceUID"] == generated["SeriesInstanceUID"]
    else:
        assert generated == {}


def test_provenance_is_typed_and_reaches_the_sidecars(tmp_path, dicom_series):
    folder, dictionary = dicom_series
    source = pipeline.open_input(folder)
    choice = pipeline.EstimatorChoice(dictionary_file=dictionary)
    maps, estimator = pipeline.reconstruct_input(source, choice)
    prov = maps.provenance
    assert prov.method == "dm" and prov.dictionary is not None and prov.model is None
    assert prov.sequence_hash == source.sequence.hash and prov.input.kind == "dicom"
    assert prov.input.series_uid == source.identity.series_uid and prov.input.path == str(folder)
    assert prov.settings.refine and prov.seconds > 0 and prov.matching_seconds > 0
    report = pipeline.export(maps, tmp_path / "out", ("nifti",), input=source)
    side = json.loads((tmp_path / "out" / "T2map.json").read_text())
    assert side["method"] == "dm" and side["dictionary"]["key"] == prov.dictionary.key
    assert side["settings"]["mask_threshold"] == 0.05 and side["estimator"] == prov.estimator
    assert not report.failed


def test_a_series_opened_twice_reuses_its_estimator(dicom_series):
    folder, dictionary = dicom_series
    cache = pipeline.EstimatorCache()
    source = pipeline.open_input(folder)
    choice = pipeline.EstimatorChoice(dictionary_file=dictionary)
    first = pipeline.make_estimator(choice, source.sequence, source.signal, cache=cache)
    assert pipeline.make_estimator(choice, source.sequence, source.signal, cache=cache) is first


def test_a_dictionary_or_network_for_another_sequence_is_refused_before_matching(
    dicom_series, knee_sequence, tiny_model_dir
):
    folder, dictionary = dicom_series
    source = pipeline.open_input(folder)
    with pytest.raises(MRFError, match="was made for sequence 'tiny'"):
        pipeline.make_estimator(pipeline.EstimatorChoice(dictionary_file=dictionary), knee_sequence, "complex")
    with pytest.raises(MRFError, match="magnitude"):
        pipeline.make_estimator(pipeline.EstimatorChoice(dictionary_file=dictionary), source.sequence, "magnitude")
    with pytest.raises(MRFError, match="trained for sequence"):
        pipeline.make_estimator(pipeline.EstimatorChoice("nn", model=tiny_model_dir), knee_sequence, "complex")


def test_bad_inputs_are_refused_before_any_dictionary_is_built(tmp_path, capsys):
    start = time.perf_counter()
    assert main(["-q", "evaluate", "--data", str(tmp_path / "nothing"), "--output", str(tmp_path / "x")]) == 2
    assert main(["-q", "reconstruct", str(tmp_path / "none.h5"), "--output", str(tmp_path / "y")]) == 2
    assert main(["-q", "batch", str(tmp_path / "none"), "--output", str(tmp_path / "z")]) == 2
    assert time.perf_counter() - start < 30  # seconds, where a knee dictionary takes minutes
    assert not cache_dir().exists() or not any(cache_dir().iterdir())
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("mrfviewer: error:") for line in err)


def test_reconstruct_refuses_an_existing_output_before_the_work(tmp_path, dicom_series, monkeypatch):
    folder, dictionary = dicom_series
    out = tmp_path / "out"
    out.mkdir()
    (out / "T2map.nii.gz").write_text("mine")
    called = []
    monkeypatch.setattr(pipeline, "reconstruct_input", lambda *a, **k: called.append(1))
    assert main(["-q", "reconstruct", str(folder), "--dictionary", str(dictionary), "--output", str(out)]) == 2
    assert not called and (out / "T2map.nii.gz").read_text() == "mine"


def test_demo_into_an_existing_folder_fails_at_once(tmp_path, monkeypatch):
    import mrfviewer.demo as demo

    out = tmp_path / "demo-out"
    (out / "knee" / "dm").mkdir(parents=True)
    (out / "knee" / "dm" / "T1map.nii.gz").write_text("earlier run")
    monkeypatch.setattr(demo, "ensure_demo_data", lambda **_: pytest.fail("the demo should not start"))
    with pytest.raises(MRFError, match="already exists"):
        demo.run_demo(out)
    assert (out / "knee" / "dm" / "T1map.nii.gz").read_text() == "earlier run"


def test_progress_is_a_timestamped_line_when_not_on_a_terminal():
    stream = io.StringIO()
    with progress_reporter("reconstruct (dm)", stream=stream, interval_s=0.0) as progress:
        progress(0.25, "matching")
        progress(1.0, "done")
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) >= 2 and all("reconstruct (dm):" in line for line in lines)
    assert lines[0][:4].isdigit() and " 25% matching" in lines[0]


def test_reconstruct_reports_progress_lines_in_a_log(tmp_path, dicom_series, capfd):
    folder, dictionary = dicom_series
    assert main(["reconstruct", str(folder), "--dictionary", str(dictionary), "--output", str(tmp_path / "o")]) == 0
    err = capfd.readouterr().err
    assert "reconstruct (dm):" in err and "%" in err  # stderr is not a terminal here: lines, not a bar


def test_magnitude_input_gets_a_magnitude_dictionary(tmp_path, tiny_sequence, tiny_files):
    _, grid = tiny_files
    series = synthesize_series(knee_phantom((16, 16)), tiny_sequence, snr=100, magnitude=True)
    write_mrf_dicom(series, tmp_path / "mag")
    source = pipeline.open_input(tmp_path / "mag")
    assert source.signal == "magnitude"
    maps, estimator = pipeline.reconstruct_input(source, pipeline.EstimatorChoice(grid=grid))
    assert maps.provenance.dictionary.signal == "magnitude"
    muscle = knee_phantom((16, 16)).labels == 5
    assert np.nanmean(maps.values["T1"][muscle]) == pytest.approx(950, rel=0.1)
