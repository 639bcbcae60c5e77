"""Label maps: one discovery rule, NIfTI and DICOM SEG, placed on the series grid by geometry.

Discovery (:func:`discover_labels`, used by every front-end): for a DICOM series, a file
``labels.nii.gz``, ``labels.nii`` or ``labels.dcm`` in the series folder, else in the folder
holding it (where ``synthesize --format dicom`` and the demo put it, beside ``magnitude/``
and ``phase/``), never above the folder the user gave; for an HDF5 series ``S.h5``,
``S_labels.nii.gz`` (or ``.nii``) beside it, else ``labels.nii.gz`` beside it.

Placement: a label map is never matched to a series by array shape. A NIfTI label map is
resampled (nearest neighbour) onto the series grid through both affines (world coordinates
in mm); one whose axes are rotated against the series beyond :data:`ANGLE_TOLERANCE_DEG`, or
whose labelled voxels lie outside the series (beyond :data:`OUTSIDE_TOLERANCE`), is refused
with a message naming both geometries. A DICOM SEG (BINARY, FRACTIONAL or LABELMAP) is placed
frame by frame by each frame's position, orientation and pixel spacing, under the same rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from mrfviewer import schemas
from mrfviewer.errors import MRFError
from mrfviewer.io.atomic import atomic_write, atomic_write_text
from mrfviewer.series import Geometry

#: File names a label map of a series may have (the discovery rule looks for these).
LABEL_FILES = ("labels.nii.gz", "labels.nii", "labels.dcm")
#: Axes of a label map and the series may differ in direction by at most this (degrees).
ANGLE_TOLERANCE_DEG = 1.0
#: Share of labelled voxels allowed to fall outside the series.
OUTSIDE_TOLERANCE = 0.01
#: Largest label map read (voxels), checked from the header before any data are decompressed.
MAX_LABEL_VOXELS = 2**28
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class LabelMap:
    """A (Z, Y, X) integer label map on a series grid, with the names of its labels.

    ``note`` says how it was placed (empty when its grid was the series grid).
    """

    values: np.ndarray
    names: Mapping[int, str] = field(default_factory=dict)
    path: Path | None = None
    note: str = ""

    def name(self, label: int) -> str:
        return self.names.get(int(label), f"label {int(label)}")

    def labels(self) -> list[int]:
        """The labels present (0, the background, left out)."""
        return [int(v) for v in np.unique(self.values) if v != 0]


def names_path(path: str | Path) -> Path:
    """The JSON sidecar of label names beside a NIfTI label map (``x.nii.gz`` or ``x.nii`` -> ``x.json``)."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def discover_labels(series_path: str | Path, root: str | Path | None = None) -> Path | None:
    """The label map belonging to a series by the rule of the module docstring, or None.

    ``series_path`` is a DICOM series folder or an HDF5 series file; ``root`` the folder
    the user gave (the search never goes above it).
    """
    series_path = Path(series_path)
    if series_path.is_file():
        stem = series_path.name.rsplit(".", 1)[0]
        for name in (f"{stem}_labels.nii.gz", f"{stem}_labels.nii", "labels.nii.gz"):
            candidate = series_path.parent / name
            if candidate.is_file():
                return candidate
        return None
    folders = [series_path]
    parent = series_path.parent
    if root is not None:
        root = Path(root).resolve()
        resolved = parent.resolve()
        if resolved == root or root in resolved.parents:
            folders.append(parent)
    for folder in folders:
        for name in LABEL_FILES:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


# -- geometry ---------------------------------------------------------------------------


def _series_world(geometry: Geometry, shape: tuple[int, int, int], z: int) -> np.ndarray:
    """LPS positions (Y, X, 3) in mm of the pixel centres of slice ``z``."""
    _, n_y, n_x = shape
    row_dir = np.asarray(geometry.orientation[:3], dtype=np.float64)
    col_dir = np.asarray(geometry.orientation[3:], dtype=np.float64)
    origin = geometry.slice_positions(shape[0])[z]
    dy, dx = geometry.pixel_spacing_mm
    xs = np.arange(n_x)[None, :, None] * dx * row_dir
    ys = np.arange(n_y)[:, None, None] * dy * col_dir
    return origin + xs + ys


def _describe_series(geometry: Geometry, shape: tuple[int, int, int]) -> str:
    origin = geometry.slice_positions(shape[0])[0]
    dy, dx = geometry.pixel_spacing_mm
    return (
        f"series grid {shape[2]}x{shape[1]}x{shape[0]} (x, y, z), origin ({', '.join(f'{v:.1f}' for v in origin)}) mm"
        f" LPS, spacing {dx:g} x {dy:g} mm, slice thickness {geometry.slice_thickness_mm:g} mm"
    )


def _describe_grid(name: str, shape: tuple[int, ...], affine_lps: np.ndarray) -> str:
    spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
    origin = affine_lps[:3, 3]
    return (
        f"{name}: grid {'x'.join(str(s) for s in shape)}, origin ({', '.join(f'{v:.1f}' for v in origin)}) mm LPS,"
        f" spacing {' x '.join(f'{v:g}' for v in spacing)} mm"
    )


