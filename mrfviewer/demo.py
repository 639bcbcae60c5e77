"""The bundled demo: a digital knee and the NIST phantom as DICOM, reconstructed headless.

The demo data are generated on first use by our own simulator (nothing large is
committed) into the user data folder (``MRFVIEWER_DATA_DIR`` or platformdirs):
knee (2 slices) and NIST/ISMRM T2 array (1 slice), 128 x 128, SNR 50, each a
DICOM magnitude + phase series with the sequence sidecar and a label map. A
``.complete`` marker is written last, so an interrupted generation is redone.
:func:`run_demo` then reconstructs both by dictionary matching (and by the shipped
network when it is present) and writes maps, PNGs, Parametric Maps and ROI CSVs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from mrfviewer.engine import CancelToken, ProgressCallback, scaled
from mrfviewer.io.atomic import atomic_write_text
from mrfviewer.io.dicom_read import load_mrf_folder
from mrfviewer.io.dicom_write import write_mrf_dicom
from mrfviewer.io.export import export_all, load_label_map, save_label_map
from mrfviewer.phantoms import make_phantom
from mrfviewer.reconstruction import ReconstructionSettings, reconstruct
from mrfviewer.resources import default_sequence_path
from mrfviewer.sequence import load_sequence
from mrfviewer.synthesis import synthesize_series

DEMO_SIZE = 128
DEMO_SNR = 50.0
DEMO_CASES = (("knee", 2), ("nist", 1))


def data_dir() -> Path:
    """The user data folder (``MRFVIEWER_DATA_DIR`` overrides platformdirs)."""
    env = os.environ.get("MRFVIEWER_DATA_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("mrfviewer"))


def demo_dir() -> Path:
    return data_dir() / "demo"


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
        save_label_map(phantom.labels, phantom.label_names, folder / "labels.nii.gz", affine, overwrite=True)
        atomic_write_text(folder / ".complete", "demo data complete\n", overwrite=True)
    return folders


def run_demo(
    output: Path,
    *,
    size: int = DEMO_SIZE,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> str:
    """Create the demo data if needed, reconstruct it into ``output``; returns a text summary."""
    from mrfviewer.nn.model_io import default_model_path

    folders = ensure_demo_data(size=size, progress=scaled(progress, 0, 0.3), cancel=cancel)
    methods = ["dm"] + (["nn"] if (default_model_path() / "model.json").exists() else [])
    lines = [f"demo data in {demo_dir()}", f"results in {output}", "ROI means (truth from the phantom's label values):"]
    steps = len(folders) * len(methods)
    k = 0
    for name, folder in folders.items():
        series = load_mrf_folder(folder, cancel=cancel)
        labels, names = load_label_map(folder / "labels.nii.gz", series.spatial_shape)
        phantom = make_phantom(name, (size, size), series.spatial_shape[0])
        results = {}
        for method in methods:
            step = scaled(progress, 0.3 + 0.7 * k / steps, 0.3 + 0.7 * (k + 1) / steps)
            maps = reconstruct(series, ReconstructionSettings(method=method), progress=step, cancel=cancel)
            export_all(
                maps,
                output / name / method,
                overwrite=overwrite,
                source_files=series.source_files,
                labels=labels,
                label_names=names,
            )
            results[method] = maps
            k += 1
        lines.append(f"  {phantom.name}  (" + ", ".join(f"{m.upper()}" for m in methods) + " vs truth)")
        for label, tissue in phantom.nominal.items():
            roi = labels == label
            cells = []
            for p, truth in (("T1", phantom.t1_ms), ("T2", phantom.t2_ms), ("T1rho", phantom.t1rho_ms)):
                est = " / ".join(f"{float(np.nanmean(results[m].values[p][roi])):.0f}" for m in methods)
                cells.append(f"{p} {est} ({float(truth[roi].mean()):.0f})")
            lines.append(f"    {tissue.name:<27s} " + "  ".join(cells))
    return "\n".join(lines)
