"""Atomic file writes: a temporary file in the target folder, then a rename.

A reader never sees a half-written file, a failed or cancelled write leaves
nothing behind, and an existing file is only replaced when the caller says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from mrfviewer.errors import MRFError

# mkstemp creates 0600 files; finished files get the usual permissions for the user's umask.
_UMASK = os.umask(0)
os.umask(_UMASK)


def check_writable_target(path: Path, overwrite: bool) -> None:
    """Raise :class:`MRFError` if ``path`` exists and ``overwrite`` is false."""
    if path.exists() and not overwrite:
        raise MRFError(f"{path} already exists; choose another output or allow overwriting (--overwrite)")


def check_output_folder(path: Path) -> None:
    """Raise :class:`MRFError` if ``path`` exists and is not a folder (an output folder must be one)."""
    if path.exists() and not path.is_dir():
        raise MRFError(f"{path} exists and is not a folder; choose another output")


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary file keeps the final suffix (libraries such as nibabel choose
    the format from it). On any exception the temporary file is removed and
    ``path`` is left untouched.
    """
    path = Path(path)
    check_writable_target(path, overwrite)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.name[:40]}.", suffix=".part" + "".join(path.suffixes), dir=folder
        )
    except OSError as exc:
        raise MRFError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not overwrite and path.exists():
            raise MRFError(f"{path} appeared while writing; not overwriting it")
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as exc:
        raise MRFError(f"writing {path} failed: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write(path: str | Path, writer: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        writer(tmp)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write, overwrite=overwrite)


def atomic_write_text(path: str | Path, text: str, overwrite: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


@contextlib.contextmanager
def staged_folder(folder: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden staging folder inside ``folder``; its files move into ``folder`` when the
    block completes, all or nothing.

    On an error or a cancel the staged files go, and ``folder`` too if this call created it
    and it is empty. Without ``overwrite`` an existing file of the same name stops the move
    before any file is moved.
    """
    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    except OSError as exc:
        raise MRFError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    try:
        yield staging
        staged = sorted(staging.iterdir())
        for item in staged:
            check_writable_target(folder / item.name, overwrite)
        for item in staged:
            target = folder / item.name
            if item.is_dir() and target.is_dir():  # --overwrite of a folder: the old one goes once the new is in
                aside = Path(tempfile.mkdtemp(prefix=".replaced-", dir=folder))
                os.replace(target, aside / item.name)
                os.replace(item, target)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.replace(item, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
