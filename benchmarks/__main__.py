"""mrfviewer benchmarks: each figure with a baseline measured in the same run.

    python -m benchmarks [--quick] [--output benchmarks/results.json]

Prints a table and writes JSON. Ratios, not absolute times, carry the claims:
the machine is shared and noisy, so every figure is compared with a baseline
timed in the same process minutes apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mrfviewer.grid import default_knee_grid
from mrfviewer.matching import best_atoms, chunk_sizes
from mrfviewer.resources import default_sequence_path
from mrfviewer.sequence import load_sequence
from mrfviewer.simulation import simulate_fingerprints

from . import round_two
from .peer_mrpro import mrpro_atoms_per_s


def _best_time(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _knee_grid(step_percent: float):
    """The default knee grid's ranges at another step (5 % is the default grid itself)."""
    from mrfviewer.grid import grid_from_dict

    axis = {"step_percent": step_percent}
    return grid_from_dict(
        {
            "t1_ms": {"min": 100, "max": 3000, **axis},
            "t2_ms": {"min": 5, "max": 300, **axis},
            "t1rho_ms": {"min": 5, "max": 300, **axis},
        }
    )


def _sample_atoms(n: int, seed: int = 0) -> np.ndarray:
    params, _ = default_knee_grid().atoms()
    return params[np.random.default_rng(seed).choice(len(params), n, replace=False)]


def bench_dictionary(quick: bool) -> dict:
    """Dictionary generation (atoms/s) vs the reference complex EPG path, same atoms."""
    seq = load_sequence(default_sequence_path())
    n = 4096 if quick else 32768
    p = _sample_atoms(n)
    fast = _best_time(lambda: simulate_fingerprints(seq, p[:, 0], p[:, 1], p[:, 2]), 1 if quick else 2)
    n_ref = 512 if quick else 2048
    ref = _best_time(lambda: simulate_fingerprints(seq, p[:n_ref, 0], p[:n_ref, 1], p[:n_ref, 2], reference=True), 1)
    n_peer = 1024 if quick else 4096
    peer = mrpro_atoms_per_s(seq, p[:n_peer])
    ours_same = n_peer / _best_time(lambda: simulate_fingerprints(seq, p[:n_peer, 0], p[:n_peer, 1], p[:n_peer, 2]), 1)
    return {
        "atoms": n,
        "atoms_per_s": n / fast,
        "reference_atoms_per_s": n_ref / ref,
        "ratio_vs_reference": (n / fast) / (n_ref / ref),
        "target_atoms_per_s": 10_000,
        "peer": peer or "mrpro not installed: run benchmarks/setup_peer.sh",
        "ours_on_peer_atoms_per_s": ours_same,
        "ratio_vs_mrpro": ours_same / peer["atoms_per_s"] if peer else None,
        "target_ratio_vs_mrpro": 5,
    }


def bench_dm_vs_gemm(quick: bool) -> dict:
    """DM voxel-atom pairs/s vs the complex GEMM of the same block shape."""
    rng = np.random.default_rng(0)
    k = 9
    n_vox, n_atoms = (4096, 65536) if quick else (16384, 238069)
    atoms = (rng.standard_normal((n_atoms, k)) + 1j * rng.standard_normal((n_atoms, k))).astype(np.complex64)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    y = (rng.standard_normal((n_vox, k)) + 1j * rng.standard_normal((n_vox, k))).astype(np.complex64)
    dm = _best_time(lambda: best_atoms(y, atoms), 2)
    cv, ca = chunk_sizes(n_vox, n_atoms, 64)
    # The same GEMM calls as in matching (same blocks of the same data, same output buffer), without
    # the argmax: the physical limit of DM in the compressed domain.
    atoms_conj = np.conjugate(atoms)
    out = np.empty((cv, ca), dtype=np.complex64)

    def gemm() -> None:
        for v0 in range(0, n_vox, cv):
            rows = min(cv, n_vox - v0)
            for a0 in range(0, n_atoms, ca):
                block = atoms_conj[a0 : a0 + ca].T
                np.matmul(y[v0 : v0 + rows], block, out=out[:rows, : block.shape[1]])

    g = _best_time(gemm, 2)
    return {
        "voxels": n_vox,
        "atoms": n_atoms,
        "rank": k,
        "block": [cv, ca],
        "dm_pairs_per_s": n_vox * n_atoms / dm,
        "gemm_pairs_per_s": n_vox * n_atoms / g,
        "dm_fraction_of_gemm": g / dm,
        "target_fraction": 0.5,
    }


