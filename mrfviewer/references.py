"""Reference values of ROIs: the truth of a digital phantom, NIST sphere values, nominal knee tissues.

NIST/ISMRM system phantom v1 at 3 T (Stupic et al., MRM 2021;86:1194; values in
:mod:`mrfviewer.phantoms`): template spheres are read against the array the series shows,
the T1 array (NiCl2) or the T2 array (MnCl2); T1rho is taken equal to T2 there.
"""

from __future__ import annotations

import numpy as np

from mrfviewer.phantoms import NIST_T1_ARRAY, NIST_T2_ARRAY, knee_tissue

NIST_ARRAYS = {"T1": NIST_T1_ARRAY, "T2": NIST_T2_ARRAY}
#: ROI name of the template's sphere ``i`` (1-based); label maps of the NIST phantom name
#: their spheres "sphere i", so the template's get their own names.
TEMPLATE_PREFIX = "template sphere "


def template_sphere_name(i: int) -> str:
    return f"{TEMPLATE_PREFIX}{i}"


def nist_array_of(description: str) -> str:
    """The NIST array a series shows, from its description ("T1 array" or else the T2 array)."""
    return "T1" if "t1 array" in description.lower() else "T2"


def _sphere_number(label: str) -> int | None:
    for prefix in (TEMPLATE_PREFIX, "sphere "):
        if label.startswith(prefix) and label[len(prefix) :].isdigit():
            return int(label[len(prefix) :])
    return None


def roi_reference(
    label: str,
    map_name: str,
    mask: np.ndarray | None = None,
    truth: dict[str, np.ndarray] | None = None,
    nist_array: str = "T2",
) -> float | None:
    """Reference value of an ROI for one map, or None.

    The ground truth of a digital phantom (the mean of its truth map in the ROI) when the
    series carries it; else a NIST sphere's value in ``nist_array`` ("T1" or "T2"); else the
    nominal value of a knee tissue of that name.
    """
    if map_name not in ("T1", "T2", "T1rho", "PD"):
        return None
    truth_map = (truth or {}).get(map_name)
    if truth_map is not None and mask is not None and truth_map.shape == mask.shape and mask.any():
        return float(np.mean(truth_map[mask]))
    sphere = _sphere_number(label)
    if sphere is not None and 1 <= sphere <= 14:
        if map_name == "PD":
            return None
        table = NIST_ARRAYS.get(nist_array, NIST_T2_ARRAY)
        return float(table["T1" if map_name == "T1" else "T2"][sphere - 1])
    tissue = knee_tissue(label)
    return None if tissue is None else float(tissue.value(map_name))
