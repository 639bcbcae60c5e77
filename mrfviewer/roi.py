"""ROI statistics of parameter maps (numbers for tables and CSV exports)."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrfviewer.io.atomic import atomic_write_text
from mrfviewer.maps import ParameterMaps

CSV_COLUMNS = (
    "label",
    "map",
    "unit",
    "n_voxels",
    "n_excluded",
    "mean",
    "sd",
    "median",
    "iqr",
    "min",
    "max",
    "series_uid",
    "slice",
    "method",
    "n_at_range_limit",
)


@dataclass
class RoiStats:
    """Statistics of one map inside one ROI; SD uses ddof = 1."""

    label: str
    map: str
    unit: str
    n_voxels: int
    n_excluded: int
    mean: float
    sd: float
    median: float
    iqr: float
    min: float
    max: float
    #: Voxels whose value sits at or beyond the estimator's range: clipped (DM) or extrapolated (NN).
    n_at_range_limit: int = 0


def roi_statistics(values: np.ndarray, roi: np.ndarray, label: str, map_name: str, unit: str) -> RoiStats:
    """Statistics of ``values`` inside the boolean mask ``roi`` (non-finite voxels are excluded)."""
    inside = values[roi]
    finite = inside[np.isfinite(inside)]
    n, excluded = int(finite.size), int(inside.size - finite.size)
    if n == 0:
        nan = float("nan")
        return RoiStats(label, map_name, unit, 0, excluded, nan, nan, nan, nan, nan, nan)
    q1, median, q3 = np.percentile(finite, [25, 50, 75])
    sd = float(np.std(finite, ddof=1)) if n > 1 else float("nan")
    return RoiStats(
        label,
        map_name,
        unit,
        n,
        excluded,
        float(finite.mean()),
        sd,
        float(median),
        float(q3 - q1),
        float(finite.min()),
        float(finite.max()),
    )


def label_statistics(
    maps: ParameterMaps, labels: np.ndarray, label_names: dict[int, str], map_names: list[str] | None = None
) -> list[RoiStats]:
    """Statistics per label (all slices together) and map, with the voxels at a range limit counted."""
    names = map_names or [m for m in ("T1", "T2", "T1rho", "B1", "PD") if m in maps.values]
    limits = {m: maps.at_range_limit((m,)) for m in names}
    rows: list[RoiStats] = []
    for label in sorted(int(v) for v in np.unique(labels) if v != 0):
        roi = labels == label
        name = label_names.get(label, f"label {label}")
        for m in names:
            stats = roi_statistics(maps.values[m], roi, name, m, maps.unit(m))
            rows.append(dataclasses.replace(stats, n_at_range_limit=int(np.count_nonzero(limits[m] & roi))))
    return rows


def stats_to_csv(rows: list[RoiStats], maps: ParameterMaps, slice_text: str | Sequence[str] = "all") -> str:
    """CSV text with the columns of :data:`CSV_COLUMNS`; ``slice_text`` for all rows or one per row."""
    scopes = [slice_text] * len(rows) if isinstance(slice_text, str) else list(slice_text)
    if len(scopes) != len(rows):
        raise ValueError("one slice text per row")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r, scope in zip(rows, scopes, strict=True):
        writer.writerow(
            [r.label, r.map, r.unit, r.n_voxels, r.n_excluded]
            + [f"{v:.6g}" for v in (r.mean, r.sd, r.median, r.iqr, r.min, r.max)]
            + [maps.series_uid, scope, maps.method, r.n_at_range_limit]
        )
    return buffer.getvalue()


def write_stats_csv(
    rows: list[RoiStats], maps: ParameterMaps, path: str | Path, overwrite: bool = False, slice_text: str = "all"
) -> Path:
    """Write ROI statistics as CSV, atomically."""
    return atomic_write_text(path, stats_to_csv(rows, maps, slice_text), overwrite=overwrite)
