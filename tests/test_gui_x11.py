"""Real mouse and keyboard events on an X server: ``tests/x11_cases.py`` under Xvfb with a window manager.

The cases run in their own process: the rest of the suite uses Qt's offscreen platform, and a
process has one. pytest-xvfb (the ``dev`` extra) starts a 1600 x 1000 Xvfb for that process;
xdotool sends the events. Skipped, with the reason, where Xvfb, xdotool or a window manager
is missing.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

WINDOW_MANAGERS = ("openbox", "fluxbox", "xfwm4", "metacity")


def _missing() -> str | None:
    if not sys.platform.startswith("linux"):
        return "real X input events are tested on Linux only"
    if shutil.which("Xvfb") is None:
        return "no X server: Xvfb is not installed (apt install xvfb)"
    if shutil.which("xdotool") is None:
        return "xdotool is not installed (apt install xdotool)"
    if not any(shutil.which(n) for n in WINDOW_MANAGERS):
        return "no window manager (apt install openbox)"
    try:
        import pytest_xvfb  # noqa: F401
    except ImportError:
        return "pytest-xvfb is not installed (pip install -e '.[dev]')"
    missing = _xcb_libraries_missing()
    if missing:
        return (
            f"Qt's xcb platform plugin lacks system libraries: {', '.join(missing)} (apt install the libxcb-* packages)"
        )
    return None


def _xcb_libraries_missing() -> list[str]:
    """Shared libraries Qt's X11 platform plugin needs but cannot find (ldd), e.g. libxcb-cursor.so.0."""
    from PySide6 import QtCore

    plugin = Path(QtCore.QLibraryInfo.path(QtCore.QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / "libqxcb.so"
    if not plugin.exists() or shutil.which("ldd") is None:
        return []
    out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    return sorted({line.split()[0] for line in out.splitlines() if "not found" in line})


@pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
def test_real_input_events_under_xvfb(tmp_path):
    cases = Path(__file__).with_name("x11_cases.py")
    env = dict(os.environ, QT_QPA_PLATFORM="xcb")
    env.pop("DISPLAY", None)  # the inner run's own Xvfb, not whatever this process sees
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "xvfb_width=1600",
        "-o",
        "xvfb_height=1000",
        "-o",
        "xvfb_colordepth=24",
        "--basetemp",
        str(tmp_path / "inner"),
        str(cases),
    ]
    # Its own process group: an inner run that dies leaves no X server or window manager behind.
    inner = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).parents[1],
        start_new_session=True,
    )
    try:
        stdout, stderr = inner.communicate(timeout=900)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(inner.pid, signal.SIGTERM)
    run = subprocess.CompletedProcess(command, inner.returncode, stdout, stderr)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout
