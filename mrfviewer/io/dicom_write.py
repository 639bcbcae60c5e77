"""Writing synthetic MRF series as DICOM (pydicom): classic single-frame or Enhanced MR.

Layout written by :func:`write_mrf_dicom` into ``folder``::

    folder/magnitude/IM_t0001_z01.dcm ...   series "<description> (magnitude)", ImageType ...\\M
    folder/phase/IM_t0001_z01.dcm ...       series "<description> (phase)", ImageType ...\\P
    folder/magnitude/mrf_sequence.json      the sequence sidecar (also in phase/)

or, with ``layout="enhanced"``, one Enhanced MR multi-frame object per series: frames
time-major (all slices of time point 1, then of time point 2...), slices in ascending
order along the normal, a Dimension Index of (temporal position, stack, in-stack
position), per-frame position, timing (flip angle, TR, TE, acquisition time) and the MR
functional groups the IOD requires. Magnitude is stored as 16-bit with a rescale slope;
phase as 12-bit stored values mapping [0, 4096) to [-pi, pi) (rescale slope 2, intercept
-4096, the common vendor convention; the Enhanced MR phase series also carries a Real
World Value Mapping in radians). The patient is synthetic (``MRFVIEWER^SYNTHETIC``),
never a real name. Every object passes dciodvfy without errors; decimal strings are
written with at most 16 characters.
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
from mrfviewer.io.dicom_values import ds_value, fit_decimal_strings
from mrfviewer.sequence import Inversion, Readout, T2Prep
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


def _has_block(series: Series, kind: type) -> bool:
    return series.sequence is not None and any(isinstance(b, kind) for b in series.sequence.blocks)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


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
    # Not "mrfviewer ...": dcm2niix takes a manufacturer starting with "MR" for MR Solutions and then
    # ignores the Dimension Index of Enhanced MR objects.
    ds.Manufacturer = "synthetic (mrfviewer)"
    ds.ManufacturerModelName = "mrfviewer"
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = __version__
    ds.MagneticFieldStrength = 3.0
    ds.StudyDescription = "MRF knee T1 T2 T1rho (synthetic)"
    ds.SeriesDescription = description
    ds.ProtocolName = series.sequence.name if series.sequence is not None else "mrf"
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "KNEE"
    # Type 2C for MR: knees are scanned feet first, supine.
    ds.PatientPosition = "FFS"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.PixelRepresentation = 0
    return ds


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    return meta


def _save(ds: Dataset, path: Path, overwrite: bool) -> None:
    fit_decimal_strings(ds)
    atomic_write(path, lambda p: ds.save_as(p, enforce_file_format=True), overwrite=overwrite)


def _stored(series: Series) -> dict[str, tuple[np.ndarray, float, float]]:
    """Stored uint16 values, rescale slope and intercept for the magnitude and phase images."""
    mag = np.abs(series.data)
    top = float(mag.max()) or 1.0
    # The slope is written as a decimal string: quantise with the value that will be read back.
    slope = float(ds_value(top / 65535.0))
    out = {"M": (np.clip(np.round(mag / slope), 0, 65535).astype(np.uint16), slope, 0.0)}
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

    Parameters
    ----------
    series
        The series (T, Z, Y, X); complex data give a magnitude and a phase series.
    folder
        Output folder: ``magnitude/`` and ``phase/`` are created in it.
    description
        Series description (" (magnitude)" / " (phase)" appended).
    layout
        ``"classic"`` (one MR Image file per image) or ``"enhanced"`` (one Enhanced MR
        multi-frame object per series).
    patient_id
        The synthetic patient's ID.
    overwrite
        Replace existing files.
    progress, cancel
        Progress callback and cancel token.

    Returns
    -------
    list of Path
        The series folders written. See the module docstring for the layout.
    """
    if layout not in ("classic", "enhanced"):
        raise MRFError(f"DICOM layout must be 'classic' or 'enhanced', got {layout!r}")
    folder = Path(folder)
    n_t, n_z, n_y, n_x = series.data.shape
    now = dt.datetime.now()
    uids = {"study": generate_uid(), "frame": generate_uid()}
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
        base.BitsStored = 16 if kind == "M" else PHASE_BITS
        base.HighBit = base.BitsStored - 1
        base.Rows, base.Columns = n_y, n_x
        if layout == "classic":
            _write_classic(base, values, slope, intercept, kind, series, target, overwrite, progress, cancel, number)
        else:
            check_cancel(cancel)
            _write_enhanced(base, values, slope, intercept, kind, series, now, target, overwrite)
            report(progress, number / len(stored), f"writing {name} images")
        if series.sequence is not None:
            atomic_write_text(sidecar, series.sequence.to_json() + "\n", overwrite=overwrite)
        folders.append(target)
    return folders


