"""Writing synthetic MRF series as DICOM (pydicom): classic single-frame or Enhanced MR.

Layout written by :func:`write_mrf_dicom` into ``folder``::

    folder/magnitude/IM_t0001_z01.dcm ...   series "<description> (magnitude)", ImageType ...\\M
    folder/phase/IM_t0001_z01.dcm ...       series "<description> (phase)", ImageType ...\\P
    folder/magnitude/mrf_sequence.json      the sequence sidecar (also in phase/)

or, with ``layout="enhanced"``, one Enhanced MR multi-frame object per series
(frames ordered time-major, per-frame plane position, temporal position index and
complex image component). Magnitude is stored as 16-bit with a rescale slope;
phase as 12-bit stored values mapping [0, 4096) to [-pi, pi) (rescale slope 2,
intercept -4096, the common vendor convention). The patient is synthetic
(``MRFVIEWER^SYNTHETIC``), never a real name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from mrfviewer import __version__
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report
from mrfviewer.errors import MRFError
from mrfviewer.io.atomic import atomic_write, atomic_write_text, check_writable_target
from mrfviewer.sequence import Readout
from mrfviewer.series import Series

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
SIDECAR = "mrf_sequence.json"
PHASE_BITS = 12


def _per_timepoint(series: Series, name: str) -> np.ndarray:
    """Flip angle / TR / TE of every acquired time point, from the sequence."""
    if series.sequence is None:
        return np.zeros(series.n_timepoints)
    return np.concatenate([getattr(r, name) for r in series.sequence.blocks if isinstance(r, Readout)])


def _base_dataset(
    series: Series, uids: Mapping[str, str], description: str, now: dt.datetime, patient_id: str
) -> Dataset:
    ds = Dataset()
    ds.PatientName = "MRFVIEWER^SYNTHETIC"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uids["study"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = "MR"
    ds.Manufacturer = "mrfviewer (synthetic)"
    ds.SoftwareVersions = __version__
    ds.MagneticFieldStrength = 3.0
    ds.StudyDescription = "MRF knee T1 T2 T1rho (synthetic)"
    ds.SeriesDescription = description
    ds.ProtocolName = series.sequence.name if series.sequence is not None else "mrf"
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "KNEE"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.PixelRepresentation = 0
    ds.NumberOfTemporalPositions = series.n_timepoints
    return ds


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    return meta


def _save(ds: Dataset, path: Path, overwrite: bool) -> None:
    atomic_write(path, lambda p: ds.save_as(p, enforce_file_format=True), overwrite=overwrite)


def _stored(series: Series) -> dict[str, tuple[np.ndarray, float, float]]:
    """Stored uint16 values, rescale slope and intercept for the magnitude and phase images."""
    mag = np.abs(series.data)
    top = float(mag.max()) or 1.0
    slope = top / 65535.0
    out = {"M": (np.round(mag / slope).astype(np.uint16), slope, 0.0)}
    if series.is_complex:
        half = 2 ** (PHASE_BITS - 1)
        phase = np.angle(series.data)
        stored = np.clip(np.round(phase / np.pi * half + half), 0, 2 * half - 1).astype(np.uint16)
        out["P"] = (stored, 2.0, -float(2 * half))
    return out


def write_mrf_dicom(
    series: Series,
    folder: str | Path,
    *,
    description: str = "MRF",
    layout: str = "classic",
    patient_id: str = "MRFSYN0001",
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> list[Path]:
    """Write ``series`` as DICOM magnitude (and phase) series with the sequence sidecar.

    Returns the two series folders. See the module docstring for the layout.
    """
    if layout not in ("classic", "enhanced"):
        raise MRFError(f"DICOM layout must be 'classic' or 'enhanced', got {layout!r}")
    folder = Path(folder)
    n_t, n_z, n_y, n_x = series.data.shape
    geometry = series.geometry
    positions = geometry.slice_positions(n_z)
    now = dt.datetime.now()
    uids = {"study": generate_uid(), "frame": generate_uid()}
    flip = _per_timepoint(series, "flip_angle_deg")
    tr = _per_timepoint(series, "tr_ms")
    te = _per_timepoint(series, "te_ms")
    stored = _stored(series)
    folders = []
    for number, (kind, (values, slope, intercept)) in enumerate(stored.items(), start=1):
        name = "magnitude" if kind == "M" else "phase"
        target = folder / name
        sidecar = target / SIDECAR
        check_writable_target(sidecar, overwrite)
        base = _base_dataset(series, uids, f"{description} ({name})", now, patient_id)
        base.SeriesInstanceUID = generate_uid()
        base.SeriesNumber = number
        base.ImageType = (
            ["ORIGINAL", "PRIMARY", kind, "NONE"] if layout == "classic" else ["ORIGINAL", "PRIMARY", "MIXED", "NONE"]
        )
        base.BitsStored = 16 if kind == "M" else PHASE_BITS
        base.HighBit = base.BitsStored - 1
        base.Rows, base.Columns = n_y, n_x
        if layout == "classic":
            for t in range(n_t):
                check_cancel(cancel)
                for z in range(n_z):
                    ds = Dataset()
                    ds.update(base)
                    ds.SOPClassUID = MR_IMAGE_STORAGE
                    ds.SOPInstanceUID = generate_uid()
                    ds.InstanceNumber = t * n_z + z + 1
                    ds.AcquisitionNumber = t + 1
                    ds.TemporalPositionIdentifier = t + 1
                    ds.ImagePositionPatient = [float(v) for v in positions[z]]
                    ds.ImageOrientationPatient = [float(v) for v in geometry.orientation]
                    ds.PixelSpacing = [float(v) for v in geometry.pixel_spacing_mm]
                    ds.SliceThickness = float(geometry.slice_thickness_mm)
                    ds.SliceLocation = float(np.dot(positions[z], geometry.normal))
                    ds.FlipAngle, ds.RepetitionTime, ds.EchoTime = float(flip[t]), float(tr[t]), float(te[t])
                    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = f"{slope:.10g}", f"{intercept:g}", "US"
                    ds.PixelData = np.ascontiguousarray(values[t, z]).tobytes()
                    ds.file_meta = _file_meta(MR_IMAGE_STORAGE, ds.SOPInstanceUID)
                    _save(ds, target / f"IM_t{t + 1:04d}_z{z + 1:02d}.dcm", overwrite)
                report(progress, ((number - 1) * n_t + t + 1) / (len(stored) * n_t), f"writing {name} images")
        else:
            _write_enhanced(base, values, slope, intercept, kind, series, positions, target, overwrite)
        if series.sequence is not None:
            atomic_write_text(sidecar, series.sequence.to_json() + "\n", overwrite=overwrite)
        folders.append(target)
    return folders


def _write_enhanced(base, values, slope, intercept, kind, series, positions, target, overwrite) -> None:
    n_t, n_z = values.shape[:2]
    ds = Dataset()
    ds.update(base)
    ds.SOPClassUID = ENHANCED_MR_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.NumberOfFrames = n_t * n_z
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [float(v) for v in series.geometry.pixel_spacing_mm]
    measures.SliceThickness = float(series.geometry.slice_thickness_mm)
    orientation = Dataset()
    orientation.ImageOrientationPatient = [float(v) for v in series.geometry.orientation]
    rescale = Dataset()
    rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = f"{slope:.10g}", f"{intercept:g}", "US"
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    shared.PixelValueTransformationSequence = DicomSequence([rescale])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    frames = []
    for t in range(n_t):
        for z in range(n_z):
            item = Dataset()
            content = Dataset()
            content.TemporalPositionIndex = t + 1
            content.StackID = "1"
            content.InStackPositionNumber = z + 1
            position = Dataset()
            position.ImagePositionPatient = [float(v) for v in positions[z]]
            frame_type = Dataset()
            frame_type.FrameType = ["ORIGINAL", "PRIMARY", kind, "NONE"]
            frame_type.ComplexImageComponent = "MAGNITUDE" if kind == "M" else "PHASE"
            item.FrameContentSequence = DicomSequence([content])
            item.PlanePositionSequence = DicomSequence([position])
            item.MRImageFrameTypeSequence = DicomSequence([frame_type])
            frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    ds.PixelData = np.ascontiguousarray(values.reshape(n_t * n_z, *values.shape[2:])).tobytes()
    ds.file_meta = _file_meta(ENHANCED_MR_IMAGE_STORAGE, ds.SOPInstanceUID)
    _save(ds, target / "MRF_enhanced.dcm", overwrite)
