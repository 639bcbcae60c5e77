"""DM versus NN on measured data: the in vivo part of the paper's comparison, on the user's series.

For each series (one series, or every series of a cohort folder) both methods reconstruct
the maps. Per ROI (``labels.nii.gz`` beside the images or ``--labels``, else the labels
stored in an HDF5 series, else all tissue voxels as one ROI) the report gives the mean and
SD of T1, T2 and T1rho for each method, the NN - DM difference and, where the ROI is named
like a knee tissue, that tissue's nominal value. Agreement of NN with DM: Bland-Altman over
the ROI means of all series and over all ROI voxels; difference maps; timing. Measured data
have no ground truth: this report compares the two methods with each other.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mrfviewer import __version__, pipeline
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report, scaled
from mrfviewer.errors import MRFError
from mrfviewer.io.atomic import atomic_write_text, staged_folder
from mrfviewer.metrics import bland_altman
from mrfviewer.phantoms import knee_tissue
from mrfviewer.pipeline import CohortItem, DictionaryMatching, EstimatorChoice, Input, NeuralNetwork
from mrfviewer.reporting import bland_altman_figure, csv_text, difference_maps_figure, md_table
from mrfviewer.settings import EVALUATION_PRECISION, ReconstructionSettings

PARAMS = ("T1", "T2", "T1rho")
TISSUE_ROI = "tissue (mask)"
MAX_LIMIT_PCT = 50.0  # ROIs with more DM voxels at a dictionary bound are left out of the agreement


@dataclass
class SeriesComparison:
    """DM and NN on one series: ROI rows, paired voxel values, timing; or why it failed."""

    subject: str
    name: str
    path: str
    status: str  # "done" or "failed"
    message: str = ""
    rows: list[dict] = field(default_factory=list)
    voxels: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # param -> (NN, DM)
    dm_seconds: float = float("nan")
    nn_seconds: float = float("nan")
    n_voxels: int = 0
    figure: str = ""


def compare_source(
    source: Input,
    subject: str,
    name: str,
    dm: DictionaryMatching,
    nn: NeuralNetwork,
    output: Path,
    index: int = 0,
    memory_mb: float = 64,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    path: str = "",
) -> SeriesComparison:
    """Reconstruct a series with both methods and compare them per ROI (its labels, else all
    tissue); writes its difference-map figure into ``output``. Bad input -> ``failed``."""
    try:
        t0 = time.perf_counter()
        dm_settings = ReconstructionSettings(memory_mb=memory_mb)
        dm_maps = pipeline.run(source, dm, dm_settings, progress=scaled(progress, 0.0, 0.8), cancel=cancel)
        t1 = time.perf_counter()
        nn_settings = ReconstructionSettings(method="nn", memory_mb=memory_mb, nn_precision=EVALUATION_PRECISION)
        nn_maps = pipeline.run(source, nn, nn_settings, progress=scaled(progress, 0.8, 1.0), cancel=cancel)
        t2 = time.perf_counter()
    except MRFError as exc:
        return SeriesComparison(subject, name, path, "failed", str(exc))
    if source.labels is None or not source.labels.labels():
        labels, names = dm_maps.mask.astype(np.int32), {1: TISSUE_ROI}
    else:
        labels, names = source.labels.values, dict(source.labels.names)
    at_limit = dm_maps.at_range_limit()
    base = {"subject": subject, "series": name}
    rows = []
    dm_stats = pipeline.label_statistics(dm_maps, labels, names, list(PARAMS))
    nn_stats = pipeline.label_statistics(nn_maps, labels, names, list(PARAMS))
    limit_pct = {
        names.get(label, f"label {label}"): 100 * float(at_limit[labels == label].mean())
        for label in np.unique(labels[labels > 0])
    }
    for d, n in zip(dm_stats, nn_stats, strict=True):
        tissue = knee_tissue(d.label)
        rows.append(
            {
                **base,
                "roi": d.label,
                "param": d.map,
                "n_voxels": min(d.n_voxels, n.n_voxels),
                "DM_mean": d.mean,
                "DM_sd": d.sd,
                "NN_mean": n.mean,
                "NN_sd": n.sd,
                "NN_minus_DM_pct": 100 * (n.mean / d.mean - 1) if d.mean else float("nan"),
                "DM_at_range_limit_pct": limit_pct[d.label],
                "nominal": tissue.value(d.map) if tissue is not None else "",
            }
        )
    in_rois = (labels > 0) & ~at_limit
    voxels = {p: (nn_maps.values[p][in_rois], dm_maps.values[p][in_rois]) for p in PARAMS}
    z = int(np.argmax(in_rois.reshape(in_rois.shape[0], -1).sum(axis=1)))  # the slice with most ROI voxels
    figure = f"difference_maps_{index:03d}.png"
    output.mkdir(parents=True, exist_ok=True)
    difference_maps_figure(
        {p: dm_maps.values[p][z] for p in PARAMS}, {p: nn_maps.values[p][z] for p in PARAMS}, PARAMS, output / figure
    )
    n_vox = int(dm_maps.mask.sum())
    return SeriesComparison(subject, name, path, "done", "", rows, voxels, t1 - t0, t2 - t1, n_vox, figure)


def _agreement(comparisons: list[SeriesComparison], output: Path) -> list[dict]:
    """Bland-Altman of NN against DM over ROI means (all series) and over ROI voxels, with figures."""
    done = [c for c in comparisons if c.status == "done"]
    rows = []
    for level, what in (("ROI means", "ROI means of all series"), ("voxels", "all ROI voxels")):
        pairs = {}
        for p in PARAMS:
            if level == "ROI means":
                mine = [
                    r for c in done for r in c.rows if r["param"] == p and r["DM_at_range_limit_pct"] <= MAX_LIMIT_PCT
                ]
                a = np.array([r["NN_mean"] for r in mine], dtype=float)
                b = np.array([r["DM_mean"] for r in mine], dtype=float)
            else:
                a = np.concatenate([c.voxels[p][0] for c in done])
                b = np.concatenate([c.voxels[p][1] for c in done])
            ba = bland_altman(a, b)
            pairs[p] = (a, b, ba)
            rows.append({"level": level, "param": p, **asdict(ba)})
        if all(ba.n >= 3 for _, _, ba in pairs.values()):
            name = "bland_altman_roi_means.png" if level == "ROI means" else "bland_altman_voxels.png"
            bland_altman_figure(pairs, output / name, what)
    return rows


def run_data_evaluation(
    output: Path,
    items: list[CohortItem],
    dm_choice: EstimatorChoice,
    nn_choice: EstimatorChoice,
    *,
    sequence: object = None,
    memory_mb: float = 64,
    overwrite: bool = False,
    cache: pipeline.EstimatorCache | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[Path, list[SeriesComparison]]:
    """Compare DM and NN on ``items`` and write ``report.md`` with CSV tables and PNG figures
    into ``output``, all or nothing (a failure or cancel leaves none of its files).

    Series are grouped by (sequence, signal type); each group gets its own dictionary and a
    network checked against it. A group whose estimators cannot be built fails as a row.
    """
    if not items:
        raise MRFError("no MRF series to evaluate")
    # Every series is opened (headers, sequence, label map placed) before any dictionary is built.
    groups, unknown = pipeline.preflight(items, sequence, progress=scaled(progress, 0.0, 0.05), cancel=cancel)  # type: ignore[arg-type]
    comparisons = [SeriesComparison(i.subject, i.name, str(i.path), "failed", m) for i, m in unknown]
    estimators: dict[tuple[str, str], tuple[DictionaryMatching, NeuralNetwork]] = {}
    for g, (key, (seq, opened)) in enumerate(groups.items()):
        members = [item for item, _ in opened]
        step = scaled(progress, 0.05 + 0.35 * g / len(groups), 0.05 + 0.35 * (g + 1) / len(groups))
        try:
            dm = pipeline.make_estimator(dm_choice, seq, key[1], cache=cache, progress=step, cancel=cancel)
            nn = pipeline.make_estimator(nn_choice, seq, key[1], cache=cache, cancel=cancel)
        except MRFError as exc:
            comparisons += [SeriesComparison(i.subject, i.name, str(i.path), "failed", str(exc)) for i in members]
            continue
        if not isinstance(dm, DictionaryMatching) or not isinstance(nn, NeuralNetwork):
            raise MRFError("the comparison needs a DM and an NN estimator")
        estimators[key] = (dm, nn)
    todo = [(key, item, source) for key, (_, opened) in groups.items() if key in estimators for item, source in opened]
    with staged_folder(output, overwrite) as stage:
        for i, (key, item, source) in enumerate(todo):
            check_cancel(cancel)
            lo, hi = 0.4 + 0.55 * i / len(todo), 0.4 + 0.55 * (i + 1) / len(todo)
            report(progress, lo, f"series {i + 1} of {len(todo)}: {item.subject} / {item.name}")
            dm, nn = estimators[key]
            part = scaled(progress, lo, hi)
            comparisons.append(
                compare_source(
                    source, item.subject, item.name, dm, nn, stage, i, memory_mb, part, cancel, str(item.path)
                )
            )
        report(progress, 0.95, "agreement and report")
        reference = next(iter(estimators.values()), None)
        write_data_report(stage, comparisons, *(reference or (None, None)))
    report(progress, 1.0, "report written")
    return output / "report.md", comparisons


def write_data_report(
    output: Path,
    comparisons: list[SeriesComparison],
    dm: DictionaryMatching | None,
    nn: NeuralNetwork | None,
) -> Path:
    """Agreement figures, ``series.csv``, ``rois.csv``, ``agreement.csv`` and ``report.md`` in ``output``."""
    done = [c for c in comparisons if c.status == "done"]
    if not done or dm is None or nn is None:
        reasons = "; ".join(f"{c.path}: {c.message}" for c in comparisons)
        raise MRFError(f"no series could be evaluated ({reasons})")
    output.mkdir(parents=True, exist_ok=True)
    roi_rows = [r for c in done for r in c.rows]
    agreement = _agreement(comparisons, output)
    timing = [
        {
            "subject": c.subject,
            "series": c.name,
            "status": c.status,
            "message": c.message,
            "voxels": c.n_voxels,
            "dm_seconds": c.dm_seconds,
            "nn_seconds": c.nn_seconds,
        }
        for c in comparisons
    ]
    atomic_write_text(output / "rois.csv", csv_text(roi_rows), overwrite=True)
    atomic_write_text(output / "agreement.csv", csv_text(agreement), overwrite=True)
    atomic_write_text(output / "series.csv", csv_text(timing), overwrite=True)
    text = _report_text(comparisons, roi_rows, agreement, timing, dm, nn, output)
    return atomic_write_text(output / "report.md", text, overwrite=True)


def _report_text(comparisons, roi_rows, agreement, timing, dm, nn, output: Path) -> str:  # noqa: ANN001
    dictionary, model = dm.dictionary, nn.model
    seq, meta = dictionary.sequence, model.metadata
    done = [c for c in comparisons if c.status == "done"]
    figures = "\n\n".join(f"**{c.subject} / {c.name}**\n\n![difference maps]({c.figure})" for c in done)
    plots = "\n\n".join(
        f"![Bland-Altman, {name}]({name})"
        for name in ("bland_altman_roi_means.png", "bland_altman_voxels.png")
        if (output / name).exists()
    )
    roi_columns = ["subject", "series", "roi", "param", "n_voxels", "DM_mean", "DM_sd", "NN_mean", "NN_sd"]
    left_out = sorted({f"{r['subject']} / {r['roi']}" for r in roi_rows if r["DM_at_range_limit_pct"] > MAX_LIMIT_PCT})
    excluded = "left out here: " + ", ".join(left_out) if left_out else "none here"
    return f"""# DM versus NN on measured data

