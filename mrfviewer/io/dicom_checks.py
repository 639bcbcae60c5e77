"""Header values of a DICOM image checked before they are used: each bad value is named, never guessed.

A scan reads every file of a folder; the values an MRF series is assembled from (pixel
spacing, positions, orientation, thickness, bit depths, rescale, photometric
interpretation, how the pixel data are encoded) are parsed here. Each parser returns the
value (None when absent) and a problem (None when fine) that names the attribute and the
value, so the reader can refuse the series with one line naming the file and the field.
"""

from __future__ import annotations

import math
from typing import Any

#: Positions and sizes beyond these (mm) are not from a scanner: a kilometre, ten metres.
MAX_POSITION_MM = 1e6
MAX_SPACING_MM = 1e4
#: Rescaled values must stay far inside float32 (3.4e38), where the series is held.
MAX_RESCALED = 1e38
#: Direction cosines: unit vectors at right angles, within rounding of printed values.
COSINE_TOLERANCE = 1e-3

Checked = tuple[Any, str | None]


def _text(value: Any) -> str:
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _numbers(value: Any) -> list[float] | None:
    """The numbers of a (multi-)value, or None when one is not a number."""
    values = value if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue" else [value]
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, str | bytes) and not value.strip())


def vector(keyword: str, value: Any, n: int, limit: float) -> Checked:
    """A tuple of ``n`` finite numbers within +-``limit``."""
    if _absent(value):
        return None, None
    numbers = _numbers(value)
    if numbers is None or len(numbers) != n:
        return None, f"{keyword} '{_text(value)}' is not {n} numbers"
    if not all(math.isfinite(v) and abs(v) <= limit for v in numbers):
        return None, f"{keyword} '{_text(value)}' has values beyond +-{limit:g}"
    return tuple(numbers), None


def spacing(keyword: str, value: Any, n: int) -> Checked:
    """``n`` positive finite spacings (mm), as PixelSpacing (n = 2) or SliceThickness (n = 1)."""
    if _absent(value):
        return None, None
    numbers = _numbers(value)
    if numbers is None or len(numbers) != n:
        what = "two numbers (row and column spacing)" if n == 2 else "a number"
        return None, f"{keyword} '{_text(value)}' is not {what}"
    if not all(math.isfinite(v) and 0 < v <= MAX_SPACING_MM for v in numbers):
        return None, f"{keyword} '{_text(value)}' is not positive (up to {MAX_SPACING_MM:g} mm)"
    return (tuple(numbers) if n > 1 else numbers[0]), None


def orientation(value: Any) -> Checked:
    """ImageOrientationPatient: two unit direction cosine vectors at right angles."""
    parsed, problem = vector("ImageOrientationPatient", value, 6, 1.0 + COSINE_TOLERANCE)
    if parsed is None:
        return None, problem
    row, col = parsed[:3], parsed[3:]
    norms = (math.sqrt(sum(v * v for v in row)), math.sqrt(sum(v * v for v in col)))
    dot = sum(a * b for a, b in zip(row, col, strict=True))
    if any(abs(n - 1) > COSINE_TOLERANCE for n in norms) or abs(dot) > COSINE_TOLERANCE:
        return None, (
            f"ImageOrientationPatient '{_text(value)}' is not two unit vectors at right angles "
            f"(lengths {norms[0]:.4g} and {norms[1]:.4g}, dot product {dot:.2g})"
        )
    return parsed, None


def bits(allocated: Any, stored: Any, high: Any) -> Checked:
    """(BitsAllocated, BitsStored): 1 <= stored <= allocated <= 64 and stored - 1 <= high < allocated."""
    a = _numbers(allocated) if not _absent(allocated) else [16.0]
    s = _numbers(stored) if not _absent(stored) else a
    if a is None or len(a) != 1 or a[0] not in (1, 8, 16, 32, 64):
        return None, f"BitsAllocated '{_text(allocated)}' is not 1, 8, 16, 32 or 64"
    if s is None or len(s) != 1 or not 1 <= s[0] <= a[0] or s[0] != int(s[0]):
        return None, f"BitsStored '{_text(stored)}' is not between 1 and BitsAllocated ({int(a[0])})"
    if not _absent(high):
        h = _numbers(high)
        if h is None or len(h) != 1 or not s[0] - 1 <= h[0] < a[0]:
            return None, f"HighBit '{_text(high)}' does not fit BitsStored {int(s[0])} and BitsAllocated {int(a[0])}"
    return (int(a[0]), int(s[0])), None


def rescale(slope: Any, intercept: Any, bits_stored: int) -> Checked:
    """(RescaleSlope, RescaleIntercept): finite, a non-zero slope, rescaled values within float32."""
    s = 1.0 if _absent(slope) else (_numbers(slope) or [math.nan])[0]
    i = 0.0 if _absent(intercept) else (_numbers(intercept) or [math.nan])[0]
    if not math.isfinite(s) or s == 0:
        return None, f"RescaleSlope '{_text(slope)}' is not a non-zero number"
    if not math.isfinite(i):
        return None, f"RescaleIntercept '{_text(intercept)}' is not a number"
    if abs(s) * 2.0**bits_stored + abs(i) > MAX_RESCALED:
        return None, f"RescaleSlope '{_text(slope)}' and RescaleIntercept '{_text(intercept)}' overflow float32"
    return (s, i), None


def photometric(value: Any, samples: Any, has_palette: bool) -> str | None:
    """A problem unless the image is greyscale (MONOCHROME1/2, one sample per pixel)."""
    text = "" if _absent(value) else str(value).strip().upper()
    if text == "PALETTE COLOR" and not has_palette:
        return "PhotometricInterpretation 'PALETTE COLOR' without a palette colour table"
    if text and text not in ("MONOCHROME1", "MONOCHROME2"):
        return f"PhotometricInterpretation '{text}': a colour image, not MR magnitude or phase"
    n = _numbers(samples) if not _absent(samples) else [1.0]
    if n is None or n != [1.0]:
        return f"SamplesPerPixel '{_text(samples)}': a colour image, not MR magnitude or phase"
    return None
