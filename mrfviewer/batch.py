"""Cohort batch processing on dask.distributed: every MRF series under a folder, one task each.

The dictionary (DM) or network (NN) is scattered to the workers once and every
task receives a reference to it. A task reconstructs one series slab by slab
(:mod:`mrfviewer.volume`), exports its maps and ROI statistics into
``OUT/<subject>/<series>.partial`` and renames that folder to its final name
only when everything is written, with a ``done.json`` recording the settings.
A later run skips series whose ``done.json`` matches its settings (resume); a
failing series is reported in the summary and never stops the others.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report
from mrfviewer.errors import Cancelled, MRFError
from mrfviewer.io.atomic import atomic_write_text
from mrfviewer.io.names import safe_name
from mrfviewer.reconstruction import ReconstructionSettings
from mrfviewer.volume import SlabSource

log = logging.getLogger(__name__)

DONE = "done.json"
SUMMARY = "cohort_summary.csv"
#: Seconds to wait for a scheduler given by address before giving up.
SCHEDULER_TIMEOUT_S = 20
SUMMARY_COLUMNS = (
    "subject",
    "series",
    "status",
    "message",
    "method",
    "label",
    "map",
    "unit",
    "n_voxels",
    "mean",
    "sd",
    "median",
    "seconds",
    "output",
)


@dataclass(frozen=True)
class CohortItem:
    """One MRF series of a cohort: a DICOM series (folder + UID) or an HDF5 series file."""

    subject: str
    name: str
    path: Path
    series_uid: str | None = None
    labels: Path | None = None
    partner_folders: tuple[Path, ...] = ()  # folders of the phase partner series, if elsewhere

    def output_dir(self, root: Path) -> Path:
        return root / safe_name(self.subject, "subject") / safe_name(self.name, "series")


@dataclass
class ItemResult:
    """What became of one series: status ``done``, ``skipped`` (finished before) or ``failed``."""

    item: CohortItem
    status: str
    message: str = ""
    seconds: float = 0.0
    output: str = ""
    rows: list[dict] = field(default_factory=list)


def _is_h5_series(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return isinstance(f.get("series"), h5py.Dataset)
    except OSError:
        return False


def find_cohort(
    root: str | Path, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> list[CohortItem]:
    """Every MRF series under ``root``: DICOM series (with phase partners) and HDF5 series files.

    ``root`` may also be one HDF5 series file.
    The subject is the DICOM PatientID (else the patient name) or, for HDF5 files,
    the folder holding the file. A ``labels.nii.gz`` beside the images gives ROIs.
    """
    from mrfviewer.io.dicom_read import partner_series, scan_folder

    root = Path(root)
    if root.is_file():  # one HDF5 series
        if not _is_h5_series(root):
            raise MRFError(f"{root} is neither a folder nor an HDF5 MRF series")
        labels = root.parent / "labels.nii.gz"
        return [CohortItem(root.parent.name or root.stem, root.stem, root, None, labels if labels.exists() else None)]
    scan = scan_folder(root, progress=progress, cancel=cancel)
    items = []
    for info in scan.mrf_series():
        if info.components == {"P"}:
            continue  # phase partners travel with their magnitude series
        first = info.first
        number = f"{first.series_number}_" if first.series_number not in (None, -1) else ""
        labels = info.folder / "labels.nii.gz"
        # Partner folders outside the series folder (a scan of the series folder already covers its subfolders).
        partners = tuple(
            sorted({p.folder for p in partner_series(scan, info) if not p.folder.is_relative_to(info.folder)})
        )
        items.append(
            CohortItem(
                subject=first.patient_id or first.patient,
                name=f"{number}{first.series_description or info.uid}",
                path=info.folder,
                series_uid=info.uid,
                labels=labels if labels.exists() else None,
                partner_folders=partners,
            )
        )
    for path in sorted(root.rglob("*.h5")):
        if _is_h5_series(path):
            labels = path.parent / "labels.nii.gz"
            subject = path.parent.name if path.parent != root else path.stem
            items.append(CohortItem(subject, path.stem, path, None, labels if labels.exists() else None))
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


def _settings_key(settings: ReconstructionSettings, shared_identity: str, units: str) -> dict:
    return {"settings": asdict(settings), "shared": shared_identity, "units": units}


def _read_rows(csv_path: Path) -> list[dict]:
    if not csv_path.exists():
        return []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def open_item(item: CohortItem) -> tuple[SlabSource, np.ndarray | None, dict[int, str]]:
    """The series of ``item`` as a slab source, with its label map and names (None: no labels).

    Labels come from ``labels.nii.gz`` beside the images, else from the series itself (HDF5).
    """
    from mrfviewer.io.dicom_read import scan_folders
    from mrfviewer.io.export import load_label_map
    from mrfviewer.volume import open_dicom_source, open_h5_source

    if item.path.is_dir():
        scan = scan_folders([item.path, *item.partner_folders])
        source = open_dicom_source(item.path, None, item.series_uid, scan=scan)
    else:
        source = open_h5_source(item.path)
    if source.sequence is None:
        raise MRFError(f"{item.path} names no sequence (no mrf_sequence.json beside the images)")
    labels, names = source.labels, source.label_names
    if item.labels is not None:
        labels, names = load_label_map(item.labels, source.spatial_shape, source.geometry)
    return source, labels, names


def process_item(
    item: CohortItem,
    shared: object,
    output_root: str | Path,
    settings: ReconstructionSettings,
    units: str = "ms",
    redo: bool = False,
) -> ItemResult:
    """Reconstruct and export one series (runs on a dask worker); never raises for bad input."""
    from mrfviewer.io.export import export_all
    from mrfviewer.reconstruction import reconstruct_dm, reconstruct_nn

    start = time.perf_counter()
    final = item.output_dir(Path(output_root))
    identity = shared.key if settings.method == "dm" else shared.identity  # type: ignore[attr-defined]
    key = _settings_key(settings, identity, units)
    done_file = final / DONE
    try:
        if done_file.exists():
            previous = json.loads(done_file.read_text(encoding="utf-8"))
            if previous.get("key") == key and not redo:
                rows = _read_rows(final / "roi_stats.csv")
                return ItemResult(item, "skipped", "finished in an earlier run", 0.0, str(final), rows)
            if not redo:
                raise MRFError(f"{final} holds results of other settings; use --redo or another --output")
        elif final.exists():
            raise MRFError(f"{final} exists but is not a finished batch result; not replacing it")
        source, labels, names = open_item(item)
        if settings.method == "dm":
            maps = reconstruct_dm(source, shared, settings)  # type: ignore[arg-type]
        else:
            maps = reconstruct_nn(source, shared, settings)  # type: ignore[arg-type]
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run: ours to remove
        export_all(
            maps,
            partial,
            units=units,
            source_files=source.source_files or None,
            labels=labels,
            label_names=names,
        )
        seconds = time.perf_counter() - start
        record = {"key": key, "source": str(item.path), "seconds": seconds, "voxels": int(maps.mask.sum())}
        atomic_write_text(partial / DONE, json.dumps(record, indent=2))
        if final.exists():  # only with --redo: the old results go once the new ones are complete
            shutil.rmtree(final)
        os.replace(partial, final)
        rows = _read_rows(final / "roi_stats.csv")
        return ItemResult(item, "done", f"{int(maps.mask.sum())} voxels", seconds, str(final), rows)
    except MRFError as exc:
        return ItemResult(item, "failed", str(exc), time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - one broken series must not stop a cohort
        log.exception("series %s failed", item.path)
        return ItemResult(item, "failed", f"internal error: {type(exc).__name__}: {exc}", time.perf_counter() - start)


def summary_csv(results: list[ItemResult], method: str) -> str:
    """One row per subject, series, ROI and map; one row per series without ROIs or that failed."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        base = {
            "subject": r.item.subject,
            "series": r.item.name,
            "status": r.status,
            "message": r.message,
            "method": method,
            "seconds": f"{r.seconds:.2f}",
            "output": r.output,
        }
        if not r.rows:
            writer.writerow(base)
        for row in r.rows:
            writer.writerow(
                {**base, **{k: row.get(k, "") for k in ("label", "map", "unit", "n_voxels", "mean", "sd", "median")}}
            )
    return buffer.getvalue()