def bench_dm_memory(quick: bool) -> dict:
    """Peak traced memory of matching vs dictionary size at a fixed budget."""
    rng = np.random.default_rng(1)
    k = 9
    # 256 x 256 x 4 voxels in the full run (64 x 64 x 4 quick); memory does not depend on the voxel count
    # beyond the per-voxel outputs, which the table shows.
    n_vox = 64 * 64 * 4 if quick else 256 * 256 * 4
    sizes = [10_000, 30_000, 60_000] if quick else [20_000, 60_000, 238_069]
    y = (rng.standard_normal((n_vox, k)) * (1 + 1j)).astype(np.complex64)
    rows = []
    for n_atoms in sizes:
        atoms = (rng.standard_normal((n_atoms, k)) + 1j * rng.standard_normal((n_atoms, k))).astype(np.complex64)
        atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        best_atoms(y, atoms, memory_mb=64)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        rows.append(
            {"atoms": n_atoms, "peak_mib": peak / 2**20, "atoms_copy_mib": atoms.nbytes / 2**20, "seconds": seconds}
        )
    return {"voxels": len(y), "budget_mib": 64, "sizes": rows}


def _nn_accuracy(model, truth: np.ndarray, y: dict[str, np.ndarray], exact: np.ndarray, precision: str) -> dict:
    """MAPE (%) against the truth of compressed signals ``y`` ("snr_50", "noiseless"), and the
    deviation from ``exact``, the float32 estimates at SNR 50."""
    from mrfviewer.nn.inference import predict

    out = {}
    for label, signals in y.items():
        est = predict(model, signals, precision=precision).params
        out[f"mape_pct_{label}"] = {
            n: float(100 * np.mean(np.abs(est[:, i] / truth[:, i] - 1))) for i, n in enumerate(("T1", "T2", "T1rho"))
        }
        if label == "snr_50":
            dev = 100 * np.abs(est / exact - 1)
            out["vs_float32_mean_pct"] = float(dev.mean())
            out["vs_float32_max_pct"] = float(dev.max())
    return out