{len(done)} of {len(comparisons)} series evaluated. Measured data have no ground truth: the
tables compare the two methods with each other. "nominal" is the value our knee phantom
uses for a tissue of the ROI's name (literature values, sources in `mrfviewer/phantoms.py`), for
orientation only. ROIs: `labels.nii.gz` beside the images (or `--labels`), else the labels
stored in the series, else all tissue voxels ("{TISSUE_ROI}").

* software: mrfviewer {__version__}
* sequence: `{seq.name}` (hash {seq.hash}, {seq.n_timepoints} time points)
* dictionary: {dictionary.describe()} (key {dictionary.key}); matching with sub-grid refinement
* network: {model.identity}, trained on `{meta["sequence_name"]}`, SVD rank {meta["svd_rank"]}; \
inference in {EVALUATION_PRECISION}

## 1. Series

{md_table(timing, ["subject", "series", "status", "message", "voxels", "dm_seconds", "nn_seconds"])}

## 2. ROI means (ms) per series: DM and NN

{md_table(roi_rows, [*roi_columns, "NN_minus_DM_pct", "DM_at_range_limit_pct", "nominal"])}

## 3. Agreement of NN with DM (ms)

Bland-Altman: mean difference NN - DM and 95 % limits of agreement, over the ROI means of
all series and over all voxels of the ROIs. Where DM sits at a bound of the dictionary
(T1, T2 or T1rho outside its ranges: the value is clipped, not measured; NN extrapolates)
the methods cannot agree: such voxels are left out, and so are ROIs with more than
{MAX_LIMIT_PCT:g} % of them ({excluded}).

{md_table(agreement, ["level", "param", "n", "mean_difference", "lower", "upper"])}

{plots}

## 4. Difference maps (the slice with the most ROI voxels of each series)

{figures}

Tables as CSV: `series.csv`, `rois.csv`, `agreement.csv`.
"""


def with_labels(items: list[CohortItem], labels: Path | None) -> list[CohortItem]:
    """``items`` with an explicit label map (only for a single series)."""
    if labels is None:
        return items
    if len(items) != 1:
        raise MRFError(f"--labels names one label map, but the data hold {len(items)} series")
    if not labels.exists():
        raise MRFError(f"label map not found: {labels}")
    return [dataclasses.replace(items[0], labels=labels)]
