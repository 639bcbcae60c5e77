"""Running core jobs off the GUI thread, with progress, cancel and readable errors.

A job is a plain callable ``fn(progress, cancel) -> result`` from the core. The
runner executes one job at a time on a QThread; a second request while one runs
is refused (the caller shows why). A cancelled job emits ``cancelled`` and never
``finished``; an error emits ``failed`` with a one-line message (and the
traceback goes to the log).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6 import QtCore

from mrfviewer.engine import CancelToken
from mrfviewer.errors import Cancelled, MRFError

log = logging.getLogger(__name__)

Job = Callable[[Callable[[float, str], None], CancelToken], Any]


class _JobThread(QtCore.QThread):
    progress = QtCore.Signal(float, str)
    done = QtCore.Signal(object)
    error = QtCore.Signal(str)
    stopped = QtCore.Signal()

    def __init__(self, fn: Job, token: CancelToken):
        super().__init__()
        self.fn, self.token = fn, token

    def run(self) -> None:
        try:
            result = self.fn(lambda f, m: self.progress.emit(float(f), str(m)), self.token)
        except Cancelled:
            self.stopped.emit()
            return
        except MRFError as exc:
            self.error.emit(str(exc))
            return
        except MemoryError:
            self.error.emit("out of memory: lower the memory setting or use a smaller input")
            return
        except Exception as exc:  # noqa: BLE001 - the window must survive any job failure
            log.error("job failed:\n%s", traceback.format_exc())
            self.error.emit(f"internal error: {type(exc).__name__}: {exc}")
            return
        if self.token.cancelled:
            self.stopped.emit()
        else:
            self.done.emit(result)


class JobRunner(QtCore.QObject):
    """Runs one core job at a time on a worker thread."""

    started = QtCore.Signal(str)
    progress = QtCore.Signal(str, float, str, float)  # kind, fraction, message, seconds left (-1 unknown)
    finished = QtCore.Signal(str, object)
    failed = QtCore.Signal(str, str)
    cancelled = QtCore.Signal(str)

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self._thread: _JobThread | None = None
        self._kind = ""
        self._token: CancelToken | None = None
        self._start = 0.0

    @property
    def busy(self) -> bool:
        return self._thread is not None

    @property
    def kind(self) -> str:
        return self._kind

    def start(self, kind: str, fn: Job) -> bool:
        """Start ``fn`` as job ``kind``; returns False (and starts nothing) if a job runs."""
        if self._thread is not None:
            return False
        self._kind, self._token, self._start = kind, CancelToken(), time.monotonic()
        thread = _JobThread(fn, self._token)
        thread.progress.connect(self._on_progress)
        thread.done.connect(lambda result: self._end(lambda: self.finished.emit(kind, result)))
        thread.error.connect(lambda message: self._end(lambda: self.failed.emit(kind, message)))
        thread.stopped.connect(lambda: self._end(lambda: self.cancelled.emit(kind)))
        self._thread = thread
        self.started.emit(kind)
        thread.start()
        return True

    def cancel(self) -> None:
        """Ask the running job to stop at its next check (no-op when idle)."""
        if self._token is not None:
            self._token.cancel()

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the job thread ends (for shutdown and tests)."""
        return self._thread.wait(msecs) if self._thread is not None else True

    def _on_progress(self, fraction: float, message: str) -> None:
        elapsed = time.monotonic() - self._start
        left = elapsed * (1 - fraction) / fraction if fraction > 0.02 else -1.0
        self.progress.emit(self._kind, fraction, message, left)

    def _end(self, emit: Callable[[], None]) -> None:
        thread = self._thread
        self._thread, self._token = None, None
        if thread is not None:
            thread.wait()
        emit()
