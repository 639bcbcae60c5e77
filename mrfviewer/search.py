"""Fast dictionary search: coarse to fine on the parameter grid, then a local climb.

Exhaustive matching correlates every voxel with every atom. With relative B1 as a
fourth grid dimension the knee dictionary has 0.8-2.1 M atoms (7 % or 5 % steps), and
that GEMM takes tens of seconds per 128 x 128 slice on 2 cores. The correlation
|<a, y>| of a voxel varies smoothly over the grid (neighbouring atoms correlate above
0.999), so the best atom can be found from a coarse look, in the spirit of the
coarse-to-fine and group matching of Cauley et al. (MRM 2015;74:523):

1. **coarse**: exhaustive matching against the atoms of a coarse sub-grid: every
   ``step``-th grid point along each axis, and the last (steps 3, 3, 3, 2 along T1, T2,
   T1rho, B1 on the knee grids: 1/40-1/50 of the atoms; :func:`coarse_steps`);
2. **climb**: the best atom within ``reach`` = 2 grid steps along every free axis
   (diagonals included: 5^4 = 625 atoms; the first move covers the coarse cell and its
   neighbours), repeated from where a voxel moved until none moves. The neighbourhoods of
   a block of voxels with nearby starts are merged and matched by one GEMM;
3. **polish** (:func:`polish`, after either search): the atom and its 3^P neighbours
   ranked in float64, until stable. Neighbouring atoms often correlate with a voxel
   within float32 rounding; ranking them in float64 settles such ties the same way
   after both searches (the exhaustive atom is then the true maximum as well).

The result is a local maximum of the correlation over 2-step neighbourhoods. It is the
exhaustive atom unless the global maximum lies further than 2 steps from every uphill
path out of the coarse cell: a second, separate ridge of the correlation. Stated
exactness: benchmark 9 measures the share of voxels matched to the same atom as the
exhaustive search (digital knee with a smooth B1 field, SNR 50; target >= 99.5 %,
99.9 % measured) and the median map differences; a test checks >= 99.5 % on a noisy
four-parameter test grid.

Memory: the coarse stage is :func:`mrfviewer.matching.best_atoms` (blocks within the
budget); the climb holds a block of 64 voxels against the merged neighbourhoods.
Devices: the climb runs as torch GEMMs on the device of the atoms given (a GPU).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from mrfviewer.devices import single_threaded_ops, usable_cores
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report, scaled
from mrfviewer.errors import MRFError
from mrfviewer.settings import SEARCHES

__all__ = ["SEARCHES", "GridIndex", "check_search", "coarse_steps", "fast_best_atoms", "polish"]

#: Coarse steps along T1, T2, T1rho and B1 (grid points), the reach of a climbing move in
#: grid steps (per axis, diagonals included) and the most moves.
COARSE_STEPS = (3, 3, 3, 2)
#: Widest relative spacing of the coarse grid (3 steps of 7 %; 2 steps of 15 % miss too often).
COARSE_SPACING = 0.21
CLIMB_REACH = 2
CLIMB_MOVES = 8
_TABLE_AXIS = (1, 2, 3, 0)  # position of T1, T2, T1rho, B1 in the grid lookup table

#: ``best(y, atom_indices, progress)``: exhaustive best (position in ``atom_indices``) and squared
#: correlation of ``y`` among the atoms ``atom_indices``.
Exhaustive = Callable[[np.ndarray, np.ndarray | None, ProgressCallback | None], tuple[np.ndarray, np.ndarray]]


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
    steps: tuple[int, int, int, int] = COARSE_STEPS  # coarse steps per axis (see coarse_steps)
    _coarse: dict[tuple[tuple[int, ...], int | None], np.ndarray] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

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
        key = (tuple(steps), b1_position)
        if key not in self._coarse:
            axes = range(4) if b1_position is None else range(3)
            keep = np.ones(self.index.shape[0], dtype=bool)
            for axis in axes:
                pos, size, step = self.index[:, axis], self.shape[axis], steps[axis]
                keep &= (pos % step == 0) | (pos == size - 1)
            if b1_position is not None:
                keep &= self.index[:, 3] == b1_position
            # Kept: a search (and a B1 map's every B1 position) asks for the same sub-grid per slab.
            self._coarse[key] = np.flatnonzero(keep)
        return self._coarse[key]


def coarse_steps(axes: list[np.ndarray], spacing: float = COARSE_SPACING) -> tuple[int, int, int, int]:
    """Coarse steps (grid points) along T1, T2, T1rho, B1: a relative spacing near ``spacing``.

    At most :data:`COARSE_STEPS` (measured on the 5 % and 7 % knee grids, benchmark 9); an
    axis whose own step is already coarse (the 15 % test grids) is thinned less or not at all.
    """
    steps = []
    for values, most in zip(axes, COARSE_STEPS, strict=True):
        if values.size < 2:
            steps.append(1)
            continue
        relative = float(np.median(np.diff(np.log(values))))
        steps.append(min(most, max(1, int(np.floor(spacing / relative + 1e-9)))))
    return (steps[0], steps[1], steps[2], steps[3])


def _offsets(reach: tuple[int, ...]) -> np.ndarray:
    """All offsets (M, 4) with |offset| <= reach per axis."""
    ranges = [range(-r, r + 1) for r in reach]
    return np.array(list(itertools.product(*ranges)), dtype=np.int64)


#: Voxels per block of the local search: their neighbourhoods, merged, are matched by one GEMM.
_BLOCK = 64


def _block_best(
    grid: GridIndex,
    atoms_conj: torch.Tensor,
    y: torch.Tensor,
    start: np.ndarray,
    offsets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Best atom and |<a, y>|^2 per voxel of one block among the atoms around the block's starts.

    The neighbourhoods of all voxels of the block are merged and matched by one GEMM: each
    voxel searches a superset of its own neighbourhood (voxels are sorted by their start,
    so a block's neighbourhoods overlap and the merged set stays near one neighbourhood).
    Neighbourhoods are looked up once per distinct start: a block of 64 sorted voxels has
    about two (measured on the digital knee), and the look-up, not the GEMM, was the cost.
    """
    starts = np.unique(start)
    cand = grid.atom_at(grid.index[starts][:, None, :] + offsets[None, :, :])
    union = torch.from_numpy(np.unique(cand[cand >= 0])).to(atoms_conj.device)
    corr = y @ atoms_conj[union].to(y.dtype).T  # (b, U)
    value, arg = torch.max(corr.real**2 + corr.imag**2, dim=1)
    return union[arg].cpu().numpy(), value.cpu().numpy()


