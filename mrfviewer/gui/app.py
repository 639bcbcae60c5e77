"""Starting the desktop application, interactively or scripted (``--screenshot``)."""

from __future__ import annotations

import logging
import math
import signal
import sys
import traceback
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from mrfviewer.errors import MRFError
from mrfviewer.gui.main_window import MainWindow
from mrfviewer.resources import assets_dir

#: Qt notices that say nothing to a user (the offscreen platform of --screenshot prints this per window).
_QUIET = ("This plugin does not support propagateSizeHints()",)


def _qt_messages(kind: QtCore.QtMsgType, context: QtCore.QMessageLogContext, message: str) -> None:
    """Qt's own messages: harmless platform notices dropped, the rest to stderr as Qt would print them."""
    if message in _QUIET:
        return
    print(message, file=sys.stderr)


def _guard(window: MainWindow) -> None:
    """An exception escaping a Qt slot becomes one line in the window; its traceback goes to the log file.

    Without this, PySide prints the traceback on the terminal and the user sees nothing in the
    window while the action silently did not happen.
    """

    def hook(kind: type[BaseException], error: BaseException, tb: object) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, tb)  # type: ignore[arg-type]
            return
        text = "".join(traceback.format_exception(kind, error, tb))  # type: ignore[arg-type]
        logging.getLogger("mrfviewer.gui").info("internal error in the viewer:\n%s", text)
        window.statusBar().showMessage(f"internal error: {kind.__name__}: {error} (details in the log file)", 20000)

    sys.excepthook = hook


def _quit_on_terminate(app: QtWidgets.QApplication, window: MainWindow) -> None:
    """SIGTERM (a session ending, ``kill``) closes the window as Quit does: jobs cancelled, layout saved.

    Python runs signal handlers between bytecodes only, and Qt's event loop runs none: a timer
    gives it the chance four times a second.
    """

    def handler(signum: int, frame: object) -> None:
        window.ask_before_quitting = False
        QtCore.QTimer.singleShot(0, window.close)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded): leave signals alone
        return
    timer = QtCore.QTimer(app)
    timer.timeout.connect(lambda: None)
    timer.start(250)


def run_gui(
    path: Path | None = None,
    *,
    demo: bool = False,
    screenshot: Path | None = None,
    method: str | None = None,
    click: tuple[int, int] | None = None,
) -> int:
    """Open the main window; with ``screenshot``: load, reconstruct, click, save the window and exit.

    Returns the exit code (2 when a scripted step fails, with the message on stderr).
    """
    QtCore.qInstallMessageHandler(_qt_messages)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("mrfviewer")
    icon = assets_dir() / "icons" / "mrfviewer.png"
    if icon.exists():
        app.setWindowIcon(QtGui.QIcon(str(icon)))
    window = MainWindow()
    window.show()
    _guard(window)
    _quit_on_terminate(app, window)
    if screenshot is None:
        if demo:
            window.open_demo()
        elif path is not None:
            window.open_path(path)
        return app.exec()

    status = {"code": 0}

    def fail(message: str) -> None:
        print(f"mrfviewer: error: {message}", file=sys.stderr)
        status["code"] = 2
        finish()

    def finish() -> None:
        if status.get("done"):
            return
        status["done"] = 1
        app.processEvents()
        if status["code"] == 0:
            window.grab().save(str(screenshot))
        window.close()
        app.quit()

    def after_load() -> None:
        if method is None:
            QtCore.QTimer.singleShot(50, after_maps)
            return
        window.method.setCurrentText(method.upper())
        window.reconstruct()

    def after_maps(*_: object) -> None:
        if click is not None and window.series is not None:
            x, y = click
            z = window.session.slice
            nn = window.maps.get("nn")
            shape = window.series.spatial_shape
            inside = 0 <= y < shape[1] and 0 <= x < shape[2]
            if nn is not None and inside and math.isfinite(float(nn.values["T1"][z, y, x])):
                # Wait for the NN fingerprint (simulated in the background) so that it is in the picture.
                window.nn_curve_added.connect(lambda: QtCore.QTimer.singleShot(100, finish))
                window.show_pixel(z, y, x)
                return
            try:
                window.session.set_pixel(z, y, x)
            except MRFError as exc:
                fail(str(exc))
                return
        QtCore.QTimer.singleShot(100, finish)

    window.loaded.connect(after_load)
    window.reconstructed.connect(after_maps)
    window.job_failed.connect(fail)
    if demo:
        window.open_demo()
    elif path is not None:
        window.open_path(path)
    else:
        QtCore.QTimer.singleShot(100, finish)
    app.exec()
    return status["code"]