def _write_classic(
    base: Dataset,
    values: np.ndarray,
    slope: float,
    intercept: float,
    kind: str,
    series: Series,
    target: Path,
    overwrite: bool,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
    number: int,
) -> None:
    """One MR Image Storage file per time point and slice."""
    n_t, n_z = values.shape[:2]
    geometry = series.geometry
    positions = geometry.slice_positions(n_z)
    flip, tr, te = (_per_timepoint(series, k) for k in ("flip_angle_deg", "tr_ms", "te_ms"))
    base.ImageType = ["ORIGINAL", "PRIMARY", kind, "NONE"]
    base.NumberOfTemporalPositions = n_t
    # MR Image module attributes of type 1 and 2.
    base.ScanningSequence = "GR"
    base.SequenceVariant = "MP"  # magnetisation prepared: inversion, T2-prep, spin-locks
    base.ScanOptions = ""
    base.MRAcquisitionType = "2D"
    base.EchoTrainLength = 1
    base.Laterality = ""  # type 2C for a knee: unknown for a synthetic one
    n_files = 2 if series.is_complex else 1
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
            ds.ImagePositionPatient = [ds_value(v) for v in positions[z]]
            ds.ImageOrientationPatient = [ds_value(v) for v in geometry.orientation]
            ds.PixelSpacing = [ds_value(v) for v in geometry.pixel_spacing_mm]
            ds.SliceThickness = ds_value(geometry.slice_thickness_mm)
            ds.SliceLocation = ds_value(np.dot(positions[z], geometry.normal))
            ds.FlipAngle, ds.RepetitionTime, ds.EchoTime = ds_value(flip[t]), ds_value(tr[t]), ds_value(te[t])
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = ds_value(slope), ds_value(intercept), "US"
            ds.PixelData = np.ascontiguousarray(values[t, z]).tobytes()
            ds.file_meta = _file_meta(MR_IMAGE_STORAGE, ds.SOPInstanceUID)
            _save(ds, target / f"IM_t{t + 1:04d}_z{z + 1:02d}.dcm", overwrite)
        name = "magnitude" if kind == "M" else "phase"
        report(progress, ((number - 1) * n_t + t + 1) / (n_files * n_t), f"writing {name} images")


def _enhanced_image_attributes(ds: Dataset, series: Series, kind: str, acquired: str, duration_ms: float) -> None:
    """Enhanced MR Image and MR Pulse Sequence module attributes (one value for the whole object)."""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "DYNAMIC", "NONE"]
    ds.AcquisitionNumber = 1
    ds.AcquisitionDateTime = acquired
    ds.AcquisitionDuration = duration_ms / 1000.0  # seconds
    ds.ContentQualification = "RESEARCH"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE" if kind == "M" else "PHASE"
    ds.AcquisitionContrast = "UNKNOWN"  # no enumerated value fits a fingerprint
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.PulseSequenceName = (series.sequence.name if series.sequence is not None else "mrf")[:16]
    ds.MRAcquisitionType = "2D"
    ds.EchoPulseSequence = "GRADIENT"
    ds.MultiPlanarExcitation = "NO"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = "NONE"  # MRF samples the transient state
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "SINGLE"
    ds.NumberOfKSpaceTrajectories = 1


