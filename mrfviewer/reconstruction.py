"""From a series to parameter maps: background mask, SVD projection, matching."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mrfviewer.dictionary import Dictionary, DictionarySettings, get_dictionary
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report, scaled
from mrfviewer.errors import MRFError
from mrfviewer.grid import ParameterGrid, default_knee_grid
from mrfviewer.maps import ParameterMaps
from mrfviewer.matching import DEFAULT_MEMORY_MB, match_compressed
from mrfviewer.nn.inference import predict
from mrfviewer.nn.model_io import LoadedModel, default_model_path, load_model
from mrfviewer.series import Series


@dataclass
class ReconstructionSettings:
    """Settings of a reconstruction.

    ``mask_threshold``: voxels whose signal norm (over time) is below this
    fraction of the 99th percentile of all voxel norms are background (NaN).
    """

    method: str = "dm"
    mask_threshold: float = 0.05
    memory_mb: float = DEFAULT_MEMORY_MB
    refine: bool = True
    rank: int | None = None

    def validate(self) -> None:
        if self.method not in ("dm", "nn"):
            raise MRFError(f"method must be 'dm' or 'nn', got {self.method!r}")
        if not 0 <= self.mask_threshold < 1:
            raise MRFError(f"mask threshold must lie in [0, 1), got {self.mask_threshold}")
        if self.memory_mb < 1:
            raise MRFError(f"memory setting must be at least 1 MiB, got {self.memory_mb}")


def signal_mask(series: Series, threshold: float, chunk: int = 65536) -> np.ndarray:
    """Foreground mask (Z, Y, X) from the signal norm over time; non-finite voxels excluded."""
    flat = series.data.reshape(series.n_timepoints, -1)
    norms = np.empty(flat.shape[1])
    for start in range(0, flat.shape[1], chunk):
        block = flat[:, start : start + chunk]
        norms[start : start + chunk] = np.sqrt(np.sum(np.abs(block) ** 2, axis=0))
    finite = np.isfinite(norms)
    if not finite.any() or np.nanmax(norms) <= 0:
        return np.zeros(series.spatial_shape, dtype=bool)
    reference = np.percentile(norms[finite], 99)
    return (finite & (norms > threshold * reference) & (norms > 0)).reshape(series.spatial_shape)


def project_series(series: Series, basis: np.ndarray, mask: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """SVD coefficients (n_masked, K) of the masked voxels for a (K, T) basis, chunk by chunk."""
    flat = series.data.reshape(series.n_timepoints, -1)
    voxels = np.flatnonzero(mask)
    basis_conj = basis.conj()  # (K, T)
    out = np.empty((voxels.size, basis.shape[0]), dtype=np.complex64)
    for start in range(0, voxels.size, chunk):
        sel = voxels[start : start + chunk]
        out[start : start + sel.size] = (basis_conj @ flat[:, sel].astype(np.complex64)).T
    return out


def check_dictionary_for(series: Series, dictionary: Dictionary) -> None:
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


def reconstruct_dm(
    series: Series,
    dictionary: Dictionary,
    settings: ReconstructionSettings | None = None,
    *,
    b1_map: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ParameterMaps:
    """Dictionary-matching reconstruction of ``series`` into T1, T2, T1rho (B1), PD and match maps."""
    settings = settings or ReconstructionSettings()
    settings.validate()
    check_dictionary_for(series, dictionary)
    rank = dictionary.rank if settings.rank is None else settings.rank
    mask = signal_mask(series, settings.mask_threshold)
    if b1_map is not None and np.shape(b1_map) != series.spatial_shape:
        raise MRFError(f"B1 map has shape {np.shape(b1_map)}, the series {series.spatial_shape}")
    check_cancel(cancel)
    report(progress, 0.02, "projecting onto the SVD basis")
    y = project_series(series, dictionary.basis[:rank], mask)
    result = match_compressed(
        dictionary,
        y,
        rank=rank,
        b1=None if b1_map is None else np.asarray(b1_map)[mask],
        refine=settings.refine,
        memory_mb=settings.memory_mb,
        progress=scaled(progress, 0.05, 0.98),
        cancel=cancel,
    )
    shape = series.spatial_shape
    values: dict[str, np.ndarray] = {}
    names = ["T1", "T2", "T1rho"] + (["B1"] if dictionary.grid.has_b1 else [])
    for col, name in enumerate(names):
        values[name] = _scatter(result.params[:, col], mask, shape)
    values["PD"] = _scatter(np.abs(result.pd), mask, shape)
    values["match"] = _scatter(result.match, mask, shape)
    atom = np.full(shape, -1, dtype=np.int64)
    atom[mask] = result.atom
    edge = grid_edge_counts(dictionary, result.params)
    report(progress, 1.0, "done")
    return ParameterMaps(
        values=values,
        mask=mask,
        method="dm",
        sequence_hash=dictionary.sequence.hash,
        source=f"dictionary {dictionary.key}",
        geometry=series.geometry,
        atom=atom,
        pd_phase=_scatter(np.angle(result.pd), mask, shape),
        series_uid=series.uid,
        settings={
            **asdict(settings),
            "rank": rank,
            "dictionary": dictionary.describe(),
            "voxels_at_grid_edge": edge,
        },
    )


def grid_edge_counts(dictionary: Dictionary, params: np.ndarray) -> dict[str, int]:
    """Voxels whose value sits at a bound of the grid, per parameter and side.

    Such values are clipped by the dictionary range (e.g. synovial fluid with T2
    above the grid's maximum) and should not be read as measurements.
    """
    counts = {}
    for col, (name, (lo, hi)) in enumerate(dictionary.grid.ranges().items()):
        if lo == hi:
            continue
        counts[f"{name} <= {lo:g}"] = int(np.sum(params[:, col] <= lo * (1 + 1e-6)))
        counts[f"{name} >= {hi:g}"] = int(np.sum(params[:, col] >= hi * (1 - 1e-6)))
    return {k: v for k, v in counts.items() if v}


def check_model_for(series: Series, model: LoadedModel) -> None:
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
    series: Series,
    model: LoadedModel,
    settings: ReconstructionSettings | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ParameterMaps:
    """Neural-network reconstruction: T1, T2, T1rho (B1), PD and per-parameter uncertainty maps."""
    settings = settings or ReconstructionSettings(method="nn")
    settings.validate()
    check_model_for(series, model)
    mask = signal_mask(series, settings.mask_threshold)
    check_cancel(cancel)
    y = project_series(series, model.basis, mask)
    result = predict(model, y, progress=scaled(progress, 0.1, 1.0), cancel=cancel)
    shape = series.spatial_shape
    values = {name: _scatter(result.params[:, i], mask, shape) for i, name in enumerate(model.param_names)}
    values["PD"] = _scatter(result.pd, mask, shape)
    for i, name in enumerate(model.param_names):
        if name != "B1":
            values[f"uncertainty_{name}"] = _scatter(result.sd[:, i], mask, shape)
    return ParameterMaps(
        values=values,
        mask=mask,
        method="nn",
        sequence_hash=model.metadata["sequence_hash"],
        source=model.identity,
        geometry=series.geometry,
        series_uid=series.uid,
        settings={**asdict(settings), "model": model.name, "svd_rank": int(model.basis.shape[0])},
    )


def _scatter(values: np.ndarray, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.full(shape, np.nan, dtype=np.float32)
    out[mask] = values
    return out


def reconstruct(
    series: Series,
    settings: ReconstructionSettings | None = None,
    *,
    grid: ParameterGrid | None = None,
    dictionary: Dictionary | None = None,
    model: LoadedModel | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ParameterMaps:
    """Reconstruct ``series`` with the method of ``settings``.

    DM uses ``dictionary`` or the cached dictionary of ``grid``; NN uses ``model``
    or the shipped model.
    """
    settings = settings or ReconstructionSettings()
    settings.validate()
    if series.sequence is None:
        raise MRFError("the series has no sequence: give one (e.g. --sequence SEQ.json)")
    if settings.method == "nn":
        loaded = model if model is not None else load_model(default_model_path())
        return reconstruct_nn(series, loaded, settings, progress=progress, cancel=cancel)
    if dictionary is None:
        signal = "complex" if series.is_complex else "magnitude"
        dictionary = get_dictionary(
            series.sequence,
            grid or default_knee_grid(),
            DictionarySettings(signal=signal),
            progress=scaled(progress, 0.0, 0.5),
            cancel=cancel,
        )
    return reconstruct_dm(series, dictionary, settings, progress=scaled(progress, 0.5, 1.0), cancel=cancel)
