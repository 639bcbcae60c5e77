"""Map exports: NIfTI with JSON sidecars and a compressed numpy archive, all atomic."""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from mrfviewer import __version__
from mrfviewer.engine import CancelToken, check_cancel
from mrfviewer.errors import MRFError
from mrfviewer.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text, check_writable_target
from mrfviewer.maps import FILE_STEMS, ParameterMaps
from mrfviewer.series import Geometry

_TIME_MAPS = ("T1", "T2", "T1rho")


def _sidecar(maps: ParameterMaps, name: str, unit: str) -> dict:
    return {
        "map": name,
        "Units": unit,
        "method": maps.method,
        "sequence_hash": maps.sequence_hash,
        "source": maps.source,
        "series_uid": maps.series_uid,
        "software": "mrfviewer",
        "software_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": maps.settings,
    }


def export_nifti(maps: ParameterMaps, folder: str | Path, units: str = "ms", overwrite: bool = False) -> list[Path]:
    """Write ``<stem>.nii.gz`` and ``<stem>.json`` per map into ``folder``.

    Times are in ms, or in seconds with ``units="s"`` (BIDS qMRI convention).
    All targets are checked before anything is written, so a refused export
    leaves no partial set behind.
    """
    if units not in ("ms", "s"):
        raise MRFError(f"units must be 'ms' or 's', got {units!r}")
    folder = Path(folder)
    stems = {name: FILE_STEMS.get(name, f"{name}map") for name in maps.values}
    targets = [folder / f"{s}{ext}" for s in stems.values() for ext in (".nii.gz", ".json")]
    for t in targets:
        check_writable_target(t, overwrite)
    n_slices = next(iter(maps.values.values())).shape[0]
    affine = maps.geometry.affine_ras(n_slices)
    written = []
    for name, stem in stems.items():
        data = maps.values[name]
        unit = maps.unit(name)
        if name in _TIME_MAPS and units == "s":
            data, unit = data / 1000.0, "s"
        image = nib.Nifti1Image(np.ascontiguousarray(np.transpose(data, (2, 1, 0))).astype(np.float32), affine)
        image.header.set_xyzt_units(xyz="mm")
        image.header["descrip"] = f"mrfviewer {name} [{unit}]".encode()[:79]
        written.append(atomic_write(folder / f"{stem}.nii.gz", functools.partial(nib.save, image), overwrite))
        text = json.dumps(_sidecar(maps, name, unit), indent=1) + "\n"
        written.append(atomic_write_text(folder / f"{stem}.json", text, overwrite))
    return written


def export_npz(maps: ParameterMaps, path: str | Path, overwrite: bool = False) -> Path:
    """All maps, the mask and (for DM) the atom indices in one compressed ``.npz``."""
    arrays: dict[str, Any] = dict(maps.values)
    arrays["mask"] = maps.mask
    if maps.atom is not None:
        arrays["atom"] = maps.atom
    arrays["provenance"] = np.array(json.dumps(_sidecar(maps, "all", "see per-map units")))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)


