"""Random tissue parameters inside a grid's ranges and constraints (test and training sets)."""

from __future__ import annotations

import numpy as np

from mrfviewer.grid import ParameterGrid, _parse_constraint

_COLUMN = {"t1_ms": 0, "t2_ms": 1, "t1rho_ms": 2}


def sample_parameters(grid: ParameterGrid, n: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """``n`` parameter sets (T1, T2, T1rho, B1), log-uniform within the grid's ranges.

    Rejection sampling keeps the grid's constraints (e.g. T2 <= T1rho <= T1), so
    the samples cover the same region as the dictionary but lie off its grid.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ranges = grid.ranges()
    lows = np.log([ranges[p][0] for p in ("T1", "T2", "T1rho", "B1")])
    highs = np.log([ranges[p][1] for p in ("T1", "T2", "T1rho", "B1")])
    rules = [tuple(_COLUMN[a] for a in _parse_constraint(c)) for c in grid.constraints]
    out = np.empty((0, 4))
    for _ in range(1000):
        draw = np.exp(rng.uniform(lows, highs, size=(max(2 * (n - len(out)), 64), 4)))
        keep = np.ones(len(draw), dtype=bool)
        for lhs, rhs in rules:
            keep &= draw[:, lhs] <= draw[:, rhs]
        out = np.concatenate([out, draw[keep]])
        if len(out) >= n:
            return out[:n]
    raise RuntimeError("could not sample parameters inside the grid constraints")
