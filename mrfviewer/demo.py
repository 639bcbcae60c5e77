"""The bundled demo: a digital knee and the NIST phantom, synthesized and reconstructed.

Generated on first use by our own simulator (nothing large is committed):
knee (2 slices) and NIST/ISMRM T2 array, 128 x 128, SNR 50, then reconstructed
by dictionary matching with maps, ROI statistics and a summary written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrfviewer.engine import CancelToken, ProgressCallback, scaled
from mrfviewer.io.atomic import check_writable_target
from mrfviewer.io.export import export_all
from mrfviewer.io.series_h5 import write_series_h5
from mrfviewer.phantoms import make_phantom
from mrfviewer.reconstruction import ReconstructionSettings, reconstruct
from mrfviewer.resources import default_sequence_path
from mrfviewer.roi import label_statistics, write_stats_csv
from mrfviewer.sequence import load_sequence
from mrfviewer.synthesis import synthesize_series

DEMO_SIZE = 128
DEMO_SNR = 50.0
DEMO_CASES = (("knee", 2), ("nist", 1))


def run_demo(
    output: Path,
    *,
    size: int = DEMO_SIZE,
    snr: float = DEMO_SNR,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> str:
    """Synthesize and reconstruct the demo cases into ``output``; returns a text summary."""
    sequence = load_sequence(default_sequence_path())
    lines = [f"demo written to {output}", "ROI means vs truth (DM):"]
    for i, (name, n_slices) in enumerate(DEMO_CASES):
        step = scaled(progress, i / len(DEMO_CASES), (i + 1) / len(DEMO_CASES))
        folder = output / name
        series_path = output / "data" / f"{name}.h5"
        check_writable_target(series_path, overwrite)
        check_writable_target(folder / "roi_stats.csv", overwrite)
        phantom = make_phantom(name, (size, size), n_slices)
        series = synthesize_series(phantom, sequence, snr=snr, seed=i, progress=scaled(step, 0, 0.1), cancel=cancel)
        series.uid = f"demo-{name}"
        write_series_h5(series, series_path, overwrite=overwrite)
        maps = reconstruct(series, ReconstructionSettings(), progress=scaled(step, 0.1, 1.0), cancel=cancel)
        export_all(maps, folder, overwrite=overwrite)
        rows = label_statistics(maps, phantom.labels, phantom.label_names)
        write_stats_csv(rows, maps, folder / "roi_stats.csv", overwrite=overwrite)
        lines.append(f"  {phantom.name}:")
        for label, tissue in phantom.nominal.items():
            roi = phantom.labels == label
            cells = []
            for p, truth in (("T1", phantom.t1_ms), ("T2", phantom.t2_ms), ("T1rho", phantom.t1rho_ms)):
                est = float(np.nanmean(maps.values[p][roi]))
                cells.append(f"{p} {est:7.1f} ({float(truth[roi].mean()):7.1f})")
            lines.append(f"    {tissue.name:<28s} " + "  ".join(cells))
    return "\n".join(lines)