def _check_orientation(axes_lps: np.ndarray, geometry: Geometry, what: str, series_text: str) -> None:
    """Every series axis must be parallel (up to sign) to an axis of the label grid."""
    units = axes_lps / np.maximum(np.linalg.norm(axes_lps, axis=0), 1e-12)
    series_axes = np.stack(
        [np.asarray(geometry.orientation[:3]), np.asarray(geometry.orientation[3:]), geometry.normal], axis=1
    )
    cosines = np.abs(series_axes.T @ units)
    worst = float(np.degrees(np.arccos(np.clip(cosines.max(axis=1).min(), -1.0, 1.0))))
    if worst > ANGLE_TOLERANCE_DEG:
        raise MRFError(
            f"{what} is rotated by {worst:.1f} degrees against the series (at most {ANGLE_TOLERANCE_DEG:g} allowed); "
            f"{series_text}"
        )


def _series_coordinates(world: np.ndarray, geometry: Geometry, shape: tuple[int, int, int]) -> np.ndarray:
    """Continuous series coordinates (n, 3) as (z, y, x) of LPS points (n, 3).

    z is the depth along the slice normal in units of the (mean) slice step; for one
    slice, in units of its thickness.
    """
    row_dir = np.asarray(geometry.orientation[:3], dtype=np.float64)
    col_dir = np.asarray(geometry.orientation[3:], dtype=np.float64)
    positions = geometry.slice_positions(shape[0])
    dy, dx = geometry.pixel_spacing_mm
    offset = world - positions[0]
    depth = positions @ geometry.normal
    step = (depth[-1] - depth[0]) / (shape[0] - 1) if shape[0] > 1 else float(geometry.slice_thickness_mm)
    step = step if abs(step) > 1e-9 else 1.0
    z = (world @ geometry.normal - depth[0]) / step
    return np.stack([z, offset @ col_dir / dy, offset @ row_dir / dx], axis=1)


def _check_overlap(
    world: np.ndarray, geometry: Geometry, shape: tuple[int, int, int], what: str, series_text: str
) -> None:
    """Refuse a label map whose labelled voxels (LPS points) lie outside the series."""
    if world.size == 0:
        return
    coords = _series_coordinates(world, geometry, shape)
    limits = np.array(shape, dtype=np.float64) - 0.5
    inside = np.all((coords >= -0.5 - 1e-3) & (coords <= limits + 1e-3), axis=1)
    outside = 1.0 - float(inside.mean())
    if outside > OUTSIDE_TOLERANCE:
        raise MRFError(
            f"{what} does not lie on the series: {100 * outside:.0f} % of its labelled voxels fall outside it "
            f"({series_text})"
        )


def place_on_grid(
    data: np.ndarray,
    affine_lps: np.ndarray,
    geometry: Geometry,
    shape: tuple[int, int, int],
    what: str,
    *,
    fill: float = 0,
    coverage: bool = False,
) -> tuple[np.ndarray, str]:
    """Nearest-neighbour resampling of an array onto the series grid.

    ``data`` is indexed (i, j, k) with ``affine_lps`` mapping (i, j, k, 1) to LPS mm. A label
    map must lie on the series (its labelled voxels inside it); with ``coverage`` (a map
    such as B1) the series must lie in the map instead. Series voxels the array does not
    cover get ``fill``. Returns the (Z, Y, X) array and a note on how it was placed.
    """
    series_text = _describe_series(geometry, shape)
    grid_text = _describe_grid(what, data.shape, affine_lps)
    _check_orientation(affine_lps[:3, :3], geometry, what, f"{grid_text}; {series_text}")
    if not coverage:
        labelled = np.argwhere(data != 0)
        # The overlap test on at most 200k labelled voxels: a sample bounds the cost, not the verdict.
        if len(labelled) > 200_000:
            labelled = labelled[np.random.default_rng(0).choice(len(labelled), 200_000, replace=False)]
        world = labelled @ affine_lps[:3, :3].T + affine_lps[:3, 3]
        _check_overlap(world, geometry, shape, what, f"{grid_text}; {series_text}")
    inverse = np.linalg.inv(affine_lps)
    dtype = np.int32 if data.dtype.kind in "iub" and float(fill).is_integer() else np.float64
    out = np.full(shape, fill, dtype=dtype)
    exact, covered = True, 0
    for z in range(shape[0]):
        points = _series_world(geometry, shape, z).reshape(-1, 3)
        index = points @ inverse[:3, :3].T + inverse[:3, 3]
        nearest = np.rint(index).astype(np.int64)
        exact &= bool(np.allclose(index, nearest, atol=1e-3))
        valid = np.all((nearest >= 0) & (nearest < np.array(data.shape)), axis=1)
        covered += int(valid.sum())
        plane = np.full(points.shape[0], fill, dtype=dtype)
        picked = nearest[valid]
        plane[valid] = data[picked[:, 0], picked[:, 1], picked[:, 2]]
        out[z] = plane.reshape(shape[1:])
    if coverage and covered < (1 - OUTSIDE_TOLERANCE) * np.prod(shape):
        share = 100 * (1 - covered / np.prod(shape))
        raise MRFError(
            f"{what} does not cover the series: {share:.0f} % of its voxels lie outside it ({grid_text}; {series_text})"
        )
    same_grid = exact and data.size == out.size
    note = "" if same_grid else f"resampled (nearest neighbour) from {grid_text}"
    return out, note


