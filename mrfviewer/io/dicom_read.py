"""Reading MRF series from DICOM folders (pydicom).

Scanning reads headers only (``stop_before_pixels``), tolerates non-DICOM files
and DICOMDIR, and groups images into patients / studies / series.

Assembling an MRF series into (T, Z, Y, X):

* slices: images grouped by ImagePositionPatient projected on the slice normal
  (from ImageOrientationPatient), sorted along the normal;
* time points, within each slice, ordered by the first of these keys that is
  present on every image and distinct within the slice: TemporalPositionIdentifier
  (Enhanced MR: TemporalPositionIndex), AcquisitionNumber, InstanceNumber,
  TriggerTime, AcquisitionTime; duplicated values are an error, never a guess;
* magnitude and phase: ImageType value 3 (``M`` / ``P``) or, for Enhanced MR, the
  frame's ComplexImageComponent; phase images may sit in the same series or in a
  partner series of the same study with the same geometry and time points; phase
  stored values map linearly from [0, 2^BitsStored) to [-pi, pi);
* rescale slope and intercept applied to magnitude; Enhanced MR per-frame and
  shared functional groups (plane position, pixel measures, pixel value
  transformation, frame content) are supported as well as classic single frames.

The sequence comes from a sidecar ``mrf_sequence.json`` in the series folder or
from the caller; its number of time points must match.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report
from mrfviewer.errors import MRFError
from mrfviewer.io import dicom_checks as checks
from mrfviewer.sequence import Sequence, load_sequence
from mrfviewer.series import Geometry, Series

log = logging.getLogger(__name__)

SIDECAR = "mrf_sequence.json"
#: A series needs at least this many time points to be taken for an MRF series.
MIN_TIMEPOINTS = 50
#: Refuse to assemble series larger than this (bytes of the complex64 array).
MAX_SERIES_BYTES = 8 * 2**30
_TIME_KEYS = ("temporal", "acquisition", "instance", "trigger_time", "acquisition_time")
_TIME_KEY_NAMES = {
    "temporal": "TemporalPositionIdentifier",
    "acquisition": "AcquisitionNumber",
    "instance": "InstanceNumber",
    "trigger_time": "TriggerTime",
    "acquisition_time": "AcquisitionTime",
}


@dataclass
class ImageRecord:
    """Header facts of one image (one file, or one frame of a multi-frame file)."""

    path: Path
    frame: int | None
    patient: str
    patient_id: str
    study_uid: str
    study_description: str
    series_uid: str
    series_description: str
    series_number: int | None
    modality: str
    sop_class: str
    rows: int
    columns: int
    component: str | None  # "M", "P" or None
    position: tuple[float, ...] | None  # 3 values
    orientation: tuple[float, ...] | None
    spacing: tuple[float, float] | None
    thickness: float | None
    slope: float
    intercept: float
    bits_stored: int
    has_pixels: bool
    frame_of_reference: str
    keys: dict[str, float | None] = field(default_factory=dict)
    # Native (uncompressed, little-endian, single-frame) pixel data: read straight from the file.
    pixel_offset: int | None = None
    pixel_dtype: str | None = None
    series_uid_generated: bool = False  # the file had no SeriesInstanceUID (see generated_uid)
    signed: bool = False  # PixelRepresentation 1: stored values are two's complement
    rescale_type: str = ""
    value_map: tuple[float, float, str] | None = None  # Real World Value Mapping: slope, intercept, unit
    problem: str | None = None  # the first header value that cannot be used (see dicom_checks)


@dataclass
class SeriesInfo:
    """A series found by a scan (headers only)."""

    uid: str
    records: list[ImageRecord]
    n_files: int
    size_bytes: int

    @property
    def first(self) -> ImageRecord:
        return self.records[0]

    @property
    def description(self) -> str:
        return self.first.series_description

    @property
    def n_images(self) -> int:
        return len(self.records)

    @property
    def components(self) -> set[str]:
        return {r.component for r in self.records if r.component}

    @property
    def folder(self) -> Path:
        return self.first.path.parent

    @property
    def n_slices(self) -> int:
        return len({slice_position(r) for r in self.records})

    @property
    def n_timepoints(self) -> int:
        """Images per slice of one component (magnitude or phase): the time points if this is MRF."""
        counts = [sum(1 for r in self.records if r.component == c) for c in self.components] or [self.n_images]
        return max(counts) // max(self.n_slices, 1)

    def mrf_check(self) -> tuple[bool, str]:
        """Whether this looks like an MRF series, and why not if it does not."""
        first = self.first
        if first.modality != "MR":
            return False, f"modality {first.modality or 'unknown'}, not MR"
        if not first.has_pixels:
            return False, "no pixel data"
        bad = next((r for r in self.records if r.problem), None)
        if bad is not None:
            return False, f"{record_names([bad], 1)}: {bad.problem}"
        n_slices, n_time = self.n_slices, self.n_timepoints
        if n_time < MIN_TIMEPOINTS and not (self.folder / SIDECAR).exists():
            what = "1 image" if self.n_images == 1 else f"{n_time} time point(s) per slice"
            return False, f"{what}: not an MRF time series (needs at least {MIN_TIMEPOINTS} or a {SIDECAR})"
        return True, f"{n_time} time points x {n_slices} slice(s)"


@dataclass
class ScanResult:
    """Everything a folder scan found."""

    root: Path
    series: dict[str, SeriesInfo]
    n_files: int
    skipped: list[tuple[Path, str]]

    def tree(self) -> dict[str, dict[str, list[SeriesInfo]]]:
        """patient -> study -> series, for a browser."""
        out: dict[str, dict[str, list[SeriesInfo]]] = defaultdict(lambda: defaultdict(list))
        for info in self.series.values():
            r = info.first
            out[f"{r.patient} ({r.patient_id})"][f"{r.study_description or r.study_uid}"].append(info)
        return {p: dict(s) for p, s in out.items()}

    def mrf_series(self) -> list[SeriesInfo]:
        return [s for s in self.series.values() if s.mrf_check()[0]]


def _float(value: object, default: float | None = None) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def _time_value(text: object) -> float | None:
    """DICOM TM (HHMMSS.frac) as seconds since midnight."""
    if text in (None, ""):
        return None
    s = str(text).strip()
    try:
        hours, minutes = int(s[0:2]), int(s[2:4] or 0)
        seconds = float(s[4:] or 0)
    except ValueError:
        return None
    return hours * 3600 + minutes * 60 + seconds


def _component_from_type(image_type: Any) -> str | None:
    try:
        values = [str(v).upper() for v in image_type]
    except TypeError:
        return None
    if len(values) >= 3 and values[2] in ("M", "P", "MAGNITUDE", "PHASE"):
        return values[2][0]
    return None


#: Value representations stored as ASCII whatever the character set (decoded from raw bytes).
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
#: Text in the series' character set: bytes below 0x80 without ESC read as ASCII in all of them.
_TEXT_VRS = frozenset({"LO", "SH", "PN", "ST", "LT"})
Getter = Callable[..., Any]


@functools.cache
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"not a DICOM keyword: {keyword}")
    return tag, pydicom.datadict.dictionary_VR(tag)


def _fast_get(ds: pydicom.Dataset, keyword: str, default: Any = None) -> Any:
    """``ds.get(keyword, default)`` as the scan uses it, decoding plain values from the raw bytes.

    pydicom converts each value through its hooks and validators, which cost half of a folder
    scan; ASCII-only values (UI, CS, DS, IS, TM...), single ASCII text values (names,
    descriptions: every DICOM character set reads such bytes as ASCII) and single
    little-endian US values are decoded here instead, as pydicom does: padding stripped,
    multiple values as a list of strings (person names as their text). Everything else
    (other text, sequences, big endian) is left to pydicom. Tests compare both.
    """
    tag, dictionary_vr = _tag_and_vr(keyword)
    elem = ds.get_item(tag)
    if elem is None:
        return default
    if isinstance(elem, pydicom.dataelem.RawDataElement) and isinstance(elem.value, bytes):
        vr, value = elem.VR or dictionary_vr, elem.value
        if vr in _ASCII_VRS and value.isascii():
            parts = [part.rstrip(" \x00") for part in value.decode("ascii").split("\\")]
            return parts[0] if len(parts) == 1 else parts
        if vr in _TEXT_VRS and value.isascii() and b"\x1b" not in value and b"\\" not in value:
            return value.decode("ascii").rstrip(" \x00")
        if vr == "US" and elem.is_little_endian and len(value) == 2:
            return int.from_bytes(value, "little")
    return ds.get(keyword, default)


def generated_uid(kind: str, folder: Path) -> str:
    """A UID for an identifier a source lacks, the same every time for the same folder.

    Anonymised or hand-made series may lack SeriesInstanceUID, StudyInstanceUID or
    FrameOfReferenceUID; exports must still reference them consistently.
    """
    return str(pydicom.uid.generate_uid(entropy_srcs=[f"mrfviewer {kind}", str(Path(folder).resolve())]))


def _first_item(group: Any, sequence: str) -> Any:
    """The first item of ``sequence`` in a dataset or functional group item, or None."""
    if group is None or sequence not in group:
        return None
    value = group[sequence].value
    return value[0] if value else None


def _value_map(item: Any) -> tuple[float, float, str] | None:
    """(slope, intercept, unit code) of a linear Real World Value Mapping item, None for a LUT or none."""
    if item is None or "RealWorldValueSlope" not in item:
        return None
    try:
        slope, intercept = float(item.RealWorldValueSlope), float(item.get("RealWorldValueIntercept", 0.0))
        units = item.get("MeasurementUnitsCodeSequence")
        unit = str(units[0].CodeValue) if units else ""
    except (TypeError, ValueError, AttributeError, IndexError):
        return None
    return (slope, intercept, unit) if math.isfinite(slope) and math.isfinite(intercept) and slope else None


def _geometry_fields(
    position: Any, orientation: Any, spacing: Any, thickness: Any, slope: Any, intercept: Any, bits_stored: int
) -> tuple[dict[str, Any], str | None]:
    """The checked geometry and rescale fields of one image and its first problem."""
    checked = {
        "position": checks.vector("ImagePositionPatient", position, 3, checks.MAX_POSITION_MM),
        "orientation": checks.orientation(orientation),
        "spacing": checks.spacing("PixelSpacing", spacing, 2),
        "thickness": checks.spacing("SliceThickness", thickness, 1),
        "rescale": checks.rescale(slope, intercept, bits_stored),
    }
    fields = {k: v for k, (v, _) in checked.items() if k != "rescale"}
    fields["slope"], fields["intercept"] = checked["rescale"][0] or (1.0, 0.0)
    problem = next((p for _, p in checked.values() if p), None)
    return fields, problem


def _records(path: Path, ds: pydicom.Dataset, has_pixels: bool, get: Getter | None = None) -> list[ImageRecord]:
    """The image records of one file's header; ``get`` reads an element (default :func:`_fast_get`).

    Values that cannot be used (see :mod:`mrfviewer.io.dicom_checks`) are kept as the
    record's ``problem``; the series is refused with it when it is assembled.
    """
    get = get or functools.partial(_fast_get, ds)
    series_uid = str(get("SeriesInstanceUID", "") or "")
    depth, depth_problem = checks.bits(get("BitsAllocated"), get("BitsStored"), get("HighBit"))
    bits_stored = depth[1] if depth else 16
    has_palette = any(k in ds for k in ("RedPaletteColorLookupTableData", "SegmentedRedPaletteColorLookupTableData"))
    image_problem = depth_problem or checks.photometric(
        get("PhotometricInterpretation"), get("SamplesPerPixel"), has_palette
    )
    common: dict[str, Any] = dict(
        path=path,
        patient=str(get("PatientName", "")) or "anonymous",
        patient_id=str(get("PatientID", "")),
        study_uid=str(get("StudyInstanceUID", "")),
        study_description=str(get("StudyDescription", "")),
        series_uid=series_uid or generated_uid("series", path.parent),
        series_uid_generated=not series_uid,
        series_description=str(get("SeriesDescription", "")),
        series_number=int(_float(get("SeriesNumber"), -1) or -1),
        modality=str(get("Modality", "")),
        sop_class=str(get("SOPClassUID", "")),
        rows=int(_float(get("Rows"), 0) or 0),
        columns=int(_float(get("Columns"), 0) or 0),
        bits_stored=bits_stored,
        has_pixels=has_pixels,
        frame_of_reference=str(get("FrameOfReferenceUID", "")),
        signed=int(_float(get("PixelRepresentation"), 0) or 0) == 1,
    )
    n_frames = int(_float(get("NumberOfFrames"), 1) or 1)
    if "PerFrameFunctionalGroupsSequence" in ds:
        shared = _first_item(ds, "SharedFunctionalGroupsSequence")
        out = []
        for i, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):

            def find(seq: str, attr: str, frame=frame) -> object:
                for group in (frame, shared):
                    item = _first_item(group, seq)
                    if item is not None and attr in item:
                        return item.get(attr)
                return None

            component = find("MRImageFrameTypeSequence", "ComplexImageComponent")
            comp = (
                str(component)[0].upper()
                if component in ("MAGNITUDE", "PHASE")
                else _component_from_type(find("MRImageFrameTypeSequence", "FrameType"))
            )
            fields, problem = _geometry_fields(
                find("PlanePositionSequence", "ImagePositionPatient"),
                find("PlaneOrientationSequence", "ImageOrientationPatient"),
                find("PixelMeasuresSequence", "PixelSpacing"),
                find("PixelMeasuresSequence", "SliceThickness"),
                find("PixelValueTransformationSequence", "RescaleSlope"),
                find("PixelValueTransformationSequence", "RescaleIntercept"),
                bits_stored,
            )
            mapping = _first_item(frame, "RealWorldValueMappingSequence") or _first_item(
                shared, "RealWorldValueMappingSequence"
            )
            out.append(
                ImageRecord(
                    **common,
                    **fields,
                    frame=i,
                    component=comp,
                    rescale_type=str(find("PixelValueTransformationSequence", "RescaleType") or ""),
                    value_map=_value_map(mapping),
                    problem=image_problem or problem,
                    keys={
                        "temporal": _float(find("FrameContentSequence", "TemporalPositionIndex")),
                        "instance": float(i),
                    },
                )
            )
        return out
    fields, problem = _geometry_fields(
        get("ImagePositionPatient"),
        get("ImageOrientationPatient"),
        get("PixelSpacing"),
        get("SliceThickness"),
        get("RescaleSlope"),
        get("RescaleIntercept"),
        bits_stored,
    )
    if n_frames > 1:
        # Frames without functional groups have no positions or times of their own.
        problem = f"{n_frames} frames without per-frame functional groups (their positions and times are unknown)"
    record = ImageRecord(
        **common,
        **fields,
        frame=None if n_frames == 1 else 0,
        component=_component_from_type(get("ImageType")),
        rescale_type=str(get("RescaleType", "") or ""),
        value_map=_value_map(_first_item(ds, "RealWorldValueMappingSequence")),
        problem=image_problem or problem,
        keys={
            "temporal": _float(get("TemporalPositionIdentifier")),
            "acquisition": _float(get("AcquisitionNumber")),
            "instance": _float(get("InstanceNumber")),
            "trigger_time": _float(get("TriggerTime")),
            "acquisition_time": _time_value(get("AcquisitionTime")),
        },
    )
    return [record]


class NotAnImage(Exception):
    """A readable DICOM file that holds no image (e.g. a report, a DICOMDIR-like object)."""


#: The only elements a scan keeps (pydicom skips converting the rest: a third of the scan time).
_HEADER_TAGS = (
    "PatientName",
    "PatientID",
    "StudyInstanceUID",
    "StudyDescription",
    "SeriesInstanceUID",
    "SeriesDescription",
    "SeriesNumber",
    "Modality",
    "SOPClassUID",
    "FrameOfReferenceUID",
    "ImageType",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PhotometricInterpretation",
    "RedPaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData",
    "RescaleType",
    "RealWorldValueMappingSequence",
    "SamplesPerPixel",
    "PixelRepresentation",
    "NumberOfFrames",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "RescaleSlope",
    "RescaleIntercept",
    "TemporalPositionIdentifier",
    "AcquisitionNumber",
    "InstanceNumber",
    "TriggerTime",
    "AcquisitionTime",
    "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence",
)
_NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2": False, "1.2.840.10008.1.2.1": True}  # UID -> explicit VR


def _native_pixels(fp, ds: pydicom.Dataset, get: Getter) -> tuple[int, str] | None:  # noqa: ANN001 - a binary file
    """(offset of the pixel values, numpy dtype) when the file's pixel data can be read as raw bytes.

    pydicom stops before the PixelData element, leaving ``fp`` at its tag: if the element is
    native single-frame greyscale data of exactly Rows x Columns values, the values start after
    its header. Anything else (compressed, big-endian, multi-frame, colour, odd sizes) is None
    and is decoded by pydicom.
    """
    meta = getattr(ds, "file_meta", None)
    explicit = _NATIVE_LITTLE_ENDIAN.get(str(_fast_get(meta, "TransferSyntaxUID", "")) if meta is not None else "")
    bits = int(_float(get("BitsAllocated"), 0) or 0)
    if (
        explicit is None
        or bits not in (8, 16, 32)
        or int(_float(get("SamplesPerPixel"), 1) or 1) != 1
        or int(_float(get("NumberOfFrames"), 1) or 1) != 1
    ):
        return None
    start = fp.tell()
    header = fp.read(12 if explicit else 8)
    if len(header) < 8 or header[:4] != b"\xe0\x7f\x10\x00":
        return None
    if explicit:
        if header[4:6] not in (b"OW", b"OB") or len(header) < 12:
            return None
        length, offset = int.from_bytes(header[8:12], "little"), start + 12
    else:
        length, offset = int.from_bytes(header[4:8], "little"), start + 8
    n_bytes = int(get("Rows")) * int(get("Columns")) * bits // 8
    if length != n_bytes + (n_bytes % 2):  # values padded to an even length
        return None
    signed = int(_float(get("PixelRepresentation"), 0) or 0) == 1
    if signed and int(_float(get("BitsStored"), bits) or bits) != bits:
        return None  # pydicom sign-extends from BitsStored; leave that to it
    return offset, f"<{'i' if signed else 'u'}{bits // 8}"


#: The pixel data elements (PixelData, FloatPixelData, DoubleFloatPixelData) that stop a header read.
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


def _pixel_tag_follows(fp, ds: pydicom.Dataset) -> bool:  # noqa: ANN001 - a binary file
    """Whether a pixel data element follows where pydicom stopped (``stop_before_pixels``), from its tag.

    Compressed pixel data are far smaller than Rows x Columns: the file size tells nothing.
    """
    meta = getattr(ds, "file_meta", None)
    syntax = pydicom.uid.UID(str(_fast_get(meta, "TransferSyntaxUID", "")) if meta is not None else "")
    if syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:
        return True  # the data set is one deflated stream: the decoder finds out
    start = fp.tell()
    tag = fp.read(4)
    fp.seek(start)
    if len(tag) < 4:
        return False
    if syntax == pydicom.uid.ExplicitVRBigEndian:
        group, element = int.from_bytes(tag[:2], "big"), int.from_bytes(tag[2:], "big")
    else:
        group, element = int.from_bytes(tag[:2], "little"), int.from_bytes(tag[2:], "little")
    return (group << 16 | element) in _PIXEL_TAGS


def decoder_problem(transfer_syntax: str) -> str | None:
    """Why pixel data in ``transfer_syntax`` cannot be decoded here (naming what to install), or None."""
    from pydicom.pixels import get_decoder

    syntax = pydicom.uid.UID(transfer_syntax or pydicom.uid.ImplicitVRLittleEndian)
    if not syntax.is_transfer_syntax:
        return f"unknown transfer syntax {syntax}: the pixel data cannot be decoded"
    if not syntax.is_compressed:
        return None
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return f"pixel data compressed as {syntax.name}, which pydicom cannot decode"
    if decoder.is_available:
        return None
    plugins = "; or ".join(decoder.missing_dependencies) or "a pydicom decoding plugin"
    return (
        f"pixel data compressed as {syntax.name}: no decoder installed (install {plugins}; "
        "pip install 'mrfviewer[codecs]' brings pylibjpeg)"
    )


def read_header(path: Path) -> list[ImageRecord]:
    """Header records of one file, read completely now (pydicom parses lazily)."""
    with warnings.catch_warnings(record=True) as caught, open(path, "rb") as fp:
        # pydicom warns about damaged or odd headers (several stderr lines each): what matters
        # reaches the user as one line with the reason a file or series cannot be used.
        warnings.simplefilter("always")
        ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
        if "Rows" not in ds or "SOPClassUID" not in ds:
            raise NotAnImage("no image (no Rows or SOPClassUID)")
        get = functools.partial(_fast_get, ds)
        has_pixels = _pixel_tag_follows(fp, ds)
        native = _native_pixels(fp, ds, get) if has_pixels else None
        records = _records(path, ds, has_pixels, get)
    for warning in caught:
        log.debug("%s: pydicom: %s", path, warning.message)
    if not records:
        raise NotAnImage("no frames")
    if has_pixels and native is None:
        meta = getattr(ds, "file_meta", None)
        problem = decoder_problem(str(_fast_get(meta, "TransferSyntaxUID", "")) if meta is not None else "")
        if problem:
            for record in records:
                record.problem = record.problem or problem
    if native is not None and len(records) == 1 and records[0].frame is None:
        records[0].pixel_offset, records[0].pixel_dtype = native
    return records


def scan_folder(
    root: str | Path, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> ScanResult:
    """Find every DICOM image under ``root`` (headers only) and group them into series."""
    root = Path(root)
    if not root.exists():
        raise MRFError(f"folder not found: {root}")
    if not root.is_dir():
        raise MRFError(f"{root} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    series: dict[str, SeriesInfo] = {}
    skipped: list[tuple[Path, str]] = []
    for i, path in enumerate(files):
        if i % 200 == 0:
            check_cancel(cancel)
            report(progress, i / max(len(files), 1), f"scanned {i} of {len(files)} files")
        if path.name.upper() == "DICOMDIR" or path.name == SIDECAR:
            continue
        try:
            records = read_header(path)
        except NotAnImage as exc:
            skipped.append((path, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - one unreadable file must never break a scan
            # pydicom raises many kinds on damaged files (InvalidDicomError, NotImplementedError for
            # unknown VRs, BytesLengthException, struct errors...); all mean "skip this file".
            skipped.append((path, f"not readable as DICOM ({type(exc).__name__})"))
            continue
        for rec in records:
            series.setdefault(rec.series_uid, SeriesInfo(rec.series_uid, [], 0, 0)).records.append(rec)
        info = series[records[0].series_uid]
        info.n_files += 1
        info.size_bytes += path.stat().st_size
    report(progress, 1.0, f"scanned {len(files)} files")
    return ScanResult(root=root, series=series, n_files=len(files), skipped=skipped)


def scan_folders(roots: list[Path], **kwargs) -> ScanResult:
    """One scan result for several folders (e.g. a magnitude series and its phase partner's folder)."""
    results = [scan_folder(root, **kwargs) for root in roots]
    series: dict[str, SeriesInfo] = {}
    for result in results:
        for uid, info in result.series.items():
            if uid in series:
                series[uid].records.extend(info.records)
                series[uid].n_files += info.n_files
                series[uid].size_bytes += info.size_bytes
            else:
                series[uid] = info
    return ScanResult(
        root=Path(roots[0]),
        series=series,
        n_files=sum(r.n_files for r in results),
        skipped=[s for r in results for s in r.skipped],
    )


@functools.lru_cache(maxsize=64)
def _normal(orientation: tuple[float, ...]) -> np.ndarray:
    # Cached: a series has one orientation and thousands of images.
    return np.cross(orientation[:3], orientation[3:])


def slice_position(record: ImageRecord) -> float:
    """Position of an image along its slice normal (mm, rounded to 0.01 mm; 0 without geometry)."""
    if record.position is None or record.orientation is None:
        return 0.0
    return round(float(np.dot(record.position, _normal(record.orientation))), 2)


def record_names(records: list[ImageRecord], limit: int = 3) -> str:
    """File names (and frames) of the first ``limit`` records, for a one-line message."""
    names = [r.path.name + (f"[frame {r.frame}]" if r.frame is not None else "") for r in records[:limit]]
    return ", ".join(names) + (f" and {len(records) - limit} more" if len(records) > limit else "")


def check_alike(records: list[ImageRecord], what: str) -> None:
    """Refuse images of one series with different sizes or orientations (they cannot share one grid)."""
    first = records[0]
    for r in records:
        if (r.rows, r.columns) != (first.rows, first.columns):
            raise MRFError(
                f"{what}: images of different sizes ({first.rows}x{first.columns} in {first.path.name}, "
                f"{r.rows}x{r.columns} in {r.path.name})"
            )
        if (
            r.orientation is not None
            and first.orientation is not None
            and not np.allclose(r.orientation, first.orientation, atol=1e-4)
        ):
            raise MRFError(f"{what}: images with different orientations ({first.path.name}, {r.path.name})")


def _order(records: list[ImageRecord], what: str) -> tuple[list[list[ImageRecord]], list[float], str]:
    """Records per slice (sorted along the normal) and per time point; the time key used."""
    check_alike(records, what)
    by_slice: dict[float, list[ImageRecord]] = defaultdict(list)
    for r in records:
        by_slice[slice_position(r)].append(r)
    positions = sorted(by_slice)
    counts = {len(v) for v in by_slice.values()}
    if len(counts) != 1:
        detail = ", ".join(f"{len(by_slice[p])} at {p:g} mm" for p in positions[:4])
        raise MRFError(f"{what}: slices have different numbers of images ({detail}): missing or extra time points")
    key = next(
        (
            k
            for k in _TIME_KEYS
            if all(r.keys.get(k) is not None for r in records)
            and all(len({r.keys[k] for r in v}) == len(v) for v in by_slice.values())
        ),
        None,
    )
    if key is None:
        dup_key = next((k for k in _TIME_KEYS if all(r.keys.get(k) is not None for r in records)), None)
        if dup_key is not None:
            for v in by_slice.values():
                seen: dict[float | None, ImageRecord] = {}
                for r in v:
                    if r.keys[dup_key] in seen:
                        raise MRFError(
                            f"{what}: duplicated time point ({_TIME_KEY_NAMES[dup_key]} {r.keys[dup_key]:g} in "
                            f"{seen[r.keys[dup_key]].path.name} and {r.path.name})"
                        )
                    seen[r.keys[dup_key]] = r
        raise MRFError(f"{what}: cannot order the time points (no temporal position, acquisition or instance number)")
    ordered = [sorted(by_slice[p], key=lambda r: r.keys[key]) for p in positions]  # type: ignore[arg-type, return-value]
    return ordered, positions, _TIME_KEY_NAMES[key]


def _decode(path: Path) -> np.ndarray:
    """The stored pixel values of a file, decoded by pydicom; its warnings become part of an error, else a log line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return np.asarray(pydicom.dcmread(path).pixel_array)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a user-facing file problem
            said = f" (pydicom: {str(caught[0].message).splitlines()[0]})" if caught else ""
            text = str(exc).splitlines()[0] if str(exc) else ""
            raise MRFError(f"cannot decode the pixel data of {path.name}: {type(exc).__name__}: {text}{said}") from None
        finally:
            for warning in caught:
                log.debug("%s: pydicom: %s", path, warning.message)


def image_pixels(r: ImageRecord, cache: dict[Path, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Stored pixel values of one image (native data read directly, anything else by pydicom)."""
    try:
        if r.pixel_offset is not None:
            count = r.rows * r.columns
            pixels = np.fromfile(r.path, dtype=r.pixel_dtype, count=count, offset=r.pixel_offset)
            if pixels.size != count:
                raise MRFError(f"{r.path.name}: pixel data end early ({pixels.size} of {count} values)")
            pixels = pixels.reshape(r.rows, r.columns)
        elif r.frame is None:
            pixels = _decode(r.path)
        else:
            # Multi-frame files are decoded whole, once (frames of one file are adjacent here).
            if r.path not in cache:
                cache.clear()
                cache[r.path] = _decode(r.path)
            pixels = cache[r.path][r.frame]
    except MRFError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a user-facing file problem
        raise MRFError(f"cannot read the pixel data of {r.path.name}: {type(exc).__name__}: {exc}") from None
    if pixels.shape != shape:
        raise MRFError(f"{r.path.name}: pixel data of shape {pixels.shape}, header says {shape}")
    return pixels


def _read_pixels(records: list[list[ImageRecord]], shape: tuple[int, ...]) -> np.ndarray:
    """(T, Z, Y, X) float32 rescaled magnitude of ``records`` (per slice, per time point)."""
    out = np.empty(shape, dtype=np.float32)
    cache: dict[Path, np.ndarray] = {}
    for z, column in enumerate(records):
        for t, r in enumerate(column):
            pixels = image_pixels(r, cache, shape[2:])
            np.multiply(pixels, np.float32(r.slope), out=out[t, z], casting="unsafe")
            if r.intercept:
                out[t, z] += np.float32(r.intercept)
    return out


#: Angle units of a Real World Value Mapping (UCUM) or a RescaleType, in radians.
_ANGLE_UNITS = {"rad": 1.0, "mrad": 1e-3, "deg": np.pi / 180, "radians": 1.0, "degrees": np.pi / 180}


def phase_of_stored(r: ImageRecord, stored: np.ndarray) -> np.ndarray:
    """Phase in radians of stored values of a phase image, by the first rule that applies.

    1. A Real World Value Mapping in an angle unit (rad, mrad, deg): its slope and intercept.
    2. A RescaleType naming an angle unit: the rescaled values in that unit.
    3. Otherwise the rescaled values of the whole stored range (signed or unsigned, from
       PixelRepresentation and BitsStored) span one turn, from -pi: Siemens' 0..4095 with
       slope 2 and intercept -4096 is value / 4096 x pi; signed -2048..2047 is value / 2048 x pi.
    """
    values = stored.astype(np.float64)
    if r.value_map is not None and r.value_map[2].lower() in _ANGLE_UNITS:
        slope, intercept, unit = r.value_map
        return (values * slope + intercept) * _ANGLE_UNITS[unit.lower()]
    rescaled = values * r.slope + r.intercept
    if r.rescale_type.strip().lower() in _ANGLE_UNITS:
        return rescaled * _ANGLE_UNITS[r.rescale_type.strip().lower()]
    lowest = -(2 ** (r.bits_stored - 1)) if r.signed else 0
    ends = np.array([lowest, lowest + 2**r.bits_stored - 1], dtype=np.float64) * r.slope + r.intercept
    span = 2**r.bits_stored * abs(r.slope)
    return -np.pi + 2 * np.pi * (rescaled - ends.min()) / span


def _phase_factors(records: list[list[ImageRecord]], magnitude: np.ndarray) -> np.ndarray:
    """Complex64 magnitude x exp(i phase), the phase from the stored values by :func:`phase_of_stored`.

    cos and sin come from a table over the stored range (up to 16 bits), not from trig on every pixel.
    """
    out = np.empty(magnitude.shape, dtype=np.complex64)
    cache: dict[Path, np.ndarray] = {}
    tables: dict[tuple, tuple[int, np.ndarray, np.ndarray]] = {}
    for z, column in enumerate(records):
        for t, r in enumerate(column):
            pixels = image_pixels(r, cache, magnitude.shape[2:])
            if r.bits_stored > 16:
                angle = phase_of_stored(r, pixels)
                np.multiply(magnitude[t, z], np.cos(angle), out=out.real[t, z], casting="unsafe")
                np.multiply(magnitude[t, z], np.sin(angle), out=out.imag[t, z], casting="unsafe")
                continue
            key = (r.bits_stored, r.signed, r.slope, r.intercept, r.rescale_type, r.value_map)
            if key not in tables:
                lowest = -(2 ** (r.bits_stored - 1)) if r.signed else 0
                angle = phase_of_stored(r, np.arange(lowest, lowest + 2**r.bits_stored))
                tables[key] = (lowest, np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32))
            lowest, cos_t, sin_t = tables[key]
            index = pixels.astype(np.intp) - lowest
            np.multiply(magnitude[t, z], np.take(cos_t, index, mode="clip"), out=out.real[t, z])
            np.multiply(magnitude[t, z], np.take(sin_t, index, mode="clip"), out=out.imag[t, z])
    return out


