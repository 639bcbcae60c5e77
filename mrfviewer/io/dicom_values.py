"""Values that every DICOM object we write must get right, whoever built it (pydicom or highdicom)."""

from __future__ import annotations

import pydicom
from pydicom.valuerep import format_number_as_ds

#: Decimal strings (DS) hold at most 16 characters (PS3.5 6.2).
DS_MAX_CHARS = 16


def ds_value(value: float) -> str:
    """``value`` as a decimal string of at most 16 characters (as many digits as fit)."""
    return format_number_as_ds(float(value))


def fit_decimal_strings(ds: pydicom.Dataset) -> int:
    """Rewrite every DS value of ``ds`` (nested sequences included) that is longer than 16 characters.

    Python's shortest round-trip text of a float takes up to 17 significant digits
    (``6.666666666666667``); validators (dciodvfy) and strict readers refuse that. The
    value keeps as many digits as fit, a relative change below 1e-14. Returns how many
    values changed.
    """
    changed = 0
    for elem in ds.iterall():
        if elem.VR != "DS" or elem.value is None or elem.value == "":
            continue
        values = list(elem.value) if elem.VM > 1 else [elem.value]
        texts = [str(v).strip() for v in values]
        if all(len(t) <= DS_MAX_CHARS for t in texts):
            continue
        fitted = [t if len(t) <= DS_MAX_CHARS else ds_value(float(t)) for t in texts]
        changed += sum(a != b for a, b in zip(texts, fitted, strict=True))
        elem.value = fitted if elem.VM > 1 else fitted[0]
    return changed