def bench_nn(quick: bool) -> dict:
    """NN inference voxels/s of the shipped networks through ``predict`` (features, network, outputs)
    in float32 and in bfloat16 hidden layers, with the accuracy of each on fresh simulated
    fingerprints, and DM time on the same voxels (extrapolated from a subset against the full
    knee dictionary size)."""
    from mrfviewer.nn.inference import native_bfloat16, predict
    from mrfviewer.nn.model_io import load_model, shipped_models
    from mrfviewer.sampling import sample_parameters
    from mrfviewer.synthesis import add_noise

    rng = np.random.default_rng(2)
    n = 256 * 256 * (2 if quick else 16)
    atoms = (rng.standard_normal((238_069, 9)) * (1 + 1j)).astype(np.complex64)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    y9 = (rng.standard_normal((4096, 9)) + 1j * rng.standard_normal((4096, 9))).astype(np.complex64)
    dm_s = _best_time(lambda: best_atoms(y9, atoms), 1) * n / len(y9)
    seq = load_sequence(default_sequence_path())
    truth = sample_parameters(default_knee_grid(), 3000 if quick else 20000, seed=31)
    clean = simulate_fingerprints(seq, truth[:, 0], truth[:, 1], truth[:, 2]).numpy()
    noisy, _ = add_noise(clean, 50.0, np.random.default_rng(32))
    networks = []
    for folder in shipped_models():
        model = load_model(folder)
        k = model.basis.shape[0]
        y = (rng.standard_normal((n, k)) + 1j * rng.standard_normal((n, k))).astype(np.complex64)
        test = {"snr_50": noisy @ model.basis.conj().T, "noiseless": clean @ model.basis.conj().T}
        exact = predict(model, test["snr_50"], precision="float32").params
        for precision in ("float32", "bfloat16"):
            nn_s = _best_time(lambda model=model, y=y, p=precision: predict(model, y, precision=p), 2)
            networks.append(
                {
                    "model": folder.name,
                    "hidden": model.metadata["architecture"]["hidden"],
                    "precision": precision,
                    "validation_mape_snr50": model.metadata["validation_mape_pct"]["snr_50"],
                    "nn_voxels_per_s": n / nn_s,
                    "nn_seconds": nn_s,
                    "dm_over_nn": dm_s / nn_s,
                    **_nn_accuracy(model, truth, test, exact, precision),
                }
            )
    return {
        "voxels": n,
        "native_bfloat16": native_bfloat16(),
        "test_fingerprints": len(truth),
        "networks": networks,
        "target_voxels_per_s": 1_000_000,
        "dm_seconds_extrapolated": dm_s,
    }


def bench_loading(quick: bool) -> dict:
    """Reading an MRF DICOM series (scan + assemble) vs bare pydicom.dcmread of the same files."""
    import pydicom

    from mrfviewer.io.dicom_read import load_mrf_folder
    from mrfviewer.io.dicom_write import write_mrf_dicom
    from mrfviewer.phantoms import knee_phantom
    from mrfviewer.synthesis import synthesize_series

    seq = load_sequence(default_sequence_path())
    size = 32 if quick else 128
    series = synthesize_series(knee_phantom((size, size)), seq, snr=50)
    with tempfile.TemporaryDirectory() as tmp:
        write_mrf_dicom(series, Path(tmp) / "s")
        files = sorted((Path(tmp) / "s").rglob("*.dcm"))
        bare = _best_time(lambda: [pydicom.dcmread(f).pixel_array for f in files], 2)
        ours = _best_time(lambda: load_mrf_folder(Path(tmp) / "s"), 2)
    return {
        "files": len(files),
        "image": size,
        "bare_seconds": bare,
        "mrfviewer_seconds": ours,
        "ratio": ours / bare,
        "target_ratio": 1.5,
    }


