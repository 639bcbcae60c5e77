"""Where messages go: the user's terminal gets mrfviewer's own one-line messages, a log file the rest.

Third-party warnings (pydicom, h5py, torch, ...) and library log lines (dask's scheduler and
workers) are useful when something goes wrong, but on a terminal they bury the one line that
matters. They go to ``mrfviewer.log`` in the user log folder (``MRFVIEWER_LOG_DIR`` overrides
it), as do the tracebacks of internal errors.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

_HANDLERS: list[logging.Handler] = []


def log_dir() -> Path:
    env = os.environ.get("MRFVIEWER_LOG_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_log_dir("mrfviewer"))


def log_file() -> Path:
    return log_dir() / "mrfviewer.log"


class _OursOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "mrfviewer" or record.name.startswith("mrfviewer.")


def setup(debug: bool = False) -> Path | None:
    """Console: mrfviewer's warnings as ``mrfviewer: ...``; file: everything from INFO up. Idempotent."""
    root = logging.getLogger()
    for handler in _HANDLERS:
        root.removeHandler(handler)
        handler.close()
    _HANDLERS.clear()
    root.setLevel(logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if debug else logging.WARNING)
    console.setFormatter(logging.Formatter("mrfviewer: %(message)s"))
    if not debug:
        console.addFilter(_OursOnly())
    _HANDLERS.append(console)
    path: Path | None = log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        to_file: logging.Handler = logging.FileHandler(path, encoding="utf-8")  # type: ignore[arg-type]
        to_file.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"))
    except OSError:
        to_file, path = logging.NullHandler(), None  # no writable log folder: the terminal still works
    _HANDLERS.append(to_file)
    for handler in _HANDLERS:
        root.addHandler(handler)
    logging.captureWarnings(True)  # warnings.warn(...) of any library -> the log file
    return path
