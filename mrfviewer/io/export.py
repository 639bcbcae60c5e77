"""Map exports: NIfTI with JSON sidecars, a numpy archive, PNGs, DICOM Parametric Maps, ROI CSV.

:func:`export_maps` writes the formats asked for into one folder. Every target is checked
before anything is written (an existing file is never replaced without ``overwrite``);
then each format is written all or nothing on its own: a format that fails (disk full, a
source DICOM highdicom refuses) leaves none of its files and is named in the report,
while the formats that worked are kept. Files are written into a hidden staging folder
inside the output and moved to their places only when every format has been tried, so
a run that is cancelled, fails or is killed leaves no set of maps that looks finished
(a killed run's staging folder is removed by the next export into that folder).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from mrfviewer.engine import CancelToken, check_cancel
from mrfviewer.errors import Cancelled, MRFError
from mrfviewer.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text, check_writable_target
from mrfviewer.io.labels import LabelMap
from mrfviewer.maps import FILE_STEMS, ParameterMaps

if TYPE_CHECKING:
    from mrfviewer.io.bids import BidsLayout

log = logging.getLogger(__name__)

#: Export formats, in the order they are written.
FORMATS = ("nifti", "npz", "png", "dicom", "csv")
ROI_CSV = "roi_stats.csv"
_TIME_MAPS = ("T1", "T2", "T1rho", "uncertainty_T1", "uncertainty_T2", "uncertainty_T1rho")


def sidecar(maps: ParameterMaps, name: str, unit: str) -> dict[str, Any]:
    """The JSON sidecar of one map: its name and unit, then the result's provenance."""
    return {"map": name, "Units": unit, "software": "mrfviewer", **maps.provenance.to_dict()}


def stem(name: str) -> str:
    return FILE_STEMS.get(name, f"{name}map")


def export_nifti(
    maps: ParameterMaps,
    folder: str | Path,
    units: str = "ms",
    overwrite: bool = False,
    layout: BidsLayout | None = None,
) -> list[Path]:
    """Write ``<stem>.nii.gz`` and ``<stem>.json`` per map into ``folder``.

    Times (relaxation maps and their uncertainties) are in ms, or in seconds with
    ``units="s"`` (BIDS qMRI convention). With a BIDS ``layout`` the files go where it
    says, times in seconds, with BIDS sidecars (:mod:`mrfviewer.io.bids`).
    """
    if units not in ("ms", "s"):
        raise MRFError(f"units must be 'ms' or 's', got {units!r}")
    folder = Path(folder)
    n_slices = maps.mask.shape[0]
    affine = maps.geometry.affine_ras(n_slices)
    written = []
    for name, data in maps.values.items():
        unit = maps.unit(name)
        if name in _TIME_MAPS and (units == "s" or layout is not None):
            data, unit = data / 1000.0, "s"
        base = folder / (layout.map_path(name) if layout is not None else stem(name))
        info = layout.sidecar(maps, name) if layout is not None else sidecar(maps, name, unit)
        image = nib.Nifti1Image(np.ascontiguousarray(np.transpose(data, (2, 1, 0))).astype(np.float32), affine)
        image.header.set_xyzt_units(xyz="mm")
        image.header["descrip"] = f"mrfviewer {name} [{unit}]".encode()[:79]
        nifti = base.with_name(base.name + ".nii.gz")
        written.append(atomic_write(nifti, functools.partial(nib.save, image), overwrite))
        text = json.dumps(info, indent=1) + "\n"
        written.append(atomic_write_text(base.with_name(base.name + ".json"), text, overwrite))
    return written


def export_npz(maps: ParameterMaps, path: str | Path, overwrite: bool = False) -> Path:
    """All maps, the mask and (for DM) the atom indices in one compressed ``.npz``."""
    arrays: dict[str, Any] = dict(maps.values)
    arrays["mask"] = maps.mask
    # Bit 0 T1, 1 T2, 2 T1rho, 3 B1: the value sits at or beyond the estimator's range (not a measurement).
    flags = np.zeros(maps.mask.shape, dtype=np.uint8)
    for bit, name in enumerate(("T1", "T2", "T1rho", "B1")):
        flags |= maps.at_range_limit((name,)).astype(np.uint8) << bit
    arrays["range_limit"] = flags
    if maps.atom is not None:
        arrays["atom"] = maps.atom
    arrays["provenance"] = np.array(json.dumps(sidecar(maps, "all", "see per-map units")))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)


