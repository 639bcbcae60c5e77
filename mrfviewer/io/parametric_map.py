"""DICOM Parametric Map export (highdicom) and read-back, one object per map.

Float32 frames with a real-world value mapping in UCUM units (ms for times),
referencing the source MRF series, with the source geometry (pixel measures,
orientation and per-frame positions). Invalid voxels stay NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.coding import Code

from mrfviewer import __version__
from mrfviewer.errors import MRFError
from mrfviewer.io.atomic import atomic_write, check_writable_target
from mrfviewer.maps import FILE_STEMS, ParameterMaps

_UNITS = {
    "ms": Code("ms", "UCUM", "millisecond"),
    "1": Code("1", "UCUM", "no units"),
    "a.u.": Code("1", "UCUM", "no units"),
}
_EXPLANATIONS = {
    "T1": "T1 relaxation time",
    "T2": "T2 relaxation time",
    "T1rho": "T1rho (spin-lock) relaxation time",
    "B1": "relative B1+ amplitude",
    "PD": "proton density (M0 units)",
    "match": "normalised correlation with the best atom",
}


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


def export_parametric_maps(
    maps: ParameterMaps, source_files: list[Path], folder: str | Path, overwrite: bool = False
) -> list[Path]:
    """Write ``<stem>.dcm`` Parametric Maps into ``folder``; ``source_files`` are one source image per slice."""
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
        )
        window = hd.VOILUTTransformation(window_center=(lo + hi) / 2, window_width=hi - lo)
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
