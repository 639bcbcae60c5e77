"""An MRF image series in memory: data (T, Z, Y, X), geometry and optional ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mrfviewer.errors import MRFError
from mrfviewer.sequence import Sequence


@dataclass
class Geometry:
    """Patient-space geometry in DICOM conventions (LPS, mm).

    ``orientation`` holds the row and column direction cosines
    (ImageOrientationPatient), ``positions`` the (Z, 3) position of the first
    pixel of each slice (ImagePositionPatient), ``pixel_spacing_mm`` the
    (row spacing, column spacing).
    """

    pixel_spacing_mm: tuple[float, float] = (1.0, 1.0)
    slice_thickness_mm: float = 1.0
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    positions: np.ndarray | None = None

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal: row direction x column direction."""
        return np.cross(self.orientation[:3], self.orientation[3:])

    def slice_positions(self, n_slices: int) -> np.ndarray:
        if self.positions is not None:
            return np.asarray(self.positions, dtype=np.float64).reshape(n_slices, 3)
        return np.outer(np.arange(n_slices) * self.slice_thickness_mm, self.normal)

    def affine_ras(self, n_slices: int) -> np.ndarray:
        """4 x 4 NIfTI (RAS) affine for arrays indexed (x = column, y = row, z = slice)."""
        row_dir = np.asarray(self.orientation[:3], dtype=np.float64)
        col_dir = np.asarray(self.orientation[3:], dtype=np.float64)
        pos = self.slice_positions(n_slices)
        # Slice step from the positions; one slice: the normal times the thickness.
        slice_vec = (pos[-1] - pos[0]) / (n_slices - 1) if n_slices > 1 else self.normal * self.slice_thickness_mm
        lps = np.eye(4)
        lps[:3, 0] = row_dir * self.pixel_spacing_mm[1]
        lps[:3, 1] = col_dir * self.pixel_spacing_mm[0]
        lps[:3, 2] = slice_vec
        lps[:3, 3] = pos[0]
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def check_sequence_length(n_timepoints: int, sequence: Sequence | None) -> None:
    """Raise a clear error if ``sequence`` does not have ``n_timepoints`` time points."""
    if sequence is not None and sequence.n_timepoints != n_timepoints:
        raise MRFError(
            f"the series has {n_timepoints} time points but the sequence '{sequence.name}' has {sequence.n_timepoints}"
        )


@dataclass
class Series:
    """An MRF series: ``data`` (T, Z, Y, X), complex64 or float32 (magnitude)."""

    data: np.ndarray
    sequence: Sequence | None = None
    geometry: Geometry = field(default_factory=Geometry)
    description: str = ""
    uid: str = ""
    truth: dict[str, np.ndarray] = field(default_factory=dict)  # (Z, Y, X) ground-truth maps
    labels: np.ndarray | None = None  # (Z, Y, X) int label map
    label_names: dict[int, str] = field(default_factory=dict)
    source_files: list = field(default_factory=list)  # one DICOM source image per slice (for exports)

    def __post_init__(self) -> None:
        if self.data.ndim == 3:
            self.data = self.data[:, None]
        if self.data.ndim != 4:
            raise MRFError(f"a series must have shape (T, Y, X) or (T, Z, Y, X), got {self.data.shape}")
        check_sequence_length(self.n_timepoints, self.sequence)

    @property
    def n_timepoints(self) -> int:
        return int(self.data.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape[1:])  # type: ignore[return-value]

    @property
    def is_complex(self) -> bool:
        return np.iscomplexobj(self.data)

    def with_sequence(self, sequence: Sequence) -> Series:
        """This series with ``sequence`` attached (the number of time points must match)."""
        return replace(self, sequence=sequence)
