"""Dictionary matching (DM) in the SVD domain with bounded memory.

For compressed voxel signals y (rank K) and unit-norm compressed atoms a_j, the
best atom maximises |<a_j, y>|: a complex GEMM followed by an argmax. Voxels and
atoms are processed in chunks whose correlation block fits ``memory_mb``, so
peak memory does not grow with image or dictionary size.

Outputs per voxel: the best atom, its T1, T2, T1rho (and B1), the complex
proton density PD = <a_j, y> / scale_j (in units of M0) and the match quality
|<a_j, y>| / ||y|| (normalised correlation, 1 = perfect).

Sub-grid refinement (optional, on by default): a full quadratic (with cross
terms) is fitted to the correlation of the voxel with the best atom and its
grid neighbours in log-parameter space, and its peak, limited to one grid step,
gives the parameters. Cross terms matter: T1 and T1rho trade off along a tilted
valley, and axis-by-axis interpolation (or a linearised Gauss-Newton step) was
several times less accurate in our tests. Voxels that match an atom to float
precision are on the grid and keep its values exactly. PD is taken from the
best atom.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from mrfviewer.dictionary import Dictionary
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report
from mrfviewer.errors import MRFError
from mrfviewer.search import Exhaustive, GridIndex, check_search, coarse_steps, fast_best_atoms, polish
from mrfviewer.settings import DEFAULT_MEMORY_MB

#: Blocks larger than this gain nothing: the argmax pass then runs out of cache
#: (measured: 7e8 voxel-atoms/s with 16 MiB blocks, 4e8 with 256 MiB).
_FAST_BLOCK_MB = 16
# Bytes per voxel-atom pair in a block: complex64 correlation + float32 power.
_BYTES_PER_PAIR = 12


@dataclass
class MatchResult:
    """Per-voxel results of dictionary matching (1-D arrays over the matched voxels)."""

    atom: np.ndarray  # int64 index of the best atom
    params: np.ndarray  # (n, 4) float64: T1, T2, T1rho (ms), B1 (refined if requested)
    pd: np.ndarray  # complex64 proton density (M0 units)
    match: np.ndarray  # float32 normalised correlation in [0, 1]


def chunk_sizes(n_voxels: int, n_atoms: int, memory_mb: float) -> tuple[int, int]:
    """Voxel and atom chunk sizes whose correlation block fits ``memory_mb`` (and the cache)."""
    budget = min(max(float(memory_mb), 0.01), _FAST_BLOCK_MB) * 2**20 / _BYTES_PER_PAIR
    atoms = int(min(n_atoms, max(256, budget // 256), 32768))
    voxels = int(min(max(n_voxels, 1), max(1, budget // atoms)))
    return voxels, atoms


def match_threads(n_voxel_blocks: int) -> int:
    """Worker threads for matching: one per core (torch's thread setting), at most one per voxel block."""
    return max(1, min(torch.get_num_threads(), n_voxel_blocks))


def best_atoms(
    y: np.ndarray,
    atoms: np.ndarray,
    *,
    memory_mb: float = DEFAULT_MEMORY_MB,
    conjugated: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Index of the best unit-norm atom for each voxel and the squared correlation.

    Voxel blocks run in parallel threads (one per core, BLAS pinned to one thread
    each), so the argmax pass, which numpy runs on one core, uses them all; the
    blocks of all threads together stay within ``memory_mb``.

    Parameters
    ----------
    y
        (n_voxels, K) complex compressed signals.
    atoms
        (n_atoms, K) complex unit-norm compressed atoms.
    conjugated
        Their complex64 conjugates, if already at hand (else computed: one copy).

    Returns
    -------
    (index, power)
        ``index`` (n_voxels,) int64 and ``power`` = |<a, y>|^2 (n_voxels,) float32.
    """
    n_vox, n_atoms = y.shape[0], atoms.shape[0]
    best = np.zeros(n_vox, dtype=np.int64)
    best_mag = np.full(n_vox, -1.0, dtype=np.float32)
    if n_vox == 0:
        return best, best_mag
    cv, _ = chunk_sizes(n_vox, n_atoms, memory_mb)
    threads = match_threads(-(-n_vox // cv))
    cv, ca = chunk_sizes(-(-n_vox // threads), n_atoms, memory_mb / threads)
    atoms_conj = conjugated if conjugated is not None else np.conjugate(atoms.astype(np.complex64, copy=False))
    y = np.ascontiguousarray(y, dtype=np.complex64)
    buffers = threading.local()
    done = [0]
    lock = threading.Lock()

    def match_rows(v0: int) -> None:
        v1 = min(v0 + cv, n_vox)
        if not hasattr(buffers, "corr"):
            # Flat buffers per thread: every block below is a contiguous view, so BLAS writes in place.
            buffers.corr = np.empty(cv * ca, dtype=np.complex64)
            buffers.mag = np.empty(cv * ca, dtype=np.float32)
        rows = np.arange(v1 - v0)
        for a0 in range(0, n_atoms, ca):
            check_cancel(cancel)
            a1 = min(a0 + ca, n_atoms)
            shape = (v1 - v0, a1 - a0)
            c = buffers.corr[: shape[0] * shape[1]].reshape(shape)
            np.matmul(y[v0:v1], atoms_conj[a0:a1].T, out=c)
            m = buffers.mag[: shape[0] * shape[1]].reshape(shape)
            np.abs(c, out=m)
            arg = np.argmax(m, axis=1)
            val = m[rows, arg]
            better = val > best_mag[v0:v1]
            best[v0:v1][better] = arg[better] + a0
            best_mag[v0:v1][better] = val[better]
        with lock:
            done[0] += v1 - v0

    starts = list(range(0, n_vox, cv))
    if threads == 1:
        for v0 in starts:
            match_rows(v0)
            report(progress, done[0] / n_vox, "matching")
    else:
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
            futures = [pool.submit(match_rows, v0) for v0 in starts]
            try:
                for future in as_completed(futures):
                    future.result()
                    report(progress, done[0] / n_vox, "matching")
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return best, best_mag**2


_TABLE_AXIS = (1, 2, 3, 0)  # position of T1, T2, T1rho, B1 in the grid lookup table
#: Voxels whose best atom matches this well (1 - c^2) are on the grid: no refinement.
_ON_GRID = 1e-6


def _quadratic_design(n_free: int) -> tuple[np.ndarray, np.ndarray]:
    """Neighbourhood offsets {-1, 0, 1}^P and the design matrix of a full quadratic in them."""
    offsets = np.array(list(itertools.product((-1, 0, 1), repeat=n_free)), dtype=np.int64)
    x = offsets.astype(np.float64)
    cols = [np.ones(len(x))] + [x[:, i] for i in range(n_free)]
    cols += [x[:, i] * x[:, j] for i in range(n_free) for j in range(i, n_free)]
    return offsets, np.stack(cols, axis=1)


def _quadratic_peak(
    table: np.ndarray, conjugated: np.ndarray, y: np.ndarray, idx: np.ndarray, free: list[int]
) -> np.ndarray:
    """Offset (in grid steps, per free axis) of the peak of a quadratic fitted to |<a, y>|.

    The fit uses the best atom and its grid neighbours at offsets {-1, 0, 1} along
    every free axis (cross terms included, so tilted valleys are followed); missing
    neighbours (grid edge, constraints) are left out of the least-squares fit.
    """
    offsets, design = _quadratic_design(len(free))
    n, p = idx.shape[0], len(free)
    pos = [idx[:, 3], idx[:, 0], idx[:, 1], idx[:, 2]]
    pos = [np.repeat(q[:, None], len(offsets), axis=1) for q in pos]
    valid = np.ones((n, len(offsets)), dtype=bool)
    for col, axis in enumerate(free):
        t = _TABLE_AXIS[axis]
        shifted = pos[t] + offsets[None, :, col]
        valid &= (shifted >= 0) & (shifted < table.shape[t])
        pos[t] = np.clip(shifted, 0, table.shape[t] - 1)
    neighbours = table[tuple(pos)]
    valid &= neighbours >= 0
    # Gathered from the conjugated atoms: no conjugate copy; matmul promotes to complex128.
    gathered = conjugated[np.maximum(neighbours, 0)]  # (n, m, K)
    corr = np.abs(np.matmul(gathered, y[:, :, None])[..., 0])
    corr /= np.maximum(np.linalg.norm(y, axis=1), np.finfo(np.float64).tiny)[:, None]
    w = valid.astype(np.float64)
    # Weighted normal equations as two GEMMs: sum_m w D_mi D_mj = w @ (D_i D_j) and sum_m w c D_mi.
    q = design.shape[1]
    normal = (w @ (design[:, :, None] * design[:, None, :]).reshape(-1, q * q)).reshape(n, q, q)
    normal += 1e-9 * np.eye(q)
    rhs = (w * corr) @ design
    coef = np.linalg.solve(normal, rhs[..., None])[..., 0]
    grad = coef[:, 1 : 1 + p]
    hess = np.zeros((n, p, p))
    c = 1 + p
    for i in range(p):
        for j in range(i, p):
            if i == j:
                hess[:, i, i] = 2 * coef[:, c]
            else:
                hess[:, i, j] = hess[:, j, i] = coef[:, c]
            c += 1
    # Only a concave fit has a peak; elsewhere stay on the best atom.
    concave = np.all(np.linalg.eigvalsh(hess) < 0, axis=1)
    delta = np.zeros((n, p))
    if concave.any():
        delta[concave] = -np.linalg.solve(hess[concave], grad[concave][..., None])[..., 0]
    return np.nan_to_num(delta)


def _refine_chunk(n_voxels: int, n_free: int, rank: int, memory_mb: float) -> tuple[int, int]:
    """Voxels per refinement chunk and threads, so that all threads' neighbourhoods fit ``memory_mb``.

    A voxel's fit gathers 3^P neighbouring atoms (complex64, their products complex128) and
    their indices, validity, correlations and the quadratic's design products.
    """
    neighbours = 3**n_free
    terms = 1 + n_free + n_free * (n_free + 1) // 2
    per_voxel = neighbours * (rank * (8 + 16) + 8 * 8) + 3 * terms * terms * 8
    threads = match_threads(-(-n_voxels // 64))
    budget = max(float(memory_mb), 0.01) * 2**20 / threads
    chunk = int(min(1024, max(16, budget // per_voxel)))
    return chunk, max(1, min(threads, -(-n_voxels // chunk)))


def _refine(
    dictionary: Dictionary,
    conjugated: np.ndarray,
    y: np.ndarray,
    best: np.ndarray,
    fixed_b1: bool,
    iterations: int = 3,
    memory_mb: float = DEFAULT_MEMORY_MB,
    table: np.ndarray | None = None,
) -> np.ndarray:
    """Sub-grid parameters by a quadratic fit of the correlation around the best atom.

    When the fitted peak lies past a neighbouring grid point, the fit moves to that
    neighbour and is repeated (at most ``iterations`` times); the final offset is
    clamped to one grid step. Axes are log-spaced, so the offset is applied to the
    logarithm of each parameter with the local grid step. The voxel chunks of all
    threads together stay within ``memory_mb``. Returns (n, 4) parameters.
    """
    grid = dictionary.grid
    table = grid.lookup() if table is None else table
    free = [0, 1, 2] + ([3] if grid.has_b1 and not fixed_b1 else [])
    logs = [np.log(grid.axis(a)) for a in ("t1_ms", "t2_ms", "t1rho_ms", "b1")]
    params = dictionary.params[best].copy()
    chunk, threads = _refine_chunk(best.size, len(free), conjugated.shape[1], memory_mb)

    def run(start: int) -> None:
        sl = slice(start, start + chunk)
        idx = dictionary.index[best[sl]].copy()
        yc = y[sl]
        for it in range(iterations):
            delta = _quadratic_peak(table, conjugated, yc, idx, free)
            if it == iterations - 1:
                break
            step = np.rint(np.clip(delta, -1, 1)).astype(np.int64) * (np.abs(delta) > 1)
            moved_idx = idx.copy()
            for col, axis in enumerate(free):
                moved_idx[:, axis] = np.clip(idx[:, axis] + step[:, col], 0, logs[axis].size - 1)
            exists = table[moved_idx[:, 3], moved_idx[:, 0], moved_idx[:, 1], moved_idx[:, 2]] >= 0
            moved = exists & np.any(moved_idx != idx, axis=1)
            if not moved.any():
                break
            idx[moved] = moved_idx[moved]
        delta = np.clip(delta, -1, 1)
        for col, axis in enumerate(free):
            lv = logs[axis]
            i = idx[:, axis]
            up = lv[np.minimum(i + 1, lv.size - 1)] - lv[i]
            down = lv[i] - lv[np.maximum(i - 1, 0)]
            local = np.where(delta[:, col] >= 0, up, down)
            params[sl, axis] = np.exp(lv[i] + delta[:, col] * local)

    # Chunks are independent: one thread per core (numpy's BLAS pinned to one thread each).
    starts = list(range(0, best.size, chunk))
    if threads == 1:
        for start in starts:
            run(start)
    else:
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
            for future in [pool.submit(run, start) for start in starts]:
                future.result()
    return params


def best_atoms_torch(
    y: np.ndarray,
    atoms_conj: torch.Tensor,
    *,
    memory_mb: float = DEFAULT_MEMORY_MB,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`best_atoms` as torch GEMMs on the device of ``atoms_conj`` (conjugated atoms; a GPU)."""
    device = atoms_conj.device
    n_vox, n_atoms = y.shape[0], atoms_conj.shape[0]
    best = torch.zeros(n_vox, dtype=torch.int64, device=device)
    power = torch.full((n_vox,), -1.0, dtype=torch.float32, device=device)
    if n_vox == 0:
        return best.cpu().numpy(), power.cpu().numpy()
    cv, ca = chunk_sizes(n_vox, n_atoms, memory_mb)
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.complex64)).to(device)
    for v0 in range(0, n_vox, cv):
        for a0 in range(0, n_atoms, ca):
            check_cancel(cancel)
            corr = yt[v0 : v0 + cv] @ atoms_conj[a0 : a0 + ca].T
            value, arg = torch.max(corr.real**2 + corr.imag**2, dim=1)
            better = value > power[v0 : v0 + cv]
            best[v0 : v0 + cv] = torch.where(better, arg + a0, best[v0 : v0 + cv])
            power[v0 : v0 + cv] = torch.where(better, value, power[v0 : v0 + cv])
        report(progress, min(v0 + cv, n_vox) / n_vox, "matching")
    return best.cpu().numpy(), power.cpu().numpy()


