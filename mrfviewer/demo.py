"""The bundled demo: a digital knee and the NIST phantom as DICOM, reconstructed headless.

The demo data are generated on first use by our own simulator (nothing large is
committed) into the user data folder (``MRFVIEWER_DATA_DIR`` or platformdirs):
knee (2 slices) and NIST/ISMRM T2 array (1 slice), 128 x 128, SNR 50, each a
DICOM magnitude + phase series with the sequence sidecar and a label map. A
``.complete`` marker is written last, so an interrupted generation is redone.
:func:`run_demo` then reconstructs both through :mod:`mrfviewer.pipeline` by
dictionary matching and by the shipped network, writes maps, PNGs, Parametric Maps
and ROI CSVs, and a summary of the ROI means of both methods against the truth
(``summary.csv`` and ``summary.md``), with tissues outside the estimators' ranges flagged.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from mrfviewer import pipeline
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, prefixed, report, scaled
from mrfviewer.errors import MRFError
from mrfviewer.io.atomic import atomic_write_text, check_writable_target
from mrfviewer.io.dicom_write import write_mrf_dicom
from mrfviewer.phantoms import Phantom, make_phantom
from mrfviewer.reporting import csv_text, md_table
from mrfviewer.resources import default_sequence_path
from mrfviewer.sequence import load_sequence
from mrfviewer.synthesis import synthesize_series

DEMO_SIZE = 128
DEMO_SNR = 50.0
DEMO_CASES = (("knee", 2), ("nist", 1))
METHODS = ("dm", "nn")
SUMMARY_FILES = ("summary.csv", "summary.md")
PARAMS = ("T1", "T2", "T1rho")


def data_dir() -> Path:
    """The user data folder (``MRFVIEWER_DATA_DIR`` overrides platformdirs)."""
    env = os.environ.get("MRFVIEWER_DATA_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("mrfviewer"))


def demo_dir() -> Path:
    return data_dir() / "demo"


def demo_cases() -> dict[str, Path]:
    """Name -> folder of every demo series (they may not exist yet)."""
    return {name: demo_dir() / name for name, _ in DEMO_CASES}


def demo_ready() -> bool:
    """Whether the demo data exist (no generation needed)."""
    return all((folder / ".complete").exists() for folder in demo_cases().values())


def ensure_demo_data(
    *, size: int = DEMO_SIZE, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> dict[str, Path]:
    """The demo DICOM folders, generated on first use; returns name -> folder."""
    sequence = load_sequence(default_sequence_path())
    folders = {}
    for i, (name, n_slices) in enumerate(DEMO_CASES):
        folder = demo_dir() / name
        folders[name] = folder
        if (folder / ".complete").exists():
            continue
        if folder.exists():
            shutil.rmtree(folder)  # an interrupted earlier generation
        step = scaled(progress, i / len(DEMO_CASES), (i + 1) / len(DEMO_CASES))
        phantom = make_phantom(name, (size, size), n_slices)
        series = synthesize_series(
            phantom, sequence, snr=DEMO_SNR, seed=i, progress=scaled(step, 0, 0.5), cancel=cancel
        )
        write_mrf_dicom(
            series, folder, description=f"MRF demo {phantom.name}", progress=scaled(step, 0.5, 1.0), cancel=cancel
        )
        affine = series.geometry.affine_ras(n_slices)
        pipeline.write_label_map(phantom.labels, phantom.label_names, folder / "labels.nii.gz", affine, overwrite=True)
        atomic_write_text(folder / ".complete", "demo data complete\n", overwrite=True)
    report(progress, 1.0, "demo data ready")
    return folders


def _methods() -> list[str]:
    return ["dm"] + (["nn"] if pipeline.EstimatorChoice("nn").model_path().joinpath("model.json").exists() else [])


def check_demo_output(output: Path, overwrite: bool) -> None:
    """Refuse an output that would replace files, before any of the demo's work."""
    for name, _ in DEMO_CASES:
        for method in _methods():
            outputs = pipeline.planned_outputs(pipeline.EstimatorChoice(method))
            pipeline.check_output(output / name / method, pipeline.FORMATS, outputs, overwrite=overwrite)
    for file in SUMMARY_FILES:
        check_writable_target(output / file, overwrite)


