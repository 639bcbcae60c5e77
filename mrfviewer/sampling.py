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


#: The knee's tissue range (ms): cartilage, meniscus, muscle, marrow and fat at 3 T (see mrfviewer.phantoms).
KNEE_T1_MS = (300.0, 2000.0)
KNEE_T2_MS = (20.0, 120.0)
#: T1rho / T2 in knee tissues lies between 1 and about 1.8 (spin locking slows the decay).
KNEE_T1RHO_OVER_T2 = (1.0, 1.8)


def sample_knee(grid: ParameterGrid, n: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """``n`` parameter sets of knee tissue: T1 and T2 log-uniform in the knee's range, T1rho a ratio of T2.

    B1 is uniform over the grid's B1 range. The sets respect the grid's ranges and constraints.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ranges = grid.ranges()
    out = np.empty((0, 4))
    for _ in range(1000):
        m = max(2 * (n - len(out)), 64)
        t1 = np.exp(rng.uniform(np.log(KNEE_T1_MS[0]), np.log(KNEE_T1_MS[1]), m))
        t2 = np.exp(rng.uniform(np.log(KNEE_T2_MS[0]), np.log(KNEE_T2_MS[1]), m))
        t1rho = t2 * rng.uniform(*KNEE_T1RHO_OVER_T2, m)
        b1 = rng.uniform(*ranges["B1"], m) if ranges["B1"][1] > ranges["B1"][0] else np.full(m, ranges["B1"][0])
        draw = np.stack([t1, t2, t1rho, b1], axis=1)
        keep = np.ones(m, dtype=bool)
        for col, p in enumerate(("T1", "T2", "T1rho")):
            keep &= (draw[:, col] >= ranges[p][0]) & (draw[:, col] <= ranges[p][1])
        for lhs, rhs in (tuple(_COLUMN[a] for a in _parse_constraint(c)) for c in grid.constraints):
            keep &= draw[:, lhs] <= draw[:, rhs]
        out = np.concatenate([out, draw[keep]])
        if len(out) >= n:
            return out[:n]
    raise RuntimeError("could not sample knee tissues inside the grid")


def sample_knee_prior(
    grid: ParameterGrid, n: int, seed: int | np.random.Generator = 0, knee: float = 0.7
) -> np.ndarray:
    """A training prior for knee scans: a share ``knee`` of knee tissue (:func:`sample_knee`), the rest
    log-uniform over the whole grid (so the network still knows fluid, fat and the edges), shuffled."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n_knee = int(round(knee * n))
    out = np.concatenate([sample_knee(grid, n_knee, rng), sample_parameters(grid, n - n_knee, rng)])
    return out[rng.permutation(n)]
