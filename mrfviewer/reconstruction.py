"""From a series to parameter maps: background mask, SVD projection, then DM or NN per slab.

Front-ends do not call this module directly: :mod:`mrfviewer.pipeline` chooses the
estimator for an input and calls :func:`reconstruct_dm` or :func:`reconstruct_nn`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from mrfviewer.devices import resolve_device
from mrfviewer.dictionary import Dictionary
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report, scaled
from mrfviewer.errors import MRFError
from mrfviewer.maps import ParameterMaps
from mrfviewer.matching import DEFAULT_MEMORY_MB, match_compressed, prepare
from mrfviewer.nn.inference import predict, resolve_precision
from mrfviewer.nn.model_io import LoadedModel
from mrfviewer.provenance import DictionaryInfo, ModelInfo, Provenance
from mrfviewer.series import Series
from mrfviewer.settings import ReconstructionSettings
from mrfviewer.volume import SlabSource, source_from_series


def _slab_norms(flat: np.ndarray, max_bytes: int = 4 * 2**20) -> np.ndarray:
    """Signal norm over time of each column of ``flat`` (T, n), in column chunks of bounded size."""
    chunk = max(1, max_bytes // (4 * flat.shape[0]))
    norms = np.empty(flat.shape[1], dtype=np.float64)
    for start in range(0, flat.shape[1], chunk):
        norms[start : start + chunk] = np.linalg.norm(flat[:, start : start + chunk], axis=0)
    return norms


def _project_slab(flat: np.ndarray, basis_conj: np.ndarray) -> np.ndarray:
    """SVD coefficients (n, K) complex64 of the columns of ``flat`` (T, n) for a conjugated (K, T) basis."""
    if np.iscomplexobj(flat):
        return (basis_conj @ flat).T.astype(np.complex64)
    # Magnitude data: two real GEMMs instead of a complex copy of the slab.
    real = basis_conj.real.astype(np.float32) @ flat
    imag = basis_conj.imag.astype(np.float32) @ flat
    return (real + 1j * imag).T.astype(np.complex64)


@dataclass
class ProjectedSource:
    """A series reduced to per-voxel signal norms and SVD coefficients (voxels in (Z, Y, X) order)."""

    norms: np.ndarray  # (n_voxels,) float64, NaN where the signal is not finite
    coefficients: np.ndarray  # (n_voxels, K) complex64
    slabs: list[tuple[int, int]]


def project_source(
    source: SlabSource,
    basis: np.ndarray,
    memory_mb: float = DEFAULT_MEMORY_MB,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ProjectedSource:
    """Read ``source`` slab by slab and keep only the signal norm and the SVD coefficients of every voxel.

    Only one slab of slices with all its time points is in memory at a time; a slice
    larger than the budget is read in ranges of time points where the source can
    (projections and squared norms add up over time). What stays is K complex values
    per voxel instead of T.
    """
    n_t = source.n_timepoints
    slices = source.slabs(memory_mb)
    n_per_slice = source.spatial_shape[1] * source.spatial_shape[2]
    n_vox = source.spatial_shape[0] * n_per_slice
    norms = np.empty(n_vox, dtype=np.float64)
    coefficients = np.empty((n_vox, basis.shape[0]), dtype=np.complex64)
    basis_conj = np.ascontiguousarray(basis.conj(), dtype=np.complex64)
    times = source.time_chunks(memory_mb)
    for i, (z0, z1) in enumerate(slices):
        check_cancel(cancel)
        report(progress, i / len(slices), f"reading slices {z0 + 1}-{z1} of {source.spatial_shape[0]}")
        lo, hi = z0 * n_per_slice, z1 * n_per_slice
        if len(times) == 1:
            slab = source.read(z0, z1)
            flat = slab.reshape(n_t, -1)
            norms[lo:hi] = _slab_norms(flat)
            if not np.isfinite(norms[lo:hi]).all():
                # Non-finite voxels are left out of the mask; zero them so they cannot poison the GEMM.
                flat = np.where(np.isfinite(flat), flat, 0).astype(flat.dtype)
            coefficients[lo:hi] = _project_slab(flat, basis_conj)
            del slab, flat
            continue
        assert source.read_times is not None
        squares = np.zeros(hi - lo, dtype=np.float64)
        sums = np.zeros((hi - lo, basis.shape[0]), dtype=np.complex128)
        for t0, t1 in times:
            check_cancel(cancel)
            flat = source.read_times(z0, z1, t0, t1).reshape(t1 - t0, -1)
            squares += _slab_norms(flat) ** 2
            finite = np.isfinite(flat)
            if not finite.all():
                flat = np.where(finite, flat, 0).astype(flat.dtype)
            sums += _project_slab(flat, np.ascontiguousarray(basis_conj[:, t0:t1]))
            del flat
        norms[lo:hi] = np.sqrt(squares)
        coefficients[lo:hi] = sums
    report(progress, 1.0, "projected")
    return ProjectedSource(norms=norms, coefficients=coefficients, slabs=slices)


def mask_from_norms(norms: np.ndarray, threshold: float, shape: tuple[int, int, int]) -> np.ndarray:
    """Foreground mask: finite norms above ``threshold`` times the 99th percentile of all finite norms."""
    finite = np.isfinite(norms)
    if not finite.any() or np.nanmax(norms) <= 0:
        return np.zeros(shape, dtype=bool)
    reference = np.percentile(norms[finite], 99)
    return (finite & (norms > threshold * reference) & (norms > 0)).reshape(shape)


def as_source(series: Series | SlabSource) -> SlabSource:
    """A slab source for a series in memory, or the source itself."""
    return series if isinstance(series, SlabSource) else source_from_series(series)


def check_dictionary_for(series: Series | SlabSource, dictionary: Dictionary) -> None:
    """Raise a clear error if the dictionary does not fit the series."""
    if series.sequence is not None and series.sequence.hash != dictionary.sequence.hash:
        raise MRFError(
            f"the dictionary was made for sequence '{dictionary.sequence.name}' ({dictionary.sequence.hash}), "
            f"the series uses '{series.sequence.name}' ({series.sequence.hash})"
        )
    if series.n_timepoints != dictionary.n_timepoints:
        raise MRFError(f"series has {series.n_timepoints} time points, dictionary {dictionary.n_timepoints}")
    if not series.is_complex and dictionary.signal != "magnitude":
        raise MRFError("the series holds magnitude images: match it against a magnitude dictionary")


def _per_slab(
    projected: ProjectedSource,
    mask: np.ndarray,
    run: Callable[[np.ndarray, np.ndarray, ProgressCallback | None], dict[str, np.ndarray]],
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> dict[str, np.ndarray]:
    """Apply ``run(voxel_indices, coefficients, progress)`` to the masked voxels of each slab.

    Returns each output of ``run`` scattered into (Z, Y, X) maps (NaN outside the mask).
    """
    flat_mask = mask.reshape(-1)
    n_per_slice = flat_mask.size // mask.shape[0]
    maps: dict[str, np.ndarray] = {}
    for i, (z0, z1) in enumerate(projected.slabs):
        check_cancel(cancel)
        lo, hi = z0 * n_per_slice, z1 * n_per_slice
        voxels = lo + np.flatnonzero(flat_mask[lo:hi])
        if voxels.size == 0:
            continue
        sub = scaled(progress, i / len(projected.slabs), (i + 1) / len(projected.slabs))
        for name, values in run(voxels, projected.coefficients[voxels], sub).items():
            if name not in maps:
                maps[name] = np.full(flat_mask.size, -1 if values.dtype.kind == "i" else np.nan, dtype=values.dtype)
            maps[name][voxels] = values
    return {name: values.reshape(mask.shape) for name, values in maps.items()}


def reconstruct_dm(
    series: Series | SlabSource,
    dictionary: Dictionary,
    settings: ReconstructionSettings | None = None,
    *,
    b1_map: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ParameterMaps:
    """Dictionary-matching reconstruction of ``series`` into T1, T2, T1rho (B1), PD and match maps.

    ``series`` may be a :class:`SlabSource`: it is then read slab by slab within
    ``settings.memory_mb`` (see :func:`project_source`). ``b1_map`` (Z, Y, X), a measured
    relative B1: each voxel is matched at its B1 (:mod:`mrfviewer.b1map`; NaN: B1 free).
    """
    settings = settings or ReconstructionSettings()
    settings.validate()
    source = as_source(series)
    check_dictionary_for(source, dictionary)
    start = time.perf_counter()
    rank = dictionary.rank if settings.rank is None else settings.rank
    shape = source.spatial_shape
    if b1_map is not None and np.shape(b1_map) != shape:
        raise MRFError(f"B1 map has shape {np.shape(b1_map)}, the series {shape}")
    b1_flat = None if b1_map is None else np.asarray(b1_map, dtype=np.float64).reshape(-1)
    projected = project_source(
        source, dictionary.basis[:rank], settings.memory_mb, progress=scaled(progress, 0.0, 0.1), cancel=cancel
    )
    mask = mask_from_norms(projected.norms, settings.mask_threshold, shape)
    names = ["T1", "T2", "T1rho"] + (["B1"] if dictionary.grid.has_b1 else [])
    device, device_warning = resolve_device(settings.device)
    # Normalised atoms and the grid structure are prepared once per dictionary, outside the
    # matching time (they do not depend on the search).
    prepare(dictionary, rank, device)

    def run(voxels: np.ndarray, y: np.ndarray, sub: ProgressCallback | None) -> dict[str, np.ndarray]:
        if b1_flat is not None:
            from mrfviewer.b1map import match_known_b1

            result = match_known_b1(
                dictionary,
                y,
                b1_flat[voxels],
                rank=rank,
                refine=settings.refine,
                memory_mb=settings.memory_mb,
                progress=sub,
                cancel=cancel,
            )
        else:
            result = match_compressed(
                dictionary,
                y,
                rank=rank,
                refine=settings.refine,
                search=settings.search,
                device=device,
                memory_mb=settings.memory_mb,
                progress=sub,
                cancel=cancel,
            )
        out = {name: result.params[:, col].astype(np.float32) for col, name in enumerate(names)}
        out.update(
            PD=np.abs(result.pd).astype(np.float32),
            match=result.match,
            atom=result.atom,
            pd_phase=np.angle(result.pd).astype(np.float32),
        )
        return out

    match_start = time.perf_counter()
    maps = _per_slab(projected, mask, run, scaled(progress, 0.1, 0.98), cancel)
    matching_seconds = time.perf_counter() - match_start
    if not maps:  # no foreground voxel at all
        maps = {name: np.full(shape, np.nan, dtype=np.float32) for name in [*names, "PD", "match", "pd_phase"]}
        maps["atom"] = np.full(shape, -1, dtype=np.int64)
    atom, pd_phase = maps.pop("atom"), maps.pop("pd_phase")
    params = np.stack([maps[name][mask].astype(np.float64) for name in names], axis=1)
    report(progress, 1.0, "done")
    provenance = Provenance(
        method="dm",
        sequence_name=dictionary.sequence.name,
        sequence_hash=dictionary.sequence.hash,
        settings=replace(settings, method="dm", rank=rank),
        input=source.identity,
        dictionary=DictionaryInfo(
            key=dictionary.key,
            description=dictionary.describe(),
            n_atoms=dictionary.n_atoms,
            signal=dictionary.signal,
            rank=rank,
            ranges=dictionary.grid.ranges(),
        ),
        # A measured B1 map takes mrfviewer.b1map's matching at the known B1, which is exhaustive.
        search=settings.search if b1_flat is None else "exhaustive",
        seconds=time.perf_counter() - start,
        matching_seconds=matching_seconds,
        at_range_limit=grid_edge_counts(dictionary, params),
        warnings=(device_warning,) if device_warning else (),
    )
    return ParameterMaps(
        values=maps, mask=mask, provenance=provenance, geometry=source.geometry, atom=atom, pd_phase=pd_phase
    )


def grid_edge_counts(dictionary: Dictionary, params: np.ndarray) -> dict[str, int]:
    """Voxels whose value sits at a bound of the grid, per parameter and side.

    Such values are clipped by the dictionary range (e.g. synovial fluid with T2
    above the grid's maximum) and should not be read as measurements.
    """
    return range_limit_counts(dictionary.grid.ranges(), params)


def range_limit_counts(ranges: dict[str, tuple[float, float]], params: np.ndarray) -> dict[str, int]:
    """Voxels at or beyond a bound of ``ranges`` (parameter -> (min, max)), per parameter and side.

    ``params`` holds columns in the order of ``ranges``. DM clips at the bounds; the NN
    extrapolates beyond its training ranges: in both cases the values are not measurements.
    """
    counts = {}
    for col, (name, (lo, hi)) in enumerate(ranges.items()):
        if lo == hi or col >= params.shape[1]:
            continue
        counts[f"{name} <= {lo:g}"] = int(np.sum(params[:, col] <= lo * (1 + 1e-6)))
        counts[f"{name} >= {hi:g}"] = int(np.sum(params[:, col] >= hi * (1 - 1e-6)))
    return {k: v for k, v in counts.items() if v}


def check_model_for(series: Series | SlabSource, model: LoadedModel) -> None:
    """Raise a clear error if the network was trained for another sequence or signal type."""
    meta = model.metadata
    if series.sequence is not None and series.sequence.hash != meta["sequence_hash"]:
        raise MRFError(
            f"the network {model.name} was trained for sequence '{meta.get('sequence_name', '?')}' "
            f"({meta['sequence_hash']}), the series uses '{series.sequence.name}' ({series.sequence.hash})"
        )
    if series.n_timepoints != meta["n_timepoints"]:
        raise MRFError(f"series has {series.n_timepoints} time points, the network expects {meta['n_timepoints']}")
    if series.is_complex != (meta["signal"] == "complex"):
        kind = "complex" if series.is_complex else "magnitude"
        raise MRFError(f"the series holds {kind} data but the network {model.name} was trained on {meta['signal']}")


def reconstruct_nn(
    series: Series | SlabSource,
    model: LoadedModel,
    settings: ReconstructionSettings | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ParameterMaps:
    """Neural-network reconstruction: T1, T2, T1rho (B1), PD and per-parameter uncertainty maps."""
    settings = settings or ReconstructionSettings(method="nn")
    settings.validate()
    source = as_source(series)
    check_model_for(source, model)
    start = time.perf_counter()
    shape = source.spatial_shape
    projected = project_source(
        source, model.basis, settings.memory_mb, progress=scaled(progress, 0.0, 0.3), cancel=cancel
    )
    mask = mask_from_norms(projected.norms, settings.mask_threshold, shape)
    names = list(model.param_names)
    device, device_warning = resolve_device(settings.device)
    precision = resolve_precision(settings.nn_precision, device)

    def run(voxels: np.ndarray, y: np.ndarray, sub: ProgressCallback | None) -> dict[str, np.ndarray]:
        result = predict(model, y, precision=precision, device=device, progress=sub, cancel=cancel)
        out = {name: result.params[:, i].astype(np.float32) for i, name in enumerate(names)}
        out["PD"] = result.pd
        out.update(
            {f"uncertainty_{name}": result.sd[:, i].astype(np.float32) for i, name in enumerate(names) if name != "B1"}
        )
        return out

    values = _per_slab(projected, mask, run, scaled(progress, 0.3, 1.0), cancel)
    if not values:
        keys = [*names, "PD", *(f"uncertainty_{n}" for n in names if n != "B1")]
        values = {name: np.full(shape, np.nan, dtype=np.float32) for name in keys}
    meta = model.metadata
    ranges = {k: (float(v[0]), float(v[1])) for k, v in meta["parameter_ranges"].items() if k in names}
    inside = values[names[0]].reshape(-1) == values[names[0]].reshape(-1)  # finite voxels
    params = np.stack([values[n].reshape(-1)[inside] for n in ranges], axis=1) if ranges else np.zeros((0, 0))
    provenance = Provenance(
        method="nn",
        sequence_name=str(meta.get("sequence_name", "")),
        sequence_hash=meta["sequence_hash"],
        settings=replace(settings, method="nn"),
        input=source.identity,
        model=ModelInfo(
            name=model.name,
            basis_sha256=meta["basis_sha256"],
            precision=precision,
            svd_rank=int(model.basis.shape[0]),
            ranges=ranges,
        ),
        seconds=time.perf_counter() - start,
        warnings=(device_warning,) if device_warning else (),
        at_range_limit=range_limit_counts(ranges, params) if params.size else {},
    )
    return ParameterMaps(values=values, mask=mask, provenance=provenance, geometry=source.geometry)
