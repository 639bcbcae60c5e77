"""Hostile inputs, by category: every case ends in a result or one clear line, nothing hangs, no file
lands outside its folder, a killed run leaves nothing that looks finished, nothing is replaced unasked.

About 1,100 generated cases per run (``MRFVIEWER_FUZZ_SCALE`` multiplies the generated ones). Categories:
JSON formats, HDF5 series, names and paths, the dictionary cache, special files, command-line values,
killed and interrupted processes.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from mrfviewer.cli import main
from mrfviewer.cohort import CohortItem
from mrfviewer.dictionary import cache_dir, cached_path, get_dictionary, save_dictionary
from mrfviewer.errors import MRFError
from mrfviewer.grid import grid_from_dict
from mrfviewer.io.names import safe_name
from mrfviewer.io.series_h5 import write_series_h5
from mrfviewer.nn.training import config_from_dict
from mrfviewer.phantoms import knee_phantom
from mrfviewer.sequence import sequence_from_dict, sequence_from_json
from mrfviewer.synthesis import synthesize_series
from mrfviewer.volume import open_h5_source

SCALE = max(1, int(os.environ.get("MRFVIEWER_FUZZ_SCALE", "1")))


def cases(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def one_line_error(call) -> str:
    """Run ``call``; it must succeed or raise MRFError with one line of text. Returns the message."""
    try:
        call()
    except MRFError as exc:
        text = str(exc)
        assert text and "\n" not in text.strip(), text
        return text
    return ""


# -- JSON formats ------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1e-320, 1e-300, 1e300, -0.0, 5e-324])
    | st.text(max_size=10)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@seed(11)
@cases(150)
@given(
    st.fixed_dictionaries(
        {
            "blocks": st.lists(
                st.dictionaries(
                    st.sampled_from(["type", "ti_ms", "tr_ms", "te_ms", "flip_angle_deg", "tsl_ms"]), values
                ),
                max_size=4,
            )
        },
        optional={"name": values, "dummy_trains": values, "description": values},
    )
    | values
)
def test_sequence_files(raw):
    one_line_error(lambda: sequence_from_dict(raw))


@pytest.mark.parametrize(
    "text",
    [
        nested(100_000),
        '{"blocks": ' + nested(50) + "}",
        "1" * 5000,
        '{"blocks": [], "name": ' + "9" * 5000 + "}",
        "NaN",
        '{"a": Infinity}',
        '"\\ud800"',
        "\x00",
    ],
)
def test_hostile_json_text(text):
    assert one_line_error(lambda: sequence_from_json(text, "x.json")).startswith("x.json")


@seed(12)
@cases(150)
@given(
    st.dictionaries(
        st.sampled_from(["t1_ms", "t2_ms", "t1rho_ms", "b1", "constraints", "name", "q"]),
        values
        | st.fixed_dictionaries(
            {"min": values, "max": values}, optional={"n": values, "step_percent": values, "spacing": values}
        ),
    )
)
def test_grid_files(raw):
    one_line_error(lambda: grid_from_dict(raw))


train_fields = [
    "hidden",
    "activation",
    "loss",
    "learning_rate",
    "batch_size",
    "epochs",
    "n_train",
    "snr_min",
    "snr_max",
    "rank",
    "seed",
    "grid",
    "zz",
]


@seed(13)
@cases(150)
@given(
    st.dictionaries(st.sampled_from(train_fields), values | st.sampled_from(["fast", 2.5, [True, True], [-1], 10**12]))
)
def test_training_configs(raw):
    one_line_error(lambda: config_from_dict(raw))


@pytest.fixture(scope="module")
def model_meta(tiny_model_dir):
    return json.loads((tiny_model_dir / "model.json").read_text())


meta_paths = st.sampled_from(
    [
        ("architecture", "hidden"),
        ("architecture", "n_inputs"),
        ("architecture", "activation"),
        ("architecture", "n_params"),
        ("svd_rank",),
        ("n_timepoints",),
        ("sequence_hash",),
        ("param_names",),
        ("parameter_ranges",),
        ("format_version",),
        ("signal",),
    ]
)


@seed(14)
@cases(150)
@given(meta_paths, values | st.sampled_from([[True, True], -4, 10**12, "relu", ["relu"], [33, 32], 1e308]))
def test_model_metadata(tmp_path_factory, tiny_model_dir, model_meta, path, value):
    import copy
    import shutil

    from mrfviewer.nn.model_io import load_model

    folder = tmp_path_factory.mktemp("model")
    shutil.copy(tiny_model_dir / "model.pt", folder / "model.pt")
    meta = copy.deepcopy(model_meta)
    target = meta
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    (folder / "model.json").write_text(json.dumps(meta))
    one_line_error(lambda: load_model(folder))


@seed(15)
@cases(100)
@given(st.dictionaries(st.text(max_size=12), values, max_size=6) | values)
def test_label_name_sidecars(tmp_path_factory, raw):
    from mrfviewer.io.labels import read_label_map, write_label_map
    from mrfviewer.series import Geometry

    folder = tmp_path_factory.mktemp("labels")
    labels = np.zeros((1, 4, 4), np.int16)
    labels[0, 1, 1] = 1
    path = write_label_map(labels, {1: "a"}, folder / "l.nii.gz", Geometry().affine_ras(1))
    (folder / "l.json").write_text(json.dumps(raw))
    one_line_error(lambda: read_label_map(path, Geometry(), (1, 4, 4)))


# -- HDF5 series -------------------------------------------------------------------------------

attribute_values = st.sampled_from(
    ["1.0", "x", np.array([1.0, 2.0, 3.0]), np.nan, 0.0, 1e-300, -2.0, 1e308, 1 + 2j, np.array([]), b"\xff"]
)


@seed(16)
@cases(150)
@given(
    spacing=st.one_of(st.none(), attribute_values),
    thickness=st.one_of(st.none(), attribute_values),
    names=st.sampled_from([None, "not json", "[1, 2]", '{"x": 3}', '{"1": "a"}', "{" * 200]),
    labels=st.sampled_from([None, "strings", "nan", "float", "shape", "ok"]),
    value=st.sampled_from([1.0, 1e38, np.nan]),
)
def test_hdf5_series_attributes_and_labels(tmp_path_factory, tiny_sequence, spacing, thickness, names, labels, value):
    path = tmp_path_factory.mktemp("h5") / "s.h5"
    with h5py.File(path, "w") as f:
        data = np.full((tiny_sequence.n_timepoints, 4, 4), value, dtype=np.complex64)
        f.create_dataset("series", data=data)
        f.attrs["sequence"] = tiny_sequence.to_json()
        if spacing is not None:
            f.attrs["pixel_spacing_mm"] = spacing
        if thickness is not None:
            f.attrs["slice_thickness_mm"] = thickness
        if labels is not None:
            payload = {
                "strings": np.array([["a"] * 4] * 4, dtype="S1"),
                "nan": np.full((4, 4), np.nan),
                "float": np.full((4, 4), 1.5),
                "shape": np.zeros((3, 3), np.int16),
                "ok": np.ones((4, 4), np.int16),
            }[labels]
            ds = f.create_dataset("labels", data=payload)
            if names is not None:
                ds.attrs["label_names"] = names

    def read() -> None:
        source = open_h5_source(path)
        source.read(0, 1)

    one_line_error(read)


def _h5_with(path: Path, how: str, tmp: Path, tiny_sequence) -> None:
    data = np.ones((tiny_sequence.n_timepoints, 4, 4), np.float32)
    with h5py.File(path, "w") as f:
        f.attrs["sequence"] = tiny_sequence.to_json()
        if how == "dangling soft link":
            f["series"] = h5py.SoftLink("/nowhere")
        elif how == "soft link to itself":
            f["series"] = h5py.SoftLink("/series")
        elif how == "external link to a text file":
            (tmp / "text.txt").write_text("not hdf5")
            f["series"] = h5py.ExternalLink(str(tmp / "text.txt"), "/series")
        elif how == "external link to an HDF5 file":
            with h5py.File(tmp / "other.h5", "w") as g:
                g["series"] = data
            f["series"] = h5py.ExternalLink(str(tmp / "other.h5"), "/series")
        elif how == "external raw storage":
            (tmp / "raw.bin").write_bytes(data.tobytes())
            f.create_dataset(
                "series", shape=data.shape, dtype=data.dtype, external=[(str(tmp / "raw.bin"), 0, data.nbytes)]
            )
        elif how == "virtual dataset":
            with h5py.File(tmp / "source.h5", "w") as g:
                g["series"] = data
            layout = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype)
            layout[:] = h5py.VirtualSource(str(tmp / "source.h5"), "series", shape=data.shape)
            f.create_virtual_dataset("series", layout)
        elif how == "a group":
            f.create_group("series")


@pytest.mark.parametrize(
    "how",
    [
        "dangling soft link",
        "soft link to itself",
        "external link to a text file",
        "external link to an HDF5 file",
        "external raw storage",
        "virtual dataset",
        "a group",
    ],
)
def test_hdf5_data_from_outside_the_input_is_refused(tmp_path, tiny_sequence, how):
    path = tmp_path / "s.h5"
    _h5_with(path, how, tmp_path, tiny_sequence)
    message = one_line_error(lambda: open_h5_source(path).read(0, 1))
    assert message, f"{how} was accepted"
    if how in ("external link to an HDF5 file", "external raw storage", "virtual dataset"):
        assert "--allow-external" in message
        open_h5_source(path, allow_external=True).read(0, 1)  # on request, it is read


# -- special files and sizes --------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "dev zero", "folder", "huge"])
def test_special_files_are_refused_without_hanging(tmp_path, kind, tiny_sequence):
    from mrfviewer.sequence import load_sequence

    path = tmp_path / "x"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev zero":
        path = Path("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        with open(path, "wb") as fh:
            fh.truncate(100 * 2**20)  # 100 MB (sparse)
    for load in (load_sequence, open_h5_source):
        assert one_line_error(lambda load=load: load(path))
    assert main(["-q", "reconstruct", str(path), "--output", str(tmp_path / "o")]) == 2 or kind == "folder"


# -- names are data, never paths ----------------------------------------------------------------

hostile_names = st.text(max_size=60) | st.sampled_from(
    ["../../etc/x", "/etc/passwd", "..", ".", "a/../../b", "C:\\x", "\x00", "\ud800", "CON", "nul.txt", "~/x", "$HOME"]
)


@seed(17)
@cases(200)
@given(hostile_names, hostile_names)
def test_no_name_places_a_file_outside_its_folder(tmp_path_factory, sequence_name, series_name):
    root = tmp_path_factory.mktemp("out").resolve()
    item = CohortItem(subject=sequence_name, name=series_name, path=root)
    out = item.output_dir(root).resolve()
    assert out.parent.parent == root and out.name and out.parent.name
    name = safe_name(sequence_name, "sequence", 40)
    assert "/" not in name and "\\" not in name and name not in (".", "..") and "\x00" not in name


def test_a_hostile_sequence_name_stays_inside_the_cache(tmp_path, tiny_sequence, tiny_grid):
    import dataclasses

    evil = dataclasses.replace(tiny_sequence, name="../../../../tmp/evil")
    path = cached_path(evil, tiny_grid).resolve()
    assert path.parent == cache_dir().resolve()
    before = {p for p in tmp_path.parent.rglob("*")}
    get_dictionary(evil, tiny_grid)
    created = {p for p in tmp_path.parent.rglob("*")} - before
    assert all(
        cache_dir().resolve() in p.resolve().parents
        or p.resolve() == cache_dir().resolve()
        or p.resolve() in cache_dir().resolve().parents
        for p in created
    )


# -- the dictionary cache ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage", ["nan in coefficients", "flipped bits", "rank not an integer", "missing array", "incomplete"]
)
def test_a_damaged_cache_is_rebuilt_never_used(tiny_sequence, tiny_grid, damage, caplog):
    fresh = get_dictionary(tiny_sequence, tiny_grid)
    path = cached_path(tiny_sequence, tiny_grid)
    with h5py.File(path, "r+") as f:
        if damage == "nan in coefficients":
            coeffs = f["coeffs"][()]
            coeffs[:5] = np.nan
            f["coeffs"][...] = coeffs
        elif damage == "flipped bits":
            coeffs = f["coeffs"][()]
            coeffs[7, 0] *= 1.001
            f["coeffs"][...] = coeffs
        elif damage == "rank not an integer":
            f.attrs["rank"] = 3.5
        elif damage == "missing array":
            del f["norms"]
        else:
            f.attrs["complete"] = False
    again = get_dictionary(tiny_sequence, tiny_grid)
    np.testing.assert_array_equal(again.coeffs, fresh.coeffs)
    assert "ignoring cached dictionary" in caplog.text
    from mrfviewer.dictionary import load_dictionary

    load_dictionary(path, require_checksum=True)  # rebuilt and written again, whole


def test_stale_temporaries_of_ended_runs_are_removed(tiny_sequence, tiny_grid):
    cache_dir().mkdir(parents=True, exist_ok=True)
    stale = cache_dir() / ".tiny-x.h5.abc.part.h5"
    stale.write_bytes(b"\0" * 1000)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = cache_dir() / ".tiny-y.h5.def.part.h5"
    fresh.write_bytes(b"\0")
    get_dictionary(tiny_sequence, tiny_grid)
    assert not stale.exists() and fresh.exists()


# -- command-line values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["reconstruct", "IN", "--output", "o", "--memory-mb", "nan"],
        ["reconstruct", "IN", "--output", "o", "--memory-mb", "0"],
        ["reconstruct", "IN", "--output", "o", "--mask-threshold", "inf"],
        ["synthesize", "--seed", "-1", "--output", "s.h5"],
        ["synthesize", "--snr", "nan", "--output", "s.h5"],
        ["synthesize", "--slices", "0", "--output", "s.h5"],
        ["batch", "IN", "--output", "b", "--workers", "-1"],
        ["batch", "IN", "--output", "b", "--scheduler", "notanaddress"],
        ["batch", "IN", "--output", "b", "--scheduler", "foo://x:1"],
        ["batch", "IN", "--output", "b", "--scheduler", "http://localhost:8786"],
        ["reconstruct", "IN", "--output", "FILE"],
        ["evaluate", "--output", "FILE", "--quick"],
        ["dictionary", "--output", "d.h5", "--rank-report", "d.h5"],
    ],
)
def test_bad_command_line_values_are_one_line(tmp_path, monkeypatch, capsys, tiny_sequence, argv):
    monkeypatch.chdir(tmp_path)
    series = write_series_h5(synthesize_series(knee_phantom((8, 8)), tiny_sequence, snr=None), tmp_path / "s.h5")
    (tmp_path / "FILE").write_text("a file, not a folder")
    argv = [str(series) if a == "IN" else a for a in argv]
    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mrfviewer: error:"), err
    assert (tmp_path / "FILE").read_text() == "a file, not a folder"


# -- killed and interrupted processes ------------------------------------------------------------


def _run(argv: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mrfviewer.cli", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _stderr_lines(process: subprocess.Popen) -> "queue.Queue[bytes]":
    lines: queue.Queue[bytes] = queue.Queue()

    def pump() -> None:
        for line in process.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for_line(lines: "queue.Queue[bytes]", timeout_s: float) -> bool:
    try:
        lines.put(lines.get(timeout=timeout_s))  # keep it for the final check
    except queue.Empty:
        return False
    return True


def _visible(folder: Path) -> set[str]:
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()
    return {p for p in present if not any(part.startswith(".") for part in p.split("/"))}


def _looks_finished(folder: Path, expected: set[str]) -> bool:
    return bool(_visible(folder))


def _complete_run(root: Path, env: dict) -> Path:
    """The outputs of an uninterrupted reconstruction of the kill case (made once)."""
    out = root / "complete"
    if not out.exists():
        argv = ["-q", "reconstruct", str(root / "s.h5"), "--dictionary", str(root / "d.h5"), "--output", str(out)]
        done = _run(argv, env)
        assert done.wait(timeout=120) == 0, done.stderr.read()
    return out


@pytest.fixture(scope="module")
def kill_case(tmp_path_factory, tiny_sequence, tiny_dictionary):
    root = tmp_path_factory.mktemp("kill")
    series = synthesize_series(knee_phantom((48, 48), n_slices=4), tiny_sequence, snr=100)
    write_series_h5(series, root / "s.h5")
    save_dictionary(tiny_dictionary, root / "d.h5")
    env = dict(os.environ, MRFVIEWER_CACHE_DIR=str(root / "cache"), MRFVIEWER_LOG_DIR=str(root / "logs"))
    return root, env


@pytest.mark.parametrize(
    ("sig", "after_s"),
    [(signal.SIGKILL, 1.5), (signal.SIGKILL, 3.0), (signal.SIGKILL, 4.5), (signal.SIGINT, 3.0), (signal.SIGTERM, 3.0)],
)
def test_a_killed_reconstruction_leaves_nothing_that_looks_finished(kill_case, sig, after_s):
    root, env = kill_case
    out = root / f"out-{sig.name}-{after_s}"
    process = _run(["reconstruct", str(root / "s.h5"), "--dictionary", str(root / "d.h5"), "--output", str(out)], env)
    if sig in (signal.SIGINT, signal.SIGTERM):
        # A loaded machine can take seconds just to import; the handler is installed before the
        # first progress line, so the signal waits for it (the kill cases test any moment).
        lines = _stderr_lines(process)
        assert _wait_for_line(lines, timeout_s=120), "no progress line"
    time.sleep(after_s)
    process.send_signal(sig)
    code = process.wait(timeout=60)
    if code == 0:  # it finished before the signal: a whole set of maps
        assert (out / "T1map.nii.gz").exists() and (out / "maps.npz").exists()
        return
    if sig == signal.SIGKILL and _looks_finished(out, set()):
        # Killed after its outputs were moved in, before the process ended: then the whole set.
        assert _visible(out) == _visible(_complete_run(root, env))
        return
    assert not _looks_finished(out, set()), sorted(p.name for p in out.rglob("*"))
    if sig in (signal.SIGINT, signal.SIGTERM):
        time.sleep(0.2)
        text = b"".join(list(lines.queue))
        assert code == 130 and b"cancelled" in text, (code, text[-400:])
    # A rerun completes and cleans what the killed run left.
    again = _run(
        ["-q", "reconstruct", str(root / "s.h5"), "--dictionary", str(root / "d.h5"), "--output", str(out)], env
    )
    assert again.wait(timeout=120) == 0, again.stderr.read()
    assert not [p for p in out.rglob(".mrfviewer-staging-*")]


def test_a_killed_dicom_synthesis_leaves_no_partial_series(kill_case):
    root, env = kill_case
    out = root / "dicom"
    process = _run(["synthesize", "--size", "64", "--slices", "2", "--format", "dicom", "--output", str(out)], env)
    time.sleep(6.0)
    process.send_signal(signal.SIGKILL)
    code = process.wait(timeout=60)
    if code != 0:
        assert not _looks_finished(out, set())