@dataclass(frozen=True, eq=False)
class _Atoms:
    """A dictionary's unit-norm compressed atoms at one rank, prepared once for every slab."""

    atoms: np.ndarray  # (N, K) complex64
    conjugated: np.ndarray  # (N, K) complex64
    scale: np.ndarray  # (N,) float32
    on_device: dict[str, torch.Tensor]  # device name -> conjugated atoms there
    grid: list[GridIndex]  # the grid structure, built when first needed


#: The compressed atoms of the dictionaries matched most recently: (dictionary, rank) -> atoms.
_PREPARED: OrderedDict[tuple[int, int], tuple[weakref.ref[Dictionary], _Atoms]] = OrderedDict()
_PREPARED_LOCK = threading.Lock()


def _prepared(dictionary: Dictionary, rank: int) -> _Atoms:
    """The compressed atoms of ``dictionary`` at ``rank`` (normalised and conjugated once, not per slab)."""
    key = (id(dictionary), rank)
    with _PREPARED_LOCK:
        entry = _PREPARED.get(key)
        if entry is not None and entry[0]() is dictionary:
            _PREPARED.move_to_end(key)
            return entry[1]
    _, atoms, scale = dictionary.compressed(rank)
    prepared = _Atoms(atoms, np.conjugate(atoms), scale, {}, [])
    with _PREPARED_LOCK:
        _PREPARED[key] = (weakref.ref(dictionary), prepared)
        while len(_PREPARED) > 2:  # 2 M atoms at K 16 are 270 MB: keep few
            _PREPARED.popitem(last=False)
    return prepared


