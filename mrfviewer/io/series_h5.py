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
from mrfviewer.series import Series
from mrfviewer.volume import open_h5_source

#: Refuse to read series larger than this into memory (bytes); larger ones are reconstructed slab-wise.
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
    """Read an HDF5 series file into memory; clear errors for anything that is not one.

    The header is checked by :func:`mrfviewer.volume.open_h5_source` (the same rules as
    the slab-wise reader); ground-truth maps, if any, come along.
    """
    source = open_h5_source(path)
    if np.prod(source.shape, dtype=np.float64) * 8 > MAX_SERIES_BYTES:
        raise MRFError(f"{path}: series of shape {source.shape} is too large to load")
    data = source.read(0, source.shape[1])
    try:
        with h5py.File(path, "r") as f:
            truth = {k: v[()] for k, v in f["truth"].items()} if "truth" in f else {}
    except (OSError, AttributeError) as exc:
        raise MRFError(f"cannot read the ground truth in {path}: {exc}") from None
    spatial = source.spatial_shape
    truth = {k: v.reshape(spatial) for k, v in truth.items() if v.size == np.prod(spatial)}
    return Series(
        data=data,
        sequence=source.sequence,
        geometry=source.geometry,
        description=source.description,
        uid=source.uid,
        truth=truth,
        labels=source.labels,
        label_names=source.label_names,
    )