def bench_scaling(quick: bool) -> dict:
    """How DM and dictionary time grow with atoms, voxels and K (3 sizes each)."""
    rng = np.random.default_rng(3)

    def dm_time(n_vox: int, n_atoms: int, k: int) -> float:
        atoms = (rng.standard_normal((n_atoms, k)) * (1 + 1j)).astype(np.complex64)
        y = (rng.standard_normal((n_vox, k)) * (1 + 1j)).astype(np.complex64)
        return _best_time(lambda: best_atoms(y, atoms), 1)

    base_v, base_a, base_k = (2048, 20000, 9) if quick else (8192, 60000, 9)
    seq = load_sequence(default_sequence_path())
    dict_sizes = [1024, 2048, 4096] if quick else [4096, 8192, 16384]
    p = _sample_atoms(max(dict_sizes))
    return {
        "dm_vs_atoms": [
            {"atoms": a, "seconds": dm_time(base_v, a, base_k)} for a in (base_a // 4, base_a // 2, base_a)
        ],
        "dm_vs_voxels": [
            {"voxels": v, "seconds": dm_time(v, base_a, base_k)} for v in (base_v // 4, base_v // 2, base_v)
        ],
        "dm_vs_rank": [{"rank": k, "seconds": dm_time(base_v, base_a, k)} for k in (6, 12, 24)],
        "dictionary_vs_atoms": [
            {"atoms": n, "seconds": _best_time(lambda n=n: simulate_fingerprints(seq, p[:n, 0], p[:n, 1], p[:n, 2]), 1)}
            for n in dict_sizes
        ],
    }


def bench_gui_click(quick: bool) -> dict:
    """Click-to-fingerprint latency through the real signal path (offscreen): mouse press to repainted plot.

    Baseline in the same run: repainting the plot with the same curves, without the click path.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtCore, QtTest, QtWidgets

    from mrfviewer import pipeline
    from mrfviewer.dictionary import get_dictionary
    from mrfviewer.gui.main_window import MainWindow
    from mrfviewer.phantoms import knee_phantom
    from mrfviewer.synthesis import synthesize_series

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    seq = load_sequence(default_sequence_path())
    dictionary = get_dictionary(seq, _knee_grid(15 if quick else 5))
    series = synthesize_series(knee_phantom((128, 128)), seq, snr=50)
    with tempfile.TemporaryDirectory() as tmp:
        settings = QtCore.QSettings(str(Path(tmp) / "s.ini"), QtCore.QSettings.Format.IniFormat)
        window = MainWindow(settings)
        window.resize(1280, 800)
        window.show()
        source = pipeline.input_from_series(series)
        window.session.open(source)
        estimator = pipeline.DictionaryMatching(dictionary)
        window.session.add_result(pipeline.run(source, estimator), estimator)
        app.processEvents()
        view, graphics = window.map_view.first_view(), window.map_view.graphics
        rng = np.random.default_rng(4)
        pixels = [tuple(int(v) for v in p) for p in np.argwhere(window.maps["dm"].mask[0])]
        n = 20 if quick else 100
        picks = [pixels[i] for i in rng.choice(len(pixels), 2 * n, replace=False)]
        clicks, travel_clicks, repaints = [], [], []
        for i, (y, x) in enumerate(picks):
            pos = graphics.mapFromScene(view.mapViewToScene(QtCore.QPointF(x + 0.5, y + 0.5)))
            if i < n:  # the pointer arrives first (hover read-out), as a hand moves before it clicks
                QtTest.QTest.mouseMove(graphics.viewport(), pos)
                app.processEvents()
            start = time.perf_counter()
            QtTest.QTest.mouseClick(graphics.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)
            window.fingerprint.repaint()  # what the user sees: the plot drawn, not only its data set
            app.processEvents()
            (clicks if i < n else travel_clicks).append(time.perf_counter() - start)
            assert window.session.pixel == (0, y, x)
            start = time.perf_counter()
            window.fingerprint.plot.update()
            window.fingerprint.repaint()
            app.processEvents()
            repaints.append(time.perf_counter() - start)
        window.close()
    ms, travel_ms = np.array(clicks) * 1000, np.array(travel_clicks) * 1000
    return {
        "clicks": len(clicks),
        "dictionary_atoms": dictionary.n_atoms,
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
        "first_ms": float(ms[0]),
        "slowest_ms": [float(v) for v in np.sort(ms)[-5:]],
        "with_pointer_travel": {
            "clicks": len(travel_clicks),
            "median_ms": float(np.median(travel_ms)),
            "p95_ms": float(np.percentile(travel_ms, 95)),
            "max_ms": float(travel_ms.max()),
        },
        "repaint_only_median_ms": float(np.median(repaints) * 1000),
        "target_ms": 30,
    }


def _stats_ms(times: list[float]) -> dict:
    ms = np.array(times) * 1000
    return {
        "n": len(ms),
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
    }


def bench_gui_responsiveness(quick: bool) -> dict:
    """Benchmark 6, continued: the viewer on the demo data (offscreen, one run).

    * slice steps (Page Down / Page Up on the map) with label statistics on, per volume and per
      slice, with two drawn ROIs: key press to repainted maps and ROI table; baseline: the
      same steps with label statistics off;
    * the ROI table refreshed with 112 values (the NIST phantom's 14 label spheres and 14
      template spheres, 4 maps each), model update and repaint; baseline: the repaint alone;
    * the event loop during the NIST template fit (a background job): the longest gap
      between 5 ms timer ticks; baseline: the same timer with nothing running.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtCore, QtTest, QtWidgets

    from mrfviewer import pipeline
    from mrfviewer.demo import demo_dir, ensure_demo_data
    from mrfviewer.dictionary import get_dictionary
    from mrfviewer.gui.main_window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    ensure_demo_data()
    seq = load_sequence(default_sequence_path())
    estimator = pipeline.DictionaryMatching(get_dictionary(seq, _knee_grid(15 if quick else 5)))
    dataset = pipeline.list_series(demo_dir())
    entries = {("nist" if "NIST" in e.description else "knee"): e for e in dataset.usable()}
    out: dict = {"dictionary_atoms": estimator.dictionary.n_atoms}

    def pump_until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
        end = time.perf_counter() + timeout
        while not condition():
            if time.perf_counter() > end:
                raise TimeoutError("the GUI did not get there in time")
            app.processEvents()
            time.sleep(0.002)

    with tempfile.TemporaryDirectory() as tmp:
        settings = QtCore.QSettings(str(Path(tmp) / "s.ini"), QtCore.QSettings.Format.IniFormat)
        window = MainWindow(settings)
        window.resize(1280, 800)
        window.show()
        session, view = window.session, window.map_view
        session.set_dataset(dataset)
        knee = dataset.open(entries["knee"], in_memory=True)
        session.open(knee)
        session.add_result(pipeline.run(knee, estimator), estimator)
        for x0 in (30.0, 70.0):  # two drawn ROIs besides the label map
            state = {"pos": (x0, 50.0), "size": (12.0, 10.0), "angle": 0.0}
            square = np.array([(x0, 50.0), (x0 + 12, 50.0), (x0 + 12, 60.0), (x0, 60.0)])
            session.add_roi("rectangle", square, state)
        graphics, table = view.graphics, window.roi_panel.table
        n = 20 if quick else 60

        def steps(label: str) -> dict:
            pump_until(lambda: not session.label_statistics_pending())
            times = []
            for i in range(n):
                key = QtCore.Qt.Key.Key_PageDown if i % 2 == 0 else QtCore.Qt.Key.Key_PageUp
                start = time.perf_counter()
                QtTest.QTest.keyClick(graphics, key)
                graphics.viewport().repaint()  # what the user sees: maps and table drawn
                table.viewport().repaint()
                app.processEvents()
                times.append(time.perf_counter() - start)
                assert session.slice == (1 if i % 2 == 0 else 0)
            return _stats_ms(times) | {"label_statistics": label}

        graphics.setFocus()
        slice_steps = {"volume": steps("per volume")}
        window.roi_panel.scope.setCurrentIndex(1)
        slice_steps["slice"] = steps("per slice")
        window.roi_panel.labels_box.setChecked(False)
        slice_steps["off"] = steps("off")
        out["slice_step"] = slice_steps | {"slices": session.n_slices, "image": list(knee.spatial_shape[1:])}
        window.roi_panel.labels_box.setChecked(True)
        window.roi_panel.scope.setCurrentIndex(0)

        nist = dataset.open(entries["nist"], in_memory=True)
        session.open(nist)
        session.add_result(pipeline.run(nist, estimator), estimator)
        pump_until(lambda: not session.label_statistics_pending())
        ticks: list[float] = []
        timer = QtCore.QTimer()
        timer.setInterval(5)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))

        def longest_gap(run: Callable[[], None], until: Callable[[], bool]) -> tuple[float, float]:
            ticks.clear()
            timer.start()
            start = time.perf_counter()
            run()
            pump_until(until)
            timer.stop()
            gaps = np.diff(ticks) if len(ticks) > 1 else np.array([0.0])
            return float(gaps.max() * 1000), time.perf_counter() - start

        done: list[object] = []
        window.runner.finished.connect(lambda kind, result: done.append(kind))
        fit_gap, fit_seconds = longest_gap(window.fit_template, lambda: "fit template" in done)
        idle_end = time.perf_counter() + fit_seconds
        idle_gap, _ = longest_gap(lambda: None, lambda: time.perf_counter() > idle_end)
        out["template_fit"] = {"seconds": fit_seconds, "longest_gap_ms": fit_gap, "idle_longest_gap_ms": idle_gap}

        pump_until(lambda: not session.label_statistics_pending())
        window.roi_panel.refresh()
        model = window.roi_panel.model
        n_values = sum(len([m for m in line.cells if m in ("T1", "T2", "T1rho", "PD")]) for line in model.lines)
        refreshes, repaints = [], []
        for _ in range(n):
            start = time.perf_counter()
            window.roi_panel.refresh()
            table.viewport().repaint()
            table.frozen.viewport().repaint()
            refreshes.append(time.perf_counter() - start)
            start = time.perf_counter()
            table.viewport().repaint()
            table.frozen.viewport().repaint()
            repaints.append(time.perf_counter() - start)
        out["roi_table"] = _stats_ms(refreshes) | {
            "rows": model.rowCount(),
            "values": n_values,
            "repaint_only_median_ms": float(np.median(repaints) * 1000),
        }
        window.close()
    out["targets"] = {"slice_step_p95_ms": 50, "roi_table_ms": 16, "stall_ms": 50}
    return out


