"""Benchmarks of issue 17: fast DM on the four-parameter knee dictionary, dictionary generation
against this machine's float32 roofline (and under a competing process), the first demo run,
a 256 x 256 x 40 volume end to end, and a GPU figure when torch sees one.

Every ratio is measured within one run (the machine is shared): fast against exhaustive on
the same voxels minutes apart, generation against a GEMM timed in the same process.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mrfviewer.grid import DEFAULT_GRID, ParameterGrid, grid_from_dict
from mrfviewer.resources import default_sequence_path
from mrfviewer.sequence import Readout, Sequence, load_sequence
from mrfviewer.simulation import states_for_t2

#: The four-parameter knee grid of the issue: the default grid's axes in 5 % log steps (2.1 M atoms).
KNEE4_5PCT = {
    axis: {**spec, "step_percent": 5} if "step_percent" in spec else spec for axis, spec in DEFAULT_GRID.items()
}


def load() -> dict:
    """Load average and CPU count when a figure starts (the machine is shared)."""
    one, five, fifteen = os.getloadavg()
    return {"load_1min": round(one, 2), "load_5min": round(five, 2), "cpus": os.cpu_count()}


def sgemm_gflops(threads: int | None = None, n: int = 2048, repeat: int = 5) -> float:
    """Measured float32 GEMM rate (GFLOP/s) of this machine: the float32 compute roofline."""
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        best = math.inf
        for _ in range(repeat):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
        return 2 * n**3 / best / 1e9
    finally:
        torch.set_num_threads(saved)


def epg_flops_per_atom(sequence: Sequence, grid: ParameterGrid) -> dict:
    """Floating-point work of the EPG per atom of ``grid`` for ``sequence``, counted from the code.

    Per FISP pulse and EPG state: the rotation of (P, M, Z) is 9 flops (u = P + M; t = (c - 1)/2 u
    + s Z; Z = c Z - s/2 u; P += t; M += t), plus 3 flops per 16 pulses to fold the deferred
    relaxation. Per FLASH pulse and tissue: Z0 recursion (2), sample weight and sample (2). The
    states follow T2 (:func:`states_for_t2`). ``per_atom`` is the plain per-atom EPG; ``executed``
    is what the fast path does: FISP trains once per distinct (T1, T2, B1), the FLASH trains after
    the last FISP train on three probe columns per distinct (T1, T2, B1) (the affine tail), and
    per atom 2 flops per spin-lock for its Z_0 values.
    """
    params, _ = grid.atoms()
    k = np.array([states_for_t2(sequence, t2) for t2 in np.unique(params[:, 1])])
    k_of = dict(zip(np.unique(params[:, 1]), k, strict=True))
    states = np.array([k_of[t2] for t2 in params[:, 1]], dtype=np.float64)
    fisp = sum(b.n for b in sequence.readouts if b.kind == "fisp")
    flash = sum(b.n for b in sequence.readouts if b.kind == "flash")
    per_fisp_state = 9 + 3 / 16
    per_atom = fisp * per_fisp_state * states + 4 * flash
    groups = np.unique(params[:, [0, 1, 3]], axis=0)
    group_states = np.array([k_of[t2] for t2 in groups[:, 1]], dtype=np.float64)
    locks = sum(1 for b in sequence.blocks if type(b).__name__ == "SpinLock")
    executed = (fisp * per_fisp_state * group_states.sum() + 3 * 4 * flash * len(groups)) / len(params) + 2 * locks
    return {
        "atoms": len(params),
        "distinct_t1_t2_b1": len(groups),
        "mean_states": float(states.mean()),
        "per_atom": float(per_atom.mean()),
        "executed_per_atom": float(executed),
        "fisp_pulses": fisp,
        "flash_pulses": flash,
        "readouts": len([b for b in sequence.blocks if isinstance(b, Readout)]),
    }


def _eta_errors(marks: list[tuple[float, float]], total: float) -> list[dict]:
    """The time left implied by the progress at 25, 50, 75 % (elapsed (1 - f) / f) against the truth."""
    out = []
    for q in (0.25, 0.5, 0.75):
        hit = next(((t, f) for t, f in marks if f >= q), None)
        if hit is None:
            continue
        t, f = hit
        out.append({"fraction": f, "elapsed_s": t, "eta_s": t * (1 - f) / f, "true_left_s": total - t})
    return out


def _busy_process() -> subprocess.Popen:
    """A competing process that keeps one core busy (stopped by the caller)."""
    return subprocess.Popen([sys.executable, "-c", "while True:\n    pass"])


def bench_generation(quick: bool) -> dict:
    """Dictionary generation of the four-parameter knee grid: atoms/s against the float32 roofline,
    the honesty of the time left it reports, and the rate with a competing process on one core."""
    from mrfviewer.dictionary import cached_path, generate_dictionary, save_dictionary
    from mrfviewer.simulation import simulate_chunked

    seq = load_sequence(default_sequence_path())
    grid = grid_from_dict(KNEE4_5PCT if not quick else {**KNEE4_5PCT, "b1": [0.8, 1.0, 1.2]})
    machine = load()
    flops = epg_flops_per_atom(seq, grid)
    gflops = sgemm_gflops()
    gflops_one = sgemm_gflops(1)
    params, _ = grid.atoms()
    start = time.perf_counter()
    simulate_chunked(seq, *params.T, lambda block: None)
    sim_seconds = time.perf_counter() - start
    marks: list[tuple[float, float]] = []
    start = time.perf_counter()
    dictionary = generate_dictionary(seq, grid, progress=lambda f, m: marks.append((time.perf_counter() - start, f)))
    gen_seconds = time.perf_counter() - start
    cached_path(seq, grid).parent.mkdir(parents=True, exist_ok=True)
    save_dictionary(dictionary, cached_path(seq, grid), overwrite=True)  # figure 9 matches against it
    # Under load: a process spinning on one of the cores, same simulation (a 3-B1 sub-grid: shorter).
    sub = params[np.isin(params[:, 3], [0.8, 1.0, 1.2])] if not quick else params
    start = time.perf_counter()
    simulate_chunked(seq, *sub.T, lambda block: None)
    idle = time.perf_counter() - start
    busy = _busy_process()
    try:
        time.sleep(0.5)
        start = time.perf_counter()
        simulate_chunked(seq, *sub.T, lambda block: None)
        loaded = time.perf_counter() - start
    finally:
        busy.kill()
        busy.wait()
    roofline = gflops * 1e9 / flops["per_atom"]
    sim_rate = len(params) / sim_seconds
    return {
        "load": machine,
        "atoms": len(params),
        "rank": dictionary.rank,
        "flops": flops,
        "sgemm_gflops": gflops,
        "sgemm_gflops_one_thread": gflops_one,
        "roofline_atoms_per_s": roofline,
        "simulation_atoms_per_s": sim_rate,
        "simulation_fraction_of_roofline": sim_rate / roofline,
        "executed_gflops": sim_rate * flops["executed_per_atom"] / 1e9,
        "executed_fraction_of_sgemm": sim_rate * flops["executed_per_atom"] / 1e9 / gflops,
        "dictionary_seconds": gen_seconds,
        "dictionary_atoms_per_s": len(params) / gen_seconds,
        "dictionary_fraction_of_roofline": len(params) / gen_seconds / roofline,
        "eta": _eta_errors(marks, gen_seconds),
        "competing_process": {
            "atoms": len(sub),
            "idle_atoms_per_s": len(sub) / idle,
            "loaded_atoms_per_s": len(sub) / loaded,
            "loaded_over_idle": idle / loaded,
        },
        "target_fraction": 0.3,
    }


def _knee_slice(sequence: Sequence, size: int = 128, snr: float = 50.0):  # noqa: ANN202 - an Input
    """A digital knee slice with a smooth B1 field (0.7-1.3) at ``snr``, as a pipeline input."""
    from mrfviewer import pipeline
    from mrfviewer.phantoms import knee_phantom
    from mrfviewer.synthesis import synthesize_series

    phantom = knee_phantom((size, size), b1_range=(0.7, 1.3))
    return pipeline.input_from_series(synthesize_series(phantom, sequence, snr=snr, seed=1))


def _fast_vs_exhaustive(dictionary, source) -> dict:  # noqa: ANN001 - a Dictionary and an Input
    """Both searches through the pipeline on the same voxels: matching seconds (as in the sidecars),
    the share of voxels on the same atom, and the map differences."""
    from mrfviewer import pipeline

    estimator = pipeline.DictionaryMatching(dictionary)
    runs = {}
    for search in ("fast", "exhaustive"):
        settings = pipeline.ReconstructionSettings(search=search, device="cpu")
        pipeline.run(source, estimator, settings) if search == "fast" and not runs else None  # warm-up
        runs[search] = pipeline.run(source, estimator, settings)
    fast, exhaustive = runs["fast"], runs["exhaustive"]
    mask = exhaustive.mask
    same = float(np.mean(fast.atom[mask] == exhaustive.atom[mask]))
    diffs = {}
    for name in ("T1", "T2", "T1rho", "B1", "PD"):
        if name in exhaustive.values:
            d = np.abs(fast.values[name][mask] / exhaustive.values[name][mask] - 1) * 100
            diffs[name] = {"median_pct": float(np.median(d)), "p99_pct": float(np.percentile(d, 99))}
    fm, em = fast.provenance.matching_seconds, exhaustive.provenance.matching_seconds
    return {
        "atoms": dictionary.n_atoms,
        "rank": dictionary.rank,
        "voxels": int(mask.sum()),
        "fast_matching_seconds": fm,
        "exhaustive_matching_seconds": em,
        "speedup": em / fm,
        "same_atom": same,
        "map_differences": diffs,
    }


def bench_fast_dm(quick: bool) -> dict:
    """Fast against exhaustive DM on the four-parameter knee dictionary (5 % steps, 2.1 M atoms) and on
    the default knee grid (7 % steps), digital knee slice with a B1 field at SNR 50."""
    from mrfviewer.dictionary import get_dictionary
    from mrfviewer.grid import default_knee_grid

    seq = load_sequence(default_sequence_path())
    machine = load()
    source = _knee_slice(seq, 64 if quick else 128)
    grids = {"knee4_5pct": grid_from_dict(KNEE4_5PCT), "default_knee_grid": default_knee_grid()}
    if quick:
        grids = {"default_knee_grid": default_knee_grid()}
    out: dict = {"load": machine, "image": 64 if quick else 128, "snr": 50, "b1_field": [0.7, 1.3]}
    for name, grid in grids.items():
        out[name] = _fast_vs_exhaustive(get_dictionary(seq, grid), source)
    out["targets"] = {"speedup": 10, "same_atom": 0.995, "median_difference_pct": 0.5}
    return out


def bench_demo(quick: bool) -> dict:
    """``mrfviewer demo`` end to end on a fresh cache and data folder (data, dictionary, DM, NN, exports)."""
    machine = load()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, MRFVIEWER_CACHE_DIR=f"{tmp}/cache", MRFVIEWER_DATA_DIR=f"{tmp}/data")
        import resource

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "mrfviewer.cli", "demo", "--output", f"{tmp}/out", "--overwrite"],
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        stages = [line for line in done.stderr.splitlines() if "%" in line][-8:]
    return {
        "load": machine,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load_after": load(),
        "exit_code": done.returncode,
        "last_progress_lines": stages,
        "target_seconds": 180,
    }


_VOLUME_SCRIPT = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from benchmarks.round_two import volume_run
print(json.dumps(volume_run({shape!r}, {method!r})))
"""


