"""Cohort batch processing on dask: outputs, summary, failures, resume, scheduler address, cancel."""

import csv
import json

import numpy as np
import pytest

from mrfviewer.batch import DONE, SUMMARY, run_batch
from mrfviewer.cli import main
from mrfviewer.dictionary import save_dictionary
from mrfviewer.engine import CancelToken
from mrfviewer.errors import Cancelled
from mrfviewer.io.dicom_write import write_mrf_dicom
from mrfviewer.io.labels import write_label_map
from mrfviewer.io.series_h5 import write_series_h5
from mrfviewer.phantoms import knee_phantom
from mrfviewer.pipeline import DictionaryMatching, EstimatorChoice, find_cohort
from mrfviewer.settings import ReconstructionSettings
from mrfviewer.synthesis import synthesize_series


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, tiny_sequence):
    """Two DICOM subjects with label maps, one HDF5 subject, one broken series (no sequence)."""
    root = tmp_path_factory.mktemp("cohort")
    phantom = knee_phantom((24, 24))
    for i, subject in enumerate(["SUBJ01", "SUBJ02"]):
        series = synthesize_series(phantom, tiny_sequence, snr=200, seed=i)
        write_mrf_dicom(series, root / subject, description="MRF knee", patient_id=subject)
        affine = series.geometry.affine_ras(1)
        write_label_map(phantom.labels, phantom.label_names, root / subject / "magnitude" / "labels.nii.gz", affine)
    write_series_h5(synthesize_series(phantom, tiny_sequence, snr=200, seed=7), root / "SUBJ03" / "knee.h5")
    broken = synthesize_series(phantom, tiny_sequence, snr=200)
    broken.sequence = None
    write_series_h5(broken, root / "SUBJ04" / "nosequence.h5")
    return root


def _summary(output):
    with open(output / SUMMARY, newline="") as fh:
        return list(csv.DictReader(fh))


def test_find_cohort_lists_every_mrf_series(cohort):
    items = find_cohort(cohort)
    assert [(i.subject, i.name) for i in items] == [
        ("SUBJ01", "1_MRF knee (magnitude)"),
        ("SUBJ02", "1_MRF knee (magnitude)"),
        ("SUBJ03", "knee"),
        ("SUBJ04", "nosequence"),
    ]
    assert items[0].labels is not None and items[2].labels is None


def test_batch_on_two_local_workers_then_resume(tmp_path, cohort, tiny_dictionary):
    save_dictionary(tiny_dictionary, tmp_path / "dict.h5")
    output = tmp_path / "results"
    args = ["-q", "batch", str(cohort), "--output", str(output), "--dictionary", str(tmp_path / "dict.h5")]
    assert main([*args, "--workers", "2"]) == 2  # one series failed: non-zero exit, the others done
    rows = _summary(output)
    status = {(r["subject"], r["status"]) for r in rows}
    assert status == {("SUBJ01", "done"), ("SUBJ02", "done"), ("SUBJ03", "done"), ("SUBJ04", "failed")}
    failed = next(r for r in rows if r["subject"] == "SUBJ04")
    assert "names no sequence" in failed["message"]
    # ROI rows for the DICOM subjects: one per label and map, with values.
    subj1 = [r for r in rows if r["subject"] == "SUBJ01"]
    assert {r["map"] for r in subj1} >= {"T1", "T2", "T1rho", "PD"}
    femoral = next(r for r in subj1 if r["map"] == "T2" and "femoral" in r["label"].lower())
    assert 20 < float(femoral["mean"]) < 60
    out1 = output / "SUBJ01" / "1_MRF_knee_magnitude"
    assert (out1 / "T1map.nii.gz").exists() and (out1 / "dicom" / "T1map.dcm").exists()
    assert json.loads((out1 / DONE).read_text())["voxels"] > 100
    assert not list(output.glob("*/*.partial"))
    stamp = (out1 / "T1map.nii.gz").stat().st_mtime_ns
    # Second run: finished series are skipped, the broken one fails again.
    assert main([*args, "--workers", "1"]) == 2
    rows = _summary(output)
    assert {(r["subject"], r["status"]) for r in rows} == {
        ("SUBJ01", "skipped"),
        ("SUBJ02", "skipped"),
        ("SUBJ03", "skipped"),
        ("SUBJ04", "failed"),
    }
    assert any(r["subject"] == "SUBJ01" and r["map"] == "T2" for r in rows)  # stats carried over
    assert (out1 / "T1map.nii.gz").stat().st_mtime_ns == stamp