def bench_batch_speedup(quick: bool) -> dict:
    """Cohort batch on dask: wall time with 1 and 2 local worker processes (one thread each), same cohort.

    Each cluster first runs a two-series warm-up cohort (imports, font cache, the scattered
    dictionary), untimed, so the figure is the steady-state throughput of a long cohort. A
    compute-only control (single-threaded GEMM tasks) gives this machine's ceiling in the same run.
    """
    from distributed import LocalCluster

    from mrfviewer.batch import run_batch
    from mrfviewer.dictionary import get_dictionary
    from mrfviewer.io.series_h5 import write_series_h5
    from mrfviewer.phantoms import knee_phantom
    from mrfviewer.pipeline import EstimatorCache, EstimatorChoice, find_cohort
    from mrfviewer.settings import ReconstructionSettings
    from mrfviewer.synthesis import synthesize_series

    seq = load_sequence(default_sequence_path())
    grid = _knee_grid(10)
    dictionary = get_dictionary(seq, grid)
    n_series, size = (4, 64) if quick else (12, 128)
    rows = []
    cache = EstimatorCache()  # the driver builds the dictionary once, outside the timed runs
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "grid.json").write_text(grid.to_json())
        choice = EstimatorChoice(grid=Path(tmp) / "grid.json")
        for i in range(n_series + 2):
            cohort = "warmup" if i >= n_series else "cohort"
            series = synthesize_series(knee_phantom((size, size)), seq, snr=50, seed=i)
            write_series_h5(series, Path(tmp) / cohort / f"subject{i:02d}" / "knee.h5")
        items, warmup = find_cohort(Path(tmp) / "cohort"), find_cohort(Path(tmp) / "warmup")
        for workers in (1, 2):
            with LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
            ) as cluster:
                address = cluster.scheduler_address
                settings = ReconstructionSettings()
                run_batch(warmup, choice, Path(tmp) / f"warm{workers}", settings, scheduler=address, cache=cache)
                start = time.perf_counter()
                results = run_batch(
                    items, choice, Path(tmp) / f"out{workers}", settings, scheduler=address, cache=cache
                )
                seconds = time.perf_counter() - start
                control = _gemm_control(address, 2 * workers)
            assert all(r.status == "done" for r in results), [r.message for r in results]
            rows.append({"workers": workers, "seconds": seconds, "control_seconds": control})
    return {
        "series": n_series,
        "image": size,
        "dictionary_atoms": dictionary.n_atoms,
        "runs": rows,
        "speedup_2_over_1": rows[0]["seconds"] / rows[1]["seconds"],
        "control_speedup_2_over_1": rows[0]["control_seconds"] / rows[1]["control_seconds"] * 2,
    }