def volume_source(shape: tuple[int, int, int], sequence: Sequence, snr: float = 50.0, seed: int = 0):  # noqa: ANN201
    """A (T, Z, Y, X) digital knee volume made slab by slab on demand (never held whole: 37 GB at 256^2 x 40).

    Tissues come from the digital knee phantom with a smooth B1 field (relaxation times quantised
    to 0.5 %, B1 to 0.01, so the whole volume needs about 36k simulations, made once). The complex
    noise at ``snr`` of each tissue voxel is a window at a random offset into one table of 2^21
    Gaussian values (drawing 230 M fresh normals per slice would make this benchmark's input, not
    the reconstruction, its largest cost); air is zero (masked out, as noise alone would be).
    """
    from mrfviewer.phantoms import knee_phantom
    from mrfviewer.series import Geometry
    from mrfviewer.simulation import simulate_fingerprints
    from mrfviewer.volume import SlabSource

    nz, ny, nx = shape
    phantom = knee_phantom((ny, nx), nz, b1_range=(0.7, 1.3))
    b1 = np.round(getattr(phantom, "b1", np.ones((nz, ny, nx))) / 0.01) * 0.01
    # The phantom's values vary smoothly from voxel to voxel: quantised to 0.5 % (log) they need
    # about 36k simulations for 256 x 256 x 40 instead of 2 M.
    relax = [np.exp(np.round(np.log(np.maximum(v, 1e-3)) / 0.005) * 0.005) for v in (phantom.t1_ms, phantom.t2_ms)]
    t1rho = np.exp(np.round(np.log(np.maximum(phantom.t1rho_ms, 1e-3)) / 0.005) * 0.005)
    keys = np.stack([*relax, t1rho, b1], axis=-1).reshape(-1, 4)
    tissue = phantom.pd.reshape(-1) > 0
    unique, inverse = np.unique(keys[tissue], axis=0, return_inverse=True)
    fingerprints = simulate_fingerprints(sequence, *unique.T).numpy()
    sigma = float(np.sqrt(np.mean(np.abs(fingerprints) ** 2, axis=1)).mean() / snr)
    index = np.full(keys.shape[0], -1)
    index[tissue] = inverse.reshape(-1)
    pd = phantom.pd.reshape(-1).astype(np.float32)
    n_per_slice = ny * nx
    n_t = sequence.n_timepoints
    table_rng = np.random.default_rng(seed)
    table = (table_rng.standard_normal((2, 2**21), dtype=np.float32) * np.float32(sigma / np.sqrt(2))).view()
    noise_table = (table[0] + 1j * table[1]).astype(np.complex64)
    windows = np.lib.stride_tricks.sliding_window_view(noise_table, n_t)
    timing = {"seconds": 0.0}

    def read(z0: int, z1: int) -> np.ndarray:
        start = time.perf_counter()
        rng = np.random.default_rng(seed + 1 + z0)
        sl = slice(z0 * n_per_slice, z1 * n_per_slice)
        n = (z1 - z0) * n_per_slice
        inside = np.flatnonzero(index[sl] >= 0)
        # Tissue voxels: fingerprint plus noise; air: zeros (masked out either way, as noise alone would be).
        tissue = windows[rng.integers(0, windows.shape[0], inside.size)]  # (m, T), a copy
        tissue += fingerprints[index[sl][inside]] * pd[sl][inside, None]
        slab = np.zeros((n_t, n), dtype=np.complex64)
        slab[:, inside] = tissue.T
        slab = slab.reshape(n_t, z1 - z0, ny, nx)
        timing["seconds"] += time.perf_counter() - start
        return slab

    source = SlabSource(
        shape=(sequence.n_timepoints, nz, ny, nx), is_complex=True, read=read, sequence=sequence, geometry=Geometry()
    )
    return source, timing


