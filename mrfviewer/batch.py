"""Cohort batch processing on dask.distributed: every MRF series under a folder, one task each.

Series are grouped by what their estimator must fit, (sequence, signal type): each group
gets one dictionary (DM) or one checked network (NN), built in the driver and scattered
to the workers once; every task receives a reference to its group's estimator. A task
opens, reconstructs and exports one series through :mod:`mrfviewer.pipeline` into
``OUT/<subject>/<series>.partial`` and renames that folder to its final name only when
everything is written, with a ``done.json`` recording the settings. A later run skips
series whose ``done.json`` matches its settings (resume); a failing series (or a group
whose estimator cannot be built) is reported in the summary and never stops the others.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mrfviewer import pipeline, schemas
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report, scaled
from mrfviewer.errors import Cancelled, MRFError
from mrfviewer.io.atomic import atomic_write_text
from mrfviewer.pipeline import CohortItem, Estimator, EstimatorChoice, ReconstructionSettings
from mrfviewer.sequence import Sequence

log = logging.getLogger(__name__)

DONE = "done.json"
SUMMARY = "cohort_summary.csv"
#: Seconds to wait for a scheduler given by address before giving up.
SCHEDULER_TIMEOUT_S = 20
SUMMARY_COLUMNS = (
    "subject",
    "series",
    "input",
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


@dataclass
class ItemResult:
    """What became of one series: status ``done``, ``skipped`` (finished before) or ``failed``."""

    item: CohortItem
    status: str
    message: str = ""
    seconds: float = 0.0
    output: str = ""
    rows: list[dict] = field(default_factory=list)


def _settings_key(settings: ReconstructionSettings, identity: str, units: str) -> dict:
    return {"settings": asdict(settings), "shared": identity, "units": units}


def _read_rows(csv_path: Path) -> list[dict]:
    if not csv_path.exists():
        return []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _done_record(path: Path) -> dict:
    """A ``done.json`` written by an earlier run (validated); a damaged one is not ours to trust."""
    try:
        raw = schemas.read_json(path, "batch record", max_bytes=2**20)
        return schemas.validate(schemas.DoneRecord, raw, str(path)).model_dump()
    except MRFError:
        raise MRFError(
            f"{path.parent} holds a damaged {DONE}; not replacing it (remove it, or another --output)"
        ) from None


def _replace_folder(new: Path, final: Path) -> None:
    """Put ``new`` in the place of ``final``; the old results go only once the new ones are in place.

    A cancel or kill between the steps leaves the old results in ``<final>.previous``,
    which the next run puts back (:func:`_restore`).
    """
    previous = final.with_name(final.name + ".previous")
    if final.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(final, previous)
    os.replace(new, final)
    shutil.rmtree(previous, ignore_errors=True)


def _restore(final: Path) -> None:
    """Results of a run killed while replacing them come back (see :func:`_replace_folder`)."""
    previous = final.with_name(final.name + ".previous")
    if previous.is_dir() and not final.exists():
        os.replace(previous, final)


def process_item(
    item: CohortItem,
    estimator: Estimator,
    output_root: str | Path,
    settings: ReconstructionSettings,
    units: str = "ms",
    redo: bool = False,
    sequence: Sequence | None = None,
    allow_external: bool = False,
    layout: str = "flat",
) -> ItemResult:
    """Reconstruct and export one series (runs on a dask worker); never raises for bad input.

    ``layout`` "bids": the series is the session folder ``OUT/sub-<s>/ses-<t>`` of a BIDS
    derivatives dataset (see :func:`mrfviewer.pipeline.bids_series_layout`).
    """
    start = time.perf_counter()
    place = pipeline.bids_series_layout(item) if layout == "bids" else None
    final = Path(output_root) / place.folder if place is not None else item.output_dir(Path(output_root))
    csv_file = final / (place.extra if place is not None else Path(".")) / "roi_stats.csv"
    key = _settings_key(settings, estimator.identity, units)
    done_file = final / DONE
    try:
        _restore(final)
        if done_file.exists():
            previous = _done_record(done_file)
            finished = previous.get("key") == key and not previous.get("failed_formats")
            if finished and not redo:
                rows = _read_rows(csv_file)
                return ItemResult(item, "skipped", "finished in an earlier run", 0.0, str(final), rows)
            if previous.get("key") != key and not redo:
                raise MRFError(f"{final} holds results of other settings; use --redo or another --output")
        elif final.exists():
            raise MRFError(f"{final} exists but is not a finished batch result; not replacing it")
        source = pipeline.open_item(item, sequence, allow_external=allow_external)
        maps = pipeline.run(source, estimator, settings)
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run: ours to remove
        if place is not None:
            place = pipeline.bids_series_layout(item, source)  # with the source's field strength
        exported = pipeline.export(maps, partial, input=source, units=units, layout=place or "flat")
        seconds = time.perf_counter() - start
        record = {
            "key": key,
            "source": str(item.path),
            "seconds": seconds,
            "voxels": int(maps.mask.sum()),
            "failed_formats": exported.failed,
        }
        atomic_write_text(partial / DONE, json.dumps(record, indent=2))
        _replace_folder(partial, final)  # with --redo or after a partial export, the old results go now
        rows = _read_rows(csv_file)
        if exported.failed:
            return ItemResult(item, "failed", exported.failure_text(), seconds, str(final), rows)
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
            "input": r.item.relative or str(r.item.path),
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
    choice: EstimatorChoice,
    output: str | Path,
    settings: ReconstructionSettings,
    *,
    sequence: Sequence | None = None,
    units: str = "ms",
    layout: str = "flat",
    redo: bool = False,
    overwrite: bool = False,
    allow_external: bool = False,
    scheduler: str | None = None,
    n_workers: int | None = None,
    cache: pipeline.EstimatorCache | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    on_result: Callable[[ItemResult], None] | None = None,
) -> list[ItemResult]:
    """Process ``items`` on dask (a LocalCluster of ``n_workers`` processes, or ``scheduler``).

    One estimator of ``choice`` per (sequence, signal) group is built here (``sequence``
    overrides every series' own) and sent to the workers once. Writes
    ``OUT/cohort_summary.csv`` (one written by another program is replaced only with
    ``overwrite``). ``allow_external`` lets HDF5 series take data from other files.
    """
    settings.validate()
    output = Path(output)
    if not items:
        raise MRFError("no MRF series found in the cohort folder")
    _check_summary(output / SUMMARY, overwrite)
    check_cancel(cancel)
    # Every series is opened (headers, sequence, label map) before any dictionary is built.
    groups, unknown = pipeline.preflight(
        items, sequence, allow_external=allow_external, progress=scaled(progress, 0.0, 0.1), cancel=cancel
    )
    results = [ItemResult(item, "failed", message) for item, message in unknown]
    estimators: dict[tuple[str, str], Estimator] = {}
    for i, (key, (seq, opened)) in enumerate(groups.items()):
        check_cancel(cancel)
        members = [item for item, _ in opened]
        step = scaled(progress, 0.1 + 0.2 * i / len(groups), 0.1 + 0.2 * (i + 1) / len(groups))
        report(step, 0.0, f"estimator for sequence '{seq.name}' ({key[1]}, {len(members)} series)")
        try:
            estimators[key] = pipeline.make_estimator(choice, seq, key[1], cache=cache, progress=step, cancel=cancel)
        except MRFError as exc:
            results += [ItemResult(item, "failed", str(exc)) for item in members]
    for result in results:
        if on_result is not None:
            on_result(result)
    todo = [(key, item) for key, (_, opened) in groups.items() if key in estimators for item, _ in opened]
    if todo:
        if layout == "bids":
            todo, clashes = _distinct_places(todo)
            results += clashes
            pipeline.write_bids_dataset(output)
        options = (settings, units, redo, sequence, allow_external, layout)
        results += _run_on_dask(todo, estimators, output, options, scheduler, n_workers, progress, cancel, on_result)
    results.sort(key=lambda r: (r.item.subject, r.item.name))
    atomic_write_text(output / SUMMARY, summary_csv(results, settings.method), overwrite=True)
    return results


def _distinct_places(todo: list) -> tuple[list, list[ItemResult]]:  # noqa: ANN001 - (key, item) pairs
    """Series of a BIDS batch that would share a subject and session folder fail (the first one is kept)."""
    seen: dict[Path, CohortItem] = {}
    kept, clashes = [], []
    for key, item in todo:
        folder = pipeline.bids_series_layout(item).folder
        if folder in seen:
            clashes.append(ItemResult(item, "failed", f"same BIDS folder {folder} as {seen[folder].name}"))
        else:
            seen[folder] = item
            kept.append((key, item))
    return kept, clashes


def _check_summary(path: Path, overwrite: bool) -> None:
    """A summary of an earlier batch run into this folder is ours to replace; another file is not."""
    if not path.exists() or overwrite:
        return
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            header = fh.readline().strip()
    except (OSError, UnicodeDecodeError):
        header = ""
    if header != ",".join(SUMMARY_COLUMNS):
        raise MRFError(f"{path} exists and was not written by mrfviewer batch; not replacing it (--overwrite)")


def _run_on_dask(
    todo, estimators, output, options, scheduler, n_workers, progress, cancel, on_result
) -> list[ItemResult]:  # noqa: ANN001 - private, see run_batch
    client, cluster = _client(scheduler, n_workers)
    from distributed import as_completed

    results: list[ItemResult] = []
    try:
        shared = {key: client.scatter(est, broadcast=True) for key, est in estimators.items()}
        futures = [
            client.submit(process_item, item, shared[key], str(output), *options, pure=False) for key, item in todo
        ]
        report(progress, 0.3, f"{len(todo)} series on {len(client.scheduler_info()['workers'])} worker(s)")
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
                report(progress, 0.3 + 0.7 * len(results) / len(todo), done)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    if cancel is not None and cancel.cancelled:
        _remove_partials(output)
        raise Cancelled("cancelled by the user")
    return results


def _remove_partials(output: Path) -> None:
    """Folders of series interrupted by a cancel (their workers are gone once the cluster closed)."""
    for partial in output.glob("*/*.partial"):
        shutil.rmtree(partial, ignore_errors=True)