def _shared_groups(series: Series, kind: str, slope: float, intercept: float) -> Dataset:
    """Functional groups that hold for every frame."""
    geometry = series.geometry
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [ds_value(v) for v in geometry.pixel_spacing_mm]
    measures.SliceThickness = ds_value(geometry.slice_thickness_mm)
    if series.data.shape[1] > 1:
        positions = geometry.slice_positions(series.data.shape[1])
        measures.SpacingBetweenSlices = ds_value(float(np.linalg.norm(positions[1] - positions[0])))
    shared.PixelMeasuresSequence = [measures]
    orientation = Dataset()
    orientation.ImageOrientationPatient = [ds_value(v) for v in geometry.orientation]
    shared.PlaneOrientationSequence = [orientation]
    rescale = Dataset()
    rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = ds_value(slope), ds_value(intercept), "US"
    shared.PixelValueTransformationSequence = [rescale]
    anatomy = Dataset()
    anatomy.AnatomicRegionSequence = [_code("72696002", "SCT", "Knee")]
    anatomy.FrameLaterality = "U"
    shared.FrameAnatomySequence = [anatomy]
    frame_type = Dataset()
    frame_type.FrameType = ["ORIGINAL", "PRIMARY", "DYNAMIC", "NONE"]
    frame_type.PixelPresentation = "MONOCHROME"
    frame_type.VolumetricProperties = "VOLUME"
    frame_type.VolumeBasedCalculationTechnique = "NONE"
    frame_type.ComplexImageComponent = "MAGNITUDE" if kind == "M" else "PHASE"
    frame_type.AcquisitionContrast = "UNKNOWN"
    shared.MRImageFrameTypeSequence = [frame_type]
    if kind == "P":
        shared.RealWorldValueMappingSequence = [_phase_mapping(slope, intercept)]
    modifier = Dataset()
    modifier.InversionRecovery = "YES" if _has_block(series, Inversion) else "NO"
    if modifier.InversionRecovery == "YES":
        assert series.sequence is not None
        modifier.InversionTimes = [float(b.ti_ms) for b in series.sequence.blocks if isinstance(b, Inversion)]
    modifier.FlowCompensation = "NONE"
    modifier.T2Preparation = "YES" if _has_block(series, T2Prep) else "NO"
    modifier.SpectrallySelectedExcitation = "NONE"
    modifier.SpatialPresaturation = "NONE"
    modifier.PartialFourier = "NO"
    modifier.ParallelAcquisition = "NO"
    shared.MRModifierSequence = [modifier]
    imaging = Dataset()
    imaging.MagnetizationTransfer = "NONE"
    imaging.BloodSignalNulling = "NO"
    imaging.Tagging = "NONE"
    imaging.TransmitterFrequency = 127.74  # 1H at 3 T, MHz
    imaging.PixelBandwidth = ds_value(500)
    shared.MRImagingModifierSequence = [imaging]
    receive = Dataset()
    receive.ReceiveCoilName = "synthetic"
    receive.ReceiveCoilManufacturerName = ""
    receive.ReceiveCoilType = "VOLUME"
    receive.QuadratureReceiveCoil = "NO"
    shared.MRReceiveCoilSequence = [receive]
    transmit = Dataset()
    transmit.TransmitCoilName = "synthetic"
    transmit.TransmitCoilManufacturerName = ""
    transmit.TransmitCoilType = "BODY"
    shared.MRTransmitCoilSequence = [transmit]
    averages = Dataset()
    averages.NumberOfAverages = 1
    shared.MRAveragesSequence = [averages]
    fov = Dataset()
    fov.InPlanePhaseEncodingDirection = "ROW"
    fov.MRAcquisitionFrequencyEncodingSteps = series.data.shape[3]
    fov.MRAcquisitionPhaseEncodingStepsInPlane = series.data.shape[2]
    fov.PercentSampling = 100
    fov.PercentPhaseFieldOfView = 100
    shared.MRFOVGeometrySequence = [fov]
    return shared


def _phase_mapping(slope: float, intercept: float) -> Dataset:
    """Real World Value Mapping of the phase: stored value v -> (slope v + intercept) pi / 4096 radians."""
    half = 2 ** (PHASE_BITS - 1)
    item = Dataset()
    item.LUTExplanation = "phase"
    item.LUTLabel = "PHASE"
    item.MeasurementUnitsCodeSequence = [_code("rad", "UCUM", "radian")]
    item.RealWorldValueFirstValueMapped = 0
    item.RealWorldValueLastValueMapped = 2 * half - 1
    item.RealWorldValueSlope = slope * np.pi / (2 * half)
    item.RealWorldValueIntercept = intercept * np.pi / (2 * half)
    return item