def volume_run(shape: tuple[int, int, int], method: str) -> dict:
    """One end-to-end reconstruction of the synthetic volume (run in its own process: peak RSS is its own)."""
    import resource

    from mrfviewer import pipeline

    seq = load_sequence(default_sequence_path())
    start = time.perf_counter()
    source, timing = volume_source(shape, seq)
    setup = time.perf_counter() - start
    choice = pipeline.EstimatorChoice(method)
    estimator = pipeline.make_estimator(choice, seq, "complex")
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    source_input = pipeline.Input(source=source, sequence_origin="benchmark")
    settings = pipeline.ReconstructionSettings(search="fast", memory_mb=256)
    start = time.perf_counter()
    maps = pipeline.run(source_input, estimator, settings)
    seconds = time.perf_counter() - start
    return {
        "method": method,
        "shape": [seq.n_timepoints, *shape],
        "series_gib": seq.n_timepoints * int(np.prod(shape)) * 8 / 2**30,
        "voxels": int(maps.mask.sum()),
        "seconds": seconds,
        "synthesis_seconds_inside": timing["seconds"],
        "seconds_without_synthesis": seconds - timing["seconds"],
        "matching_seconds": maps.provenance.matching_seconds,
        "setup_seconds": setup,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_run_mib": baseline_rss / 1024,
        "memory_setting_mib": settings.memory_mb,
    }


