"""HDF5 series files: dataset ``series`` (T, Y, X) or (T, Z, Y, X), complex64 or float32.

Attributes: ``sequence`` (the sequence JSON text) and ``pixel_spacing_mm``
(row, column); optional ``slice_thickness_mm``, ``description``, and ground
truth in group ``truth`` (one (Z, Y, X) dataset per map) with ``labels`` and
its ``label_names`` attribute (JSON).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from mrfviewer.errors import MRFError
from mrfviewer.io.atomic import atomic_path
from mrfviewer.sequence import sequence_from_json
from mrfviewer.series import Geometry, Series

#: Refuse series larger than this before reading (bytes); bounded-memory paths come later.
MAX_SERIES_BYTES = 8 * 2**30


def write_series_h5(series: Series, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``series`` atomically to an HDF5 series file."""
    with atomic_path(path, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
        data = series.data[:, 0] if series.data.shape[1] == 1 else series.data
        # No compression: noisy complex data do not compress, and gzip costs 10x the write time.
        f.create_dataset("series", data=data)
        if series.sequence is not None:
            f.attrs["sequence"] = series.sequence.to_json(indent=None)
        f.attrs["pixel_spacing_mm"] = np.asarray(series.geometry.pixel_spacing_mm, dtype=np.float64)
        f.attrs["slice_thickness_mm"] = float(series.geometry.slice_thickness_mm)
        f.attrs["description"] = series.description
        if series.truth:
            group = f.create_group("truth")
            for name, values in series.truth.items():
                group.create_dataset(name, data=values, compression="gzip", compression_opts=1)
        if series.labels is not None:
            ds = f.create_dataset("labels", data=series.labels, compression="gzip", compression_opts=1)
            ds.attrs["label_names"] = json.dumps({str(k): v for k, v in series.label_names.items()})
    return Path(path)


def read_series_h5(path: str | Path) -> Series:
    """Read an HDF5 series file; clear errors for anything that is not one."""
    path = Path(path)
    if not path.exists():
        raise MRFError(f"series file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if "series" not in f or not isinstance(f["series"], h5py.Dataset):
                raise MRFError(f"{path}: no 'series' dataset (expected shape (T, Y, X) or (T, Z, Y, X))")
            ds = f["series"]
            if ds.ndim not in (3, 4):
                raise MRFError(f"{path}: 'series' must have 3 or 4 dimensions, got shape {ds.shape}")
            if ds.dtype.kind not in "fc" and ds.dtype.kind not in "iu":
                raise MRFError(f"{path}: 'series' has unsupported type {ds.dtype}")
            if min(ds.shape) < 1:
                raise MRFError(f"{path}: 'series' is empty (shape {ds.shape})")
            if int(np.prod(ds.shape, dtype=np.float64)) * 8 > MAX_SERIES_BYTES:
                raise MRFError(f"{path}: series of shape {ds.shape} is too large to load")
            raw = ds[()]
            data = raw.astype(np.complex64) if ds.dtype.kind == "c" else raw.astype(np.float32)
            sequence = None
            if "sequence" in f.attrs:
                sequence = sequence_from_json(str(f.attrs["sequence"]), source=f"{path} (sequence attribute)")
            spacing = np.asarray(f.attrs.get("pixel_spacing_mm", (1.0, 1.0)), dtype=np.float64).reshape(-1)
            if spacing.size == 1:
                spacing = np.repeat(spacing, 2)
            if spacing.size != 2 or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
                raise MRFError(f"{path}: 'pixel_spacing_mm' must be two positive numbers")
            thickness = float(f.attrs.get("slice_thickness_mm", 1.0))
            truth = {k: v[()] for k, v in f["truth"].items()} if "truth" in f else {}
            labels, names = None, {}
            if "labels" in f:
                labels = f["labels"][()]
                names = {int(k): str(v) for k, v in json.loads(f["labels"].attrs.get("label_names", "{}")).items()}
            description = str(f.attrs.get("description", ""))
    except OSError as exc:
        raise MRFError(f"cannot read {path} as HDF5: {exc}") from None
    if not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise MRFError(f"{path}: series contains {bad} NaN or infinite values")
    spatial = data.shape[1:] if data.ndim == 4 else (1, *data.shape[1:])
    truth = {k: v.reshape(spatial) for k, v in truth.items() if v.size == np.prod(spatial)}
    if labels is not None:
        labels = labels.reshape(spatial) if labels.size == np.prod(spatial) else None
    return Series(
        data=data,
        sequence=sequence,
        geometry=Geometry(pixel_spacing_mm=(float(spacing[0]), float(spacing[1])), slice_thickness_mm=thickness),
        description=description,
        uid=path.stem,
        truth=truth,
        labels=labels,
        label_names=names,
    )
