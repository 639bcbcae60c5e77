"""A measured B1+ map: placed on the series grid, and dictionary matching with B1 known per voxel.

``reconstruct --b1-map B1`` (NIfTI, a DICOM file, or a folder holding one DICOM image series with
one image per slice): the map is resampled onto the series grid through both geometries
(nearest neighbour; a B1 map is smooth), in relative units (1 = nominal; maps in percent are
recognised and divided by 100; ``--b1-map-scale`` gives the factor for any other unit).

With B1 known, DM matches each voxel against the dictionary interpolated to its B1: the
SVD coefficients of an atom vary smoothly with B1, so the planes of the dictionary's B1
grid are combined by cubic Lagrange interpolation (the four nearest planes), voxels grouped
in B1 bins of :data:`BIN_WIDTH`. T1, T2 and T1rho are then refined as usual, B1 stays the
measured value. This avoids the bias of matching at the nearest grid B1 (up to half a B1 step).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from mrfviewer.dictionary import Dictionary
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report, scaled
from mrfviewer.errors import MRFError
from mrfviewer.grid import ParameterGrid
from mrfviewer.matching import MatchResult, match_compressed
from mrfviewer.series import Geometry

#: Voxels whose measured B1 differs by less than this share one interpolated dictionary.
BIN_WIDTH = 0.005
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def _relative(values: np.ndarray, what: str) -> np.ndarray:
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.size == 0:
        raise MRFError(f"{what} holds no positive B1 value")
    median = float(np.median(finite))
    if 0.2 <= median <= 5:
        return values
    if 20 <= median <= 500:
        return values / 100.0  # percent of the nominal flip angle
    raise MRFError(f"{what}: cannot tell the unit of a B1 map with median {median:g} (relative or percent)")


def _read_nifti(path: Path, limit: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, y, z) values, the LPS affine and the unit ("") of a NIfTI map."""
    import nibabel as nib

    try:
        image: Any = nib.load(path)
        dims = tuple(int(d) for d in image.shape)
        if len(dims) not in (2, 3) or float(np.prod(dims, dtype=np.float64)) > limit:
            raise MRFError(f"B1 map {path.name}: {dims} is not a 2-D or 3-D map of the series' size")
        data = np.asanyarray(image.dataobj, dtype=np.float64).reshape(dims if len(dims) == 3 else (*dims, 1))
        affine = np.asarray(image.affine, dtype=np.float64)
    except MRFError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable map is a user-facing problem
        raise MRFError(f"cannot read B1 map {path.name}: {type(exc).__name__}") from None
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise MRFError(f"B1 map {path.name} has no usable affine")
    lps = affine.copy()
    lps[:3] = _LPS_FROM_RAS @ affine[:3]
    return data, lps, ""


def _read_dicom(path: Path, limit: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, y, z) values, the LPS affine and the unit of a DICOM map (a folder or one file)."""
    from mrfviewer.io.dicom_map import read_map_volume

    volume = read_map_volume(path, f"B1 map {path.name}")
    if volume.values.size > limit:
        raise MRFError(f"B1 map {path.name}: {volume.values.shape} is not a map of the series' size")
    n = volume.values.shape[0]
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.geometry.affine_ras(n)  # affine_ras indexes (x, y, z)
    return volume.values.transpose(2, 1, 0), lps, volume.unit


def read_b1_map(
    path: str | Path, geometry: Geometry, shape: tuple[int, int, int], scale: float | None = None
) -> np.ndarray:
    """A measured B1+ map resampled onto the series grid: (Z, Y, X) relative B1, NaN where it has none.

    Parameters
    ----------
    path
        A NIfTI file, a DICOM file or a folder holding one DICOM image series (one image per slice).
    geometry, shape
        The series' geometry and (Z, Y, X) shape; the map is placed through both geometries.
    scale
        Relative B1 per stored unit (e.g. 1/800 for a map storing 10 x the flip angle in degrees
        at 80 degrees nominal). None: a DICOM unit "%" is divided by 100; otherwise relative or
        percent is told from the median.
    """
    from mrfviewer import schemas
    from mrfviewer.io.dicom_map import is_dicom
    from mrfviewer.io.labels import place_on_grid

    path = Path(path)
    if not path.is_dir():
        schemas.check_regular_file(path, "B1 map")
    limit = max(8 * int(np.prod(shape)), 2**24)
    data, lps, unit = _read_dicom(path, limit) if is_dicom(path) else _read_nifti(path, limit)
    if scale is not None:
        if not (np.isfinite(scale) and scale > 0):
            raise MRFError(f"the B1 map scale must be a positive number, got {scale:g}")
        data = data * scale
    elif unit == "%":
        data = data / 100.0
    else:
        data = _relative(data, f"B1 map {path.name}")
    placed, _ = place_on_grid(data, lps, geometry, shape, f"B1 map {path.name}", fill=np.nan, coverage=True)
    if np.any(placed[np.isfinite(placed)] <= 0):
        raise MRFError(f"B1 map {path.name} holds zero or negative values")
    finite = placed[np.isfinite(placed)]
    if finite.size and not 0.2 <= float(np.median(finite)) <= 5:
        raise MRFError(
            f"B1 map {path.name}: median relative B1 {float(np.median(finite)):g} after scaling; check --b1-map-scale"
        )
    return placed


def _weights(b1: float, planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plane indices and cubic Lagrange weights interpolating at ``b1`` (fewer planes at the ends)."""
    if planes.size == 1:
        return np.array([0]), np.array([1.0])
    i = int(np.clip(np.searchsorted(planes, b1) - 1, 0, planes.size - 2))
    nodes = np.arange(max(i - 1, 0), min(i + 3, planes.size))
    x = planes[nodes]
    weights = np.array([np.prod([(b1 - x[m]) / (x[j] - x[m]) for m in range(len(x)) if m != j]) for j in range(len(x))])
    return nodes, weights