def _find_sequence(infos: list[SeriesInfo], sequence: Sequence | None) -> Sequence | None:
    if sequence is not None:
        return sequence
    for info in infos:
        path = info.folder / SIDECAR
        if path.exists():
            return load_sequence(path)
    return None


@dataclass
class DicomPlan:
    """How the images of an MRF series map onto (T, Z, Y, X), before any pixel is read."""

    what: str
    shape: tuple[int, int, int, int]
    magnitude: list[list[ImageRecord]]  # per slice, per time point
    phase: list[list[ImageRecord]] | None
    sequence: Sequence | None
    geometry: Geometry
    description: str
    uid: str
    study_uid: str = ""
    patient_id: str = ""
    generated_uids: dict[str, str] = field(default_factory=dict)  # keyword -> UID the source lacked

    @property
    def source_files(self) -> list[Path]:
        """One source image per slice (referenced by exports)."""
        return [column[0].path for column in self.magnitude]

    def read(self, z0: int = 0, z1: int | None = None) -> np.ndarray:
        """Pixel data of slices ``z0:z1`` as (T, z1 - z0, Y, X): float32 magnitude or complex64."""
        z1 = self.shape[1] if z1 is None else z1
        shape = (self.shape[0], z1 - z0, *self.shape[2:])
        data = _read_pixels(self.magnitude[z0:z1], shape)
        if self.phase is None:
            return data
        return _phase_factors(self.phase[z0:z1], data)


