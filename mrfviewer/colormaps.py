"""How maps are shown, in the viewer and in PNG exports alike: colours, windows, titles, orientation.

Relaxometry colour maps after Fuderer et al. (MRM 2025;93:490, doi 10.1002/mrm.30290):
lipari for T1 and navia for T2 and T1rho (from cmcrameri). The lowest colour is
reserved for invalid pixels; the table is remapped for the current window so it
is linear below upper / e and logarithmic above (after the authors'
``colorLogRemap``), and must be recomputed when the window changes. Colour-bar
ticks stay linear in the parameter. Differences (NN - DM in percent) use the
diverging, colour-blind safe vik, centred on zero.

Automatic windows come from percentiles of tissue (:func:`tissue_mask`): background
(NaN), voxels clipped at a bound of the estimator's range and fluid are left out
(synovial fluid at the dictionary's T1 and T2 maxima would otherwise set the window and
squash cartilage into the darkest colours). Titles read ``T1ρ (ms)``: one display name per map, the unit in
parentheses. Orientation letters (R/L, A/P, S/I) come from the DICOM geometry (LPS).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

#: Colour map of each map name (others: grey for PD, viridis for match, magma for uncertainty).
MAP_COLORMAPS = {"T1": "lipari", "T2": "navia", "T1rho": "navia"}
#: Maps bounded by an estimator's range (a dictionary's grid, a network's training set).
BOUNDED = ("T1", "T2", "T1rho")
#: No knee tissue has a T2 this long at 3 T: above it, a voxel is fluid (synovial fluid, effusion).
FLUID_T2_MS = 200.0
#: Name prefix of difference maps (NN - DM, percent): a diverging table centred on zero.
DIFFERENCE = "difference"
#: What a map is called on screen and in figures.
DISPLAY_NAMES = {"T1rho": "T1\u03c1", "raw": "signal", "match": "match"}
#: Percentile of tissue values that sets the top of an automatic window.
WINDOW_PERCENTILE = 99.0


def base_table(name: str, n: int = 256) -> np.ndarray:
    """(n, 4) RGBA table of a named colour map (cmcrameri's lipari/navia, else matplotlib)."""
    import matplotlib

    if name in ("lipari", "navia", "vik"):
        import cmcrameri.cm as cmc

        cmap = getattr(cmc, name)
    else:
        cmap = matplotlib.colormaps[name]
    return cmap(np.linspace(0, 1, n))


def colormap_for(map_name: str) -> str:
    if map_name.startswith(DIFFERENCE):
        return "vik"
    if map_name in MAP_COLORMAPS:
        return MAP_COLORMAPS[map_name]
    if map_name.startswith("uncertainty"):
        return "magma"
    return "viridis" if map_name == "match" else "gray"


def log_remap(table: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """The table remapped for window [lower, upper]: linear below upper/e, logarithmic above.

    Entry 0 keeps the original lowest colour (invalid pixels); valid values map to
    entries 1..n-1.
    """
    n = table.shape[0]
    if not upper > 0 or not upper > lower:
        return table.copy()
    a = upper / math.e
    m = max(a, lower)
    b = 1.0 / n + (a >= lower) * ((a - lower) / (2 * a - lower)) + 1e-7
    out = np.empty_like(table)
    out[0] = table[0]
    log_portion = 1.0 / (math.log(m) - math.log(upper)) if m != upper else 0.0
    for g in range(1, n):
        x = g * (upper - lower) / n + lower
        if x > m:
            f = n * ((math.log(m) - math.log(x)) * log_portion * (1 - b) + b)
        elif lower < a and x > lower:
            f = n * ((x - lower) / (a - lower) * (b - 1.0 / n)) + 1.0
        else:
            f = 1.0
        out[g] = table[min(n - 1, 1 + int(math.floor(f)))]
    return out


#: Invalid pixels of a difference map: neutral grey (vik's lowest colour would read as a large negative).
DIFFERENCE_INVALID = (0.13, 0.13, 0.13, 1.0)


def relaxometry_table(map_name: str, lower: float, upper: float, n: int = 256) -> np.ndarray:
    """The RGBA table to display ``map_name`` in window [lower, upper] (entry 0 = invalid)."""
    table = base_table(colormap_for(map_name), n)
    if map_name in MAP_COLORMAPS:
        return log_remap(table, lower, upper)
    if map_name.startswith(DIFFERENCE):
        table = table.copy()
        table[0] = DIFFERENCE_INVALID
    return table


def default_window(map_name: str, values: np.ndarray, tissue: np.ndarray | None = None) -> tuple[float, float]:
    """An automatic display window from percentiles of tissue.

    Relaxation times, PD and uncertainties: 0 to the 99th percentile; differences:
    symmetric about 0 (the 98th percentile of the magnitude); the match (a correlation): the
    1st percentile rounded down to 0.01, to 1; others: 1st to 99th percentile. ``tissue``
    (a mask the shape of ``values``) restricts the voxels the percentiles come from (leave
    out voxels clipped at a range bound and fluid: :func:`tissue_mask`); non-finite values
    never count.
    """
    finite = np.isfinite(values) if tissue is None else np.isfinite(values) & tissue
    chosen = values[finite]
    if chosen.size == 0 and tissue is not None:  # nothing but clipped voxels: use them all
        chosen = values[np.isfinite(values)]
    if chosen.size == 0:
        return 0.0, 1.0
    if map_name.startswith(DIFFERENCE):
        top = float(np.percentile(np.abs(chosen), 98))
        top = top if top > 0 else 1.0
        return -top, top
    if map_name == "match":  # correlations near 1: up to 1, from a round value below (readable ticks)
        lo = math.floor(float(np.percentile(chosen, 1)) * 100) / 100
        return (lo, 1.0) if lo < 1.0 else (0.99, 1.0)
    hi = float(np.percentile(chosen, WINDOW_PERCENTILE))
    starts_at_zero = map_name in MAP_COLORMAPS or map_name in ("PD", "raw") or map_name.startswith("uncertainty")
    lo = 0.0 if starts_at_zero else float(np.percentile(chosen, 1))
    return (lo, hi if hi > lo else lo + 1.0)


def tissue_mask(values: Mapping[str, np.ndarray], clipped: np.ndarray | None = None) -> np.ndarray:
    """Voxels automatic windows are taken from: not clipped at a range bound and not fluid.

    ``values`` are the maps of a result (fluid: T2 above :data:`FLUID_T2_MS`, where there
    is a T2 map); ``clipped`` the voxels at a bound of the estimator's range. A network
    that cannot reach the fluid's values stops short of them without touching a bound,
    so the T2 rule catches what the bounds miss. Background (NaN) never counts anyway.
    """
    keep = np.ones(next(iter(values.values())).shape, dtype=bool)
    if clipped is not None:
        keep &= ~clipped
    t2 = values.get("T2")
    if t2 is not None:
        with np.errstate(invalid="ignore"):
            keep &= ~(t2 > FLUID_T2_MS)
    return keep


def display_name(map_name: str) -> str:
    """``T1rho`` -> ``T1ρ``, ``uncertainty_T1`` -> ``T1 uncertainty``, ``difference_T2`` -> ``T2 NN - DM``."""
    if map_name.startswith("uncertainty_"):
        return f"{display_name(map_name[len('uncertainty_') :])} uncertainty"
    if map_name.startswith(DIFFERENCE + "_"):
        return f"{display_name(map_name[len(DIFFERENCE) + 1 :])} NN \u2212 DM"
    return DISPLAY_NAMES.get(map_name, map_name)


def map_title(map_name: str, unit: str, method: str | None = None) -> str:
    """A human title in one unit style: ``T1ρ (ms)``, ``PD (a.u.)``, ``match``; ``, DM`` for a method."""
    text = display_name(map_name) + (f" ({unit})" if unit not in ("", "1") else "")
    return f"{text}, {method.upper()}" if method else text


#: LPS axes: the patient direction of +x, +y, +z and of their opposites.
_TOWARDS = ("L", "P", "S")
_AWAY = ("R", "A", "I")
#: Views of a (Z, Y, X) volume: the array axes shown across and down.
PLANES = {"slice": ("x", "y"), "row": ("x", "z"), "column": ("z", "y")}


def direction_letter(direction: np.ndarray) -> str:
    """The patient direction (L/R, P/A, S/I, DICOM LPS) a vector points to most."""
    d = np.asarray(direction, dtype=np.float64)
    axis = int(np.argmax(np.abs(d)))
    return _TOWARDS[axis] if d[axis] > 0 else _AWAY[axis]


def array_directions(orientation: tuple[float, ...], slice_step: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Unit LPS directions of increasing x (column), y (row) and z (slice) of a (Z, Y, X) volume.

    ``orientation`` is ImageOrientationPatient (row then column direction cosines);
    ``slice_step`` the vector from one slice's position to the next (None: the normal).
    """
    x = np.asarray(orientation[:3], dtype=np.float64)
    y = np.asarray(orientation[3:], dtype=np.float64)
    z = np.cross(x, y) if slice_step is None or not np.any(slice_step) else np.asarray(slice_step, dtype=np.float64)
    return {"x": x, "y": y, "z": z / np.linalg.norm(z)}


def edge_labels(directions: dict[str, np.ndarray], plane: str = "slice") -> dict[str, str]:
    """Orientation letters at the left, right, top and bottom of a view of ``plane`` (see :data:`PLANES`).

    Across the screen the view shows its first axis increasing to the right, down the
    screen its second increasing downwards (rows top to bottom, as images are shown).
    """
    across, down = (directions[a] for a in PLANES[plane])
    return {
        "left": direction_letter(-across),
        "right": direction_letter(across),
        "top": direction_letter(-down),
        "bottom": direction_letter(down),
    }


def plane_name(directions: dict[str, np.ndarray], plane: str = "slice") -> str:
    """``axial``, ``coronal`` or ``sagittal``: the anatomical plane a view of ``plane`` shows."""
    across, down = (directions[a] for a in PLANES[plane])
    normal = np.cross(across, down)
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def to_rgba(values: np.ndarray, table: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Index ``values`` into ``table``: invalid (NaN) pixels get entry 0, valid ones 1..n-1."""
    n = table.shape[0]
    scaled = (np.nan_to_num(values, nan=lower) - lower) / (upper - lower)
    index = 1 + np.clip(np.floor(scaled * (n - 1)), 0, n - 2).astype(np.int64)
    index[~np.isfinite(values)] = 0
    return table[index]