def test_batch_on_an_existing_scheduler_with_nn(tmp_path, cohort, tiny_model_dir, tiny_model):
    from distributed import LocalCluster

    items = [i for i in find_cohort(cohort) if i.subject in ("SUBJ01", "SUBJ03")]
    choice = EstimatorChoice("nn", model=tiny_model_dir)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        results = run_batch(
            items, choice, tmp_path / "nn", ReconstructionSettings(method="nn"), scheduler=cluster.scheduler_address
        )
    assert [r.status for r in results] == ["done", "done"]
    t1 = np.load(tmp_path / "nn" / "SUBJ03" / "knee" / "maps.npz")["T1"]
    assert np.isfinite(t1).sum() > 100


def test_unreachable_scheduler_is_a_clear_error(tmp_path, cohort, tiny_dictionary, capsys, monkeypatch):
    monkeypatch.setattr("mrfviewer.batch.SCHEDULER_TIMEOUT_S", 1)
    save_dictionary(tiny_dictionary, tmp_path / "dict.h5")
    code = main(
        ["-q", "batch", str(cohort), "--output", str(tmp_path / "o"), "--dictionary", str(tmp_path / "dict.h5")]
        + ["--scheduler", "tcp://127.0.0.1:9"]
    )
    assert code == 2
    assert "cannot reach the dask scheduler" in capsys.readouterr().err


def test_cancelled_batch_leaves_no_partial_output(tmp_path, cohort, tiny_dictionary):
    from distributed import LocalCluster

    token = CancelToken()
    items = find_cohort(cohort)
    save_dictionary(tiny_dictionary, tmp_path / "dict.h5")

    def cancel_after_first(result):
        token.cancel()

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        pytest.raises(Cancelled),
    ):
        run_batch(
            items,
            EstimatorChoice(dictionary_file=tmp_path / "dict.h5"),
            tmp_path / "c",
            ReconstructionSettings(),
            scheduler=cluster.scheduler_address,
            cancel=token,
            on_result=cancel_after_first,
        )
    assert not list((tmp_path / "c").glob("*/*.partial"))
    assert not (tmp_path / "c" / SUMMARY).exists()


def test_series_that_would_share_an_output_folder_get_distinct_ones(tmp_path, tiny_sequence):
    series = synthesize_series(knee_phantom((16, 16)), tiny_sequence, snr=None)
    for parent in ("siteA", "siteB"):
        write_series_h5(series, tmp_path / parent / "S01" / "knee.h5")
    items = find_cohort(tmp_path)
    folders = {i.output_dir(tmp_path / "out") for i in items}
    assert len(items) == 2 and len(folders) == 2


def test_a_foreign_folder_in_the_output_is_never_replaced(tmp_path, cohort, tiny_dictionary):
    item = next(i for i in find_cohort(cohort) if i.subject == "SUBJ03")
    foreign = item.output_dir(tmp_path / "out")
    foreign.mkdir(parents=True)
    (foreign / "mine.txt").write_text("keep")
    from mrfviewer.batch import process_item

    result = process_item(item, DictionaryMatching(tiny_dictionary), tmp_path / "out", ReconstructionSettings())
    assert result.status == "failed" and "not a finished batch result" in result.message
    assert (foreign / "mine.txt").read_text() == "keep"


