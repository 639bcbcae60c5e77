"""Series read a slab of slices at a time, so 3D volumes never need to fit in memory.

A :class:`SlabSource` knows the shape and metadata of a (T, Z, Y, X) series and
reads slices ``z0:z1`` with every time point on demand: from memory (a
:class:`~mrfviewer.series.Series`), from an HDF5 series file (h5py hyperslabs)
or from a DICOM folder (only the files of those slices). Reconstruction streams
over slabs (:func:`mrfviewer.reconstruction.reconstruct`), projecting each slab
onto the SVD basis at once: K complex coefficients per voxel instead of T.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from mrfviewer import schemas
from mrfviewer.errors import MRFError
from mrfviewer.provenance import InputIdentity
from mrfviewer.sequence import Sequence, sequence_from_json
from mrfviewer.series import Geometry, Series, check_sequence_length

if TYPE_CHECKING:
    from mrfviewer.io.dicom_read import DicomPlan

#: Largest slice (all time points) read at once: 256 x 256 x 1750 complex is 0.9 GiB.
MAX_SLICE_BYTES = 4 * 2**30


@dataclass
class SlabSource:
    """A (T, Z, Y, X) series with metadata, read slab by slab through ``read(z0, z1)``.

    ``read`` returns (T, z1 - z0, Y, X) float32 (magnitude) or complex64 values.
    """

    shape: tuple[int, int, int, int]
    is_complex: bool
    read: Callable[[int, int], np.ndarray]
    sequence: Sequence | None = None
    geometry: Geometry = field(default_factory=Geometry)
    description: str = ""
    uid: str = ""
    source_files: list = field(default_factory=list)
    labels: np.ndarray | None = None
    label_names: dict[int, str] = field(default_factory=dict)
    identity: InputIdentity = field(default_factory=InputIdentity)
    # ``read_times(z0, z1, t0, t1)``: time points t0:t1 only, where the source can (HDF5, memory).
    read_times: Callable[[int, int, int, int], np.ndarray] | None = None

    def __post_init__(self) -> None:
        check_sequence_length(self.n_timepoints, self.sequence)

    @property
    def n_timepoints(self) -> int:
        return int(self.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return (int(self.shape[1]), int(self.shape[2]), int(self.shape[3]))

    @property
    def bytes_per_slice(self) -> int:
        """Bytes of one slice with all its time points, as read (complex64 or float32)."""
        return int(np.prod(self.shape, dtype=np.int64) // self.shape[1]) * (8 if self.is_complex else 4)

    def slabs(self, memory_mb: float) -> list[tuple[int, int]]:
        """Slice ranges whose raw data (plus one working copy) fit ``memory_mb``; at least one slice each.

        A slice is the smallest unit of a slab (sources that read time ranges then read it in
        parts, see :meth:`time_chunks`); other sources claiming slices above
        :data:`MAX_SLICE_BYTES` are refused here, before anything is allocated.
        """
        unit = self.bytes_per_slice if self.read_times is None else self.bytes_per_slice / self.shape[0]
        if unit > MAX_SLICE_BYTES:
            what = "one slice" if self.read_times is None else "one time point of one slice"
            raise MRFError(
                f"{what} of this series ({self.shape[0]} time points of {self.shape[2]} x {self.shape[3]}) "
                f"needs {unit / 2**30:.1f} GiB; the limit is {MAX_SLICE_BYTES / 2**30:.0f} GiB"
            )
        per_slab = max(1, int(memory_mb * 2**20 // (2 * self.bytes_per_slice)))
        n_z = self.shape[1]
        return [(z0, min(z0 + per_slab, n_z)) for z0 in range(0, n_z, per_slab)]

    def time_chunks(self, memory_mb: float) -> list[tuple[int, int]]:
        """Time ranges to read one slice in, so that a slice larger than ``memory_mb`` is still read within it.

        Sources that cannot read part of the time points give one range (the slice is the floor).
        """
        n_t = self.shape[0]
        budget = memory_mb * 2**20 / 2  # the data and one working copy
        if self.read_times is None or self.bytes_per_slice <= budget:
            return [(0, n_t)]
        per_point = self.bytes_per_slice / n_t
        step = max(1, int(budget // per_point))
        return [(t0, min(t0 + step, n_t)) for t0 in range(0, n_t, step)]

    def with_sequence(self, sequence: Sequence) -> SlabSource:
        """This source with ``sequence`` attached (the number of time points must match)."""
        return dataclasses.replace(self, sequence=sequence)


def source_from_series(series: Series) -> SlabSource:
    """A slab source over a series in memory (slabs are views, nothing is copied)."""
    return SlabSource(
        shape=series.data.shape,
        is_complex=series.is_complex,
        read=lambda z0, z1: series.data[:, z0:z1],
        read_times=lambda z0, z1, t0, t1: series.data[t0:t1, z0:z1],
        sequence=series.sequence,
        geometry=series.geometry,
        description=series.description,
        uid=series.uid,
        source_files=series.source_files,
        labels=series.labels,
        label_names=series.label_names,
        identity=InputIdentity(kind="memory", series_uid=series.uid, description=series.description),
    )


#: Largest magnitude of a series value: squares of larger ones overflow the norms in float32.
MAX_SIGNAL = 1e18
#: Largest HDF5 chunk read (decompressed): a compressed chunk is always read whole.
MAX_CHUNK_BYTES = 512 * 2**20


def _dataset(f: h5py.File, name: str, path: Path, allow_external: bool) -> h5py.Dataset | None:
    """Dataset ``name`` of an open file, refusing links and storage outside the file unless allowed."""
    link = f.get(name, getlink=True)
    if link is None:
        return None
    if isinstance(link, h5py.ExternalLink) and not allow_external:
        raise MRFError(f"{path}: '{name}' links to another file ({link.filename}); refused (use --allow-external)")
    try:
        item = f[name]
    except (KeyError, RuntimeError, OSError, ValueError):
        raise MRFError(f"{path}: '{name}' is a link that leads nowhere") from None
    if not isinstance(item, h5py.Dataset):
        raise MRFError(f"{path}: '{name}' is not a dataset")
    if not allow_external and (item.external or item.is_virtual):
        kind = "virtual dataset over other files" if item.is_virtual else "external raw file"
        raise MRFError(f"{path}: '{name}' stores its data in an {kind}; refused (use --allow-external)")
    return item


def _label_names(ds: h5py.Dataset, path: Path) -> dict[int, str]:
    text = ds.attrs.get("label_names", "{}")
    raw = schemas.parse_json(text if isinstance(text, str | bytes) else "", f"{path} labels.label_names")
    if not isinstance(raw, dict):
        raise MRFError(f"{path}: labels.label_names must be a JSON object of label number -> name")
    names = schemas.validate(schemas.LabelNames, {"names": raw}, f"{path} labels.label_names").names
    return {int(k): v for k, v in names.items()}


def open_h5_source(path: str | Path, allow_external: bool = False) -> SlabSource:
    """A slab source over an HDF5 series file (format of :mod:`mrfviewer.io.series_h5`), read lazily.

    Only regular files are opened; links to other files, external raw storage and virtual
    datasets (data from outside the input) are refused unless ``allow_external``.
    Attributes are validated by :class:`mrfviewer.schemas.SeriesAttributes`.
    """
    path = Path(path)
    schemas.check_regular_file(path, "series file")
    try:
        with h5py.File(path, "r") as f:
            ds = _dataset(f, "series", path, allow_external)
            if ds is None:
                raise MRFError(f"{path}: no 'series' dataset (expected shape (T, Y, X) or (T, Z, Y, X))")
            if ds.ndim not in (3, 4):
                raise MRFError(f"{path}: 'series' must have 3 or 4 dimensions, got shape {ds.shape}")
            if ds.dtype.kind not in "fciu":
                raise MRFError(f"{path}: 'series' has unsupported type {ds.dtype}")
            if min(ds.shape) < 1:
                raise MRFError(f"{path}: 'series' is empty (shape {ds.shape})")
            four_d = ds.ndim == 4
            shape = ds.shape if four_d else (ds.shape[0], 1, *ds.shape[1:])
            is_complex = ds.dtype.kind == "c"
            chunk_bytes = int(np.prod(ds.chunks, dtype=np.float64)) * ds.dtype.itemsize if ds.chunks else 0
            if chunk_bytes > MAX_CHUNK_BYTES:
                raise MRFError(
                    f"{path}: 'series' is stored in chunks of {chunk_bytes / 2**20:,.0f} MiB (decompressed); "
                    f"at most {MAX_CHUNK_BYTES // 2**20} MiB are read at once"
                )
            attrs = schemas.validate(schemas.SeriesAttributes, schemas.h5_attributes(f.attrs), f"{path} attributes")
            sequence = None
            if attrs.sequence is not None:
                sequence = sequence_from_json(attrs.sequence, source=f"{path} (sequence attribute)")
            spacing = np.atleast_1d(np.asarray(attrs.pixel_spacing_mm, dtype=np.float64))
            spacing = np.repeat(spacing, 2) if spacing.size == 1 else spacing
            labels, names = None, {}
            label_ds = _dataset(f, "labels", path, allow_external)
            if label_ds is not None:
                if label_ds.shape not in (tuple(shape[1:]), tuple(shape[2:])) or label_ds.dtype.kind not in "iub":
                    raise MRFError(
                        f"{path}: 'labels' must be integers of shape {tuple(shape[1:])}, got {label_ds.dtype} "
                        f"{label_ds.shape}"
                    )
                labels = label_ds[()].astype(np.int32).reshape(shape[1:])
                names = _label_names(label_ds, path)
    except OSError as exc:
        raise MRFError(f"cannot read {path} as HDF5: {exc}") from None
    dtype = np.complex64 if is_complex else np.float32

    def read(z0: int, z1: int) -> np.ndarray:
        return read_times(z0, z1, 0, shape[0])

    def read_times(z0: int, z1: int, t0: int, t1: int) -> np.ndarray:
        try:
            with h5py.File(path, "r") as f:
                raw = f["series"][t0:t1, z0:z1] if four_d else f["series"][t0:t1][:, None]
        except OSError as exc:
            raise MRFError(f"cannot read slices {z0 + 1}-{z1} of {path}: {exc}") from None
        if raw.dtype.kind in "fc" and not np.isfinite(raw).all():
            bad = int(np.count_nonzero(~np.isfinite(raw)))
            raise MRFError(f"{path}: series contains {bad} NaN or infinite values in slices {z0 + 1}-{z1}")
        if raw.size and float(np.abs(raw).max()) > MAX_SIGNAL:
            raise MRFError(f"{path}: series values up to {float(np.abs(raw).max()):.3g}; at most {MAX_SIGNAL:g}")
        return raw.astype(dtype, copy=False)

    return SlabSource(
        shape=tuple(int(s) for s in shape),  # type: ignore[arg-type]
        is_complex=is_complex,
        read=read,
        read_times=read_times,
        sequence=sequence,
        geometry=Geometry(
            pixel_spacing_mm=(float(spacing[0]), float(spacing[1])), slice_thickness_mm=attrs.slice_thickness_mm
        ),
        description=attrs.description,
        uid=path.stem,
        labels=labels,
        label_names=names,
        identity=InputIdentity(path=str(path), kind="hdf5", series_uid=path.stem, description=attrs.description),
    )


def source_from_plan(plan: DicomPlan, folder: str | Path) -> SlabSource:
    """A slab source over a planned DICOM series (headers read; pixels read per slab)."""
    return SlabSource(
        shape=plan.shape,
        is_complex=plan.phase is not None,
        read=plan.read,
        sequence=plan.sequence,
        geometry=plan.geometry,
        description=plan.description,
        uid=plan.uid,
        source_files=plan.source_files,
        identity=InputIdentity(
            path=str(folder),
            kind="dicom",
            series_uid=plan.uid,
            study_uid=plan.study_uid,
            patient_id=plan.patient_id,
            description=plan.description,
            generated_uids=dict(plan.generated_uids),
        ),
    )


def open_dicom_source(
    folder: str | Path, sequence: Sequence | None = None, series_uid: str | None = None, **kwargs
) -> SlabSource:
    """A slab source over the MRF series of a DICOM folder: headers are scanned now, pixels read per slab."""
    from mrfviewer.io.dicom_read import find_mrf_series, plan_series

    return source_from_plan(plan_series(find_mrf_series(folder, series_uid, **kwargs), sequence), folder)


def open_source(path: str | Path, sequence: Sequence | None = None, series_uid: str | None = None) -> SlabSource:
    """A slab source for a DICOM folder or an HDF5 series file."""
    path = Path(path)
    if path.is_dir():
        return open_dicom_source(path, sequence, series_uid)
    source = open_h5_source(path)
    return source.with_sequence(sequence) if sequence is not None else source
