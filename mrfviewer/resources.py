"""Where the shipped assets (sequences, colormaps, icons) and models live.

In a source checkout (editable install) they sit at the repository top as
``assets/`` and ``models/``; in a wheel or a frozen app they are copied inside
the package as ``mrfviewer/assets`` and ``mrfviewer/models``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    return _PACKAGE.parent / name


def assets_dir() -> Path:
    """The shipped ``assets`` folder."""
    return _find("assets")


def models_dir() -> Path:
    """The shipped ``models`` folder (NN weights and their metadata)."""
    return _find("models")


def shipped_sequences_dir() -> Path:
    """Folder of the sequence files shipped with mrfviewer."""
    return assets_dir() / "sequences"


def default_sequence_path() -> Path:
    """The shipped knee T1/T2/T1rho MRF sequence."""
    return shipped_sequences_dir() / "knee_t1_t2_t1rho.json"