def _summary_rows(name: str, phantom: Phantom, input: pipeline.Input, results: dict) -> list[dict]:
    """ROI means of each method against the phantom's truth, per tissue and parameter."""
    assert input.labels is not None
    rows = []
    for label, tissue in phantom.nominal.items():
        roi = input.labels.values == label
        if not roi.any():
            continue
        for p, truth in (("T1", phantom.t1_ms), ("T2", phantom.t2_ms), ("T1rho", phantom.t1rho_ms)):
            true = float(truth[roi].mean())
            row = {"case": name, "tissue": tissue.name, "param": p, "truth_ms": round(true, 2)}
            flags = []
            for method, maps in results.items():
                mean = float(np.nanmean(maps.values[p][roi])) if np.isfinite(maps.values[p][roi]).any() else np.nan
                row[f"{method}_mean_ms"] = round(mean, 2)
                row[f"{method}_error_pct"] = round(100 * (mean / true - 1), 2)
                lo, hi = maps.provenance.ranges.get(p, (-np.inf, np.inf))
                clipped = 100 * float(maps.at_range_limit((p,))[roi].mean())
                if not lo <= true <= hi:
                    flags.append(f"{method.upper()}: truth outside {lo:g}-{hi:g} ms")
                elif clipped > 50:
                    flags.append(f"{method.upper()}: {clipped:.0f} % of voxels at or beyond {lo:g} or {hi:g} ms")
            row["flag"] = "; ".join(flags)
            rows.append(row)
    return rows


def _summary_markdown(rows: list[dict], methods: list[str], output: Path) -> str:
    columns = ["case", "tissue", "param", "truth_ms"]
    for m in methods:
        columns += [f"{m}_mean_ms", f"{m}_error_pct"]
    flagged = sum(1 for r in rows if r["flag"])
    shown = [{k: (f"{v:.1f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    return f"""# mrfviewer demo: ROI means against the truth

Digital phantoms simulated by mrfviewer at SNR {DEMO_SNR:g} (the knee and the NIST/ISMRM T2 array),
reconstructed by {" and ".join(m.upper() for m in methods)}; maps and ROI CSVs are in
`{output}/<case>/<method>/`. Errors are ROI means against the phantom's values in percent.
"flag" marks tissues whose truth lies outside the dictionary or training ranges (the
estimate is clipped or extrapolated there, not measured): {flagged} of {len(rows)} rows here.

{md_table(shown, [*columns, "flag"])}
"""


def run_demo(
    output: Path,
    *,
    size: int = DEMO_SIZE,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> str:
    """Create the demo data if needed, reconstruct it into ``output``; returns a text summary.

    The output is checked first: an existing file is never replaced without ``overwrite``.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise MRFError(f"{output} exists and is not a folder; choose another --output")
    check_demo_output(output, overwrite)
    folders = ensure_demo_data(size=size, progress=prefixed(scaled(progress, 0, 0.3), "demo data"), cancel=cancel)
    methods = _methods()
    rows: list[dict] = []
    steps = len(folders) * len(methods)
    k = 0
    for name, folder in folders.items():
        check_cancel(cancel)
        input = pipeline.open_input(folder, cancel=cancel)
        if input.labels is None:
            raise MRFError(f"the demo series {folder} lost its label map; delete {demo_dir()} to regenerate it")
        phantom = make_phantom(name, (size, size), input.spatial_shape[0])
        results = {}
        for method in methods:
            step = prefixed(scaled(progress, 0.3 + 0.7 * k / steps, 0.3 + 0.7 * (k + 1) / steps), f"{name} {method}")
            maps, _ = pipeline.reconstruct_input(input, pipeline.EstimatorChoice(method), progress=step, cancel=cancel)
            exported = pipeline.export(maps, output / name / method, input=input, overwrite=overwrite, cancel=cancel)
            if exported.failed:
                raise MRFError(f"demo {name} {method.upper()}: {exported.failure_text()}")
            results[method] = maps
            k += 1
        rows += _summary_rows(name, phantom, input, results)
    atomic_write_text(output / "summary.csv", csv_text(rows), overwrite=overwrite)
    text = _summary_markdown(rows, methods, output)
    atomic_write_text(output / "summary.md", text, overwrite=overwrite)
    report(progress, 1.0, "demo done")
    lines = [f"demo data in {demo_dir()}", f"results in {output} (summary.md, summary.csv)"]
    for r in rows:
        estimates = ", ".join(f"{m.upper()} {r[f'{m}_mean_ms']:.0f}" for m in methods)
        flag = f"  [{r['flag']}]" if r["flag"] else ""
        head = f"  {r['case']:<5s} {r['tissue']:<27s} {r['param']:<6s} truth {r['truth_ms']:7.1f}"
        lines.append(f"{head}: {estimates}{flag}")
    return "\n".join(lines)
