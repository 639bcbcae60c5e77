"""The BIDS derivatives layout of exported maps (``--layout bids``).

A BIDS derivatives dataset (BIDS 1.10, quantitative MRI maps) in the output folder::

    dataset_description.json                      DatasetType "derivative", GeneratedBy mrfviewer
    .bidsignore                                   the non-BIDS files below
    sub-<s>/[ses-<t>/]anat/sub-<s>[_ses-<t>]_T1map.nii.gz   (+ .json)
                                     ..._T2map, _T1rho, _PDmap, _TB1map (B1, where estimated)
                                     ..._desc-uncertainty_T1map (and T2map, T1rho): NN uncertainty
                                     ..._desc-match_T1map: DM match (normalised correlation, no unit)
    sub-<s>/[ses-<t>/]mrfviewer/                  PNG, maps.npz, dicom/, roi_stats.csv

Labels keep letters and digits only (BIDS). Sidecars have BIDS keys in CamelCase:
``Units`` (times in seconds, PD "arbitrary"), ``Description``, ``Sources`` (the input),
``EstimationAlgorithm``, ``EstimationReference``, ``MagneticFieldStrength`` (tesla, from
the DICOM source; absent when unknown) and ``MRFViewerProvenance`` (the typed provenance).
Relative B1+ is the BIDS transmit field map ``TB1map``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrfviewer import __version__
from mrfviewer.io.atomic import atomic_write_text
from mrfviewer.maps import ParameterMaps
from mrfviewer.provenance import InputIdentity

BIDS_VERSION = "1.10.0"
EXTRA_FOLDER = "mrfviewer"
#: map -> (suffix, desc entity or None)
SUFFIXES = {
    "T1": ("T1map", None),
    "T2": ("T2map", None),
    "T1rho": ("T1rho", None),
    "PD": ("PDmap", None),
    "B1": ("TB1map", None),
    "uncertainty_T1": ("T1map", "uncertainty"),
    "uncertainty_T2": ("T2map", "uncertainty"),
    "uncertainty_T1rho": ("T1rho", "uncertainty"),
    "match": ("T1map", "match"),
}
#: Units of a map in the BIDS layout (times in seconds).
UNITS = {"T1": "s", "T2": "s", "T1rho": "s", "PD": "arbitrary", "B1": "1", "match": "1"}
DESCRIPTIONS = {
    "T1": "T1 relaxation time",
    "T2": "T2 relaxation time",
    "T1rho": "T1rho (spin-lock) relaxation time",
    "PD": "proton density (complex signal scale, arbitrary units)",
    "B1": "relative transmit field B1+ (nominal 1)",
    "match": "dictionary matching: normalised correlation of the fingerprint with its best atom (no unit)",
}
ALGORITHMS = {
    "dm": "MR fingerprinting dictionary matching: extended phase graph dictionary, SVD-compressed, "
    "best atom by normalised correlation with quadratic sub-grid refinement",
    "nn": "MR fingerprinting neural network: multilayer perceptron on the SVD coefficients of each "
    "fingerprint, trained on simulated fingerprints (uncertainty from a log-variance head)",
}
REFERENCE = (
    "Fine-tuning deep learning model for quantitative knee joint mapping with MRF and its comparison "
    "to dictionary matching. NMR in Biomedicine, 2025; MR fingerprinting: Ma D et al., Nature 2013;495:187-192"
)
_IGNORE = f"{EXTRA_FOLDER}/\ndone.json\n"


def label(text: object, fallback: str) -> str:
    """A BIDS label (letters and digits only) from ``text``; ``sub-01`` and ``01`` both give ``01``."""
    value = re.sub(r"^(sub|ses)-", "", str(text))
    value = re.sub(r"[^A-Za-z0-9]", "", value)
    return value or fallback


def unit(name: str) -> str:
    """The unit of map ``name`` in the BIDS layout."""
    return UNITS.get(name.removeprefix("uncertainty_"), "1")


@dataclass(frozen=True)
class BidsLayout:
    """Where the maps of one series go in a BIDS derivatives dataset, and what their sidecars say.

    ``within_session``: paths are relative to the subject (or session) folder instead of
    the dataset root (a batch writes each series into its own folder, then moves it in).
    """

    subject: str
    session: str | None = None
    within_session: bool = False
    field_strength_t: float | None = None
    sources: tuple[str, ...] = field(default_factory=tuple)

    @property
    def folder(self) -> Path:
        """The subject (or session) folder, relative to the dataset root."""
        return Path(f"sub-{self.subject}") / (f"ses-{self.session}" if self.session else "")

    def _base(self) -> Path:
        return Path(".") if self.within_session else self.folder

    @property
    def extra(self) -> Path:
        """The folder of the non-BIDS formats (PNG, npz, Parametric Maps, ROI CSV), relative."""
        return self._base() / EXTRA_FOLDER

    def map_path(self, name: str) -> Path:
        """The file of map ``name`` without extension, relative (``sub-01/anat/sub-01_T1map``)."""
        suffix, desc = SUFFIXES.get(name, (f"{name}map", None))
        entities = [f"sub-{self.subject}"]
        if self.session:
            entities.append(f"ses-{self.session}")
        if desc:
            entities.append(f"desc-{desc}")
        return self._base() / "anat" / "_".join([*entities, suffix])

    def sidecar(self, maps: ParameterMaps, name: str) -> dict[str, Any]:
        """The JSON sidecar of map ``name``."""
        base = name.removeprefix("uncertainty_")
        description = DESCRIPTIONS.get(base, name)
        if name.startswith("uncertainty_"):
            description = f"uncertainty (standard deviation) of the {description}, from the network"
        out: dict[str, Any] = {
            "Units": unit(name),
            "Description": description,
            "Sources": list(self.sources),
            "EstimationAlgorithm": ALGORITHMS.get(maps.method, maps.method),
            "EstimationReference": REFERENCE,
        }
        if self.field_strength_t is not None:
            out["MagneticFieldStrength"] = self.field_strength_t
        out["MRFViewerProvenance"] = maps.provenance.to_dict()
        return out


def layout_for(
    identity: InputIdentity,
    source_files: Sequence[Path] = (),
    *,
    subject: str | None = None,
    session: str | None = None,
    within_session: bool = False,
) -> BidsLayout:
    """The layout of the maps of an input: the subject from ``subject``, else the input's PatientID, else its name.

    The field strength comes from the first DICOM source image (MagneticFieldStrength, T).
    """
    name = Path(identity.path).stem if identity.path else ""
    return BidsLayout(
        subject=label(subject if subject is not None else (identity.patient_id or name), "01"),
        session=label(session, "01") if session else None,
        within_session=within_session,
        field_strength_t=_field_strength(source_files),
        sources=(identity.path,) if identity.path else (),
    )


def _field_strength(source_files: Sequence[Path]) -> float | None:
    if not source_files:
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(source_files[0], stop_before_pixels=True, specific_tags=["MagneticFieldStrength"])
        value = float(ds.MagneticFieldStrength)
    except (OSError, AttributeError, TypeError, ValueError, pydicom.errors.InvalidDicomError):
        return None
    return value if 0 < value < 100 else None


def dataset_description() -> dict[str, Any]:
    """``dataset_description.json`` of a derivatives dataset written by mrfviewer."""
    return {
        "Name": "mrfviewer quantitative maps (T1, T2, T1rho, PD)",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "mrfviewer",
                "Version": __version__,
                "Description": "MR fingerprinting of the knee: dictionary matching or a neural network",
            }
        ],
    }


def write_dataset_files(root: str | Path) -> list[Path]:
    """``dataset_description.json`` and ``.bidsignore`` in ``root`` where they are missing (shared by every series)."""
    root = Path(root)
    written = []
    for name, text in (
        ("dataset_description.json", json.dumps(dataset_description(), indent=1) + "\n"),
        (".bidsignore", _IGNORE),
    ):
        if not (root / name).exists():
            written.append(atomic_write_text(root / name, text))
    return written
