"""Dictionaries: chunked generation, SVD compression and an HDF5 cache.

A dictionary holds, for every atom of a :class:`~mrfviewer.grid.ParameterGrid`,
the fingerprint projected onto a temporal SVD basis of rank ``K_store``:
``coeffs = fingerprint @ basis.conj().T``, with ``basis`` of shape (K_store, T)
and orthonormal rows. Matching uses the first ``rank`` coefficients (the basis
rows are ordered by singular value, so any lower rank is a prefix).

The basis comes from the Gram matrix of a seeded random subset of atoms
(all atoms when the grid is small), so the full dictionary is never held in
memory; the energy each atom keeps at the chosen rank is then measured on
every atom and stored, so a poor basis would be visible.

Cache: files are keyed by a hash of the sequence, the grid and every setting
that changes the content, written atomically, and carry a ``complete`` flag;
a file whose key, format or completeness does not match is regenerated, never
trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from mrfviewer import __version__, schemas
from mrfviewer.devices import single_threaded_ops
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report, scaled
from mrfviewer.errors import MRFError
from mrfviewer.grid import ParameterGrid, grid_from_dict
from mrfviewer.io.atomic import atomic_path
from mrfviewer.io.names import safe_name
from mrfviewer.sequence import Sequence, sequence_from_json
from mrfviewer.simulation import (
    DEFAULT_CHUNK,
    FingerprintBlock,
    simulate_chunked,
    simulate_fingerprints,
    simulation_cost,
)

log = logging.getLogger(__name__)

FORMAT = "mrfviewer-dictionary"
FORMAT_VERSION = 1
#: Bump when the simulator's output changes, so cached dictionaries are rebuilt
#: (2: the basis comes from a randomised SVD, see :func:`_svd_basis`).
SIMULATOR_VERSION = 2
SIGNALS = ("complex", "magnitude")


@dataclass(frozen=True)
class DictionarySettings:
    """Everything besides sequence and grid that changes a dictionary's content."""

    signal: str = "complex"
    energy: float = 0.9999
    rank: int | None = None
    max_rank: int = 64
    store_rank: int = 32
    svd_atoms: int = 10_000
    seed: int = 0

    def validate(self) -> None:
        if self.signal not in SIGNALS:
            raise MRFError(f"signal must be one of {', '.join(SIGNALS)}, got {self.signal!r}")
        if not 0.5 < self.energy <= 1.0:
            raise MRFError(f"SVD energy must lie in (0.5, 1], got {self.energy}")
        if self.rank is not None and not 1 <= self.rank <= self.max_rank:
            raise MRFError(f"SVD rank must lie in 1..{self.max_rank}, got {self.rank}")


