"""Fuzzing the input parsers (seeded, bounded): every case ends in a result or a clear MRFError.

About 560 generated cases per run (MRFVIEWER_FUZZ_SCALE multiplies them): malformed sequence and grid JSON, truncated,
bit-flipped and random DICOM files, and HDF5 series of odd shapes, types and values.
"""

import json
import os
import shutil

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from mrfviewer.errors import MRFError
from mrfviewer.grid import grid_from_dict
from mrfviewer.io.dicom_read import load_mrf_folder, scan_folder
from mrfviewer.io.series_h5 import read_series_h5
from mrfviewer.sequence import sequence_from_json

#: Longer runs: MRFVIEWER_FUZZ_SCALE=20 pytest tests/test_fuzz.py (about 11,000 cases).
SCALE = max(1, int(os.environ.get("MRFVIEWER_FUZZ_SCALE", "1")))


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=None, suppress_health_check=list(HealthCheck), database=None)


FUZZ = fuzz_settings(150)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)
block_types = st.sampled_from(["inversion", "t2prep", "spinlock", "delay", "fisp", "flash", "bogus"])
fields = st.sampled_from(["ti_ms", "te_ms", "tsl_ms", "duration_ms", "flip_angle_deg", "phase_deg", "tr_ms", "x"])
blocks = st.lists(
    st.builds(lambda t, kv: {"type": t, **kv}, block_types, st.dictionaries(fields, json_values, max_size=4)),
    max_size=5,
)


@seed(1)
@FUZZ
@given(st.one_of(json_values, st.builds(lambda b: {"blocks": b}, blocks)))
def test_fuzz_sequence_json(raw):
    try:
        seq = sequence_from_json(json.dumps(raw))
    except MRFError as exc:
        assert str(exc)
    except (ValueError, OverflowError):
        pytest.fail("sequence parser raised a bare error")
    else:
        assert seq.n_timepoints > 0


axis = st.one_of(
    json_values,
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5),
    st.fixed_dictionaries(
        {"min": json_values, "max": json_values},
        optional={"n": json_values, "step_percent": json_values, "spacing": json_values},
    ),
)


@seed(2)
@FUZZ
@given(st.dictionaries(st.sampled_from(["t1_ms", "t2_ms", "t1rho_ms", "b1", "constraints", "zz"]), axis, max_size=6))
def test_fuzz_grid_json(raw):
    try:
        grid = grid_from_dict(raw)
    except MRFError as exc:
        assert str(exc)
    else:
        assert grid.n_atoms > 0


@pytest.fixture(scope="module")
def mr_small_bytes():
    with open(get_testdata_file("MR_small.dcm"), "rb") as fh:
        return fh.read()


@seed(3)
@fuzz_settings(150)
@given(data=st.data())
def test_fuzz_dicom_files(tmp_path_factory, mr_small_bytes, data):
    folder = tmp_path_factory.mktemp("fuzz")
    raw = bytearray(mr_small_bytes)
    kind = data.draw(st.sampled_from(["truncate", "flip", "random", "copies"]))
    if kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    elif kind == "flip":
        for _ in range(data.draw(st.integers(1, 20))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "random":
        raw = bytearray(data.draw(st.binary(max_size=2000)))
    (folder / "a.dcm").write_bytes(bytes(raw))
    if kind == "copies":
        for i in range(data.draw(st.integers(1, 4))):
            (folder / f"copy{i}.dcm").write_bytes(bytes(raw))
    scan = scan_folder(folder)
    assert scan.n_files >= 1
    with pytest.raises(MRFError):
        load_mrf_folder(folder)
    shutil.rmtree(folder)


@seed(4)
@fuzz_settings(110)
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=5),
    dtype=st.sampled_from(["f4", "f8", "c8", "i2", "u1", "bool"]),
    poison=st.sampled_from([None, np.nan, np.inf]),
    spacing=st.one_of(st.none(), st.lists(st.floats(allow_nan=True), max_size=3)),
    sequence=st.sampled_from([None, "{", "[]", '{"blocks": []}']),
)
def test_fuzz_hdf5_series(tmp_path_factory, shape, dtype, poison, spacing, sequence):
    path = tmp_path_factory.mktemp("h5") / "s.h5"
    data = np.ones(shape, dtype=dtype)
    if poison is not None and data.size and data.dtype.kind in "fc":
        data.flat[0] = poison
    with h5py.File(path, "w") as f:
        f.create_dataset("series", data=data)
        if spacing is not None:
            f.attrs["pixel_spacing_mm"] = np.asarray(spacing, dtype=np.float64)
        if sequence is not None:
            f.attrs["sequence"] = sequence
    try:
        series = read_series_h5(path)
    except MRFError as exc:
        assert str(exc)
    else:
        assert series.data.ndim == 4 and np.all(np.isfinite(series.data))


def test_regression_unknown_vr_and_bad_length_are_skipped(tmp_path, mr_small_bytes):
    """Found by the fuzzer: pydicom raised NotImplementedError / BytesLengthException out of the scan."""
    raw = bytearray(mr_small_bytes)
    i = raw.find(b"\x20\x00\x32\x00DS")  # ImagePositionPatient, explicit VR "DS"
    assert i > 0
    raw[i + 4 : i + 6] = b"ES"
    (tmp_path / "bad_vr.dcm").write_bytes(bytes(raw))
    scan = scan_folder(tmp_path)
    assert [p.name for p, _ in scan.skipped] == ["bad_vr.dcm"]
    assert "not readable as DICOM (NotImplementedError)" in scan.skipped[0][1]
