"""Map exports: NIfTI with JSON sidecars and a compressed numpy archive, all atomic."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from mrfviewer import __version__
from mrfviewer.errors import MRFError
from mrfviewer.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text, check_writable_target
from mrfviewer.maps import FILE_STEMS, ParameterMaps

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
        written.append(atomic_write(folder / f"{stem}.nii.gz", lambda p, im=image: nib.save(im, p), overwrite))
        text = json.dumps(_sidecar(maps, name, unit), indent=1) + "\n"
        written.append(atomic_write_text(folder / f"{stem}.json", text, overwrite))
    return written


def export_npz(maps: ParameterMaps, path: str | Path, overwrite: bool = False) -> Path:
    """All maps, the mask and (for DM) the atom indices in one compressed ``.npz``."""
    arrays = {name: values for name, values in maps.values.items()}
    arrays["mask"] = maps.mask
    if maps.atom is not None:
        arrays["atom"] = maps.atom
    arrays["provenance"] = np.array(json.dumps(_sidecar(maps, "all", "see per-map units")))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)


def export_all(maps: ParameterMaps, folder: str | Path, units: str = "ms", overwrite: bool = False) -> list[Path]:
    """NIfTI maps with sidecars plus ``maps.npz``: what ``mrfviewer reconstruct`` writes."""
    folder = Path(folder)
    check_writable_target(folder / "maps.npz", overwrite)
    written = export_nifti(maps, folder, units=units, overwrite=overwrite)
    written.append(export_npz(maps, folder / "maps.npz", overwrite=overwrite))
    return written