def at_b1(dictionary: Dictionary, b1: float) -> Dictionary:
    """The dictionary's T1, T2, T1rho atoms at relative B1 ``b1`` (interpolated between its B1 planes)."""
    grid = dictionary.grid
    planes = grid.b1
    if not planes.min() <= b1 <= planes.max():
        raise MRFError(f"B1 {b1:.3f} lies outside the dictionary's B1 range {planes.min():g}-{planes.max():g}")
    per_plane = dictionary.n_atoms // planes.size
    nodes, weights = _weights(b1, planes)
    coeffs = sum(
        w * dictionary.coeffs[n * per_plane : (n + 1) * per_plane].astype(np.complex128)
        for n, w in zip(nodes, weights, strict=True)
    )
    norms = sum(
        w * dictionary.norms[n * per_plane : (n + 1) * per_plane].astype(np.float64)
        for n, w in zip(nodes, weights, strict=True)
    )
    params = dictionary.params[:per_plane].copy()
    params[:, 3] = b1
    index = dictionary.index[:per_plane].copy()
    index[:, 3] = 0
    return dataclasses.replace(
        dictionary,
        grid=ParameterGrid(grid.t1_ms, grid.t2_ms, grid.t1rho_ms, np.array([b1]), grid.constraints),
        params=params,
        index=index,
        coeffs=np.asarray(coeffs, dtype=np.complex64),
        norms=np.asarray(norms, dtype=np.float32),
        retained_energy=dictionary.retained_energy[:per_plane],
        key=f"{dictionary.key}@b1={b1:.4f}",
    )


def match_known_b1(
    dictionary: Dictionary,
    y: np.ndarray,
    b1: np.ndarray,
    *,
    rank: int | None = None,
    refine: bool = True,
    memory_mb: float = 64,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> MatchResult:
    """Match compressed signals ``y`` (n, rank) with B1 known per voxel (``b1``, n values; see module docstring).

    Voxels without a B1 value (NaN) are matched with B1 free, as without a map.
    """
    if not dictionary.grid.has_b1:
        raise MRFError("a measured B1 map needs a dictionary over B1 (its grid has a single B1 value)")
    n = y.shape[0]
    b1 = np.asarray(b1, dtype=np.float64).reshape(-1)
    if b1.shape != (n,):
        raise MRFError(f"B1 map has {b1.size} values for {n} voxels")
    lo, hi = float(dictionary.grid.b1.min()), float(dictionary.grid.b1.max())
    known = np.isfinite(b1)
    outside = known & ((b1 < lo) | (b1 > hi))
    if outside.any():
        raise MRFError(f"{int(outside.sum())} voxels have a measured B1 outside the dictionary's range {lo:g}-{hi:g}")
    atom = np.full(n, -1, dtype=np.int64)
    params = np.full((n, 4), np.nan)
    pd = np.zeros(n, dtype=np.complex64)
    match = np.zeros(n, dtype=np.float32)
    groups: list[tuple[np.ndarray, float | None]] = []
    if (~known).any():
        groups.append((np.flatnonzero(~known), None))
    bins = np.round(b1[known] / BIN_WIDTH).astype(np.int64)
    voxels_known = np.flatnonzero(known)
    for value in np.unique(bins):
        groups.append((voxels_known[bins == value], float(np.clip(value * BIN_WIDTH, lo, hi))))
    for g, (voxels, value) in enumerate(groups):
        check_cancel(cancel)
        sub = scaled(progress, g / len(groups), (g + 1) / len(groups))
        target = dictionary if value is None else at_b1(dictionary, value)
        result = match_compressed(
            target, y[voxels], rank=rank, refine=refine, memory_mb=memory_mb, progress=sub, cancel=cancel
        )
        # Atom indices refer to the full dictionary: the plane nearest to the voxel's B1.
        offset = (
            0
            if value is None
            else int(np.argmin(np.abs(dictionary.grid.b1 - value))) * (dictionary.n_atoms // dictionary.grid.b1.size)
        )
        atom[voxels] = result.atom + offset
        params[voxels] = result.params
        if value is not None:
            params[voxels, 3] = b1[voxels]  # the measured value, not its bin
        pd[voxels] = result.pd
        match[voxels] = result.match
    report(progress, 1.0, "matched with the measured B1")
    return MatchResult(atom=atom, params=params, pd=pd, match=match)