def _client(scheduler: str | None, n_workers: int | None):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise MRFError("batch processing needs dask.distributed: pip install 'mrfviewer[batch]'") from None

    if scheduler:
        try:
            return Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s"), None
        except (OSError, TimeoutError) as exc:
            raise MRFError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
    # One thread per worker process: dask sets OMP/MKL/OpenBLAS threads to 1 in its workers, so
    # N workers use N cores without oversubscription.
    workers = n_workers or os.cpu_count() or 1
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    return Client(cluster), cluster


def run_batch(
    items: list[CohortItem],
    shared: object,
    output: str | Path,
    settings: ReconstructionSettings,
    *,
    units: str = "ms",
    redo: bool = False,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    on_result: Callable[[ItemResult], None] | None = None,
) -> list[ItemResult]:
    """Process ``items`` on dask (a LocalCluster of ``n_workers`` processes, or ``scheduler``).

    ``shared`` is the :class:`~mrfviewer.dictionary.Dictionary` (DM) or the loaded
    network (NN); it is sent to the workers once. Writes ``OUT/cohort_summary.csv``.
    """
    settings.validate()
    output = Path(output)
    if not items:
        raise MRFError("no MRF series found in the cohort folder")
    check_cancel(cancel)
    client, cluster = _client(scheduler, n_workers)
    from distributed import as_completed

    results: list[ItemResult] = []
    try:
        shared_future = client.scatter(shared, broadcast=True)
        futures = [
            client.submit(process_item, item, shared_future, str(output), settings, units, redo, pure=False)
            for item in items
        ]
        report(progress, 0.0, f"{len(items)} series on {len(client.scheduler_info()['workers'])} worker(s)")
        pending = as_completed(futures)
        while not pending.is_empty():
            if cancel is not None and cancel.cancelled:
                client.cancel(futures)
                break
            ready = pending.next_batch(block=False)
            if not ready:
                time.sleep(0.1)  # poll so that a cancel is seen within 0.1 s
                continue
            for future in ready:
                result = future.result()
                results.append(result)
                if on_result is not None:
                    on_result(result)
                done = f"{result.item.subject}/{result.item.name}: {result.status}"
                report(progress, len(results) / len(items), done)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    if cancel is not None and cancel.cancelled:
        _remove_partials(output)
        raise Cancelled("cancelled by the user")
    results.sort(key=lambda r: (r.item.subject, r.item.name))
    atomic_write_text(output / SUMMARY, summary_csv(results, settings.method), overwrite=True)
    return results


def _remove_partials(output: Path) -> None:
    """Folders of series interrupted by a cancel (their workers are gone once the cluster closed)."""
    for partial in output.glob("*/*.partial"):
        shutil.rmtree(partial, ignore_errors=True)
