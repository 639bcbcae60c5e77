"""Fast dictionary search: coarse to fine on the parameter grid, then a local climb.

Exhaustive matching correlates every voxel with every atom. With relative B1 as a
fourth grid dimension the knee dictionary has about 2.1 M atoms, and that GEMM takes
about 30 s per 128 x 128 slice on 2 cores. The correlation |<a, y>| of a voxel varies
smoothly over the grid (neighbouring atoms at 5 % steps correlate above 0.99), so the
best atom can be found from a coarse look (in the spirit of the coarse-to-fine and
group matching of Cauley et al., MRM 2015;74:523):

1. **coarse**: exhaustive matching against the atoms on a coarse sub-grid, every
   ``step``-th grid point along each axis (and the last), about 1/50 of the atoms;
2. **box**: every atom within ``step - 1`` grid steps of the best coarse atom on each
   axis (the coarse cell around it and half of each neighbouring cell);
3. **climb**: from the best atom so far, its 3^P grid neighbours (P free axes, with
   diagonals), moving to the best of them until the atom is a local maximum of the
   correlation on the grid (at most ``climb`` moves).

The result is always a local maximum of the correlation on the full grid; it is the
exhaustive search's atom unless the global maximum lies outside the box of the best
coarse atom and no uphill path of grid neighbours leads to it. Stated exactness
(benchmark 9, 4-parameter knee dictionary, digital knee with a B1 field at SNR 50):
the share of voxels matched to the same atom as the exhaustive search, measured on
every run of the benchmark, with the target >= 99.5 %; voxels off the exhaustive atom
sit on a nearly flat ridge where both atoms correlate within noise, and their refined
parameters differ little (the median map difference is in the benchmark too).

Memory: the coarse stage is :func:`mrfviewer.matching.best_atoms` (blocks within the
budget); the box and the climb gather (voxels, candidates, K) blocks sized to the
budget. Devices: on a CUDA device every stage runs as torch GEMMs and gathers there.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report, scaled
from mrfviewer.errors import MRFError

#: Searches a reconstruction can use.
SEARCHES = ("fast", "exhaustive")
#: Coarse steps along T1, T2, T1rho and B1 (grid points), and the most climbing moves.
COARSE_STEPS = (3, 3, 3, 2)
CLIMB_MOVES = 8
_TABLE_AXIS = (1, 2, 3, 0)  # position of T1, T2, T1rho, B1 in the grid lookup table

#: ``best(y, atoms, progress)``: exhaustive best atom and squared correlation of ``y``.
Exhaustive = Callable[[np.ndarray, np.ndarray, ProgressCallback | None], tuple[np.ndarray, np.ndarray]]


def check_search(search: str) -> str:
    """``search`` if it is one of :data:`SEARCHES`, else :class:`MRFError`."""
    if search not in SEARCHES:
        raise MRFError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    return search


@dataclass(frozen=True)
class GridIndex:
    """The grid structure of a dictionary: where each atom sits and which atom sits where."""

    index: np.ndarray  # (N, 4) int64 axis positions: T1, T2, T1rho, B1
    table: np.ndarray  # (nB1, nT1, nT2, nT1rho) int64 atom at each grid point, -1 where excluded

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Axis lengths in the order T1, T2, T1rho, B1."""
        t = self.table.shape
        return (t[1], t[2], t[3], t[0])

    def atom_at(self, pos: np.ndarray) -> np.ndarray:
        """Atoms at axis positions ``pos`` (..., 4) (T1, T2, T1rho, B1), -1 outside the grid or excluded."""
        inside = np.ones(pos.shape[:-1], dtype=bool)
        clipped = []
        for axis, size in enumerate(self.shape):
            inside &= (pos[..., axis] >= 0) & (pos[..., axis] < size)
            clipped.append(np.clip(pos[..., axis], 0, size - 1))
        atoms = self.table[clipped[3], clipped[0], clipped[1], clipped[2]]
        return np.where(inside, atoms, -1)

    def coarse_atoms(self, steps: tuple[int, ...] = COARSE_STEPS, b1_position: int | None = None) -> np.ndarray:
        """Atoms on the coarse sub-grid: every ``steps``-th position along each axis, and the last.

        ``b1_position`` keeps only the atoms at that B1 position (a B1 map fixes B1).
        """
        keep = np.ones(self.index.shape[0], dtype=bool)
        for axis, (size, step) in enumerate(zip(self.shape, steps, strict=True)):
            pos = self.index[:, axis]
            keep &= (pos % step == 0) | (pos == size - 1)
        if b1_position is not None:
            keep = self.index[:, 3] == b1_position
            for axis, (size, step) in enumerate(zip(self.shape[:3], steps[:3], strict=True)):
                pos = self.index[:, axis]
                keep &= (pos % step == 0) | (pos == size - 1)
        return np.flatnonzero(keep)


def _offsets(reach: tuple[int, ...]) -> np.ndarray:
    """All offsets (M, 4) with |offset| <= reach per axis."""
    ranges = [range(-r, r + 1) for r in reach]
    return np.array(list(itertools.product(*ranges)), dtype=np.int64)


