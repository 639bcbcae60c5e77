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
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from mrfviewer import __version__
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report, scaled
from mrfviewer.errors import MRFError
from mrfviewer.grid import ParameterGrid, grid_from_dict
from mrfviewer.io.atomic import atomic_path
from mrfviewer.sequence import Sequence, sequence_from_json
from mrfviewer.simulation import simulate_fingerprints

log = logging.getLogger(__name__)

FORMAT = "mrfviewer-dictionary"
FORMAT_VERSION = 1
#: Bump when the simulator's output changes, so cached dictionaries are rebuilt.
SIMULATOR_VERSION = 1
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
) -> torch.Tensor:
    fp = simulate_fingerprints(
        sequence, params[:, 0], params[:, 1], params[:, 2], params[:, 3], progress=progress, cancel=cancel
    )
    return fp.abs().to(fp.dtype) if signal == "magnitude" else fp


def _svd_basis(fingerprints: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Basis rows V^H (by descending singular value) and singular values, from the Gram matrix."""
    gram = torch.zeros((fingerprints.shape[1],) * 2, dtype=torch.complex128)
    for start in range(0, fingerprints.shape[0], 4096):
        chunk = fingerprints[start : start + 4096].to(torch.complex128)
        gram += chunk.conj().T @ chunk
    eigval, eigvec = torch.linalg.eigh(gram)
    order = torch.argsort(eigval, descending=True)
    singular = torch.sqrt(torch.clamp(eigval[order], min=0)).numpy()
    # G = V S^2 V^H; rows of V^H project as x @ (V^H).conj().T = x @ V and expand as c @ V^H.
    basis = eigvec[:, order].mH.resolve_conj().numpy()
    return basis, singular


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
    chunk_atoms: int = 16384,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Dictionary:
    """Simulate and compress a dictionary in chunks of ``chunk_atoms`` fingerprints.

    Peak memory is about ``chunk_atoms * T * 8`` bytes for the fingerprints of a
    chunk plus ``min(N, svd_atoms) * T * 8`` for the SVD subset, independent of
    the number of atoms N beyond that.
    """
    settings = settings or DictionarySettings()
    settings.validate()
    params, index = grid.atoms()
    n = params.shape[0]
    rng = np.random.default_rng(settings.seed)
    use_all = n <= settings.svd_atoms
    subset = np.arange(n) if use_all else np.sort(rng.choice(n, settings.svd_atoms, replace=False))
    svd_share = subset.size / (subset.size + (0 if use_all else n))
    sub_fp = _simulate(sequence, params[subset], settings.signal, scaled(progress, 0.0, svd_share), cancel)
    check_cancel(cancel)
    basis, singular = _svd_basis(sub_fp)
    rank = _choose_rank(singular, settings)
    k_store = int(min(max(settings.store_rank, rank), basis.shape[0]))
    basis = np.ascontiguousarray(basis[:k_store]).astype(np.complex64)
    basis_t = torch.from_numpy(basis.conj().T.copy())

    coeffs = np.empty((n, k_store), dtype=np.complex64)
    norms = np.empty(n, dtype=np.float32)
    if use_all:
        coeffs[:] = (sub_fp @ basis_t).numpy()
        norms[:] = torch.linalg.vector_norm(sub_fp, dim=1).numpy()
    else:
        del sub_fp
        for start in range(0, n, chunk_atoms):
            check_cancel(cancel)
            stop = min(start + chunk_atoms, n)
            fp = _simulate(sequence, params[start:stop], settings.signal, cancel=cancel)
            coeffs[start:stop] = (fp @ basis_t).numpy()
            norms[start:stop] = torch.linalg.vector_norm(fp, dim=1).numpy()
            report(progress, svd_share + (1 - svd_share) * stop / n, f"simulated {stop} of {n} atoms")
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


def save_dictionary(dictionary: Dictionary, path: str | Path, overwrite: bool = False) -> Path:
    """Write a dictionary to HDF5 atomically (the ``complete`` flag is set last)."""
    with atomic_path(path, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["software_version"] = __version__
        f.attrs["key"] = dictionary.key
        f.attrs["sequence_hash"] = dictionary.sequence.hash
        f.attrs["sequence"] = dictionary.sequence.to_json(indent=None)
        f.attrs["grid"] = dictionary.grid.to_json()
        f.attrs["signal"] = dictionary.signal
        f.attrs["rank"] = dictionary.rank
        f.create_dataset("params", data=dictionary.params)
        f.create_dataset("index", data=dictionary.index.astype(np.int32))
        f.create_dataset("basis", data=dictionary.basis)
        f.create_dataset("coeffs", data=dictionary.coeffs)
        f.create_dataset("norms", data=dictionary.norms)
        f.create_dataset("singular_values", data=dictionary.singular_values)
        f.create_dataset("retained_energy", data=dictionary.retained_energy)
        f.attrs["complete"] = True
    return Path(path)


def load_dictionary(path: str | Path, expect_key: str | None = None) -> Dictionary:
    """Read a dictionary file, checking format, completeness and (optionally) its key."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise MRFError(f"{path} is not an mrfviewer dictionary file")
            if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
                raise MRFError(f"{path}: dictionary format version {f.attrs.get('format_version')} not supported")
            if not bool(f.attrs.get("complete", False)):
                raise MRFError(f"{path}: dictionary file is incomplete (interrupted write)")
            if expect_key is not None and f.attrs.get("key") != expect_key:
                raise MRFError(f"{path}: dictionary was made for other settings (key mismatch)")
            sequence = sequence_from_json(str(f.attrs["sequence"]), source=f"{path} sequence")
            grid = grid_from_dict(json.loads(str(f.attrs["grid"])))
            data = {name: f[name][()] for name in ("params", "index", "basis", "coeffs", "norms")}
            singular = f["singular_values"][()]
            kept = f["retained_energy"][()]
            attrs = {k: f.attrs[k] for k in ("key", "signal", "rank", "sequence_hash")}
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, MRFError):
            raise
        raise MRFError(f"cannot read dictionary {path}: {exc}") from None
    if sequence.hash != attrs["sequence_hash"]:
        raise MRFError(f"{path}: stored sequence does not match its hash (file altered?)")
    n, k = data["coeffs"].shape
    if data["params"].shape != (n, 4) or data["basis"].shape[0] != k or data["norms"].shape != (n,):
        raise MRFError(f"{path}: dictionary arrays have inconsistent shapes")
    if data["basis"].shape[1] != sequence.n_timepoints:
        raise MRFError(f"{path}: basis length does not match the sequence's time points")
    return Dictionary(
        sequence=sequence,
        grid=grid,
        params=data["params"],
        index=data["index"].astype(np.int64),
        basis=data["basis"],
        coeffs=data["coeffs"],
        norms=data["norms"],
        singular_values=singular,
        rank=int(attrs["rank"]),
        signal=str(attrs["signal"]),
        key=str(attrs["key"]),
        retained_energy=kept,
    )


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
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Dictionary:
    """The dictionary for ``sequence`` and ``grid``: from the cache if a valid file exists, else generated.

    A cached file that is incomplete, foreign or stale is ignored and replaced.
    """
    settings = settings or DictionarySettings()
    settings.validate()
    key = dictionary_key(sequence, grid, settings)
    path = cache_dir() / f"{sequence.name[:40]}-{key}.h5"
    if use_cache and path.exists():
        try:
            dictionary = load_dictionary(path, expect_key=key)
            report(progress, 1.0, "dictionary loaded from cache")
            return dictionary
        except MRFError as exc:
            log.warning("ignoring cached dictionary: %s", exc)
    dictionary = generate_dictionary(sequence, grid, settings, progress=progress, cancel=cancel)
    if use_cache:
        try:
            save_dictionary(dictionary, path, overwrite=True)
        except MRFError as exc:
            log.warning("could not cache the dictionary: %s", exc)
    return dictionary
