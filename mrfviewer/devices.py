"""Compute devices and threads: ``--device auto|cpu|cuda`` and torch's thread setting.

``auto`` is a CUDA GPU when torch sees one, else the CPU; ``cuda`` asked for on a
machine without one falls back to the CPU with a warning (recorded with the result),
so a setting written on one machine still runs on another.

Threads: torch splits every elementwise op larger than its grain (32768 elements)
across its intra-op threads, which then wait for each other at the end of every op.
Code issuing thousands of small ops (the EPG: a few per pulse) collapses when one core
is busy with another process (measured 8-38x slower than one thread). Such code runs
its ops on one thread each (:func:`single_threaded_ops`) and uses the cores by running
independent chunks in parallel threads (:func:`usable_cores`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

import torch

from mrfviewer.errors import MRFError
from mrfviewer.settings import DEVICES

log = logging.getLogger(__name__)


def cuda_available() -> bool:
    """Whether torch can use a CUDA device (False on CPU-only builds)."""
    try:
        return bool(torch.cuda.is_available())
    except (RuntimeError, AssertionError):  # a broken driver counts as none
        return False


def resolve_device(device: str) -> tuple[torch.device, str | None]:
    """The torch device for a requested ``device`` and a warning when it fell back to the CPU.

    Raises :class:`MRFError` for a name that is none of :data:`DEVICES` (``cuda:N`` is accepted).
    """
    name = str(device).strip().lower()
    if name not in DEVICES and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise MRFError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {device!r}")
    if name == "cpu":
        return torch.device("cpu"), None
    if cuda_available():
        if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
            return torch.device("cpu"), f"{name} not present ({torch.cuda.device_count()} CUDA devices): ran on the CPU"
        return torch.device("cuda" if name == "auto" else name), None
    if name == "auto":
        return torch.device("cpu"), None
    return torch.device("cpu"), f"{name} requested but torch sees no CUDA device: ran on the CPU"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at most torch's thread setting."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, torch.get_num_threads()))


_lock = threading.Lock()
_users = [0]
_saved = [1]


@contextlib.contextmanager
def single_threaded_ops() -> Iterator[None]:
    """Torch ops on one thread each while inside (threads started inside keep that too).

    Nested and concurrent uses share one setting; the last to leave restores torch's
    thread count.
    """
    with _lock:
        if _users[0] == 0:
            _saved[0] = torch.get_num_threads()
            torch.set_num_threads(1)
        _users[0] += 1
    try:
        yield
    finally:
        with _lock:
            _users[0] -= 1
            if _users[0] == 0:
                torch.set_num_threads(_saved[0])