def export_targets(
    names: Sequence[str], folder: str | Path, formats: Sequence[str], layout: BidsLayout | None = None
) -> dict[str, list[Path]]:
    """The files each format writes for maps ``names`` into ``folder`` (in a BIDS ``layout``: where it says)."""
    root = Path(folder)
    folder = root / layout.extra if layout is not None else root
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise MRFError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    stems = [stem(n) for n in names]
    out: dict[str, list[Path]] = {}
    for fmt in FORMATS:
        if fmt not in formats:
            continue
        if fmt == "nifti" and layout is not None:
            out[fmt] = [root / f"{layout.map_path(n)}{e}" for n in names for e in (".nii.gz", ".json")]
        elif fmt == "nifti":
            out[fmt] = [folder / f"{s}{e}" for s in stems for e in (".nii.gz", ".json")]
        elif fmt == "npz":
            out[fmt] = [folder / "maps.npz"]
        elif fmt == "png":
            out[fmt] = [folder / f"{s}.png" for s in stems]
        elif fmt == "dicom":
            out[fmt] = [folder / "dicom" / f"{s}.dcm" for s in stems]
        else:
            out[fmt] = [folder / ROI_CSV]
    return out


def check_export_targets(
    names: Sequence[str],
    folder: str | Path,
    formats: Sequence[str],
    overwrite: bool,
    layout: BidsLayout | None = None,
) -> None:
    """Raise :class:`MRFError` before any work if a target exists (without ``overwrite``) or is a folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MRFError(f"{folder} exists and is not a folder; choose another output")
    for paths in export_targets(names, folder, formats, layout).values():
        for path in paths:
            if path.is_dir():
                raise MRFError(f"{path} is a folder; choose another output")
            check_writable_target(path, overwrite)


@dataclass
class ExportReport:
    """What an export wrote, per format, and the formats that failed with their reason."""

    folder: Path
    written: dict[str, list[Path]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return [p for paths in self.written.values() for p in paths]

    def failure_text(self) -> str:
        """One line: formats that failed for the same reason are named together."""
        by_reason: dict[str, list[str]] = {}
        for fmt, reason in self.failed.items():
            by_reason.setdefault(reason, []).append(fmt)
        return "; ".join(f"{', '.join(fmts)} export failed: {reason}" for reason, fmts in by_reason.items())


STAGING_PREFIX = ".mrfviewer-staging-"
#: When this process started: staging folders older than that belong to runs that ended.
_PROCESS_START = time.time()


def _remove_stale_staging(folder: Path) -> None:
    """Staging folders of runs that were killed (older than this process)."""
    for stale in folder.glob(f"{STAGING_PREFIX}*"):
        try:
            if stale.is_dir() and stale.stat().st_mtime < _PROCESS_START - 1:
                shutil.rmtree(stale)
        except OSError:
            continue


def _remove(paths: list[Path], folders: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
    for folder in folders:  # deepest first
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _writers(
    maps: ParameterMaps,
    stage: Path,
    units: str,
    source_files: Sequence[Path] | None,
    labels: LabelMap | None,
    roi_scope: str,
    layout: BidsLayout | None = None,
) -> dict[str, Callable[[], list[Path]]]:
    """One writer per format, writing into ``stage`` (in a BIDS ``layout``: where it says)."""
    extra = stage / layout.extra if layout is not None else stage
    from mrfviewer.io.parametric_map import export_parametric_maps
    from mrfviewer.io.png import export_png
    from mrfviewer.roi import label_statistics, write_stats_csv

    def csv() -> list[Path]:
        assert labels is not None
        rows = label_statistics(maps, labels.values, dict(labels.names))
        return [write_stats_csv(rows, maps, extra / ROI_CSV, slice_text=roi_scope)]

    return {
        "nifti": lambda: export_nifti(maps, stage, units=units, layout=layout),
        "npz": lambda: [export_npz(maps, extra / "maps.npz")],
        "png": lambda: export_png(maps, extra),
        "dicom": lambda: export_parametric_maps(maps, list(source_files or []), extra / "dicom"),
        "csv": csv,
    }


def _move_in(
    staged: dict[str, list[Path]], targets: dict[str, list[Path]], report: ExportReport, overwrite: bool
) -> None:
    """Move the files of the formats that worked from the staging folder to their places."""
    for fmt in report.written:
        for source in targets[fmt]:
            check_writable_target(source, overwrite)  # a file may have appeared while we worked
    moved: list[Path] = []
    for fmt in list(report.written):
        for src, dst in zip(staged[fmt], targets[fmt], strict=True):
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                existed = dst.exists()
                os.replace(src, dst)
                if not existed:
                    moved.append(dst)
            except OSError as exc:
                _remove(moved, [])  # renames in one folder do not fail for space; if they do, none stays
                raise MRFError(f"moving {dst.name} into {dst.parent} failed: {exc.strerror or exc}") from None


def export_maps(
    maps: ParameterMaps,
    folder: str | Path,
    formats: Sequence[str] = ("nifti", "npz", "png"),
    *,
    units: str = "ms",
    overwrite: bool = False,
    source_files: Sequence[Path] | None = None,
    labels: LabelMap | None = None,
    roi_scope: str = "all",
    cancel: CancelToken | None = None,
    layout: BidsLayout | None = None,
) -> ExportReport:
    """Write ``maps`` in ``formats`` into ``folder`` (see the module docstring).

    ``dicom`` needs the source DICOM images (one per slice) and is skipped with a reason
    otherwise; ``csv`` writes label statistics and needs ``labels``. ``layout``: a BIDS
    derivatives layout (:mod:`mrfviewer.io.bids`) instead of the flat one.
    """
    folder = Path(folder)
    formats = [f for f in FORMATS if f in formats]
    check_export_targets(maps.names, folder, formats, overwrite, layout)
    report = ExportReport(folder)
    if "dicom" in formats and not source_files:
        formats.remove("dicom")
        report.failed["dicom"] = "DICOM Parametric Maps need a DICOM source series (this series is not DICOM)"
    if "csv" in formats and labels is None:
        formats.remove("csv")
        report.failed["csv"] = "ROI statistics need a label map"
    if labels is not None and labels.values.shape != maps.mask.shape:
        raise MRFError(f"label map has shape {labels.values.shape}, the maps {maps.mask.shape}")
    targets = export_targets(maps.names, folder, formats, layout)
    new_folders = [f for f in (folder / "dicom", folder) if not f.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(folder)
        stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    except OSError as exc:
        _remove([], new_folders)
        raise MRFError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    staged = {fmt: [stage / t.relative_to(folder) for t in paths] for fmt, paths in targets.items()}
    writers = _writers(maps, stage, units, source_files, labels, roi_scope, layout)
    try:
        for fmt in formats:
            check_cancel(cancel)
            try:
                writers[fmt]()
                report.written[fmt] = targets[fmt]
            except MRFError as exc:
                _remove(staged[fmt], [])
                report.failed[fmt] = str(exc)
            except (Cancelled, KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - one broken format must not take the others with it
                log.exception("%s export failed", fmt)
                _remove(staged[fmt], [])
                report.failed[fmt] = f"internal error: {type(exc).__name__}: {exc}"
        check_cancel(cancel)
        _move_in(staged, targets, report, overwrite)
        if layout is not None and not layout.within_session and report.written:
            from mrfviewer.io.bids import write_dataset_files

            write_dataset_files(folder)  # shared by every series of the dataset: written once
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        _remove([], new_folders)
        raise
    shutil.rmtree(stage, ignore_errors=True)
    _remove([], new_folders)  # folders left empty by failed formats
    return report