def _local_search(
    grid: GridIndex,
    atoms_conj: torch.Tensor,
    y: torch.Tensor,
    start: np.ndarray,
    power: np.ndarray,
    offsets: np.ndarray,
    threads: int,
    cancel: CancelToken | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The best atom among ``start`` and the atoms at ``offsets`` around it (or around a block-mate's)."""
    order = np.argsort(start, kind="stable")
    best, best_power = start.copy(), power.copy()

    def run(b0: int) -> None:
        check_cancel(cancel)
        vox = order[b0 : b0 + _BLOCK]
        found, value = _block_best(grid, atoms_conj, y[torch.from_numpy(vox).to(y.device)], start[vox], offsets)
        better = value > best_power[vox]
        best[vox[better]] = found[better]
        best_power[vox[better]] = value[better]

    starts = range(0, start.size, _BLOCK)
    if threads <= 1:
        for b0 in starts:
            run(b0)
    else:
        with ThreadPoolExecutor(threads) as pool:
            for future in [pool.submit(run, b0) for b0 in starts]:
                future.result()
    return best, best_power


def _climb(
    grid: GridIndex,
    atoms_conj: torch.Tensor,
    y: np.ndarray,
    best: np.ndarray,
    power: np.ndarray | None,
    offsets: np.ndarray,
    moves: int,
    cancel: CancelToken | None,
    on_move: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Move each voxel to the best atom at ``offsets`` around its atom until none moves (at most ``moves``).

    ``y`` sets the precision of the ranking (complex64 or complex128). ``power`` is the
    squared correlation of the starting atoms; ``None`` ranks every neighbourhood afresh
    (the starting atom is then re-correlated at the same precision).
    """
    device = atoms_conj.device
    threads = usable_cores() if device.type == "cpu" else 1
    yt = torch.from_numpy(y).to(device)
    best = best.copy()
    fresh = power is None
    power = np.full(best.size, -1.0, dtype=y.real.dtype) if power is None else power.copy()
    active = np.arange(best.size)
    with single_threaded_ops() if device.type == "cpu" else contextlib.nullcontext():
        for move in range(moves):
            check_cancel(cancel)
            moved_best, moved_power = _local_search(
                grid,
                atoms_conj,
                yt[torch.from_numpy(active).to(device)],
                best[active],
                np.full(active.size, -1.0) if fresh else power[active],
                offsets,
                threads,
                cancel,
            )
            moved = moved_best != best[active]
            best[active], power[active] = moved_best, moved_power
            active = active[moved]
            if on_move is not None:
                on_move(move)
            if active.size == 0:
                break
    return best, power


def fast_best_atoms(
    grid: GridIndex,
    y: np.ndarray,
    atoms_conj: torch.Tensor,
    exhaustive: Exhaustive,
    *,
    b1_position: np.ndarray | None = None,
    steps: tuple[int, ...] | None = None,
    reach: int = CLIMB_REACH,
    moves: int = CLIMB_MOVES,
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
    atoms_conj
        (n_atoms, K) complex64 conjugated unit-norm compressed atoms, as a torch tensor on
        the device that runs the local search (the coarse stage gets them through ``exhaustive``).
    exhaustive
        The exhaustive matcher used for the coarse stage: ``exhaustive(y, atom_indices, progress)``.
    b1_position
        Optional (n,) B1 grid position per voxel: B1 is then fixed, not searched.
    steps, reach, moves
        Coarse steps per axis (T1, T2, T1rho, B1; default: the grid's), the reach of the
        climb in grid steps and the most moves it makes.
    """
    n = y.shape[0]
    best = np.zeros(n, dtype=np.int64)
    power = np.zeros(n, dtype=np.float32)
    if n == 0:
        return best, power
    fixed = b1_position is not None
    free = [0, 1, 2] + ([] if fixed or grid.shape[3] == 1 else [3])
    steps = grid.steps if steps is None else steps
    coarse_progress = scaled(progress, 0.0, 0.8)  # the coarse stage is most of the work
    if b1_position is None:
        coarse = grid.coarse_atoms(steps)
        sub, power = exhaustive(y, coarse, coarse_progress)
        best = coarse[sub]
    else:
        positions = np.unique(b1_position)
        for i, ib in enumerate(positions):
            check_cancel(cancel)
            voxels = np.flatnonzero(b1_position == ib)
            coarse = grid.coarse_atoms(steps, b1_position=int(ib))
            sub, sub_power = exhaustive(y[voxels], coarse, None)
            best[voxels], power[voxels] = coarse[sub], sub_power
            report(coarse_progress, (i + 1) / len(positions), "matching (coarse)")
    # Climb: the best atom within ``reach`` steps along the free axes (the first move covers the
    # coarse cell and its neighbours), repeated from where voxels moved until none moves.
    offsets = _offsets(tuple((reach if a in free else 0) for a in range(4)))
    best, power = _climb(
        grid,
        atoms_conj,
        np.ascontiguousarray(y, dtype=np.complex64),
        best,
        power.astype(np.float32),
        offsets,
        moves,
        cancel,
        lambda move: report(progress, 0.8 + 0.2 * (move + 1) / moves, "matching (local)"),
    )
    report(progress, 1.0, "matching")
    return best, power


def polish(
    grid: GridIndex,
    y: np.ndarray,
    atoms_conj: torch.Tensor,
    best: np.ndarray,
    *,
    fixed_b1: bool = False,
    moves: int = 4,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The best atom among each voxel's atom and its grid neighbours, in float64, repeated until stable.

    Applied after either search: correlations of neighbouring atoms differ by less than
    float32 rounding for many voxels (neighbours correlate to 0.99999), so which of them a
    float32 GEMM ranks first is chance. Ranking the neighbourhood in float64 settles these
    ties the same way for both searches (and makes the exhaustive atom the true maximum).
    Returns the atoms and their squared correlation (float64 ranking, float32 values).
    """
    free = [0, 1, 2] + ([] if fixed_b1 or grid.shape[3] == 1 else [3])
    offsets = _offsets(tuple((1 if a in free else 0) for a in range(4)))
    best, power = _climb(
        grid, atoms_conj, np.ascontiguousarray(y, dtype=np.complex128), best, None, offsets, moves, cancel
    )
    return best, power.astype(np.float32)