def prepare(dictionary: Dictionary, rank: int | None = None, device: torch.device | str = "cpu") -> None:
    """Prepare a dictionary for matching once (normalised, conjugated atoms on ``device``, grid structure).

    :func:`match_compressed` does it on first use; reconstructions call it before timing the matching.
    """
    prepared = _prepared(dictionary, dictionary.rank if rank is None else int(rank))
    _on_device(prepared, torch.device(device))
    _grid_index(prepared, dictionary)


def _grid_index(prepared: _Atoms, dictionary: Dictionary) -> GridIndex:
    """The grid structure of the dictionary (built once with its prepared atoms)."""
    if not prepared.grid:
        g = dictionary.grid
        steps = coarse_steps([g.t1_ms, g.t2_ms, g.t1rho_ms, g.b1])
        prepared.grid.append(GridIndex(dictionary.index, g.lookup(), steps))
    return prepared.grid[0]


def _on_device(prepared: _Atoms, device: torch.device) -> torch.Tensor:
    """The conjugated atoms as a torch tensor on ``device`` (shares memory on the CPU)."""
    name = str(device)
    if name not in prepared.on_device:
        prepared.on_device[name] = torch.from_numpy(prepared.conjugated).to(device)
    return prepared.on_device[name]


def _exhaustive(prepared: _Atoms, device: torch.device, memory_mb: float, cancel: CancelToken | None) -> Exhaustive:
    """The exhaustive matcher among given atoms: numpy blocks in threads on the CPU, torch GEMMs on a GPU."""

    def best(
        y: np.ndarray, subset: np.ndarray | None, progress: ProgressCallback | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if device.type == "cpu":
            atoms = prepared.atoms if subset is None else prepared.atoms[subset]
            conj = prepared.conjugated if subset is None else prepared.conjugated[subset]
            return best_atoms(y, atoms, memory_mb=memory_mb, conjugated=conj, progress=progress, cancel=cancel)
        on_device = _on_device(prepared, device)
        if subset is not None:
            on_device = on_device[torch.from_numpy(subset).to(device)]
        return best_atoms_torch(y, on_device, memory_mb=memory_mb, progress=progress, cancel=cancel)

    return best


def match_compressed(
    dictionary: Dictionary,
    y: np.ndarray,
    *,
    rank: int | None = None,
    b1: np.ndarray | None = None,
    refine: bool = True,
    search: str = "exhaustive",
    device: torch.device | str = "cpu",
    memory_mb: float = DEFAULT_MEMORY_MB,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> MatchResult:
    """Match compressed signals ``y`` (n, rank) against the dictionary.

    Parameters
    ----------
    dictionary
        The dictionary (its signal type must suit the data: magnitude data need a
        magnitude dictionary).
    y
        (n, rank) complex compressed voxel signals (``dictionary.project``).
    rank
        SVD rank to match at (default: the dictionary's).
    b1
        Optional (n,) relative B1 per voxel: each voxel is matched only against
        atoms at the grid B1 nearest to it.
    refine
        Apply the sub-grid refinement (a quadratic with cross terms around the best atom).
    search
        ``"exhaustive"`` (every atom) or ``"fast"`` (coarse to fine on the grid, see
        :mod:`mrfviewer.search`; a local maximum of the correlation, the exhaustive atom
        for at least 99.5 % of voxels in benchmark 9).
    device
        Torch device for the GEMMs (a GPU; the CPU runs numpy blocks in threads).
    memory_mb
        Budget for the correlation blocks.
    """
    k = dictionary.rank if rank is None else int(rank)
    if y.ndim != 2 or y.shape[1] != k:
        raise MRFError(f"compressed signals must have shape (n, {k}), got {y.shape}")
    check_search(search)
    device = torch.device(device)
    prepared = _prepared(dictionary, k)
    atoms, scale = prepared.atoms, prepared.scale
    n = y.shape[0]
    y = y.astype(np.complex64, copy=False)
    exhaustive = _exhaustive(prepared, device, memory_mb, cancel)
    nearest = None
    if b1 is not None:
        b1 = np.asarray(b1, dtype=np.float64).reshape(-1)
        if b1.shape != (n,):
            raise MRFError(f"B1 map has {b1.size} values for {n} voxels")
        grid_b1 = dictionary.grid.b1
        nearest = np.argmin(np.abs(np.nan_to_num(b1, nan=1.0)[:, None] - grid_b1[None, :]), axis=1)
    if search == "fast":
        best, power = fast_best_atoms(
            _grid_index(prepared, dictionary),
            y,
            _on_device(prepared, device),
            exhaustive,
            b1_position=nearest,
            progress=progress,
            cancel=cancel,
        )
    elif nearest is None:
        best, power = exhaustive(y, None, progress)
    else:
        best = np.zeros(n, dtype=np.int64)
        power = np.zeros(n, dtype=np.float32)
        for ib in np.unique(nearest):
            check_cancel(cancel)
            voxels = np.nonzero(nearest == ib)[0]
            candidates = np.nonzero(dictionary.index[:, 3] == ib)[0]
            sub_best, sub_power = exhaustive(y[voxels], candidates, None)
            best[voxels] = candidates[sub_best]
            power[voxels] = sub_power
        report(progress, 1.0, "matching")
    if search == "fast" or dictionary.n_atoms > 1:
        grid_index = _grid_index(prepared, dictionary)
        best, power = polish(
            grid_index, y, _on_device(prepared, device), best, fixed_b1=nearest is not None, cancel=cancel
        )
    y_norm = np.linalg.norm(y, axis=1)
    match = np.sqrt(np.maximum(power, 0)) / np.maximum(y_norm, np.finfo(np.float32).tiny)
    params = dictionary.params[best].copy()
    if refine:
        off_grid = 1.0 - match.astype(np.float64) ** 2 > _ON_GRID
        if off_grid.any():
            params[off_grid] = _refine(
                dictionary,
                prepared.conjugated,
                y[off_grid].astype(np.complex128),
                best[off_grid],
                fixed_b1=nearest is not None,
                memory_mb=memory_mb,
                table=_grid_index(prepared, dictionary).table,
            )
    inner = np.einsum("nk,nk->n", atoms[best].conj(), y)
    pd = (inner / np.maximum(scale[best], np.finfo(np.float32).tiny)).astype(np.complex64)
    return MatchResult(atom=best, params=params, pd=pd, match=np.clip(match, 0, 1).astype(np.float32))
