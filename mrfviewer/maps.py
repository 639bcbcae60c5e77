"""Parameter maps produced by a reconstruction, with units and provenance."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mrfviewer.provenance import Provenance
from mrfviewer.series import Geometry

#: Units of every map a method can return.
UNITS = {
    "T1": "ms",
    "T2": "ms",
    "T1rho": "ms",
    "B1": "1",
    "PD": "a.u.",
    "match": "1",
    "uncertainty_T1": "ms",
    "uncertainty_T2": "ms",
    "uncertainty_T1rho": "ms",
}
#: File stem of each map (BIDS qMRI style suffixes).
FILE_STEMS = {
    "T1": "T1map",
    "T2": "T2map",
    "T1rho": "T1rhomap",
    "B1": "B1map",
    "PD": "PDmap",
    "match": "matchmap",
    "uncertainty_T1": "T1uncertaintymap",
    "uncertainty_T2": "T2uncertaintymap",
    "uncertainty_T1rho": "T1rhouncertaintymap",
}


@dataclass
class ParameterMaps:
    """Maps (Z, Y, X) float32, NaN outside the mask, with their typed :class:`Provenance`.

    ``atom`` holds the best dictionary atom per voxel for dictionary matching
    (-1 outside the mask; None for other methods), ``pd_phase`` the phase of the
    complex PD (DM).
    """

    values: dict[str, np.ndarray]
    mask: np.ndarray
    provenance: Provenance
    geometry: Geometry = field(default_factory=Geometry)
    atom: np.ndarray | None = None
    pd_phase: np.ndarray | None = None

    @property
    def method(self) -> str:
        return self.provenance.method

    @property
    def series_uid(self) -> str:
        return self.provenance.input.series_uid

    def unit(self, name: str) -> str:
        return UNITS.get(name, "")

    @property
    def names(self) -> list[str]:
        return list(self.values)

    def at_range_limit(self, params: tuple[str, ...] = ("T1", "T2", "T1rho")) -> np.ndarray:
        """Voxels whose value of any of ``params`` sits at (or beyond) a bound of the estimator's range.

        DM cannot leave its dictionary: tissue outside it (synovial fluid, say) comes
        back at a bound, clipped, not measured. For NN the training ranges are the bounds
        of what it knows; beyond them it extrapolates.
        """
        out = np.zeros(self.mask.shape, dtype=bool)
        for name, (lo, hi) in self.provenance.ranges.items():
            if name not in params or name not in self.values or lo == hi:
                continue
            with np.errstate(invalid="ignore"):
                out |= (self.values[name] <= lo * (1 + 1e-3)) | (self.values[name] >= hi * (1 - 1e-3))
        return out