def bench_volume_3d(quick: bool) -> dict:
    """A 256 x 256 x 40 knee volume end to end (fast DM and NN, each in a fresh process): time, peak memory."""
    shape = (8, 64, 64) if quick else (40, 256, 256)
    root = str(Path(__file__).resolve().parent.parent)
    machine = load()
    runs = []
    for method in ("dm", "nn"):
        script = _VOLUME_SCRIPT.format(root=root, shape=shape, method=method)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        if done.returncode != 0:
            runs.append({"method": method, "error": done.stderr.strip().splitlines()[-1:]})
            continue
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"load": machine, "runs": runs}


def bench_device(quick: bool) -> dict:
    """DM GEMMs and the EPG on a CUDA device against the CPU, when torch sees one."""
    from mrfviewer.devices import cuda_available
    from mrfviewer.matching import best_atoms, best_atoms_torch

    if not cuda_available():
        return {"gpu": None, "note": "no CUDA device on this machine: the device figure is measured where one is"}
    rng = np.random.default_rng(0)
    atoms = (rng.standard_normal((500_000, 16)) + 1j * rng.standard_normal((500_000, 16))).astype(np.complex64)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    y = (rng.standard_normal((8192, 16)) + 1j * rng.standard_normal((8192, 16))).astype(np.complex64)
    start = time.perf_counter()
    best_atoms(y, atoms)
    cpu = time.perf_counter() - start
    on_gpu = torch.from_numpy(np.conjugate(atoms)).cuda()
    best_atoms_torch(y[:64], on_gpu)
    torch.cuda.synchronize()
    start = time.perf_counter()
    best_atoms_torch(y, on_gpu, memory_mb=1024)
    torch.cuda.synchronize()
    gpu = time.perf_counter() - start
    return {"gpu": torch.cuda.get_device_name(0), "cpu_seconds": cpu, "gpu_seconds": gpu, "speedup": cpu / gpu}


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def table_rows(r: dict) -> list[str]:
    """Rows 9-13 of the benchmark table (the figures of issue 17), each against its target."""
    rows = []
    if "fast_dm" in r:
        d = r["fast_dm"]
        for name, label in (("knee4_5pct", "4-parameter knee grid, 5 % steps"), ("default_knee_grid", "default grid")):
            if name not in d:
                continue
            x = d[name]
            diffs = ", ".join(f"{k} {v['median_pct']:.3f}" for k, v in x["map_differences"].items())
            ok = x["speedup"] >= 10 and x["same_atom"] >= 0.995
            ok &= all(v["median_pct"] < 0.5 for v in x["map_differences"].values())
            rows.append(
                f"| 9 | fast DM, {label} ({x['atoms']:,} atoms, K {x['rank']}), {x['voxels']:,} knee voxels with a "
                f"B1 field, SNR 50 (load {d['load']['load_1min']}) | {x['fast_matching_seconds']:.2f} s matching; "
                f"{100 * x['same_atom']:.2f} % of voxels on the exhaustive atom; median map differences % {diffs} | "
                f"exhaustive {x['exhaustive_matching_seconds']:.1f} s ({x['speedup']:.1f}x) | >= 10x, >= 99.5 %, "
                f"< 0.5 % | {_met(ok)} |"
            )
    if "generation" in r:
        g = r["generation"]
        f = g["flops"]
        eta = "; ".join(
            f"at {100 * e['fraction']:.0f} %: {e['eta_s']:.0f} s left said, {e['true_left_s']:.0f} s true"
            for e in g["eta"]
        )
        cp = g["competing_process"]
        rows.append(
            f"| 10 | dictionary generation, 4-parameter knee grid ({g['atoms']:,} atoms; EPG "
            f"{f['per_atom'] / 1e3:.0f}k flop per atom, {f['mean_states']:.1f} states on average; "
            f"load {g['load']['load_1min']}) | EPG {g['simulation_atoms_per_s']:,.0f} atoms/s = "
            f"{100 * g['simulation_fraction_of_roofline']:.0f} % of the roofline; whole dictionary (SVD, "
            f"projection) {g['dictionary_atoms_per_s']:,.0f} atoms/s = "
            f"{100 * g['dictionary_fraction_of_roofline']:.0f} % ({g['dictionary_seconds']:.0f} s) | roofline: "
            f"float32 GEMM {g['sgemm_gflops']:.0f} GFLOP/s / flop per atom = {g['roofline_atoms_per_s']:,.0f} atoms/s "
            f"(arithmetic executed: {g['executed_gflops']:.1f} GFLOP/s, {100 * g['executed_fraction_of_sgemm']:.1f} % "
            f"of GEMM) | >= 30 % of the roofline | {_met(g['simulation_fraction_of_roofline'] >= 0.3)} |"
        )
        rows.append(f"| 10b | same, time left reported during the build | {eta} | - | honest | see text |")
        rows.append(
            f"| 10c | EPG with a competing process spinning on one of the cores ({cp['atoms']:,} atoms) | "
            f"{cp['loaded_atoms_per_s']:,.0f} atoms/s | without it {cp['idle_atoms_per_s']:,.0f} atoms/s "
            f"({cp['loaded_over_idle']:.2f} of it; one core taken: 0.5 is the fair share) | no collapse (>= 0.4) | "
            f"{_met(cp['loaded_over_idle'] >= 0.4)} |"
        )
    if "demo" in r:
        d = r["demo"]
        rows.append(
            f"| 11 | first demo run, fresh cache (`mrfviewer demo`: data, dictionary, DM, NN, exports; load "
            f"{d['load']['load_1min']}) | {d['seconds']:.0f} s (exit {d['exit_code']}), "
            f"{d['cpu_seconds']:.0f} s of CPU | - | <= 180 s | "
            f"{_met(d['seconds'] <= 180 and d['exit_code'] == 0)} |"
        )
    if "volume_3d" in r:
        for v in r["volume_3d"]["runs"]:
            if "error" in v:
                rows.append(f"| 12 | 3D volume, {v['method'].upper()} | failed: {v['error']} | - | - | **not met** |")
                continue
            rows.append(
                f"| 12 | 3D knee volume {v['shape'][3]} x {v['shape'][2]} x {v['shape'][1]} ({v['series_gib']:.0f} GiB "
                f"series, made slab by slab), {v['method'].upper()}{' fast' if v['method'] == 'dm' else ''}, "
                f"{v['voxels']:,} voxels | {v['seconds']:.0f} s end to end ({v['seconds_without_synthesis']:.0f} s "
                f"without making the data), peak {v['peak_rss_mib']:,.0f} MiB RSS | memory setting "
                f"{v['memory_setting_mib']:.0f} MiB | a figure | measured |"
            )
    if "device" in r:
        d = r["device"]
        if d.get("gpu"):
            rows.append(
                f"| 13 | DM GEMMs on {d['gpu']} | {d['gpu_seconds']:.2f} s | CPU {d['cpu_seconds']:.2f} s "
                f"({d['speedup']:.1f}x) | a figure | measured |"
            )
        else:
            rows.append(f"| 13 | device figure | {d['note']} | - | - | not run |")
    return rows
