"""DICOM Parametric Map export (highdicom) and read-back, one object per map.

Float32 frames with a real-world value mapping in UCUM units (ms for times, arbitrary
units for PD) and a coded quantity where DICOM has one (T1, T2, proton density),
referencing the source MRF series, with the source geometry (pixel measures,
orientation and per-frame positions). Invalid voxels stay NaN. What readers other than
highdicom need, and get:

* frames stored in ascending order along the slice normal (row x column direction),
  with Dimension Index Values 1..N that say so: dcmqi (3D Slicer) puts frame i into
  slice i, whatever the positions say;
* the Frame Anatomy functional group (the source's anatomic region and laterality,
  else the knee, or tissue, and laterality "U");
* a window over the finite values with VOI LUT function LINEAR_EXACT, which allows
  widths below 1 (match maps span 0..1, PD maps can be small): the LINEAR function
  of integer images needs a width of at least 1;
* decimal strings of at most 16 characters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from mrfviewer import __version__
from mrfviewer.errors import MRFError
from mrfviewer.io.atomic import atomic_write, check_writable_target
from mrfviewer.io.dicom_values import fit_decimal_strings
from mrfviewer.maps import FILE_STEMS, ParameterMaps

_UNITS = {
    "ms": codes.UCUM.Millisecond,
    "s": codes.UCUM.Second,
    "1": codes.UCUM.NoUnits,
    "a.u.": codes.UCUM.ArbitraryUnit,
    "arbitrary": codes.UCUM.ArbitraryUnit,
}
#: Quantities of CID 7180 (Abstract Multi-dimensional Image Model Component Semantics); the
#: others (T1rho, B1, match, uncertainties) have no standard concept and get none.
_QUANTITIES = {"T1": codes.DCM.T1, "T2": codes.DCM.T2, "PD": codes.DCM.ProtonDensity}
_EXPLANATIONS = {
    "T1": "T1 relaxation time",
    "T2": "T2 relaxation time",
    "T1rho": "T1rho (spin-lock) relaxation time",
    "B1": "relative B1+ amplitude",
    "PD": "proton density (M0 units)",
    "match": "normalised correlation with the best atom",
}
#: BodyPartExamined -> anatomic region, for sources without a coded region.
_REGIONS = {"KNEE": codes.SCT.Knee}
_TISSUE = Code("85756007", "SCT", "Tissue")


#: Type 2 attributes of the patient and study modules that highdicom copies from the sources:
#: anonymised series often lack them; a Parametric Map needs them present (empty is valid).
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
)


def complete_sources(sources: Sequence[pydicom.Dataset], generated_uids: Mapping[str, str]) -> None:
    """Give source datasets (in memory, never on disk) what a Parametric Map copies from them.

    Missing type 2 attributes become empty; missing UIDs take the UIDs generated for the
    series when it was read (recorded in the sidecars), so that maps and series agree.
    """
    for ds in sources:
        for keyword in _TYPE2:
            if keyword not in ds:
                setattr(ds, keyword, "")
        for keyword, uid in generated_uids.items():
            if not str(ds.get(keyword, "") or ""):
                setattr(ds, keyword, uid)


def _source_anatomy(sources: Sequence[pydicom.Dataset]) -> tuple[Code | pydicom.Dataset, str]:
    """The anatomic region (a code, or the source's coded item) and the laterality (R, L, B or U)."""
    first = sources[0]
    groups = [
        group[0]
        for key in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")
        for group in [first.get(key)]
        if group
    ]
    anatomy = next((g.FrameAnatomySequence[0] for g in groups if g.get("FrameAnatomySequence")), None)
    laterality = ""
    for value in (
        anatomy.get("FrameLaterality") if anatomy is not None else None,
        first.get("ImageLaterality"),
        first.get("Laterality"),
    ):
        if str(value or "").upper() in ("R", "L", "B", "U"):
            laterality = str(value).upper()
            break
    region: Code | pydicom.Dataset
    if anatomy is not None and anatomy.get("AnatomicRegionSequence"):
        region = anatomy.AnatomicRegionSequence[0]
    elif first.get("AnatomicRegionSequence"):
        region = first.AnatomicRegionSequence[0]
    else:
        region = _REGIONS.get(str(first.get("BodyPartExamined", "")).upper(), _TISSUE)
    return region, laterality or "U"


def _frame_anatomy(region: Code | pydicom.Dataset, laterality: str) -> pydicom.Dataset:
    item = pydicom.Dataset()
    if isinstance(region, Code):
        code = pydicom.Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = (
            region.value,
            region.scheme_designator,
            region.meaning,
        )
        region = code
    item.AnatomicRegionSequence = [region]
    item.FrameLaterality = laterality
    return item


def _ascending_frames(pm: pydicom.Dataset) -> None:
    """Store the frames in ascending order along the slice normal, Dimension Index Values 1..N in that order.

    highdicom sorts frames along its own volume axis (column x row, the opposite way).
    """
    shared = pm.SharedFunctionalGroupsSequence[0]
    iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    items = list(pm.PerFrameFunctionalGroupsSequence)
    distance = [float(np.dot(item.PlanePositionSequence[0].ImagePositionPatient, normal)) for item in items]
    order = np.argsort(distance, kind="stable")
    n, rows, columns = len(items), int(pm.Rows), int(pm.Columns)
    frames = np.frombuffer(pm.FloatPixelData, dtype="<f4").reshape(n, rows, columns)
    pm.FloatPixelData = np.ascontiguousarray(frames[order]).tobytes()
    pm.PerFrameFunctionalGroupsSequence = [items[i] for i in order]
    pointers = [int(d.DimensionIndexPointer) for d in pm.DimensionIndexSequence]
    position = pointers.index(int(pydicom.datadict.tag_for_keyword("ImagePositionPatient") or 0))
    for index, item in enumerate(pm.PerFrameFunctionalGroupsSequence, start=1):
        content = item.FrameContentSequence[0]
        if len(pointers) == 1:
            content.DimensionIndexValues = index
        else:
            values = list(content.DimensionIndexValues)
            values[position] = index
            content.DimensionIndexValues = values


def export_parametric_maps(
    maps: ParameterMaps, source_files: list[Path], folder: str | Path, overwrite: bool = False
) -> list[Path]:
    """Write ``<stem>.dcm`` Parametric Maps into ``folder``; ``source_files`` are one source image per slice.

    Parameters
    ----------
    maps
        The maps (Z, Y, X), slices in ascending order along the normal of ``maps.geometry``.
    source_files
        The DICOM source images the maps were computed from (referenced, and their
        patient, study, frame of reference and anatomy copied).
    folder
        Where the files go (created if needed).
    overwrite
        Replace existing files.

    Returns
    -------
    list of Path
        The files written, one per map.
    """
    if not source_files:
        raise MRFError("DICOM Parametric Map export needs a DICOM source series (this series came from HDF5)")
    folder = Path(folder)
    targets = {name: folder / f"{FILE_STEMS.get(name, name + 'map')}.dcm" for name in maps.values}
    for path in targets.values():
        check_writable_target(path, overwrite)
    try:
        sources = [pydicom.dcmread(p) for p in dict.fromkeys(source_files)]
    except Exception as exc:  # noqa: BLE001 - unreadable source is a user-facing problem
        raise MRFError(f"cannot read the source DICOM images: {type(exc).__name__}: {exc}") from None
    complete_sources(sources, maps.provenance.input.generated_uids)
    region, laterality = _source_anatomy(sources)
    geometry = maps.geometry
    n_slices = next(iter(maps.values.values())).shape[0]
    positions = geometry.slice_positions(n_slices)
    plane_positions = [
        hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, [float(v) for v in p]) for p in positions
    ]
    orientation = hd.PlaneOrientationSequence(
        hd.CoordinateSystemNames.PATIENT, [float(v) for v in geometry.orientation]
    )
    measures = hd.PixelMeasuresSequence(
        pixel_spacing=[float(v) for v in geometry.pixel_spacing_mm], slice_thickness=float(geometry.slice_thickness_mm)
    )
    written = []
    for number, (name, values) in enumerate(maps.values.items(), start=100):
        unit = maps.unit(name)
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
        mapping = hd.pm.RealWorldValueMapping(
            lut_label=name[:16],
            lut_explanation=_EXPLANATIONS.get(name, name)[:64],
            unit=_UNITS.get(unit, _UNITS["1"]),
            value_range=(lo, hi),
            slope=1.0,
            intercept=0.0,
            quantity_definition=_QUANTITIES.get(name),
        )
        window = hd.VOILUTTransformation(
            window_center=(lo + hi) / 2, window_width=hi - lo, voi_lut_function="LINEAR_EXACT"
        )
        try:
            pm = hd.pm.ParametricMap(
                source_images=sources,
                pixel_array=np.ascontiguousarray(values, dtype=np.float32),
                series_instance_uid=hd.UID(),
                series_number=number,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="mrfviewer",
                manufacturer_model_name="mrfviewer",
                software_versions=__version__,
                device_serial_number="0",
                contains_recognizable_visual_features=False,
                real_world_value_mappings=[mapping],
                voi_lut_transformations=[window],
                content_label=name.upper().replace("_", "")[:16],
                content_description=f"{_EXPLANATIONS.get(name, name)} [{unit}], {maps.method.upper()}"[:64],
                plane_positions=plane_positions,
                plane_orientation=orientation,
                pixel_measures=measures,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise MRFError(f"cannot build the {name} Parametric Map: {type(exc).__name__}: {exc}") from None
        _ascending_frames(pm)
        pm.SharedFunctionalGroupsSequence[0].FrameAnatomySequence = [_frame_anatomy(region, laterality)]
        # General Series Laterality is type 2C: not allowed where Frame Laterality is present.
        if "Laterality" in pm:
            del pm.Laterality
        pm.ContentCreatorName = ""
        fit_decimal_strings(pm)
        written.append(atomic_write(targets[name], pm.save_as, overwrite=overwrite))
    return written


def read_parametric_map(path: str | Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Values (Z, Y, X) sorted along the slice normal, their positions (Z, 3) and the unit code."""
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    shared = ds.SharedFunctionalGroupsSequence[0]
    orientation = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    pos = np.array(
        [f.PlanePositionSequence[0].ImagePositionPatient for f in ds.PerFrameFunctionalGroupsSequence], dtype=np.float64
    )
    order = np.argsort(pos @ normal)
    mapping = (
        ds.PerFrameFunctionalGroupsSequence[0].get("RealWorldValueMappingSequence")
        or shared.RealWorldValueMappingSequence
    )
    unit = str(mapping[0].MeasurementUnitsCodeSequence[0].CodeValue)
    return frames[order], pos[order], unit
