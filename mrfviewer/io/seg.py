"""Label maps from DICOM Segmentation objects: BINARY, FRACTIONAL and LABELMAP.

Each frame is placed by its own geometry (ImagePositionPatient, ImageOrientationPatient,
PixelSpacing): on the series slice nearest along the normal (within half a slice
thickness), resampled in-plane by nearest neighbour, so a SEG drawn on any time point of
an MRF series, or on another in-plane grid of the same slices, applies. A frame rotated
against the series, or whose labelled pixels fall outside it, is refused (the rules of
:mod:`mrfviewer.io.labels`). BINARY and FRACTIONAL frames carry one segment each
(fractional values are thresholded at one half); LABELMAP frames hold segment numbers.
Overlapping segments resolve to the later frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from mrfviewer.errors import MRFError
from mrfviewer.io.labels import (
    OUTSIDE_TOLERANCE,
    LabelMap,
    _check_orientation,
    _describe_series,
    _series_coordinates,
    _series_world,
)
from mrfviewer.series import Geometry

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"


def _find(frame: Any, shared: Any, sequence: str, attribute: str) -> Any:
    """An attribute of a functional group, per frame first, then shared."""
    for group in (frame, shared):
        if group is not None and sequence in group and len(group[sequence].value):
            item = group[sequence].value[0]
            if attribute in item:
                return item.get(attribute)
    return None


def _frame_values(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    try:
        frames = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a file problem
        raise MRFError(f"{path.name}: cannot decode the segmentation frames ({type(exc).__name__})") from None
    return frames.reshape(-1, int(ds.Rows), int(ds.Columns))


def read_seg_labels(path: str | Path, geometry: Geometry, shape: tuple[int, int, int]) -> LabelMap:
    """A (Z, Y, X) label map and segment names from a SEG file, placed on the series geometry."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - unreadable input is a user-facing problem
        raise MRFError(f"cannot read {path.name} as DICOM: {type(exc).__name__}") from None
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in (SEG_STORAGE, LABELMAP_SEG_STORAGE):
        raise MRFError(f"{path.name} is not a DICOM Segmentation object")
    seg_type = str(ds.get("SegmentationType", "BINARY")).upper()
    if sop_class == LABELMAP_SEG_STORAGE:
        seg_type = "LABELMAP"
    try:
        frames = _frame_values(ds, path)
        # Segment 0 of a LABELMAP is its background, not a region.
        names = {
            int(s.SegmentNumber): str(s.get("SegmentLabel", f"segment {s.SegmentNumber}"))
            for s in ds.SegmentSequence
            if int(s.SegmentNumber) != 0
        }
        shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
        per_frame = list(ds.PerFrameFunctionalGroupsSequence)
    except (AttributeError, KeyError, IndexError, ValueError, TypeError) as exc:
        raise MRFError(f"{path.name}: incomplete segmentation ({type(exc).__name__}: {exc})") from None
    if len(per_frame) != len(frames):
        raise MRFError(f"{path.name}: {len(frames)} frames but {len(per_frame)} per-frame functional groups")
    series_text = _describe_series(geometry, shape)
    labels = np.zeros(shape, dtype=np.int32)
    tolerance = 0.5 + 1e-3
    n_labelled = n_outside = 0
    for index, (frame, group) in enumerate(zip(frames, per_frame, strict=True)):
        position = _find(group, shared, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _find(group, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _find(group, shared, "PixelMeasuresSequence", "PixelSpacing")
        try:
            position = np.array([float(v) for v in position], dtype=np.float64)
            orientation = np.array([float(v) for v in orientation], dtype=np.float64)
            dy, dx = (float(v) for v in spacing)
        except (TypeError, ValueError):
            raise MRFError(f"{path.name}: frame {index + 1} lacks its position, orientation or pixel spacing") from None
        if position.shape != (3,) or orientation.shape != (6,) or not (dx > 0 and dy > 0):
            raise MRFError(f"{path.name}: frame {index + 1} has an invalid position, orientation or pixel spacing")
        if seg_type == "LABELMAP":
            values = frame.astype(np.int32)
        else:
            segment = _find(group, None, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
            if segment is None:
                raise MRFError(f"{path.name}: frame {index + 1} names no segment")
            if seg_type == "FRACTIONAL":
                scale = float(ds.get("MaximumFractionalValue", 1) or 1)
                on = frame.astype(np.float32) / scale >= 0.5
            else:
                on = frame != 0
            values = np.where(on, int(segment), 0).astype(np.int32)
        if not values.any():
            continue
        row_dir, col_dir = orientation[:3], orientation[3:]
        axes = np.stack([row_dir * dx, col_dir * dy, np.cross(row_dir, col_dir)], axis=1)
        what = f"{path.name} frame {index + 1}"
        _check_orientation(axes, geometry, what, series_text)
        # Labelled pixels in world coordinates, then in series coordinates: which slice, inside or not.
        jj, ii = np.nonzero(values)
        world = position + np.outer(ii, row_dir * dx) + np.outer(jj, col_dir * dy)
        coords = _series_coordinates(world, geometry, shape)
        z = int(np.rint(np.median(coords[:, 0])))
        if not 0 <= z < shape[0] or np.abs(coords[:, 0] - z).max() > tolerance:
            raise MRFError(f"{what} lies {abs(coords[:, 0] - z).max():.1f} slices off every slice ({series_text})")
        limits = np.array(shape[1:], dtype=np.float64) - 0.5
        inside = np.all((coords[:, 1:] >= -0.5 - 1e-3) & (coords[:, 1:] <= limits + 1e-3), axis=1)
        n_labelled += len(inside)
        n_outside += int((~inside).sum())
        # Resample: the frame pixel under each series pixel of slice z.
        points = _series_world(geometry, shape, z).reshape(-1, 3) - position
        col = np.rint(points @ row_dir / dx).astype(np.int64)
        row = np.rint(points @ col_dir / dy).astype(np.int64)
        valid = (row >= 0) & (row < values.shape[0]) & (col >= 0) & (col < values.shape[1])
        plane = labels[z].reshape(-1)
        picked = np.zeros(plane.shape, dtype=np.int32)
        picked[valid] = values[row[valid], col[valid]]
        plane[picked != 0] = picked[picked != 0]
        labels[z] = plane.reshape(shape[1:])
    if n_labelled and n_outside / n_labelled > OUTSIDE_TOLERANCE:
        raise MRFError(
            f"{path.name} does not lie on the series: {100 * n_outside / n_labelled:.0f} % of its labelled pixels "
            f"fall outside it ({series_text})"
        )
    return LabelMap(values=labels, names=names, path=path, note=f"DICOM SEG ({seg_type})")