def place_labels(
    data: np.ndarray, affine_lps: np.ndarray, geometry: Geometry, shape: tuple[int, int, int], what: str
) -> tuple[np.ndarray, str]:
    """A label array on the series grid (see :func:`place_on_grid`): (Z, Y, X) int32 labels and a note."""
    values, note = place_on_grid(data, affine_lps, geometry, shape, what)
    return values.astype(np.int32, copy=False), note


# -- NIfTI ------------------------------------------------------------------------------


def _integer_labels(data: np.ndarray, name: str) -> np.ndarray:
    if data.dtype.kind in "iub":
        return data.astype(np.int64, copy=False)
    if data.dtype.kind != "f" or not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
        raise MRFError(f"label map {name} must hold integer labels")
    if data.size and (data.min() < -(2**31) or data.max() >= 2**31):
        raise MRFError(f"label map {name}: labels beyond the 32-bit integer range")
    return data.astype(np.int64)


def _read_names(path: Path) -> dict[int, str]:
    sidecar = names_path(path)
    if not sidecar.exists():
        return {}
    raw = schemas.read_json(sidecar, "label names", max_bytes=4 * 2**20)
    if not isinstance(raw, dict):
        raise MRFError(f"{sidecar}: expected a JSON object of label number -> name")
    names = schemas.validate(schemas.LabelNames, {"names": raw}, str(sidecar)).names
    return {int(k): v for k, v in names.items()}


def read_nifti_labels(path: Path, geometry: Geometry, shape: tuple[int, int, int]) -> LabelMap:
    """A NIfTI label map placed on the series grid (see the module docstring).

    Its size is checked from the header before any voxel is decompressed.
    """
    try:
        image: Any = nib.load(path)
        dims = tuple(int(d) for d in image.shape)
    except FileNotFoundError:
        raise MRFError(f"label file not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable label file is a user-facing problem
        raise MRFError(f"cannot read label map {path.name}: {type(exc).__name__}") from None
    if len(dims) not in (2, 3) and not (len(dims) == 4 and dims[3] == 1):
        raise MRFError(f"label map {path.name} has {len(dims)} dimensions {dims}; expected 2 or 3")
    if math.prod(dims) > min(MAX_LABEL_VOXELS, max(8 * math.prod(shape), 2**24)):
        raise MRFError(f"label map {path.name} declares {'x'.join(map(str, dims))} voxels; too large to read")
    try:
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data
        raise MRFError(f"cannot read the voxels of label map {path.name}: {type(exc).__name__}") from None
    data = data.reshape(dims[:3] if len(dims) >= 3 else (*dims, 1))
    data = _integer_labels(data, path.name)
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise MRFError(f"label map {path.name} has no usable affine (singular or not finite)")
    affine_lps = affine.copy()
    affine_lps[:3] = _LPS_FROM_RAS @ affine[:3]
    values, note = place_labels(data, affine_lps, geometry, shape, f"label map {path.name}")
    return LabelMap(values=values, names=_read_names(path), path=path, note=note)


def write_label_map(
    labels: np.ndarray, names: Mapping[int, str], path: str | Path, affine: np.ndarray, overwrite: bool = False
) -> Path:
    """Write a (Z, Y, X) label map as NIfTI (RAS ``affine``) with its JSON sidecar of names, atomically."""
    image = nib.Nifti1Image(np.ascontiguousarray(np.transpose(labels, (2, 1, 0))).astype(np.int16), affine)
    atomic_write(path, lambda p: nib.save(image, p), overwrite)
    atomic_write_text(names_path(path), json.dumps({str(k): v for k, v in names.items()}, indent=1), overwrite)
    return Path(path)


# -- entry point ------------------------------------------------------------------------


def read_label_map(path: str | Path, geometry: Geometry, shape: tuple[int, int, int]) -> LabelMap:
    """A NIfTI or DICOM SEG label map placed on the series grid (``shape`` (Z, Y, X), ``geometry``)."""
    path = Path(path)
    schemas.check_regular_file(path, "label map")
    with open(path, "rb") as fh:
        head = fh.read(132)
    if path.suffix.lower() == ".dcm" or head[128:132] == b"DICM":
        from mrfviewer.io.seg import read_seg_labels

        return read_seg_labels(path, geometry, shape)
    return read_nifti_labels(path, geometry, shape)