def slice_geometry(slices: list[ImageRecord], positions: list[float]) -> Geometry:
    """The geometry of images ordered along the slice normal (one record per slice, its position on the normal)."""
    first = slices[0]
    spacing = first.spacing or (1.0, 1.0)
    thickness = first.thickness or (abs(positions[1] - positions[0]) if len(slices) > 1 else 1.0)
    return Geometry(
        pixel_spacing_mm=(float(spacing[0]), float(spacing[1])),
        slice_thickness_mm=float(thickness),
        orientation=tuple(first.orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)),
        positions=np.array([r.position or (0.0, 0.0, p) for r, p in zip(slices, positions, strict=True)]),
    )


def plan_series(infos: list[SeriesInfo], sequence: Sequence | None = None) -> DicomPlan:
    """Order the images of a magnitude series and, optionally, its phase partner (headers only).

    ``infos`` holds one series (with M and/or P images) or a magnitude and a phase series.
    """
    records = [r for info in infos for r in info.records]
    what = f"series '{infos[0].description or infos[0].uid}'"
    if not records[0].has_pixels:
        raise MRFError(f"{what}: the images have no pixel data ({record_names(records)})")
    bad = next((r for r in records if r.problem), None)
    if bad is not None:
        raise MRFError(f"{what}: {record_names([bad], 1)}: {bad.problem}")
    magnitude = [r for r in records if r.component in (None, "M")]
    phase = [r for r in records if r.component == "P"]
    if not magnitude:
        raise MRFError(f"{what}: only phase images, no magnitude images")
    mag_order, positions, key = _order(magnitude, what)
    n_t, n_z = len(mag_order[0]), len(mag_order)
    if n_t < 2:
        raise MRFError(f"{what}: a single image per slice is not an MRF time series")
    first = magnitude[0]
    shape = (n_t, n_z, first.rows, first.columns)
    if min(shape[2:]) < 1:
        raise MRFError(f"{what}: images of size {first.rows}x{first.columns}")
    sequence = _find_sequence(infos, sequence)
    if sequence is not None and sequence.n_timepoints != n_t:
        raise MRFError(f"{what} has {n_t} time points but the sequence '{sequence.name}' has {sequence.n_timepoints}")
    phase_order = None
    if phase:
        phase_order, phase_positions, _ = _order(phase, what + " (phase)")
        if len(phase_order[0]) != n_t or not np.allclose(phase_positions, positions, atol=0.05):
            raise MRFError(f"{what}: phase images do not match the magnitude images in slices or time points")
    generated = {}
    if first.series_uid_generated:
        generated["SeriesInstanceUID"] = first.series_uid
    if not first.study_uid:
        generated["StudyInstanceUID"] = generated_uid("study", first.path.parent.parent)
    if not first.frame_of_reference:
        generated["FrameOfReferenceUID"] = generated_uid("frame of reference", first.path.parent.parent)
    return DicomPlan(
        what=what,
        shape=shape,
        magnitude=mag_order,
        phase=phase_order,
        sequence=sequence,
        geometry=slice_geometry([column[0] for column in mag_order], positions),
        description=f"{infos[0].description} (time order: {key})",
        uid=infos[0].uid,
        study_uid=first.study_uid or generated.get("StudyInstanceUID", ""),
        patient_id=first.patient_id,
        generated_uids=generated,
    )


