"""Finding every MRF series under a folder: DICOM series (with phase partners) and HDF5 series files.

Each series becomes a :class:`CohortItem`: where it is, its label map (by the one rule of
:func:`mrfviewer.io.labels.discover_labels`), its subject and a name for its output folder.
The subject is the first folder level below the cohort folder (``sub-00/...`` gives
``sub-00``), or with ``subject_from="patientid"`` the DICOM PatientID (else the patient
name; for HDF5 files the folder holding the file).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import h5py

from mrfviewer.engine import CancelToken, ProgressCallback
from mrfviewer.errors import MRFError
from mrfviewer.io.labels import discover_labels
from mrfviewer.io.names import safe_name

SUBJECT_FROM = ("folder", "patientid")


@dataclass(frozen=True)
class CohortItem:
    """One MRF series of a cohort: a DICOM series (folder + UID) or an HDF5 series file."""

    subject: str
    name: str
    path: Path
    series_uid: str | None = None
    labels: Path | None = None
    partner_folders: tuple[Path, ...] = ()  # folders of the phase partner series, if elsewhere
    relative: str = ""  # the series' location relative to the cohort folder
    signal: str = "complex"  # "complex" (magnitude with phase) or "magnitude"

    def output_dir(self, root: Path) -> Path:
        return root / safe_name(self.subject, "subject") / safe_name(self.name, "series")


def is_h5_series(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file with a ``series`` dataset."""
    try:
        with h5py.File(path, "r") as f:
            return isinstance(f.get("series"), h5py.Dataset)
    except OSError:
        return False


def _h5_signal(path: Path) -> str:
    with h5py.File(path, "r") as f:
        return "complex" if f["series"].dtype.kind == "c" else "magnitude"


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix() or "."
    except ValueError:
        return path.as_posix()


def _folder_subject(path: Path, root: Path, fallback: str) -> str:
    """The first folder level below ``root`` on the way to ``path`` (a file directly in root: ``fallback``)."""
    rel = Path(_relative(path, root))
    parts = rel.parts[:-1] if path.is_file() else rel.parts
    return parts[0] if parts and parts[0] != "." else fallback


def find_cohort(
    root: str | Path,
    *,
    subject_from: str = "folder",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> list[CohortItem]:
    """Every MRF series under ``root`` (a folder, or one HDF5 series file), sorted by subject and name."""
    from mrfviewer.io.dicom_read import partner_series, scan_folder

    if subject_from not in SUBJECT_FROM:
        raise MRFError(f"subject must come from one of {', '.join(SUBJECT_FROM)}, got {subject_from!r}")
    root = Path(root)
    if not root.exists():
        raise MRFError(f"not found: {root}")
    if root.is_file():
        if not is_h5_series(root):
            raise MRFError(f"{root} is neither a folder nor an HDF5 MRF series")
        subject = root.parent.name or root.stem
        return [CohortItem(subject, root.stem, root, None, discover_labels(root), (), root.name, _h5_signal(root))]
    scan = scan_folder(root, progress=progress, cancel=cancel)
    items = []
    for info in scan.mrf_series():
        if info.components == {"P"}:
            continue  # phase partners travel with their magnitude series
        first = info.first
        number = f"{first.series_number}_" if first.series_number not in (None, -1) else ""
        partners = partner_series(scan, info)
        # Partner folders outside the series folder (a scan of the series folder already covers its subfolders).
        outside = tuple(sorted({p.folder for p in partners if not p.folder.is_relative_to(info.folder)}))
        subject = (
            first.patient_id or first.patient
            if subject_from == "patientid"
            else _folder_subject(info.folder, root, root.name)
        )
        items.append(
            CohortItem(
                subject=subject,
                name=f"{number}{first.series_description or info.uid}",
                path=info.folder,
                series_uid=info.uid,
                labels=discover_labels(info.folder, root),
                partner_folders=outside,
                relative=_relative(info.folder, root),
                signal="complex" if partners or "P" in info.components else "magnitude",
            )
        )
    for path in sorted(root.rglob("*.h5")):
        if is_h5_series(path):
            if subject_from == "patientid":
                subject = path.parent.name if path.parent != root else path.stem
            else:
                subject = _folder_subject(path, root, path.stem)
            items.append(
                CohortItem(
                    subject, path.stem, path, None, discover_labels(path), (), _relative(path, root), _h5_signal(path)
                )
            )
    return _unique_outputs(sorted(items, key=lambda i: (i.subject, i.name, str(i.path))))


def _unique_outputs(items: list[CohortItem]) -> list[CohortItem]:
    """Give series that would share an output folder (same subject and name) a suffix: -2, -3, ..."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for item in items:
        key = (safe_name(item.subject, "subject"), safe_name(item.name, "series"))
        seen[key] = seen.get(key, 0) + 1
        out.append(item if seen[key] == 1 else dataclasses.replace(item, name=f"{item.name}-{seen[key]}"))
    return out
