"""Radial MRF raw data in ISMRMRD files (the ``ismrmrd`` package's HDF5 layout), written and read.

Layout (what ``ismrmrd.Dataset`` writes and reads, and the Gadgetron, mrpro and BART import):

* ``/dataset/xml``: the ISMRMRD XML header. ``encoding``: trajectory ``goldenangle``;
  ``encodedSpace`` the readout samples (2x oversampled: twice the field of view along x) x the
  spokes of a time point; ``reconSpace`` the square image (matrix, field of view, slice
  thickness); ``encodingLimits``: ``kspace_encoding_step_1`` = spoke within the time point,
  ``slice`` = slice, ``contrast`` = MRF time point; ``trajectoryDescription`` the golden-angle
  step, spokes and samples, and the trajectory units. ``sequenceParameters``: per-time-point
  TR, TE and flip angle, and the inversion times, for other readers; ``userParameters``: the
  complete sequence definition as JSON (``userParameterString`` ``mrfviewer.sequence``), so the file
  is self-contained.
* ``/dataset/data``: one acquisition per spoke, (coils, samples) complex64 with its trajectory
  (samples, 2) as (kx, ky) in cycles per field of view of ``reconSpace`` (-N/2 to N/2; kx along
  the columns = ``read_dir``, ky along the rows = ``phase_dir``; the ISMRMRD specification leaves
  the unit open, so it is written into the trajectory description). Order: slice, time point, spoke.
* ``/mrfviewer`` (ignored by ISMRMRD readers, which open ``/dataset`` only): the ground truth of
  synthetic data: ``truth/<map>`` (Z, Y, X), ``labels`` (Z, Y, X) with ``label_names`` (JSON),
  ``coil_sensitivities`` (C, Z, Y, X), and attributes ``snr``, ``sigma``, ``seed``, ``phantom``.

The reader checks the file (regular file, the header against
:class:`mrfviewer.schemas.RadialKspaceHeader`, every acquisition header: one acquisition per
slice, time point and spoke, equal samples and coils, 2D trajectories inside the sampled band,
finite data) and reads the acquisitions of a slice and a range of time points on demand.
Noise, calibration, navigator and other non-imaging acquisitions (by their flags) are skipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from mrfviewer import schemas
from mrfviewer.engine import CancelToken, check_cancel
from mrfviewer.errors import MRFError
from mrfviewer.io.atomic import atomic_path
from mrfviewer.sequence import Inversion, Sequence, sequence_from_json
from mrfviewer.series import Geometry

#: Name of the user parameter holding the sequence JSON, and of the group holding the ground truth.
SEQUENCE_PARAMETER = "mrfviewer.sequence"
TRUTH_GROUP = "mrfviewer"
#: Largest XML header read (the sequence of 100,000 excitations is about 5 MB of JSON).
MAX_XML_BYTES = 64 * 2**20
#: Largest file indexed: acquisitions (slices x time points x spokes) and coils.
MAX_ACQUISITIONS, MAX_CHANNELS = 50_000_000, 128
#: Acquisition flags (ISMRMRD bit numbers) of data that are not imaging data of the series.
_NON_IMAGING_FLAGS = (19, 20, 23, 24, 26, 27, 28, 29, 30, 31)
_FLAG_FIRST_IN_SLICE, _FLAG_LAST_IN_SLICE, _FLAG_LAST_IN_MEASUREMENT = 7, 8, 25
#: 3 T proton frequency, written into the header's experimental conditions (the simulation is field-free).
_LARMOR_3T_HZ = 127_731_000


@dataclass(frozen=True)
class RadialHeader:
    """The encoding of a radial MRF raw-data file (one square matrix, the same trajectory in every slice)."""

    matrix: int
    n_slices: int
    n_timepoints: int
    spokes: int
    readout: int
    n_coils: int
    fov_mm: float
    slice_thickness_mm: float
    sequence: Sequence | None
    description: str = ""
    angle_step_deg: float = 0.0  # 0: not stated
    geometry: Geometry = field(default_factory=Geometry)

    @property
    def n_acquisitions(self) -> int:
        return self.n_slices * self.n_timepoints * self.spokes


@dataclass
class GroundTruth:
    """What a synthetic file holds beside the raw data (the ``/mrfviewer`` group)."""

    maps: dict[str, np.ndarray] = field(default_factory=dict)  # (Z, Y, X)
    labels: np.ndarray | None = None  # (Z, Y, X) int
    label_names: dict[int, str] = field(default_factory=dict)
    sensitivities: np.ndarray | None = None  # (C, Z, Y, X) complex64
    attributes: dict[str, float | int | str] = field(default_factory=dict)


# -- writing ----------------------------------------------------------------------------------


def _xml_header(header: RadialHeader) -> str:
    from ismrmrd import xsd

    seq = header.sequence
    n = header.matrix
    limits = xsd.encodingLimitsType(
        kspace_encoding_step_0=xsd.limitType(minimum=0, maximum=header.readout - 1, center=header.readout // 2),
        kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=header.spokes - 1, center=0),
        kspace_encoding_step_2=xsd.limitType(minimum=0, maximum=0, center=0),
        slice=xsd.limitType(minimum=0, maximum=header.n_slices - 1, center=header.n_slices // 2),
        contrast=xsd.limitType(minimum=0, maximum=header.n_timepoints - 1, center=0),
        repetition=xsd.limitType(minimum=0, maximum=0, center=0),
        average=xsd.limitType(minimum=0, maximum=0, center=0),
    )
    space = xsd.encodingSpaceType
    encoding = xsd.encodingType(
        encodedSpace=space(
            matrixSize=xsd.matrixSizeType(x=header.readout, y=header.spokes, z=1),
            fieldOfView_mm=xsd.fieldOfViewMm(
                x=header.fov_mm * header.readout / n, y=header.fov_mm, z=header.slice_thickness_mm
            ),
        ),
        reconSpace=space(
            matrixSize=xsd.matrixSizeType(x=n, y=n, z=1),
            fieldOfView_mm=xsd.fieldOfViewMm(x=header.fov_mm, y=header.fov_mm, z=header.slice_thickness_mm),
        ),
        encodingLimits=limits,
        trajectory=xsd.trajectoryType.GOLDENANGLE,
        trajectoryDescription=xsd.trajectoryDescriptionType(
            identifier="mrfviewer golden-angle radial MRF",
            userParameterLong=[
                xsd.userParameterLongType(name="spokes_per_timepoint", value=header.spokes),
                xsd.userParameterLongType(name="samples_per_spoke", value=header.readout),
            ],
            userParameterDouble=[xsd.userParameterDoubleType(name="angle_step_deg", value=header.angle_step_deg)],
            userParameterString=[
                xsd.userParameterStringType(name="units", value="cycles per field of view of reconSpace; (kx, ky)")
            ],
            comment="spoke i (over all time points) at i * angle_step_deg; time point = contrast, "
            "spoke within it = kspace_encoding_step_1",
        ),
    )
    sequence_parameters = None
    user = xsd.userParametersType()
    if seq is not None:
        readouts = seq.readouts
        sequence_parameters = xsd.sequenceParametersType(
            TR=[float(v) for r in readouts for v in r.tr_ms],
            TE=[float(v) for r in readouts for v in r.te_ms],
            TI=[float(b.ti_ms) for b in seq.blocks if isinstance(b, Inversion)],
            flipAngle_deg=[float(v) for r in readouts for v in r.flip_angle_deg],
            sequence_type="MRF",
        )
        user.userParameterString.append(xsd.userParameterStringType(name=SEQUENCE_PARAMETER, value=seq.to_json(None)))
    if header.description:
        user.userParameterString.append(xsd.userParameterStringType(name="description", value=header.description))
    doc = xsd.ismrmrdHeader(
        version=1,
        # A knee is scanned feet first, supine.
        measurementInformation=xsd.measurementInformationType(
            patientPosition=xsd.patientPositionType.FFS, protocolName="mrfviewer radial MRF"
        ),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            systemVendor="mrfviewer (simulated)", systemFieldStrength_T=3.0, receiverChannels=header.n_coils
        ),
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=_LARMOR_3T_HZ),
        encoding=[encoding],
        sequenceParameters=sequence_parameters,
        userParameters=user,
    )
    return xsd.ToXML(doc)


def _acquisition_rows(
    header: RadialHeader, z: int, t0: int, t1: int, data: np.ndarray, kspace: np.ndarray, counter: int
) -> np.ndarray:
    """ISMRMRD acquisition records of time points t0:t1 of slice z.

    ``data`` (t, spokes, C, R), ``kspace`` (t, spokes, R, 2) as (ky, kx) cycles per field of view.
    """
    from ismrmrd.hdf5 import acquisition_dtype

    n_t, n_s, n_c, n_r = data.shape
    n = n_t * n_s
    rows = np.zeros(n, dtype=acquisition_dtype)
    head = rows["head"]
    head["version"] = 1
    head["measurement_uid"] = 1
    head["scan_counter"] = counter + 1 + np.arange(n)
    head["number_of_samples"] = n_r
    head["available_channels"] = n_c
    head["active_channels"] = n_c
    mask = np.zeros(16, dtype=np.uint64)
    for c in range(n_c):  # a bit per active channel, 64 channels per word
        mask[c // 64] |= np.uint64(1) << np.uint64(c % 64)
    head["channel_mask"] = mask
    head["center_sample"] = n_r // 2
    head["trajectory_dimensions"] = 2
    geometry = header.geometry
    read_dir = np.asarray(geometry.orientation[:3], dtype=np.float64)
    phase_dir = np.asarray(geometry.orientation[3:], dtype=np.float64)
    spacing = header.fov_mm / header.matrix
    centre = geometry.slice_positions(header.n_slices)[z] + header.matrix // 2 * spacing * (read_dir + phase_dir)
    head["position"] = centre
    head["read_dir"] = read_dir
    head["phase_dir"] = phase_dir
    head["slice_dir"] = geometry.normal
    idx = head["idx"]
    idx["kspace_encode_step_1"] = np.tile(np.arange(n_s), n_t)
    idx["slice"] = z
    idx["contrast"] = np.repeat(np.arange(t0, t1), n_s)
    flags = np.zeros(n, dtype=np.uint64)
    if t0 == 0:
        flags[0] |= np.uint64(1 << (_FLAG_FIRST_IN_SLICE - 1))
    if t1 == header.n_timepoints:
        flags[-1] |= np.uint64(1 << (_FLAG_LAST_IN_SLICE - 1))
        if z == header.n_slices - 1:
            flags[-1] |= np.uint64(1 << (_FLAG_LAST_IN_MEASUREMENT - 1))
    head["flags"] = flags
    samples = np.ascontiguousarray(data.reshape(n, n_c, n_r)).view(np.float32).reshape(n, -1)
    traj = np.ascontiguousarray(kspace[..., ::-1], dtype=np.float32).reshape(n, -1)  # (ky, kx) -> (kx, ky)
    data_column = np.empty(n, dtype=object)
    data_column[:] = list(samples)
    traj_column = np.empty(n, dtype=object)
    traj_column[:] = list(traj)
    rows["data"] = data_column
    rows["traj"] = traj_column
    return rows


def write_radial_ismrmrd(
    path: str | Path,
    header: RadialHeader,
    chunks: Iterable,
    trajectory: Callable[[int, int], np.ndarray],
    ground_truth: Callable[[], GroundTruth] | None = None,
    *,
    overwrite: bool = False,
    cancel: CancelToken | None = None,
) -> Path:
    """Write a radial MRF acquisition as an ISMRMRD file, atomically (see the module docstring).

    ``chunks`` yields :class:`mrfviewer.acquisition.KspaceChunk` (slice, time range, data (t, spokes,
    C, R)) in slice then time order; ``trajectory(t0, t1)`` gives their k-space positions (t, spokes,
    R, 2) as (ky, kx) in cycles per field of view; ``ground_truth`` is called after the last chunk.
    """
    from ismrmrd.hdf5 import acquisition_dtype

    with atomic_path(path, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("dataset")
        xml = group.create_dataset("xml", shape=(1,), dtype=h5py.special_dtype(vlen=bytes))
        xml[0] = _xml_header(header).encode("utf-8")
        rows_per_slice = header.n_timepoints * header.spokes
        ds = group.create_dataset(
            "data", (0,), maxshape=(None,), dtype=acquisition_dtype, chunks=(max(1, min(rows_per_slice, 1024)),)
        )
        written = 0
        for chunk in chunks:
            check_cancel(cancel)
            rows = _acquisition_rows(
                header, chunk.z, chunk.t0, chunk.t1, chunk.data, trajectory(chunk.t0, chunk.t1), written
            )
            ds.resize(written + rows.size, axis=0)
            ds[written : written + rows.size] = rows
            written += rows.size
        if written != header.n_acquisitions:
            raise MRFError(f"{written} acquisitions written, the header announces {header.n_acquisitions}")
        if ground_truth is not None:
            _write_truth(f, ground_truth())
    return Path(path)


def _write_truth(f: h5py.File, truth: GroundTruth) -> None:
    group = f.create_group(TRUTH_GROUP)
    maps = group.create_group("truth")
    for name, values in truth.maps.items():
        maps.create_dataset(name, data=np.asarray(values, dtype=np.float32), compression="gzip", compression_opts=1)
    if truth.labels is not None:
        ds = group.create_dataset("labels", data=truth.labels.astype(np.int32), compression="gzip", compression_opts=1)
        ds.attrs["label_names"] = json.dumps({str(k): v for k, v in truth.label_names.items()})
    if truth.sensitivities is not None:
        group.create_dataset("coil_sensitivities", data=truth.sensitivities.astype(np.complex64))
    for key, value in truth.attributes.items():
        group.attrs[key] = value


# -- reading ----------------------------------------------------------------------------------


def is_ismrmrd(path: str | Path) -> bool:
    """True if ``path`` is an HDF5 file with an ISMRMRD dataset (``/dataset/xml``)."""
    path = Path(path)
    try:
        if not (path.is_file() and h5py.is_hdf5(path)):
            return False
        with h5py.File(path, "r") as f:
            return isinstance(f.get("dataset"), h5py.Group) and isinstance(f["dataset"].get("xml"), h5py.Dataset)
    except (OSError, ValueError):
        return False


def _parse_header(text: bytes, path: Path) -> tuple[schemas.RadialKspaceHeader, float]:
    """The parts of the XML header mrfviewer uses, validated; and the golden-angle step (0: not stated)."""
    from ismrmrd import xsd

    try:
        doc = xsd.CreateFromDocument(text)
    except Exception as exc:  # noqa: BLE001 - xsdata raises parser errors of several kinds
        raise MRFError(f"{path}: the ISMRMRD XML header cannot be parsed ({type(exc).__name__}: {exc})") from None
    if len(doc.encoding) != 1:
        raise MRFError(f"{path}: {len(doc.encoding)} encodings in the header; one is supported")
    enc = doc.encoding[0]
    limits = enc.encodingLimits

    def count(limit: object, what: str) -> int:
        if limit is None:
            return 1
        if limit.minimum != 0:  # type: ignore[attr-defined]
            raise MRFError(f"{path}: the {what} counter starts at {limit.minimum}; 0 is expected")  # type: ignore[attr-defined]
        return int(limit.maximum) + 1  # type: ignore[attr-defined]

    if count(limits.kspace_encoding_step_2, "kspace_encoding_step_2") != 1:
        raise MRFError(
            f"{path}: partition-encoded (kspace_encoding_step_2) data are not supported; decode along z first"
        )
    for name in ("repetition", "average", "phase", "set", "segment"):
        if count(getattr(limits, name), name) != 1:
            raise MRFError(f"{path}: more than one {name} is not supported (time points are 'contrast')")
    strings = {p.name: p.value for p in (doc.userParameters.userParameterString if doc.userParameters else [])}
    angle = 0.0
    if enc.trajectoryDescription is not None:
        doubles = {p.name: p.value for p in enc.trajectoryDescription.userParameterDouble}
        angle = float(doubles.get("angle_step_deg", 0.0))
    recon = enc.reconSpace
    raw = {
        "trajectory": enc.trajectory.value,
        "matrix": int(recon.matrixSize.x),
        "matrix_y": int(recon.matrixSize.y),
        "fov_mm": float(recon.fieldOfView_mm.x),
        "fov_y_mm": float(recon.fieldOfView_mm.y),
        "slice_thickness_mm": float(recon.fieldOfView_mm.z),
        "n_slices": count(limits.slice, "slice"),
        "n_timepoints": count(limits.contrast, "contrast"),
        "spokes": count(limits.kspace_encoding_step_1, "kspace_encoding_step_1"),
        "sequence": strings.get(SEQUENCE_PARAMETER),
        "description": strings.get("description", ""),
    }
    return schemas.validate(schemas.RadialKspaceHeader, raw, f"{path} ISMRMRD header"), angle


@dataclass
class RadialFile:
    """An opened radial MRF raw-data file: its header and where each spoke is stored."""

    path: Path
    header: RadialHeader
    rows: np.ndarray  # (Z, T, spokes) acquisition index of every spoke

    def read(self, z: int, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
        """Data (t, spokes, C, R) complex64 and positions (t, spokes, R, 2) as (ky, kx) cycles/FOV of t0:t1, slice z."""
        h = self.header
        wanted = self.rows[z, t0:t1].reshape(-1)
        order = np.argsort(wanted)
        data_rows, traj_rows = self._rows(wanted[order], ("data", "traj"))
        n = wanted.size
        samples = np.empty((n, 2 * h.n_coils * h.readout), dtype=np.float32)
        samples[order] = _stack(data_rows, 2 * h.n_coils * h.readout, self.path, "data")
        positions = np.empty((n, 2 * h.readout), dtype=np.float32)
        positions[order] = _stack(traj_rows, 2 * h.readout, self.path, "trajectory")
        data = samples.view(np.complex64).reshape(t1 - t0, h.spokes, h.n_coils, h.readout)
        kspace = positions.reshape(t1 - t0, h.spokes, h.readout, 2)[..., ::-1].astype(np.float64)
        if not np.isfinite(samples).all():
            raise MRFError(f"{self.path}: slice {z + 1} holds NaN or infinite samples (time points {t0 + 1}-{t1})")
        if not np.isfinite(positions).all() or np.abs(kspace).max() > h.matrix / 2 * (1 + 1e-3):
            raise MRFError(
                f"{self.path}: trajectory of slice {z + 1} (time points {t0 + 1}-{t1}) leaves the sampled band "
                f"|k| <= {h.matrix / 2:g} cycles per field of view (or is not finite)"
            )
        return data, kspace

    def read_trajectory(self, z: int, t0: int, t1: int) -> np.ndarray:
        """Positions (t, spokes, R, 2) as (ky, kx) cycles per field of view of time points t0:t1 of slice z."""
        return self.read(z, t0, t1)[1]

    def _rows(self, indices: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
        """Fields ``names`` of the acquisitions at sorted ``indices``, read in contiguous runs."""
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        runs = np.split(indices, breaks)
        out: list[list[np.ndarray]] = [[] for _ in names]
        try:
            with h5py.File(self.path, "r") as f:
                ds = f["dataset"]["data"]
                for run in runs:
                    for i, name in enumerate(names):
                        out[i].append(ds.fields(name)[int(run[0]) : int(run[-1]) + 1])
        except (OSError, KeyError, ValueError) as exc:
            raise MRFError(f"cannot read the acquisitions of {self.path}: {exc}") from None
        return [np.concatenate(parts) if parts else np.zeros(0, dtype=object) for parts in out]

    def ground_truth(self) -> GroundTruth | None:
        """The ground truth of a synthetic file (the ``/mrfviewer`` group), or None."""
        h = self.header
        shape = (h.n_slices, h.matrix, h.matrix)
        try:
            with h5py.File(self.path, "r") as f:
                group = f.get(TRUTH_GROUP)
                if not isinstance(group, h5py.Group):
                    return None
                truth = GroundTruth(attributes=schemas.h5_attributes(group.attrs))
                maps = group.get("truth")
                if isinstance(maps, h5py.Group):
                    for name, ds in maps.items():
                        if isinstance(ds, h5py.Dataset) and ds.shape == shape and ds.dtype.kind == "f":
                            truth.maps[name] = ds[()].astype(np.float32)
                labels = group.get("labels")
                if isinstance(labels, h5py.Dataset) and labels.shape == shape and labels.dtype.kind in "iu":
                    truth.labels = labels[()].astype(np.int32)
                    text = labels.attrs.get("label_names", "{}")
                    raw = schemas.parse_json(text if isinstance(text, str | bytes) else "", f"{self.path} label_names")
                    if not isinstance(raw, dict):
                        raise MRFError(f"{self.path}: label_names must be a JSON object of label number -> name")
                    names = schemas.validate(schemas.LabelNames, {"names": raw}, f"{self.path} label_names").names
                    truth.label_names = {int(k): v for k, v in names.items()}
                sens = group.get("coil_sensitivities")
                if isinstance(sens, h5py.Dataset) and sens.shape == (h.n_coils, *shape):
                    truth.sensitivities = sens[()].astype(np.complex64)
        except OSError as exc:
            raise MRFError(f"cannot read the ground truth in {self.path}: {exc}") from None
        return truth


def _stack(column: np.ndarray, length: int, path: Path, what: str) -> np.ndarray:
    """Variable-length rows of one length stacked into (n, length) float32."""
    if column.size == 0:
        return np.zeros((0, length), dtype=np.float32)
    sizes = np.fromiter((np.size(v) for v in column), dtype=np.int64, count=column.size)
    if np.any(sizes != length):
        raise MRFError(f"{path}: acquisitions with {what} of {sizes.min()}-{sizes.max()} values; {length} expected")
    return np.stack(list(column)).astype(np.float32, copy=False)


def open_radial(path: str | Path) -> RadialFile:
    """Open and check a radial MRF ISMRMRD file (headers only; data are read per slice and time range)."""
    from ismrmrd.hdf5 import acquisition_header_dtype

    path = Path(path)
    schemas.check_regular_file(path, "raw-data file")
    try:
        with h5py.File(path, "r") as f:
            group = f.get("dataset")
            if not isinstance(group, h5py.Group) or not isinstance(group.get("xml"), h5py.Dataset):
                raise MRFError(f"{path}: not an ISMRMRD file (no /dataset/xml)")
            xml_ds = group["xml"]
            if xml_ds.shape != (1,) or xml_ds.dtype.kind not in "OS":
                raise MRFError(f"{path}: /dataset/xml must hold one XML text")
            text = xml_ds[0]
            text = text.encode("utf-8") if isinstance(text, str) else bytes(text)
            if len(text) > MAX_XML_BYTES:
                raise MRFError(f"{path}: the XML header has {len(text):,} bytes; at most {MAX_XML_BYTES:,}")
            data = group.get("data")
            if not isinstance(data, h5py.Dataset) or data.ndim != 1 or data.dtype.names is None:
                raise MRFError(f"{path}: no acquisitions (/dataset/data)")
            if "head" not in data.dtype.names or data.dtype["head"] != acquisition_header_dtype:
                raise MRFError(f"{path}: /dataset/data is not made of ISMRMRD acquisitions")
            if data.shape[0] > MAX_ACQUISITIONS:
                raise MRFError(f"{path}: {data.shape[0]:,} acquisitions; at most {MAX_ACQUISITIONS:,} are read")
            heads = data.fields("head")[()]
    except OSError as exc:
        raise MRFError(f"cannot read {path} as ISMRMRD: {exc}") from None
    parsed, angle = _parse_header(text, path)
    sequence = None
    if parsed.sequence is not None:
        sequence = sequence_from_json(parsed.sequence, source=f"{path} ({SEQUENCE_PARAMETER})")
    rows, readout, coils, geometry = _index(heads, parsed, path)
    header = RadialHeader(
        matrix=parsed.matrix,
        n_slices=parsed.n_slices,
        n_timepoints=parsed.n_timepoints,
        spokes=parsed.spokes,
        readout=readout,
        n_coils=coils,
        fov_mm=parsed.fov_mm,
        slice_thickness_mm=parsed.slice_thickness_mm,
        sequence=sequence,
        description=parsed.description,
        angle_step_deg=angle,
        geometry=geometry,
    )
    return RadialFile(path=path, header=header, rows=rows)


def _index(heads: np.ndarray, parsed: schemas.RadialKspaceHeader, path: Path) -> tuple[np.ndarray, int, int, Geometry]:
    """Acquisition index (Z, T, spokes), samples per spoke, coils and slice geometry, with every check."""
    flags = heads["flags"].astype(np.uint64)
    non_imaging = np.uint64(sum(1 << (b - 1) for b in _NON_IMAGING_FLAGS))
    imaging = np.flatnonzero((flags & non_imaging) == 0)
    h = heads[imaging]
    shape = (parsed.n_slices, parsed.n_timepoints, parsed.spokes)
    if imaging.size != np.prod(shape):
        raise MRFError(
            f"{path}: {imaging.size:,} imaging acquisitions; the header's encoding limits announce "
            f"{parsed.n_slices} slice(s) x {parsed.n_timepoints} time points x {parsed.spokes} spokes "
            f"= {np.prod(shape):,}"
        )
    for name, values in (
        ("number_of_samples", h["number_of_samples"]),
        ("active_channels", h["active_channels"]),
        ("trajectory_dimensions", h["trajectory_dimensions"]),
    ):
        if values.size and values.min() != values.max():
            raise MRFError(f"{path}: acquisitions differ in {name} ({values.min()}-{values.max()}); one value expected")
    readout, coils, dims = (int(h[k][0]) for k in ("number_of_samples", "active_channels", "trajectory_dimensions"))
    if dims != 2:
        raise MRFError(f"{path}: trajectories of {dims} dimensions; 2D radial (kx, ky) trajectories are read")
    if not 2 <= readout <= 8 * parsed.matrix or not 1 <= coils <= MAX_CHANNELS:
        raise MRFError(f"{path}: {readout} samples per spoke and {coils} coils are out of range")
    if np.any(h["discard_pre"]) or np.any(h["discard_post"]):
        raise MRFError(f"{path}: acquisitions with discard_pre/discard_post samples are not supported")
    idx = h["idx"]
    z, t, s = (idx[k].astype(np.int64) for k in ("slice", "contrast", "kspace_encode_step_1"))
    if z.max() >= shape[0] or t.max() >= shape[1] or s.max() >= shape[2]:
        raise MRFError(f"{path}: acquisition counters beyond the header's encoding limits")
    flat = (z * shape[1] + t) * shape[2] + s
    rows = np.full(int(np.prod(shape)), -1, dtype=np.int64)
    rows[flat] = imaging
    if np.unique(flat).size != flat.size:
        raise MRFError(f"{path}: some spokes (slice, contrast, kspace_encode_step_1) are acquired more than once")
    first = h[0]
    read_dir, phase_dir = first["read_dir"].astype(np.float64), first["phase_dir"].astype(np.float64)
    if not (
        math.isclose(np.linalg.norm(read_dir), 1, rel_tol=1e-3)
        and math.isclose(np.linalg.norm(phase_dir), 1, rel_tol=1e-3)
    ):
        read_dir, phase_dir = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])  # not stated: the scanner axes
    spacing = parsed.fov_mm / parsed.matrix
    centres = np.zeros((shape[0], 3))
    centres[z] = h["position"].astype(np.float64)
    positions = centres - parsed.matrix // 2 * spacing * (read_dir + phase_dir)
    geometry = Geometry(
        pixel_spacing_mm=(spacing, spacing),
        slice_thickness_mm=parsed.slice_thickness_mm,
        orientation=(*read_dir.tolist(), *phase_dir.tolist()),
        positions=positions,
    )
    return rows.reshape(shape), readout, coils, geometry