def assemble(infos: list[SeriesInfo], sequence: Sequence | None = None) -> Series:
    """Read a magnitude series and, optionally, its phase partner into memory (see :func:`plan_series`)."""
    plan = plan_series(infos, sequence)
    if np.prod(plan.shape, dtype=np.float64) * 8 > MAX_SERIES_BYTES:
        size = np.prod(plan.shape, dtype=np.float64) * 8 / 2**30
        raise MRFError(
            f"{plan.what}: {plan.shape} is too large to load ({size:.1f} GiB); "
            "reconstruct it slab-wise with 'mrfviewer reconstruct' or 'mrfviewer batch'"
        )
    return Series(
        data=plan.read(),
        sequence=plan.sequence,
        geometry=plan.geometry,
        description=plan.description,
        uid=plan.uid,
        source_files=plan.source_files,
    )


def partner_series(scan: ScanResult, info: SeriesInfo) -> list[SeriesInfo]:
    """Phase series of the same study with the same geometry and image count as ``info``."""
    out = []
    for other in scan.series.values():
        if other is info or other.components != {"P"}:
            continue
        a, b = info.first, other.first
        if (a.study_uid, a.frame_of_reference, a.rows, a.columns) == (
            b.study_uid,
            b.frame_of_reference,
            b.rows,
            b.columns,
        ) and other.n_images == sum(1 for r in info.records if r.component in (None, "M")):
            out.append(other)
    return out


