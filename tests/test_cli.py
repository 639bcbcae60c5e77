import csv
import subprocess
import sys

import numpy as np
import pytest

from mrfviewer.cli import main
from mrfviewer.resources import default_sequence_path
from mrfviewer.sequence import load_sequence
from mrfviewer.simulation import simulate_one


def test_simulate_writes_the_fingerprint_csv(tmp_path):
    out = tmp_path / "fp.csv"
    assert main(["-q", "simulate", "--t1", "1200", "--t2", "35", "--t1rho", "45", "--output", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["index", "real", "imag"]
    assert len(rows) == 1 + 1750
    values = np.array([complex(float(r[1]), float(r[2])) for r in rows[1:]])
    expected = simulate_one(load_sequence(default_sequence_path()), 1200, 35, 45, double=True)
    np.testing.assert_allclose(values, expected, rtol=1e-7, atol=1e-10)


def test_a_signal_after_the_command_finished_keeps_its_outcome(tmp_path, monkeypatch, capsys):
    """Ctrl-C landing as Python's own handler comes back (the outputs already in place) is no cancel."""
    import contextlib

    from mrfviewer import cli
    from mrfviewer.engine import CancelToken

    @contextlib.contextmanager
    def late_signal(restore: bool = True):
        yield CancelToken()
        raise KeyboardInterrupt  # what the restored default handler raises for a signal in this gap

    monkeypatch.setattr(cli, "_cancel_on_interrupt", late_signal)
    out = tmp_path / "fp.csv"
    assert main(["-q", "simulate", "--t1", "1200", "--t2", "35", "--t1rho", "45", "--output", str(out)]) == 0
    assert out.exists() and "cancelled" not in capsys.readouterr().err


def test_the_process_ignores_signals_once_its_command_finished(tmp_path, monkeypatch):
    """Run as the program (argv from sys.argv), a signal during the interpreter's shutdown must not
    kill a run whose outputs are complete; called with argv (in-process) the handlers come back."""
    import signal

    out = tmp_path / "fp.csv"
    argv = ["-q", "simulate", "--t1", "1200", "--t2", "35", "--t1rho", "45", "--output", str(out)]
    before = signal.getsignal(signal.SIGINT)
    try:
        assert main(argv) == 0
        assert signal.getsignal(signal.SIGINT) is before
        monkeypatch.setattr(sys, "argv", ["mrfviewer", *argv[:-1], str(tmp_path / "again.csv")])
        assert main() == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "--t1", "1200", "--t2", "-5", "--t1rho", "45", "--output", "x.csv"], "T2 must be finite"),
        (
            ["simulate", "--sequence", "missing.json", "--t1", "1", "--t2", "1", "--t1rho", "1", "--output", "x.csv"],
            "sequence file not found",
        ),
        (["reconstruct", "nothing.h5", "--output", "out"], "series file not found"),
        (["dictionary", "--grid", "nogrid.json", "--output", "d.h5"], "grid file not found"),
        (["synthesize", "--size", "3", "--output", "s.h5"], "between 8 and 2048"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mrfviewer: error:") and message in err[0]
    assert "Traceback" not in err[0]


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "fp.csv"
    out.write_text("keep")
    assert main(["simulate", "--t1", "1000", "--t2", "40", "--t1rho", "50", "--output", str(out)]) == 2
    assert out.read_text() == "keep"
    assert "--overwrite" in capsys.readouterr().err
    assert (
        main(["-q", "simulate", "--t1", "1000", "--t2", "40", "--t1rho", "50", "--output", str(out), "--overwrite"])
        == 0
    )
    assert out.read_text().startswith("index,real,imag")


def test_dictionary_command_and_reuse_in_reconstruct(tmp_path, tiny_files):
    seq, grid = tiny_files
    dic = tmp_path / "d.h5"
    assert main(["-q", "dictionary", "--sequence", str(seq), "--grid", str(grid), "--output", str(dic)]) == 0
    series = tmp_path / "s.h5"
    assert (
        main(
            [
                "-q",
                "synthesize",
                "--sequence",
                str(seq),
                "--phantom",
                "nist",
                "--size",
                "32",
                "--snr",
                "0",
                "--output",
                str(series),
            ]
        )
        == 0
    )
    out = tmp_path / "maps"
    assert main(["-q", "reconstruct", str(series), "--dictionary", str(dic), "--output", str(out)]) == 0
    assert (out / "T1rhomap.nii.gz").exists() and (out / "maps.npz").exists()
    # The NN method is not there yet: a clear message, not a crash.
    assert (
        main(
            [
                "-q",
                "reconstruct",
                str(series),
                "--dictionary",
                str(dic),
                "--method",
                "nn",
                "--output",
                str(tmp_path / "nn"),
            ]
        )
        == 2
    )


def test_help_and_version_run_as_a_program():
    run = subprocess.run([sys.executable, "-m", "mrfviewer.cli", "--help"], capture_output=True, text=True)
    assert run.returncode == 0
    for word in ("simulate", "dictionary", "synthesize", "reconstruct", "demo", "examples"):
        assert word in run.stdout
    run = subprocess.run([sys.executable, "-m", "mrfviewer.cli", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("mrfviewer ")


def test_internal_errors_are_one_line_without_debug(monkeypatch, capsys):
    import mrfviewer.cli as cli

    def boom(args, cancel):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(cli, "cmd_simulate", boom)
    assert main(["simulate", "--t1", "1", "--t2", "1", "--t1rho", "1", "--output", "x.csv"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: unexpected" in err and "Traceback" not in err
