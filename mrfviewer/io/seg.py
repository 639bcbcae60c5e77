"""Label maps from DICOM Segmentation (SEG) objects.

Each SEG frame is placed by its ImagePositionPatient on the series' slices (the
nearest slice along the normal, within half a slice thickness), so a SEG drawn on
any time point of an MRF series applies. Pixels of a segment get its segment
number; overlapping segments resolve to the later segment. Fractional segments
are thresholded at 0.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from mrfviewer.errors import MRFError
from mrfviewer.series import Geometry

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def read_seg_labels(
    path: str | Path, geometry: Geometry, shape: tuple[int, int, int]
) -> tuple[np.ndarray, dict[int, str]]:
    """A (Z, Y, X) label map and segment names from a SEG file, on the series geometry."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - unreadable input is a user-facing problem
        raise MRFError(f"cannot read {path.name} as DICOM: {type(exc).__name__}") from None
    if str(ds.get("SOPClassUID", "")) != SEG_STORAGE:
        raise MRFError(f"{path.name} is not a DICOM Segmentation object")
    n_z, n_y, n_x = shape
    if (int(ds.Rows), int(ds.Columns)) != (n_y, n_x):
        raise MRFError(f"{path.name}: segmentation frames are {ds.Rows}x{ds.Columns}, the series {n_y}x{n_x}")
    try:
        frames = ds.pixel_array.reshape(-1, n_y, n_x)
        names = {
            int(s.SegmentNumber): str(s.get("SegmentLabel", f"segment {s.SegmentNumber}")) for s in ds.SegmentSequence
        }
        per_frame = ds.PerFrameFunctionalGroupsSequence
        segment_of = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber) for f in per_frame]
        positions = np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in per_frame], dtype=np.float64)
    except (AttributeError, KeyError, IndexError, ValueError) as exc:
        raise MRFError(f"{path.name}: incomplete segmentation ({type(exc).__name__}: {exc})") from None
    if frames.dtype.kind == "f" or str(ds.get("SegmentationType", "BINARY")) == "FRACTIONAL":
        scale = float(ds.get("MaximumFractionalValue", 1) or 1)
        frames = frames.astype(np.float32) / (scale if frames.dtype.kind != "f" else 1.0) >= 0.5
    normal = geometry.normal
    slice_depth = geometry.slice_positions(n_z) @ normal
    labels = np.zeros(shape, dtype=np.int32)
    tolerance = max(geometry.slice_thickness_mm / 2, 1e-3)
    for frame, segment, position in zip(frames, segment_of, positions, strict=True):
        distance = np.abs(slice_depth - position @ normal)
        z = int(np.argmin(distance))
        if distance[z] > tolerance:
            raise MRFError(
                f"{path.name}: a segmentation frame lies {distance[z]:.1f} mm from every slice of the series"
            )
        labels[z][frame.astype(bool)] = segment
    return labels, names
