"""One scalar map (e.g. a scanner's B1+ map) read from DICOM: a volume with its geometry.

A map is one image series with one image per slice: a folder of single-frame files, or one
(multi-frame) file. Values are the stored pixels through the Real World Value Mapping when the
file has one (its unit is returned), else through RescaleSlope / RescaleIntercept. The headers
are checked by the same scan as MRF series (:mod:`mrfviewer.io.dicom_read`), so a damaged or
hostile header is the same one-line error.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrfviewer.errors import MRFError
from mrfviewer.io import dicom_read as dr
from mrfviewer.series import Geometry

#: The "DICM" magic after the 128-byte preamble of a DICOM Part 10 file.
_MAGIC_OFFSET = 128


@dataclass(frozen=True)
class MapVolume:
    """A map as read: ``values`` (Z, Y, X) float64 ordered along the slice normal, ``unit`` ("" if none)."""

    values: np.ndarray
    geometry: Geometry
    unit: str
    description: str


def is_dicom(path: str | Path) -> bool:
    """Whether ``path`` is a folder (read as DICOM) or a file with the DICOM Part 10 magic."""
    path = Path(path)
    if path.is_dir():
        return True
    try:
        with open(path, "rb") as fp:
            fp.seek(_MAGIC_OFFSET)
            return fp.read(4) == b"DICM"
    except OSError:
        return False


def _records(path: Path, what: str) -> list[dr.ImageRecord]:
    if path.is_dir():
        scan = dr.scan_folder(path)
        if not scan.series:
            reason = f" ({scan.skipped[0][0].name}: {scan.skipped[0][1]})" if scan.skipped else ""
            raise MRFError(f"{what}: no DICOM image in {path}{reason}")
        if len(scan.series) > 1:
            names = ", ".join(sorted(repr(s.description or s.uid) for s in scan.series.values())[:3])
            raise MRFError(f"{what}: {path} holds {len(scan.series)} image series ({names}); give the map's own folder")
        return next(iter(scan.series.values())).records
    try:
        return dr.read_header(path)
    except dr.NotAnImage as exc:
        raise MRFError(f"{what}: {path.name} is not a DICOM image ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable header is a user-facing file problem
        raise MRFError(f"{what}: {path.name} is not readable as DICOM ({type(exc).__name__})") from None


def read_map_volume(path: str | Path, what: str = "map") -> MapVolume:
    """Read a DICOM map (folder or file) into a (Z, Y, X) volume with its geometry.

    Raises :class:`MRFError` naming the problem: no image, several series, a header value that
    cannot be used, images of different sizes or orientations, several images at one slice
    position (a time series is not a map), undecodable pixels.
    """
    path = Path(path)
    records = _records(path, what)
    bad = next((r for r in records if r.problem), None)
    if bad is not None:
        raise MRFError(f"{what}: {dr.record_names([bad], 1)}: {bad.problem}")
    if not records[0].has_pixels:
        raise MRFError(f"{what}: {dr.record_names(records[:1], 1)} has no pixel data")
    dr.check_alike(records, what)
    first = records[0]
    if len(records) > 1 and any(r.position is None or r.orientation is None for r in records):
        raise MRFError(f"{what}: images without ImagePositionPatient/ImageOrientationPatient cannot be placed")
    by_slice: dict[float, list[dr.ImageRecord]] = defaultdict(list)
    for r in records:
        by_slice[dr.slice_position(r)].append(r)
    positions = sorted(by_slice)
    crowded = next((p for p in positions if len(by_slice[p]) > 1), None)
    if crowded is not None:
        raise MRFError(
            f"{what}: {len(by_slice[crowded])} images at slice position {crowded:g} mm "
            f"({dr.record_names(by_slice[crowded], 2)}): a map has one image per slice"
        )
    slices = [by_slice[p][0] for p in positions]
    units = {r.value_map[2] if r.value_map else "" for r in slices}
    if len(units) > 1:
        raise MRFError(f"{what}: images in different units ({', '.join(sorted(repr(u) for u in units))})")
    shape = (first.rows, first.columns)
    values = np.empty((len(slices), *shape), dtype=np.float64)
    cache: dict[Path, np.ndarray] = {}
    for z, r in enumerate(slices):
        stored = dr.image_pixels(r, cache, shape).astype(np.float64)
        slope, intercept = (r.value_map[0], r.value_map[1]) if r.value_map else (r.slope, r.intercept)
        values[z] = stored * slope + intercept
    return MapVolume(
        values=values,
        geometry=dr.slice_geometry(slices, positions),
        unit=units.pop(),
        description=first.series_description,
    )
