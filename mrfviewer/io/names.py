"""Safe file and folder names from untrusted text (DICOM tags, user input)."""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def safe_name(text: object, fallback: str = "unnamed", max_length: int = 64) -> str:
    """A name with no path separators, control characters, leading dots or reserved words.

    ``../../etc/x`` becomes ``etc_x``; the result is at most ``max_length`` characters.
    """
    normal = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    name = _UNSAFE.sub("_", normal).strip("._-")
    name = re.sub(r"_+", "_", name)[:max_length].strip("._-")
    if not name or name.upper().split(".")[0] in _RESERVED:
        return fallback
    return name
