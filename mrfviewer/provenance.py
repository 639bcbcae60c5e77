"""Typed provenance of a result: what produced a set of maps, from which input, with what settings.

Every result carries one :class:`Provenance`; sidecars, CSVs, Parametric Maps and the
GUI read its fields. Nothing is encoded into strings to be parsed back later.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mrfviewer import __version__
from mrfviewer.settings import ReconstructionSettings


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class InputIdentity:
    """Where a series came from.

    ``generated_uids`` names the DICOM identifiers the source lacked and that
    mrfviewer generated (deterministically from the input's location), keyword -> UID.
    """

    path: str = ""
    kind: str = ""  # "dicom", "hdf5" or "memory"
    series_uid: str = ""
    study_uid: str = ""
    patient_id: str = ""
    description: str = ""
    generated_uids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DictionaryInfo:
    """The dictionary a DM result was matched against."""

    key: str
    description: str
    n_atoms: int
    signal: str
    rank: int
    ranges: Mapping[str, tuple[float, float]]  # parameter -> (min, max) of the grid


@dataclass(frozen=True)
class ModelInfo:
    """The network an NN result was inferred with."""

    name: str
    basis_sha256: str
    precision: str  # the precision that ran: float32 or bfloat16
    svd_rank: int
    ranges: Mapping[str, tuple[float, float]]  # parameter -> (min, max) of the training ranges


@dataclass(frozen=True)
class Provenance:
    """What produced a result (see the module docstring)."""

    method: str  # "dm" or "nn"
    sequence_name: str
    sequence_hash: str
    settings: ReconstructionSettings
    input: InputIdentity = field(default_factory=InputIdentity)
    dictionary: DictionaryInfo | None = None
    model: ModelInfo | None = None
    search: str = "exhaustive"
    seconds: float = float("nan")
    matching_seconds: float = float("nan")
    at_range_limit: Mapping[str, int] = field(default_factory=dict)  # "T2 >= 300" -> voxels
    warnings: tuple[str, ...] = ()
    software_version: str = __version__
    created: str = field(default_factory=_now)

    @property
    def estimator(self) -> str:
        """A short human name of the estimator: ``dictionary KEY`` or ``model NAME (precision)``."""
        if self.dictionary is not None:
            return f"dictionary {self.dictionary.key}"
        if self.model is not None:
            return f"model {self.model.name} ({self.model.precision})"
        return self.method

    @property
    def ranges(self) -> Mapping[str, tuple[float, float]]:
        """Parameter ranges of the dictionary or the network's training set."""
        if self.dictionary is not None:
            return self.dictionary.ranges
        return self.model.ranges if self.model is not None else {}

    def replace(self, **changes: Any) -> Provenance:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (for sidecars and the npz archive)."""
        out = dataclasses.asdict(self)
        for name in ("dictionary", "model"):
            if out[name] is not None:
                out[name]["ranges"] = {k: list(v) for k, v in out[name]["ranges"].items()}
        out["input"]["generated_uids"] = dict(self.input.generated_uids)
        out["at_range_limit"] = dict(self.at_range_limit)
        out["warnings"] = list(self.warnings)
        out["estimator"] = self.estimator
        return out
