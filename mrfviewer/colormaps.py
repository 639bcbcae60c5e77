"""Relaxometry colour maps (Fuderer et al., MRM 2025;93:490, doi 10.1002/mrm.30290).

lipari for T1 and navia for T2 and T1rho (from cmcrameri). The lowest colour is
reserved for invalid pixels; the table is remapped for the current window so it
is linear below upper / e and logarithmic above (after the authors'
``colorLogRemap``), and must be recomputed when the window changes. Colour-bar
ticks stay linear in the parameter.
"""

from __future__ import annotations

import math

import numpy as np

#: Colour map of each map name (others: grey for PD, viridis for match, magma for uncertainty).
MAP_COLORMAPS = {"T1": "lipari", "T2": "navia", "T1rho": "navia"}


def base_table(name: str, n: int = 256) -> np.ndarray:
    """(n, 4) RGBA table of a named colour map (cmcrameri's lipari/navia, else matplotlib)."""
    import matplotlib

    if name in ("lipari", "navia"):
        import cmcrameri.cm as cmc

        cmap = getattr(cmc, name)
    else:
        cmap = matplotlib.colormaps[name]
    return cmap(np.linspace(0, 1, n))


def colormap_for(map_name: str) -> str:
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


def relaxometry_table(map_name: str, lower: float, upper: float, n: int = 256) -> np.ndarray:
    """The RGBA table to display ``map_name`` in window [lower, upper] (entry 0 = invalid)."""
    table = base_table(colormap_for(map_name), n)
    if map_name in MAP_COLORMAPS:
        return log_remap(table, lower, upper)
    return table


def default_window(map_name: str, values: np.ndarray) -> tuple[float, float]:
    """A sensible display window: 0 to the 99th percentile for times, 1st-99th percentile otherwise."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    hi = float(np.percentile(finite, 99))
    lo = (
        0.0
        if map_name in MAP_COLORMAPS or map_name == "PD" or map_name.startswith("uncertainty")
        else float(np.percentile(finite, 1))
    )
    return (lo, hi if hi > lo else lo + 1.0)


def to_rgba(values: np.ndarray, table: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Index ``values`` into ``table``: invalid (NaN) pixels get entry 0, valid ones 1..n-1."""
    n = table.shape[0]
    scaled = (np.nan_to_num(values, nan=lower) - lower) / (upper - lower)
    index = 1 + np.clip(np.floor(scaled * (n - 1)), 0, n - 2).astype(np.int64)
    index[~np.isfinite(values)] = 0
    return table[index]