@dataclass
class Dictionary:
    """An SVD-compressed dictionary (see module docstring for the layout)."""

    sequence: Sequence
    grid: ParameterGrid
    params: np.ndarray  # (N, 4) float64: T1, T2, T1rho (ms), B1
    index: np.ndarray  # (N, 4) int: axis indices in the same order
    basis: np.ndarray  # (K_store, T) complex64, orthonormal rows
    coeffs: np.ndarray  # (N, K_store) complex64, unnormalised projections
    norms: np.ndarray  # (N,) float32, time-domain norm of each fingerprint
    singular_values: np.ndarray  # (min(T, n_svd),) float64, from the SVD subset
    rank: int
    signal: str
    key: str
    retained_energy: np.ndarray  # (N,) float32, energy kept at ``rank``

    @property
    def n_atoms(self) -> int:
        return int(self.params.shape[0])

    @property
    def n_timepoints(self) -> int:
        return int(self.basis.shape[1])

    def energy_curve(self) -> np.ndarray:
        """Cumulative fraction of dictionary energy captured by the first k singular vectors."""
        energy = self.singular_values.astype(np.float64) ** 2
        return np.cumsum(energy) / energy.sum()

    def compressed(self, rank: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(basis_k, atoms_k, scale_k)`` at ``rank`` (default: the dictionary's rank).

        ``atoms_k`` are the first ``rank`` coefficients normalised to unit norm and
        ``scale_k`` their norms: a voxel equal to ``pd * fingerprint_j`` projects to
        ``pd * scale_k[j] * atoms_k[j]``.
        """
        k = self.rank if rank is None else int(rank)
        if not 1 <= k <= self.basis.shape[0]:
            raise MRFError(f"rank {k} not available; this dictionary stores up to {self.basis.shape[0]}")
        coeffs = self.coeffs[:, :k]
        scale = np.linalg.norm(coeffs, axis=1).astype(np.float32)
        atoms = (coeffs / np.maximum(scale, np.finfo(np.float32).tiny)[:, None]).astype(np.complex64)
        return self.basis[:k], atoms, scale

    def project(self, series: np.ndarray, rank: int | None = None) -> np.ndarray:
        """Project fingerprints (..., T) onto the first ``rank`` basis vectors: (..., rank)."""
        k = self.rank if rank is None else int(rank)
        if series.shape[-1] != self.n_timepoints:
            raise MRFError(f"series has {series.shape[-1]} time points, the dictionary {self.n_timepoints}")
        return series.astype(np.complex64, copy=False) @ self.basis[:k].conj().T

    def fingerprint(self, atom: int) -> np.ndarray:
        """The full time-domain fingerprint of one atom, re-simulated (M0 = 1)."""
        t1, t2, t1rho, b1 = self.params[atom]
        fp = simulate_fingerprints(self.sequence, t1, t2, t1rho, b1)[0].numpy()
        return np.abs(fp) if self.signal == "magnitude" else fp

    def describe(self) -> str:
        return (
            f"{self.n_atoms} atoms ({self.grid.describe()}), {self.signal} signal, SVD rank {self.rank} "
            f"(energy {self.energy_curve()[self.rank - 1]:.6f}; least-kept atom {self.retained_energy.min():.5f})"
        )


#: Measured generation rate of this code on 2 cores (benchmark 1), for estimates shown before a build.
ATOMS_PER_SECOND = 15_000
#: Bytes a dictionary holds per atom: stored coefficients, parameters, indices, norms, kept energy.
_BYTES_PER_ATOM = 32 * 8 + 4 * 8 + 4 * 8 + 4 + 4


def estimate(grid: ParameterGrid, sequence: Sequence) -> tuple[int, float, float]:
    """(atoms, GiB in memory, seconds to simulate) of a dictionary, before it is built."""
    atoms = grid.n_atoms
    scale = sequence.n_timepoints * (1 + sequence.dummy_trains) / 1750  # the rate was measured at 1750
    return atoms, atoms * _BYTES_PER_ATOM / 2**30, atoms * scale / ATOMS_PER_SECOND


def cached_path(sequence: Sequence, grid: ParameterGrid, settings: DictionarySettings | None = None) -> Path:
    """Where the cache keeps the dictionary of ``sequence``, ``grid`` and ``settings``."""
    settings = settings or DictionarySettings()
    key = dictionary_key(sequence, grid, settings)
    # The name is for people browsing the cache; the key alone identifies the file.
    return cache_dir() / f"{safe_name(sequence.name, 'sequence', 40)}-{key}.h5"


def dictionary_key(sequence: Sequence, grid: ParameterGrid, settings: DictionarySettings) -> str:
    """Hash identifying a dictionary's content (sequence, grid, settings, simulator version)."""
    parts = {
        "format": FORMAT_VERSION,
        "simulator": SIMULATOR_VERSION,
        "sequence": sequence.hash,
        "grid": grid.hash,
        "settings": settings.__dict__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _simulate(
    sequence: Sequence,
    params: np.ndarray,
    signal: str,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    fp = simulate_fingerprints(
        sequence,
        params[:, 0],
        params[:, 1],
        params[:, 2],
        params[:, 3],
        device=device,
        progress=progress,
        cancel=cancel,
    )
    return fp.abs().to(fp.dtype) if signal == "magnitude" else fp


def _times(x: torch.Tensor, basis_t: torch.Tensor) -> torch.Tensor:
    """``x @ basis_t`` for real or complex ``x`` (a real ``x`` takes two real GEMMs: half the work)."""
    if x.is_complex():
        return x @ basis_t
    return torch.complex(x @ basis_t.real, x @ basis_t.imag)


class _Projector:
    """Consumer of simulated blocks: their SVD coefficients and norms, written into the dictionary arrays.

    The shared head of a chunk of atoms (the time points before the first spin-lock, the
    same for atoms of equal T1, T2 and B1) is projected once per chunk, not per atom.
    """

    def __init__(self, basis: np.ndarray, signal: str, coeffs: np.ndarray, norms: np.ndarray, device: torch.device):
        self.basis_t = torch.from_numpy(basis.conj().T.copy()).to(device)  # (T, K)
        self.magnitude = signal == "magnitude"
        self.coeffs, self.norms = coeffs, norms

    def __call__(self, block: FingerprintBlock) -> None:
        head_rows = block.head.shape[0]
        if "head" not in block.cache:
            head = block.head.abs() if self.magnitude else block.head
            block.cache["head"] = (_times(head.T, self.basis_t[:head_rows]), (head.abs() ** 2).sum(0))
        head_coeffs, head_energy = block.cache["head"]
        if block.affine is not None and block.z is not None and not self.magnitude:
            tail_coeffs, tail_energy = self._affine(block)
            coeffs = (head_coeffs[block.group] + tail_coeffs) * block.phase
            energy = head_energy[block.group] + tail_energy
        else:
            tail = block.tail().abs() if self.magnitude else block.tail()
            coeffs = head_coeffs[block.group] + _times(tail.T, self.basis_t[head_rows:])
            if not self.magnitude:
                coeffs = coeffs * block.phase
            energy = head_energy[block.group] + (tail.abs() ** 2).sum(0)
        atoms = block.atoms.cpu().numpy()
        self.coeffs[atoms] = coeffs.cpu().numpy()
        self.norms[atoms] = torch.sqrt(torch.clamp(energy, min=0)).cpu().numpy()

    def _affine(self, block: FingerprintBlock) -> tuple[torch.Tensor, torch.Tensor]:
        """Coefficients and energy of an affine tail ``a + b z_s``: by linearity, per group once, per atom S terms."""
        affine, z = block.affine, block.z
        assert affine is not None and z is not None
        if "affine" not in block.cache:
            basis = self.basis_t[block.head.shape[0] :]
            segments = int(affine.segment.max()) + 1
            masks = [(affine.segment == s).to(affine.b.dtype)[:, None] for s in range(segments)]
            slopes = [affine.b * m for m in masks]
            block.cache["affine"] = (
                _times(affine.a.T, basis),  # (u, K)
                torch.stack([_times(s.T, basis) for s in slopes]),  # (S, u, K)
                (affine.a**2).sum(0),  # (u,)
                torch.stack([(affine.a * s).sum(0) for s in slopes]),  # (S, u)
                torch.stack([(s**2).sum(0) for s in slopes]),  # (S, u)
            )
        offset, slope, aa, ab, bb = block.cache["affine"]
        g = block.group
        zs = z[: slope.shape[0]]
        coeffs = offset[g] + (zs[:, :, None] * slope[:, g]).sum(0)
        energy = aa[g] + (2 * zs * ab[:, g] + zs**2 * bb[:, g]).sum(0)
        return coeffs, energy


#: Time points up to which the basis comes from an exact eigendecomposition of the Gram matrix.
_EXACT_SVD_TIMEPOINTS = 512
#: Singular vectors kept by the randomised SVD (beyond them the energy is below 1e-9 for our sequences).
_RANDOMISED_RANK = 128


def _svd_basis(fingerprints: torch.Tensor, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Basis rows V^H (by descending singular value) and singular values of ``fingerprints`` (n, T).

    Up to :data:`_EXACT_SVD_TIMEPOINTS` time points: the eigendecomposition of the Gram
    matrix. Longer sequences (the knee sequence has 1750): a randomised SVD (Halko et al.,
    SIAM Rev 2011;53:217) with two power iterations gives the leading
    :data:`_RANDOMISED_RANK` singular vectors to float64 precision (the spectrum falls by
    orders of magnitude over the first dozens), where a full eigendecomposition costs
    T^3 (a minute on a loaded 2-core machine). Fingerprints of real-valued sequences are
    -1j times real signals: their right singular vectors are those of the real signals,
    found with real arithmetic (a quarter of the work).
    """
    # LAPACK's threads wait for each other in every small step (QR, SVD): 10x slower on a loaded machine.
    with single_threaded_ops():
        return _svd(fingerprints, seed)


def _svd(fingerprints: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if bool(torch.any(fingerprints.real != 0)):
        x = fingerprints.to(torch.complex128)
    else:
        x = fingerprints.imag.to(torch.float64).contiguous()  # x = -1j r: x^H x = r^T r
    n, t = x.shape
    if t <= _EXACT_SVD_TIMEPOINTS or n <= _RANDOMISED_RANK:
        gram = torch.zeros((t, t), dtype=x.dtype)
        for start in range(0, n, 4096):
            chunk = x[start : start + 4096]
            gram += chunk.conj().T @ chunk
        eigval, eigvec = torch.linalg.eigh(gram)
        order = torch.argsort(eigval, descending=True)
        singular = torch.sqrt(torch.clamp(eigval[order], min=0)).numpy()
        # G = V S^2 V^H; rows of V^H project as x @ (V^H).conj().T = x @ V and expand as c @ V^H.
        basis = eigvec[:, order].mH.resolve_conj().numpy()
        return basis.astype(np.complex128), singular
    generator = torch.Generator().manual_seed(seed)
    probe = torch.randn((t, _RANDOMISED_RANK), generator=generator, dtype=torch.float64).to(x.dtype)
    q = torch.linalg.qr(x @ probe).Q  # (n, L): an orthonormal basis of the range
    for _ in range(2):  # power iterations sharpen it towards the leading singular vectors
        q = torch.linalg.qr(x @ torch.linalg.qr(x.mH @ q).Q).Q
    _, singular, vh = torch.linalg.svd(q.mH @ x, full_matrices=False)  # (L, T) rows by descending value
    return vh.resolve_conj().numpy().astype(np.complex128), singular.numpy()


#: Multiply-adds of the SVD per unit of :func:`mrfviewer.simulation.simulation_cost` (measured on
#: the knee sequence; it also covers the planning and the subset's simulation, which share little).
_SVD_MACS_PER_UNIT = 16.0


def _svd_cost(n: int, t: int) -> float:
    """Estimated work of :func:`_svd_basis` for ``n`` fingerprints of ``t`` time points, in simulation units."""
    rank = min(_RANDOMISED_RANK, t, n)
    macs = n * t * t if t <= _EXACT_SVD_TIMEPOINTS or n <= _RANDOMISED_RANK else 6 * n * t * rank + 10 * n * rank**2
    return macs / _SVD_MACS_PER_UNIT


def _choose_rank(singular: np.ndarray, settings: DictionarySettings) -> int:
    if settings.rank is not None:
        return settings.rank
    energy = np.cumsum(singular**2) / np.sum(singular**2)
    k = int(np.searchsorted(energy, settings.energy) + 1)
    return int(min(max(k, 1), settings.max_rank, singular.size))


def generate_dictionary(
    sequence: Sequence,
    grid: ParameterGrid,
    settings: DictionarySettings | None = None,
    *,
    device: str | torch.device = "cpu",
    chunk_atoms: int = DEFAULT_CHUNK,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Dictionary:
    """Simulate and compress a dictionary, block by block, on ``device``.

    The SVD basis comes from a seeded subset of ``settings.svd_atoms`` atoms (their
    fingerprints, ``svd_atoms * T * 8`` bytes, are the largest allocation); then every
    atom is simulated and projected in blocks of a few thousand (chunks of at most
    ``chunk_atoms`` distinct prefixes), so memory beyond the
    dictionary itself does not grow with the number of atoms. Progress is the share of
    the estimated simulation work (:func:`mrfviewer.simulation.simulation_cost`), so
    the time left it implies holds from the start.
    """
    settings = settings or DictionarySettings()
    settings.validate()
    device = torch.device(device)
    params, index = grid.atoms()
    n = params.shape[0]
    rng = np.random.default_rng(settings.seed)
    use_all = n <= settings.svd_atoms
    subset = np.arange(n) if use_all else np.sort(rng.choice(n, settings.svd_atoms, replace=False))
    # Progress weighs each step by its estimated work, so that the time left it implies holds.
    sub_cost = simulation_cost(sequence, *params[subset].T) + _svd_cost(subset.size, sequence.n_timepoints)
    all_cost = 0.0 if use_all else simulation_cost(sequence, *params.T)
    svd_share = sub_cost / max(sub_cost + all_cost, 1e-30)
    sub_fp = _simulate(sequence, params[subset], settings.signal, scaled(progress, 0.0, svd_share), cancel, device)
    check_cancel(cancel)
    basis, singular = _svd_basis(sub_fp, settings.seed)
    rank = _choose_rank(singular, settings)
    k_store = int(min(max(settings.store_rank, rank), basis.shape[0]))
    basis = np.ascontiguousarray(basis[:k_store]).astype(np.complex64)

    coeffs = np.empty((n, k_store), dtype=np.complex64)
    norms = np.empty(n, dtype=np.float32)
    if use_all:
        coeffs[:] = (sub_fp @ torch.from_numpy(basis.conj().T.copy())).numpy()
        norms[:] = torch.linalg.vector_norm(sub_fp, dim=1).numpy()
    else:
        del sub_fp
        simulate_chunked(
            sequence,
            params[:, 0],
            params[:, 1],
            params[:, 2],
            params[:, 3],
            _Projector(basis, settings.signal, coeffs, norms, device),
            chunk_size=chunk_atoms,
            device=device,
            progress=scaled(progress, svd_share, 1.0),
            cancel=cancel,
        )
    kept = np.linalg.norm(coeffs[:, :rank], axis=1) ** 2 / np.maximum(norms.astype(np.float64) ** 2, 1e-30)
    report(progress, 1.0, f"dictionary of {n} atoms, SVD rank {rank}")
    return Dictionary(
        sequence=sequence,
        grid=grid,
        params=params,
        index=index,
        basis=basis,
        coeffs=coeffs,
        norms=norms,
        singular_values=singular,
        rank=rank,
        signal=settings.signal,
        key=dictionary_key(sequence, grid, settings),
        retained_energy=kept.astype(np.float32),
    )


_ARRAYS = ("params", "index", "basis", "coeffs", "norms", "singular_values", "retained_energy")
_CHECKED_ATTRS = ("key", "sequence_hash", "sequence", "grid", "signal", "rank")
#: Largest dictionary read: atoms and stored SVD rank.
MAX_ATOMS, MAX_STORE_RANK = 20_000_000, 64


def _checksum(arrays: dict[str, np.ndarray], attrs: dict[str, object]) -> str:
    """SHA-256 over the arrays (names, types, shapes, bytes) and the attributes that define the content."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        digest.update(a.view(np.uint8).reshape(-1).data if a.size else b"")
    for name in _CHECKED_ATTRS:
        digest.update(f"{name}={attrs[name]};".encode())
    return digest.hexdigest()


def save_dictionary(dictionary: Dictionary, path: str | Path, overwrite: bool = False) -> Path:
    """Write a dictionary to HDF5 atomically, with a checksum of its content (the ``complete`` flag last)."""
    arrays = {
        "params": dictionary.params,
        "index": dictionary.index.astype(np.int32),
        "basis": dictionary.basis,
        "coeffs": dictionary.coeffs,
        "norms": dictionary.norms,
        "singular_values": dictionary.singular_values,
        "retained_energy": dictionary.retained_energy,
    }
    attrs: dict[str, object] = {
        "key": dictionary.key,
        "sequence_hash": dictionary.sequence.hash,
        "sequence": dictionary.sequence.to_json(indent=None),
        "grid": dictionary.grid.to_json(),
        "signal": dictionary.signal,
        "rank": int(dictionary.rank),
    }
    with atomic_path(path, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["software_version"] = __version__
        for name, value in attrs.items():
            f.attrs[name] = value
        for name, values in arrays.items():
            f.create_dataset(name, data=values)
        f.attrs["checksum"] = _checksum(arrays, attrs)
        f.attrs["complete"] = True
    return Path(path)


def _datasets(f: h5py.File, path: Path) -> dict[str, h5py.Dataset]:
    out = {}
    for name in _ARRAYS:
        ds = f.get(name)
        if not isinstance(ds, h5py.Dataset) or ds.external or ds.is_virtual:
            raise MRFError(f"{path}: dictionary array '{name}' is missing or not stored in the file")
        out[name] = ds
    coeffs = out["coeffs"]
    if coeffs.ndim != 2 or not (1 <= coeffs.shape[0] <= MAX_ATOMS and 1 <= coeffs.shape[1] <= MAX_STORE_RANK):
        raise MRFError(f"{path}: dictionary coefficients of shape {coeffs.shape} (at most {MAX_ATOMS:,} x 64)")
    n, k = coeffs.shape
    expected = {"params": (n, 4), "index": (n, 4), "norms": (n,), "retained_energy": (n,)}
    for name, shape in expected.items():
        if out[name].shape != shape:
            raise MRFError(f"{path}: dictionary arrays have inconsistent shapes ({name} {out[name].shape})")
    if out["basis"].ndim != 2 or out["basis"].shape[0] != k or out["basis"].shape[1] > 10**6:
        raise MRFError(f"{path}: dictionary arrays have inconsistent shapes (basis {out['basis'].shape})")
    return out


def load_dictionary(path: str | Path, expect_key: str | None = None, require_checksum: bool = False) -> Dictionary:
    """Read a dictionary file, checking format, completeness, checksum, finiteness and (optionally) its key.

    A file whose content does not match its checksum, or holds NaN or infinite values,
    is refused: a damaged cache must never give maps. ``require_checksum`` refuses files
    written before checksums were stored (the cache asks for it).
    """
    path = Path(path)
    schemas.check_regular_file(path, "dictionary file")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise MRFError(f"{path} is not an mrfviewer dictionary file")
            attrs = schemas.validate(schemas.DictionaryAttributes, schemas.h5_attributes(f.attrs), str(path))
            if attrs.format_version != FORMAT_VERSION:
                raise MRFError(f"{path}: dictionary format version {attrs.format_version} not supported")
            if not attrs.complete:
                raise MRFError(f"{path}: dictionary file is incomplete (interrupted write)")
            if expect_key is not None and attrs.key != expect_key:
                raise MRFError(f"{path}: dictionary was made for other settings (key mismatch)")
            data = {name: ds[()] for name, ds in _datasets(f, path).items()}
    except OSError as exc:
        raise MRFError(f"cannot read dictionary {path}: {exc}") from None
    if attrs.checksum is None:
        if require_checksum:
            raise MRFError(f"{path}: no checksum (written by an older mrfviewer)")
    elif _checksum(data, {name: getattr(attrs, name) for name in _CHECKED_ATTRS}) != attrs.checksum:
        raise MRFError(f"{path}: the dictionary's content does not match its checksum (damaged or altered)")
    for name, values in data.items():
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            raise MRFError(f"{path}: dictionary array '{name}' holds NaN or infinite values")
    sequence = sequence_from_json(attrs.sequence, source=f"{path} sequence")
    grid = grid_from_dict(schemas.parse_json(attrs.grid, f"{path} grid"), f"{path} grid")
    if sequence.hash != attrs.sequence_hash:
        raise MRFError(f"{path}: stored sequence does not match its hash (file altered?)")
    if data["basis"].shape[1] != sequence.n_timepoints:
        raise MRFError(f"{path}: basis length does not match the sequence's time points")
    if not 1 <= attrs.rank <= data["basis"].shape[0]:
        raise MRFError(f"{path}: rank {attrs.rank} beyond the {data['basis'].shape[0]} stored basis vectors")
    return Dictionary(
        sequence=sequence,
        grid=grid,
        params=data["params"],
        index=data["index"].astype(np.int64),
        basis=data["basis"],
        coeffs=data["coeffs"],
        norms=data["norms"],
        singular_values=data["singular_values"],
        rank=int(attrs.rank),
        signal=str(attrs.signal),
        key=str(attrs.key),
        retained_energy=data["retained_energy"],
    )


#: When this process started: temporaries older than that belong to runs that ended.
_PROCESS_START = time.time()


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove ``.*.part*`` temporaries left in ``folder`` by runs that ended before this process began.

    A killed dictionary build leaves its half-written temporary file (tens of MB); a
    running one writes a newer one, which is left alone.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(".*.part*"):
        try:
            if tmp.is_file() and tmp.stat().st_mtime < _PROCESS_START - 1:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue  # another process took it first
    return removed


def cache_dir() -> Path:
    """Folder for cached dictionaries (``MRFVIEWER_CACHE_DIR`` overrides the user cache)."""
    env = os.environ.get("MRFVIEWER_CACHE_DIR")
    if env:
        return Path(env) / "dictionaries"
    import platformdirs

    return Path(platformdirs.user_cache_dir("mrfviewer")) / "dictionaries"


def get_dictionary(
    sequence: Sequence,
    grid: ParameterGrid,
    settings: DictionarySettings | None = None,
    *,
    use_cache: bool = True,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Dictionary:
    """The dictionary for ``sequence`` and ``grid``: from the cache if a valid file exists, else generated.

    A cached file that is incomplete, foreign or stale is ignored and replaced. ``device``:
    where a dictionary that has to be generated is simulated (the content does not depend on it).
    """
    settings = settings or DictionarySettings()
    settings.validate()
    key = dictionary_key(sequence, grid, settings)
    path = cached_path(sequence, grid, settings)
    if use_cache:
        remove_stale_temporaries(cache_dir())
    if use_cache and path.exists():
        try:
            dictionary = load_dictionary(path, expect_key=key, require_checksum=True)
            report(progress, 1.0, "dictionary loaded from cache")
            return dictionary
        except MRFError as exc:
            log.warning("ignoring cached dictionary: %s", exc)
    dictionary = generate_dictionary(sequence, grid, settings, device=device, progress=progress, cancel=cancel)
    if use_cache:
        try:
            save_dictionary(dictionary, path, overwrite=True)
        except MRFError as exc:
            log.warning("could not cache the dictionary: %s", exc)
    return dictionary