def test_subjects_with_their_own_sequences_and_one_patient_id(tmp_path, tiny_sequence, tiny_files):
    """Three subjects share an anonymised PatientID; their DICOM series carry their own sidecar
    sequences (two different ones, neither the shipped one): every series is reconstructed with a
    dictionary of its own sequence, and the summary names each subject folder and input."""
    from tests.conftest import make_tiny_sequence

    _, grid = tiny_files
    other = make_tiny_sequence(n_fisp=30, n_flash=25)
    root = tmp_path / "cohort"
    phantom = knee_phantom((16, 16))
    for i, sequence in enumerate((tiny_sequence, tiny_sequence, other)):
        series = synthesize_series(phantom, sequence, snr=100, seed=i)
        write_mrf_dicom(series, root / f"sub-{i:02d}", description="MRF knee", patient_id="ANON")
    out = tmp_path / "out"
    assert main(["-q", "batch", str(root), "--output", str(out), "--grid", str(grid), "--workers", "1"]) == 0
    rows = _summary(out)
    assert {r["status"] for r in rows} == {"done"}
    assert {(r["subject"], r["input"]) for r in rows} == {(f"sub-{i:02d}", f"sub-{i:02d}/magnitude") for i in range(3)}
    keys = {json.loads(p.read_text())["key"]["shared"] for p in out.glob("*/*/done.json")}
    assert len(keys) == 2  # one dictionary per sequence
    # The old naming by PatientID, on request: distinct output folders, the input still named.
    out2 = tmp_path / "out2"
    args = ["-q", "batch", str(root), "--output", str(out2), "--grid", str(grid), "--workers", "1"]
    assert main([*args, "--subject-from", "patientid"]) == 0
    rows = _summary(out2)
    assert {r["subject"] for r in rows} == {"ANON"} and len({r["series"] for r in rows}) == 3
    assert {r["input"] for r in rows} == {f"sub-{i:02d}/magnitude" for i in range(3)}


def test_magnitude_only_cohort(tmp_path, tiny_sequence, tiny_files):
    _, grid = tiny_files
    root = tmp_path / "cohort"
    for i in range(2):
        series = synthesize_series(knee_phantom((16, 16)), tiny_sequence, snr=100, seed=i, magnitude=True)
        write_mrf_dicom(series, root / f"sub-{i}", description="MRF magnitude")
    out = tmp_path / "out"
    assert main(["-q", "batch", str(root), "--output", str(out), "--grid", str(grid), "--workers", "1"]) == 0
    rows = _summary(out)
    assert [r["status"] for r in rows] == ["done", "done"]
    side = json.loads(next(out.glob("sub-0/*/T1map.json")).read_text())
    assert side["dictionary"]["signal"] == "magnitude"


def test_batch_bids_layout_is_one_derivatives_dataset(tmp_path, cohort, tiny_dictionary):
    """``batch --layout bids``: one dataset description, each series in its own ``sub-*/ses-*``
    folder with BIDS names and times in seconds; the summary and failures as in a flat batch."""
    import nibabel as nib

    save_dictionary(tiny_dictionary, tmp_path / "dict.h5")
    output = tmp_path / "bids"
    args = ["-q", "batch", str(cohort), "--output", str(output), "--dictionary", str(tmp_path / "dict.h5")]
    assert main([*args, "--workers", "1", "--layout", "bids"]) == 2  # SUBJ04 has no sequence
    description = json.loads((output / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    rows = _summary(output)
    assert {(r["subject"], r["status"]) for r in rows} >= {("SUBJ01", "done"), ("SUBJ03", "done"), ("SUBJ04", "failed")}
    t1_maps = sorted(p for p in output.glob("sub-*/ses-*/anat/*_T1map.nii.gz") if "_desc-" not in p.name)
    assert [p.parts[-4] for p in t1_maps] == ["sub-SUBJ01", "sub-SUBJ02", "sub-SUBJ03"]
    assert all(p.name.startswith(f"{p.parts[-4]}_{p.parts[-3]}_") for p in t1_maps)  # sub-X_ses-Y_T1map
    t1_s = np.asarray(nib.load(t1_maps[0]).dataobj)
    assert 0.1 < np.median(t1_s[t1_s > 0]) < 3.0  # seconds, not ms
    assert json.loads(t1_maps[0].with_name(t1_maps[0].name.replace(".nii.gz", ".json")).read_text())["Units"] == "s"
    assert not list(output.glob("*.nii.gz")) and not list(output.glob("**/*.partial"))
    assert "done.json" in (output / ".bidsignore").read_text()  # our resume marker is not BIDS
    # A second run skips the finished series and leaves their files untouched.
    stamp = t1_maps[0].stat().st_mtime_ns
    assert main([*args, "--workers", "1", "--layout", "bids"]) == 2
    assert {r["status"] for r in _summary(output) if r["subject"] == "SUBJ01"} == {"skipped"}
    assert t1_maps[0].stat().st_mtime_ns == stamp