def _gemm_task(seed: int) -> None:
    a = np.random.default_rng(seed).standard_normal((600, 600))
    for _ in range(40):
        a = a @ a
        a /= np.abs(a).max()


def _gemm_control(address: str, n_tasks: int) -> float:
    """Seconds for ``n_tasks`` single-threaded GEMM tasks on the cluster at ``address``."""
    from distributed import Client

    with Client(address) as client:
        start = time.perf_counter()
        client.gather(client.map(_gemm_task, range(n_tasks), pure=False))
        return time.perf_counter() - start


def bench_volume_memory(quick: bool) -> dict:
    """Peak memory of a slab-wise DM reconstruction of a 3D HDF5 series vs the series size (tracemalloc)."""
    from mrfviewer.dictionary import get_dictionary
    from mrfviewer.io.series_h5 import write_series_h5
    from mrfviewer.phantoms import knee_phantom
    from mrfviewer.reconstruction import reconstruct_dm
    from mrfviewer.settings import ReconstructionSettings
    from mrfviewer.synthesis import synthesize_series
    from mrfviewer.volume import open_h5_source

    seq = load_sequence(default_sequence_path())
    dictionary = get_dictionary(seq, _knee_grid(10))
    size, n_slices = (48, 8) if quick else (96, 24)
    memory_mb = 64
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "volume.h5"
        series = synthesize_series(knee_phantom((size, size), n_slices=n_slices), seq, snr=50)
        series_mib = series.data.nbytes / 2**20
        write_series_h5(series, path)
        del series
        tracemalloc.start()
        start = time.perf_counter()
        maps = reconstruct_dm(open_h5_source(path), dictionary, ReconstructionSettings(memory_mb=memory_mb))
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {
        "shape": [seq.n_timepoints, n_slices, size, size],
        "series_mib": series_mib,
        "memory_setting_mib": memory_mb,
        "peak_traced_mib": peak / 2**20,
        "peak_over_series": peak / 2**20 / series_mib,
        "voxels": int(maps.mask.sum()),
        "seconds": seconds,
    }


BENCHES = {
    "dictionary": bench_dictionary,
    "dm_vs_gemm": bench_dm_vs_gemm,
    "dm_memory": bench_dm_memory,
    "nn_inference": bench_nn,
    "series_loading": bench_loading,
    "scaling": bench_scaling,
    "gui_click": bench_gui_click,
    "gui_responsiveness": bench_gui_responsiveness,
    "batch_speedup": bench_batch_speedup,
    "volume_memory": bench_volume_memory,
    "generation": round_two.bench_generation,
    "fast_dm": round_two.bench_fast_dm,
    "demo": round_two.bench_demo,
    "volume_3d": round_two.bench_volume_3d,
    "device": round_two.bench_device,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--output", default="benchmarks/results.json")
    parser.add_argument("--only", nargs="*", choices=list(BENCHES), help="run only these")
    args = parser.parse_args(argv)
    results = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "numpy": np.__version__,
            "load_at_start": round_two.load(),
        },
        "quick": args.quick,
    }
    for name in args.only or BENCHES:
        start = time.perf_counter()
        results[name] = BENCHES[name](args.quick)
        results[name]["bench_seconds"] = round(time.perf_counter() - start, 1)
        print(f"{name}: {json.dumps(results[name], default=float)}", flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
