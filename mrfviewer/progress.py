"""Progress of long jobs on a terminal or in a log.

On a terminal: a bar (tqdm) with the stage and the time left. Elsewhere (logs, CI, batch
jobs, pipes): a timestamped line every :data:`LINE_INTERVAL_S` seconds and at the end,
so that a job that runs for minutes is never silent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from mrfviewer.engine import ProgressCallback

#: Seconds between progress lines when the stream is not a terminal.
LINE_INTERVAL_S = 5.0


def _eta(start: float, fraction: float) -> str:
    elapsed = time.monotonic() - start
    if fraction < 0.02 or fraction >= 1 or elapsed < 1:
        return ""
    return f", about {elapsed * (1 - fraction) / fraction:.0f} s left"


@contextlib.contextmanager
def progress_reporter(
    label: str, enabled: bool = True, stream: TextIO | None = None, interval_s: float = LINE_INTERVAL_S
) -> Iterator[ProgressCallback]:
    """A progress callback ``(fraction, message)`` that draws a bar or writes lines (see the module docstring)."""
    stream = stream if stream is not None else sys.stderr
    if not enabled:
        yield lambda fraction, message: None
        return
    if getattr(stream, "isatty", lambda: False)():
        with _bar(label, stream) as update:
            yield update
        return
    lines = _Lines(label, stream, interval_s)
    try:
        yield lines.update
    finally:
        lines.close()


class _Lines:
    """Timestamped progress lines, at most one every ``interval_s`` seconds, and the last state at the end."""

    def __init__(self, label: str, stream: TextIO, interval_s: float) -> None:
        self.label, self.stream, self.interval_s = label, stream, interval_s
        self.start = time.monotonic()
        self.last: float | None = None
        self.fraction, self.message = 0.0, ""

    def line(self) -> None:
        stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        text = f"{stamp} {self.label}: {100 * self.fraction:3.0f}%" + (f" {self.message}" if self.message else "")
        print(text + _eta(self.start, self.fraction), file=self.stream, flush=True)

    def update(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message
        now = time.monotonic()
        if self.last is None or now - self.last >= self.interval_s:
            self.last = now
            self.line()

    def close(self) -> None:
        if self.last is not None and time.monotonic() - self.last > 0.5:
            self.line()  # the last state, so that a log shows where the job ended


@contextlib.contextmanager
def _bar(label: str, stream: TextIO) -> Iterator[ProgressCallback]:
    from tqdm import tqdm

    bar = tqdm(
        total=1000,
        desc=label,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
        file=stream,
        leave=False,
    )
    last = [0.0]

    def update(fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - last[0] < 0.2 and fraction < 1.0:  # redraw at most 5 times a second
            return
        last[0] = now
        bar.n = int(round(fraction * 1000))
        bar.set_postfix_str(message[:40], refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()
