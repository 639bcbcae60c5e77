"""Cancel every long job at seeded random points: no partial output, caches consistent, the next run normal.

Also: inputs are never modified, and a missing write permission is a clear error with nothing left behind.
"""

import hashlib
import os

import numpy as np
import pytest

from mrfviewer.cli import main
from mrfviewer.dictionary import cache_dir, get_dictionary
from mrfviewer.engine import CancelToken
from mrfviewer.errors import Cancelled
from mrfviewer.io.export import FORMATS, export_maps
from mrfviewer.io.labels import LabelMap
from mrfviewer.io.series_h5 import write_series_h5
from mrfviewer.nn.training import TrainConfig, train
from mrfviewer.phantoms import knee_phantom
from mrfviewer.reconstruction import reconstruct_dm
from mrfviewer.settings import ReconstructionSettings
from mrfviewer.synthesis import synthesize_series
from mrfviewer.volume import open_h5_source

RNG = np.random.default_rng(2026)


class CancelAfter(CancelToken):
    """A token that cancels itself at its ``n``-th check (``n = None``: counts checks, never cancels)."""

    def __init__(self, n: int | None = None):
        super().__init__()
        self.n, self.checks = n, 0

    def raise_if_cancelled(self) -> None:
        self.checks += 1
        if self.n is not None and self.checks >= self.n:
            self.cancel()
        super().raise_if_cancelled()


def _cancel_points(job, n_points: int = 4) -> list[int]:
    """Run ``job(token)`` once to count its cancel checks; pick seeded random points among them."""
    counter = CancelAfter()
    job(counter)
    assert counter.checks >= 2, "the job never checks for cancellation"
    return sorted({int(v) for v in RNG.integers(1, counter.checks + 1, n_points)})


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_cancelled_dictionary_never_leaves_a_reusable_cache(tiny_sequence, tiny_grid):
    reference = get_dictionary(tiny_sequence, tiny_grid, use_cache=False)
    points = _cancel_points(lambda t: get_dictionary(tiny_sequence, tiny_grid, use_cache=False, cancel=t))
    for n in points:
        with pytest.raises(Cancelled):
            get_dictionary(tiny_sequence, tiny_grid, cancel=CancelAfter(n))
        assert _files(cache_dir()) == [], f"cancel at check {n} left {_files(cache_dir())}"
    again = get_dictionary(tiny_sequence, tiny_grid)
    np.testing.assert_array_equal(again.coeffs, reference.coeffs)
    assert len(_files(cache_dir())) == 1


def test_cancelled_slab_reconstruction_then_a_normal_run(tmp_path, tiny_sequence, tiny_dictionary):
    series = synthesize_series(knee_phantom((32, 32), n_slices=6), tiny_sequence, snr=100)
    source = open_h5_source(write_series_h5(series, tmp_path / "v.h5"))
    settings = ReconstructionSettings(memory_mb=1)  # one slice per slab: many cancel points

    def job(token):
        return reconstruct_dm(source, tiny_dictionary, settings, cancel=token)

    reference = job(None)
    for n in _cancel_points(job):
        with pytest.raises(Cancelled):
            job(CancelAfter(n))
    np.testing.assert_array_equal(job(None).values["T1"], reference.values["T1"])


def test_cancelled_training_keeps_a_valid_checkpoint_or_none(tmp_path, tiny_sequence, tiny_train_settings):
    config = TrainConfig(**{**tiny_train_settings, "epochs": 3, "n_train": 1000})
    reference = train(tiny_sequence, config)
    for n in _cancel_points(lambda t: train(tiny_sequence, config, cancel=t), n_points=3):
        checkpoint = tmp_path / f"ck{n}" / "checkpoint.pt"
        checkpoint.parent.mkdir()
        with pytest.raises(Cancelled):
            train(tiny_sequence, config, checkpoint=checkpoint, cancel=CancelAfter(n))
        assert [p.name for p in checkpoint.parent.iterdir()] in ([], ["checkpoint.pt"])  # no temporaries
        resumed = train(tiny_sequence, config, checkpoint=checkpoint, resume=True)
        ref_state, new_state = reference.model.state_dict(), resumed.model.state_dict()
        for a, b in zip(new_state.values(), ref_state.values(), strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_cancelled_export_leaves_no_file(tmp_path, tiny_sequence, tiny_dictionary):
    series = synthesize_series(knee_phantom((24, 24)), tiny_sequence, snr=100)
    maps = reconstruct_dm(series, tiny_dictionary)
    labels = LabelMap(knee_phantom((24, 24)).labels)

    def job(token, folder=tmp_path / "count"):
        return export_maps(maps, folder, FORMATS, labels=labels, overwrite=True, cancel=token).files

    for n in _cancel_points(job):
        out = tmp_path / f"out{n}"
        with pytest.raises(Cancelled):
            export_maps(maps, out, FORMATS, labels=labels, cancel=CancelAfter(n))
        assert not out.exists(), _files(out)
    assert len(job(None, tmp_path / "final")) > 10


def test_inputs_are_never_modified(tmp_path, tiny_sequence, tiny_dictionary):
    from mrfviewer.dictionary import save_dictionary
    from mrfviewer.io.dicom_write import write_mrf_dicom

    series = synthesize_series(knee_phantom((16, 16)), tiny_sequence, snr=100)
    write_mrf_dicom(series, tmp_path / "in" / "dcm")
    write_series_h5(series, tmp_path / "in" / "s.h5")
    save_dictionary(tiny_dictionary, tmp_path / "dict.h5")

    def digest():
        return {
            p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted((tmp_path / "in").rglob("*"))
            if p.is_file()
        }

    before = digest()
    for source in ("dcm", "s.h5"):
        args = ["-q", "reconstruct", str(tmp_path / "in" / source), "--dictionary", str(tmp_path / "dict.h5")]
        assert main([*args, "--output", str(tmp_path / f"out-{source}")]) == 0
        # A second run into the same folder is refused, and the first run's files stay as they were.
        maps_before = (tmp_path / f"out-{source}" / "T1map.nii.gz").read_bytes()
        assert main([*args, "--output", str(tmp_path / f"out-{source}")]) == 2
        assert (tmp_path / f"out-{source}" / "T1map.nii.gz").read_bytes() == maps_before
    assert (
        main(
            ["-q", "batch", str(tmp_path / "in"), "--output", str(tmp_path / "b")]
            + ["--dictionary", str(tmp_path / "dict.h5"), "--workers", "1"]
        )
        == 0
    )
    assert digest() == before


def test_read_only_output_folder_is_a_clear_error(tmp_path, tiny_sequence, tiny_dictionary, monkeypatch, capsys):
    import tempfile

    series = synthesize_series(knee_phantom((16, 16)), tiny_sequence, snr=100)
    path = write_series_h5(series, tmp_path / "s.h5")
    from mrfviewer.dictionary import save_dictionary

    save_dictionary(tiny_dictionary, tmp_path / "dict.h5")
    out = tmp_path / "ro"
    out.mkdir()

    # Tests may run as root, which ignores permission bits: refuse file creation the way a read-only
    # folder does.
    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):  # noqa: A002 - mkstemp's keyword
        if dir is not None and os.path.realpath(dir).startswith(os.path.realpath(out)):
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    code = main(["reconstruct", str(path), "--dictionary", str(tmp_path / "dict.h5"), "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("mrfviewer: error: cannot write to") and "Permission denied" in err[-1]
    assert _files(out) == []
    report = export_maps(reconstruct_dm(series, tiny_dictionary), out / "sub")
    assert report.failed and all("Permission denied" in reason for reason in report.failed.values())
    assert not (out / "sub").exists()