def export_all(
    maps: ParameterMaps,
    folder: str | Path,
    units: str = "ms",
    overwrite: bool = False,
    *,
    nifti: bool = True,
    png: bool = True,
    source_files: list[Path] | None = None,
    labels: np.ndarray | None = None,
    label_names: dict[int, str] | None = None,
    cancel: CancelToken | None = None,
) -> list[Path]:
    """Everything ``mrfviewer reconstruct`` writes into ``folder``, all or nothing.

    NIfTI maps with sidecars and ``maps.npz`` (``nifti``); PNGs (``png``); DICOM Parametric
    Maps in ``dicom/`` when the series came from DICOM (``source_files``); ROI
    statistics ``roi_stats.csv`` when a label map is given. Every target is
    checked before anything is written; if writing fails (disk full, no
    permission) or is cancelled, the files this call created are removed.
    """
    from mrfviewer.io.parametric_map import export_parametric_maps
    from mrfviewer.io.png import export_png
    from mrfviewer.roi import label_statistics, write_stats_csv

    folder = Path(folder)
    stems = [FILE_STEMS.get(name, f"{name}map") for name in maps.values]
    targets = []
    if nifti:
        targets += [folder / "maps.npz"] + [folder / f"{s}{e}" for s in stems for e in (".nii.gz", ".json")]
    if png:
        targets += [folder / f"{s}.png" for s in stems]
    if source_files:
        targets += [folder / "dicom" / f"{s}.dcm" for s in stems]
    if labels is not None:
        if labels.shape != maps.mask.shape:
            raise MRFError(f"label map has shape {labels.shape}, the maps {maps.mask.shape}")
        targets.append(folder / "roi_stats.csv")
    for t in targets:
        check_writable_target(t, overwrite)
    steps = []
    if nifti:
        steps.append(lambda: export_nifti(maps, folder, units=units, overwrite=overwrite))
        steps.append(lambda: [export_npz(maps, folder / "maps.npz", overwrite=overwrite)])
    if png:
        steps.append(lambda: export_png(maps, folder, overwrite=overwrite))
    if source_files:
        steps.append(lambda: export_parametric_maps(maps, source_files, folder / "dicom", overwrite=overwrite))
    if labels is not None:
        rows = label_statistics(maps, labels, label_names or {})
        steps.append(lambda: [write_stats_csv(rows, maps, folder / "roi_stats.csv", overwrite=overwrite)])
    written: list[Path] = []
    created = [t for t in targets if not t.exists()]
    new_folders = [f for f in (folder / "dicom", folder) if not f.exists()]
    try:
        for step in steps:
            check_cancel(cancel)
            written += step()
        check_cancel(cancel)
    except BaseException:
        # All or nothing: a failed or cancelled export leaves none of the files it created.
        for path in created:
            path.unlink(missing_ok=True)
        for new in new_folders:
            if new.is_dir() and not any(new.iterdir()):
                new.rmdir()
        raise
    return written


def load_label_map(
    path: str | Path, shape: tuple[int, int, int], geometry: Geometry | None = None
) -> tuple[np.ndarray, dict[int, str]]:
    """A label map as a (Z, Y, X) int array with names.

    A NIfTI (x, y, z) takes names from a ``.json`` sidecar if present; a DICOM
    SEG (``.dcm``) is placed on the series ``geometry`` by frame position.
    """
    path = Path(path)
    if path.suffix.lower() == ".dcm":
        from mrfviewer.io.seg import read_seg_labels

        if geometry is None:
            raise MRFError("a DICOM SEG label map needs the geometry of a DICOM series")
        return read_seg_labels(path, geometry, shape)
    try:
        image: Any = nib.load(path)  # a NIfTI (spatial) image: it has dataobj
        data = np.asarray(image.dataobj)
    except FileNotFoundError:
        raise MRFError(f"label file not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable label file is a user-facing problem
        raise MRFError(f"cannot read label map {path}: {type(exc).__name__}") from None
    if data.ndim == 2:
        data = data[..., None]
    labels = np.transpose(data, (2, 1, 0))
    if labels.shape != shape:
        raise MRFError(f"label map {path.name} has shape {labels.shape[::-1]} (x, y, z); the series {shape[::-1]}")
    if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
        raise MRFError(f"label map {path.name} must hold integer labels")
    names: dict[int, str] = {}
    sidecar = Path(str(path).replace(".nii.gz", "").replace(".nii", "") + ".json")
    if sidecar.exists():
        try:
            names = {int(k): str(v) for k, v in json.loads(sidecar.read_text()).items()}
        except (ValueError, json.JSONDecodeError, AttributeError):
            raise MRFError(f"{sidecar.name}: expected a JSON object of label number -> name") from None
    return labels.astype(np.int32), names


def save_label_map(
    labels: np.ndarray, names: dict[int, str], path: str | Path, affine: np.ndarray, overwrite=False
) -> Path:
    """Write a (Z, Y, X) label map as NIfTI with a ``.json`` sidecar of names."""
    image = nib.Nifti1Image(np.ascontiguousarray(np.transpose(labels, (2, 1, 0))).astype(np.int16), affine)
    atomic_write(path, lambda p: nib.save(image, p), overwrite)
    sidecar = Path(str(path).replace(".nii.gz", "") + ".json")
    atomic_write_text(sidecar, json.dumps({str(k): v for k, v in names.items()}, indent=1), overwrite)
    return Path(path)
