"""Parameter maps produced by a reconstruction, with units and provenance."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
    """Maps (Z, Y, X) float32, NaN outside the mask, plus provenance.

    ``atom`` holds the best dictionary atom per voxel for dictionary matching
    (-1 outside the mask or for other methods).
    """

    values: dict[str, np.ndarray]
    mask: np.ndarray
    method: str
    sequence_hash: str
    source: str  # dictionary key or model identity
    geometry: Geometry = field(default_factory=Geometry)
    atom: np.ndarray | None = None
    pd_phase: np.ndarray | None = None
    series_uid: str = ""
    settings: dict = field(default_factory=dict)

    def unit(self, name: str) -> str:
        return UNITS.get(name, "")

    @property
    def names(self) -> list[str]:
        return list(self.values)