def find_mrf_series(
    folder: str | Path,
    series_uid: str | None = None,
    *,
    scan: ScanResult | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> list[SeriesInfo]:
    """The series to assemble from ``folder``: the MRF magnitude series and its phase partner, if any.

    A folder with several MRF acquisitions needs ``series_uid``; a folder with none
    gets a message listing what was found and why it is not an MRF series.
    """
    scan = scan if scan is not None else scan_folder(folder, progress=progress, cancel=cancel)
    if not scan.series:
        detail = f"; {len(scan.skipped)} file(s) were not DICOM images" if scan.skipped else ""
        raise MRFError(f"no DICOM images found in {folder}{detail}")
    if series_uid is not None:
        if series_uid not in scan.series:
            raise MRFError(f"series {series_uid} not found in {folder}")
        info = scan.series[series_uid]
    else:
        candidates = [s for s in scan.mrf_series() if s.components != {"P"}]
        if not candidates:
            reasons = "; ".join(
                f"'{s.description or s.uid}': {s.mrf_check()[1]}" for s in list(scan.series.values())[:4]
            )
            raise MRFError(f"no MRF series in {folder} ({reasons})")
        if len(candidates) > 1:
            listing = "; ".join(f"{s.uid} '{s.description}'" for s in candidates[:5])
            raise MRFError(f"{folder} holds {len(candidates)} MRF series; choose one with --series UID ({listing})")
        info = candidates[0]
    ok, reason = info.mrf_check()
    if not ok:
        raise MRFError(f"series '{info.description or info.uid}' is not usable for MRF: {reason}")
    partners = partner_series(scan, info) if "P" not in info.components else []
    return [info] + partners[:1]


def load_mrf_folder(
    folder: str | Path,
    sequence: Sequence | None = None,
    series_uid: str | None = None,
    *,
    scan: ScanResult | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Series:
    """Scan ``folder`` (or use ``scan``) and read its MRF series into memory (see :func:`find_mrf_series`)."""
    infos = find_mrf_series(folder, series_uid, scan=scan, progress=progress, cancel=cancel)
    return assemble(infos, sequence)
