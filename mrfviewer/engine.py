"""Progress reporting and cancellation shared by every long job.

Long work in the core (dictionary generation, matching, training, export) takes
an optional ``progress`` callback and an optional ``cancel`` token. The CLI
wires them to a progress bar and Ctrl-C; the GUI wires them to a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from mrfviewer.errors import Cancelled

#: ``progress(fraction, message)`` with ``fraction`` in [0, 1].
ProgressCallback = Callable[[float, str], None]


class CancelToken:
    """A thread-safe flag that a long job polls between chunks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` if :meth:`cancel` was called."""
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


def check_cancel(cancel: CancelToken | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` is set (``None`` never cancels)."""
    if cancel is not None:
        cancel.raise_if_cancelled()


def report(progress: ProgressCallback | None, fraction: float, message: str = "") -> None:
    """Call ``progress`` if given, with ``fraction`` clipped to [0, 1]."""
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def scaled(progress: ProgressCallback | None, start: float, stop: float) -> ProgressCallback | None:
    """A callback mapping a sub-job's [0, 1] onto [start, stop] of ``progress``."""
    if progress is None:
        return None

    def sub(fraction: float, message: str) -> None:
        progress(start + (stop - start) * fraction, message)

    return sub


def prefixed(progress: ProgressCallback | None, prefix: str) -> ProgressCallback | None:
    """A callback putting ``prefix: `` before every message (the stage of a longer job)."""
    if progress is None:
        return None

    def sub(fraction: float, message: str) -> None:
        progress(fraction, f"{prefix}: {message}" if message else prefix)

    return sub