def _candidate_scores(
    atoms_conj: torch.Tensor, y: torch.Tensor, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Best candidate and its |<a, y>|^2 per voxel; ``candidates`` (n, M), -1 = none.

    One gather of the candidate atoms and one batched product per block: no loop over voxels.
    """
    cand = torch.from_numpy(np.maximum(candidates, 0)).to(atoms_conj.device)
    gathered = atoms_conj[cand]  # (n, M, K)
    corr = torch.bmm(gathered, y[:, :, None])[..., 0]  # (n, M)
    power = corr.real**2 + corr.imag**2
    power[torch.from_numpy(candidates < 0).to(power.device)] = -1.0
    value, arg = torch.max(power, dim=1)
    best = np.take_along_axis(candidates, arg.cpu().numpy()[:, None], axis=1)[:, 0]
    return best, value.cpu().numpy()


def _local_search(
    grid: GridIndex,
    atoms_conj: torch.Tensor,
    y: torch.Tensor,
    start: np.ndarray,
    start_power: np.ndarray,
    offsets: np.ndarray,
    memory_mb: float,
    cancel: CancelToken | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The best atom among ``start`` and the atoms at ``offsets`` around it, per voxel, in bounded blocks."""
    k = atoms_conj.shape[1]
    block = max(1, int(min(memory_mb, 16) * 2**20 // (offsets.shape[0] * k * 8 * 3)))
    best, power = start.copy(), start_power.copy()
    for v0 in range(0, y.shape[0], block):
        check_cancel(cancel)
        sl = slice(v0, v0 + block)
        pos = grid.index[start[sl]][:, None, :] + offsets[None, :, :]
        cand_best, cand_power = _candidate_scores(atoms_conj, y[sl], grid.atom_at(pos))
        better = cand_power > power[sl]
        best[sl][better] = cand_best[better]
        power[sl][better] = cand_power[better]
    return best, power


def fast_best_atoms(
    grid: GridIndex,
    y: np.ndarray,
    atoms: np.ndarray,
    exhaustive: Exhaustive,
    *,
    b1_position: np.ndarray | None = None,
    steps: tuple[int, ...] = COARSE_STEPS,
    climb: int = CLIMB_MOVES,
    device: torch.device | None = None,
    memory_mb: float = 64.0,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best atom and squared correlation per voxel by the coarse-to-fine search (module docstring).

    Parameters
    ----------
    grid
        The dictionary's grid structure.
    y
        (n, K) complex compressed voxel signals.
    atoms
        (n_atoms, K) complex unit-norm compressed atoms.
    exhaustive
        The exhaustive matcher used for the coarse stage (on the coarse atoms).
    b1_position
        Optional (n,) B1 grid position per voxel: B1 is then fixed, not searched.
    steps, climb
        Coarse steps per axis (T1, T2, T1rho, B1) and the most climbing moves.
    device
        Torch device of the box and climb stages (default: the CPU).
    """
    n = y.shape[0]
    best = np.zeros(n, dtype=np.int64)
    power = np.zeros(n, dtype=np.float32)
    if n == 0:
        return best, power
    device = device or torch.device("cpu")
    fixed = b1_position is not None
    free = [0, 1, 2] + ([] if fixed or grid.shape[3] == 1 else [3])
    # Coarse stage (80 % of the progress: it is most of the work).
    coarse_progress = scaled(progress, 0.0, 0.8)
    if not fixed:
        coarse = grid.coarse_atoms(steps)
        sub, power = exhaustive(y, atoms[coarse], coarse_progress)
        best = coarse[sub]
    else:
        assert b1_position is not None
        positions = np.unique(b1_position)
        for i, ib in enumerate(positions):
            check_cancel(cancel)
            voxels = np.flatnonzero(b1_position == ib)
            coarse = grid.coarse_atoms(steps, b1_position=int(ib))
            sub, sub_power = exhaustive(y[voxels], atoms[coarse], None)
            best[voxels], power[voxels] = coarse[sub], sub_power
            report(coarse_progress, (i + 1) / len(positions), "matching (coarse)")
    atoms_conj = torch.from_numpy(np.ascontiguousarray(np.conjugate(atoms), dtype=np.complex64)).to(device)
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.complex64)).to(device)
    power = power.astype(np.float32)
    # Box around the coarse best, along the free axes.
    reach = tuple((steps[a] - 1 if a in free else 0) for a in range(4))
    best, power = _local_search(grid, atoms_conj, yt, best, power, _offsets(reach), memory_mb, cancel)
    report(progress, 0.9, "matching (box)")
    # Climb over the grid neighbours (diagonals included) until nothing improves.
    neighbours = _offsets(tuple((1 if a in free else 0) for a in range(4)))
    active = np.arange(n)
    for _ in range(climb):
        check_cancel(cancel)
        moved_best, moved_power = _local_search(
            grid,
            atoms_conj,
            yt[torch.from_numpy(active).to(device)],
            best[active],
            power[active],
            neighbours,
            memory_mb,
            cancel,
        )
        moved = moved_best != best[active]
        best[active], power[active] = moved_best, moved_power
        active = active[moved]
        if active.size == 0:
            break
    report(progress, 1.0, "matching")
    return best, power