def _write_enhanced(
    base: Dataset,
    values: np.ndarray,
    slope: float,
    intercept: float,
    kind: str,
    series: Series,
    now: dt.datetime,
    target: Path,
    overwrite: bool,
) -> None:
    """One Enhanced MR Image Storage object holding every frame of the series."""
    n_t, n_z = values.shape[:2]
    positions = series.geometry.slice_positions(n_z)
    # Slices in ascending order along the normal, whatever order the series holds them in.
    order = np.argsort(positions @ series.geometry.normal, kind="stable")
    flip, tr, te = (_per_timepoint(series, k) for k in ("flip_angle_deg", "tr_ms", "te_ms"))
    times = series.sequence.sample_times_ms() if series.sequence is not None else np.arange(n_t, dtype=float)
    duration = float(series.sequence.duration_ms) if series.sequence is not None else float(n_t)
    ds = Dataset()
    ds.update(base)
    ds.SOPClassUID = ENHANCED_MR_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.NumberOfFrames = n_t * n_z
    ds.AcquisitionContextSequence = DicomSequence([])
    _enhanced_image_attributes(ds, series, kind, _datetime(now, 0.0), duration)
    ds.SharedFunctionalGroupsSequence = [_shared_groups(series, kind, slope, intercept)]
    dimension_uid = generate_uid()
    ds.DimensionOrganizationSequence = [Dataset()]
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = dimension_uid
    ds.DimensionIndexSequence = [
        _dimension(dimension_uid, keyword, label)
        # Slowest-varying first: readers that sort frames by these values (dcm2niix) get the stored order.
        for keyword, label in (
            ("TemporalPositionIndex", "Temporal Position Index"),
            ("StackID", "Stack ID"),
            ("InStackPositionNumber", "In-Stack Position Number"),
        )
    ]
    per_tr = np.diff(np.append(times, duration))
    frames = []
    for t in range(n_t):
        timing = Dataset()
        timing.RepetitionTime = ds_value(tr[t])
        timing.FlipAngle = ds_value(flip[t])
        timing.EchoTrainLength = 1
        timing.RFEchoTrainLength = 1
        timing.GradientEchoTrainLength = 1
        timing.SpecificAbsorptionRateSequence = [_sar]
        timing.OperatingModeSequence = _operating_modes
        timing.GradientOutputType = "DB_DT"
        timing.GradientOutput = 0.0
        echo = Dataset()
        echo.EffectiveEchoTime = float(te[t])
        for stack_position, z in enumerate(order, start=1):
            item = Dataset()
            content = Dataset()
            content.FrameAcquisitionDateTime = content.FrameReferenceDateTime = _datetime(now, float(times[t]))
            content.FrameAcquisitionDuration = max(float(per_tr[t]), 0.0)
            content.StackID = "1"
            content.InStackPositionNumber = stack_position
            content.TemporalPositionIndex = t + 1
            content.DimensionIndexValues = [t + 1, 1, stack_position]
            position = Dataset()
            position.ImagePositionPatient = [ds_value(v) for v in positions[z]]
            item.FrameContentSequence = [content]
            item.PlanePositionSequence = [position]
            item.MRTimingAndRelatedParametersSequence = [timing]
            item.MREchoSequence = [echo]
            frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = np.ascontiguousarray(values[:, order].reshape(n_t * n_z, *values.shape[2:])).tobytes()
    ds.file_meta = _file_meta(ENHANCED_MR_IMAGE_STORAGE, ds.SOPInstanceUID)
    _save(ds, target / "MRF_enhanced.dcm", overwrite)


def _operating_mode(kind: str) -> Dataset:
    item = Dataset()
    item.OperatingModeType, item.OperatingMode = kind, "IEC_NORMAL"
    return item


# A synthetic acquisition ran in the normal operating mode of IEC 60601-2-33 in every respect.
_operating_modes = [_operating_mode(kind) for kind in ("STATIC FIELD", "RF", "GRADIENT")]
_sar = Dataset()
_sar.SpecificAbsorptionRateDefinition = "IEC_WHOLE_BODY"
_sar.SpecificAbsorptionRateValue = 0.0


def _dimension(organization_uid: str, keyword: str, label: str) -> Dataset:
    item = Dataset()
    item.DimensionOrganizationUID = organization_uid
    item.DimensionIndexPointer = pydicom.datadict.tag_for_keyword(keyword)
    item.FunctionalGroupPointer = pydicom.datadict.tag_for_keyword("FrameContentSequence")
    item.DimensionDescriptionLabel = label
    return item


def _datetime(start: dt.datetime, offset_ms: float) -> str:
    """A DICOM DT value ``offset_ms`` after ``start``."""
    return (start + dt.timedelta(milliseconds=offset_ms)).strftime("%Y%m%d%H%M%S.%f")
