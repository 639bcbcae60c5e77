"""The fine-tuning study: how training choices (and DM settings) change the errors.

One factor at a time is varied around a baseline configuration (learning rate,
batch size, epochs / early stopping, depth, width, activation, loss, training-set
size, sampling, training SNR, SVD rank K); every run is evaluated on one common
test set of off-grid fingerprints at the study SNR. DM is varied too: grid step
(memory and time), SVD rank and the sub-grid refinement.

Selection rule (stated in the report): the best configuration is the run with the
lowest mean MAPE over T1, T2 and T1rho at the study SNR; runs within 2 % (relative)
of it are tied and the faster inference wins.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mrfviewer.dictionary import DictionarySettings, generate_dictionary  # noqa: E402
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report  # noqa: E402
from mrfviewer.grid import grid_from_dict  # noqa: E402
from mrfviewer.io.atomic import atomic_write, atomic_write_text  # noqa: E402
from mrfviewer.matching import match_compressed  # noqa: E402
from mrfviewer.nn.features import fingerprint_features  # noqa: E402
from mrfviewer.nn.training import TrainConfig, TrainingData, make_training_data, train  # noqa: E402
from mrfviewer.sampling import sample_parameters  # noqa: E402
from mrfviewer.sequence import Sequence  # noqa: E402
from mrfviewer.simulation import simulate_fingerprints  # noqa: E402
from mrfviewer.synthesis import add_noise  # noqa: E402

PARAMS = ("T1", "T2", "T1rho")
# Settings that change the training data (runs that share them share the data).
_DATA_KEYS = ("n_train", "n_val", "sampling", "rank", "signal", "seed", "grid")


@dataclass
class StudyPreset:
    """Baseline, factor levels and sizes of a study."""

    name: str
    baseline: TrainConfig
    factors: dict[str, list[Any]]
    dm_steps: list[float]
    dm_ranks: list[int]
    n_test: int
    snr: float = 30.0
    seed: int = 0
    grid_ranges: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"t1_ms": (100, 3000), "t2_ms": (5, 300), "t1rho_ms": (5, 300)}
    )

    def grid_json(self, step_percent: float) -> dict[str, Any]:
        return {a: {"min": lo, "max": hi, "step_percent": step_percent} for a, (lo, hi) in self.grid_ranges.items()}


def quick_preset() -> StudyPreset:
    """A few minutes on 2 cores (used by the tests); small nets, few epochs."""
    base = TrainConfig(hidden=[64, 64], epochs=6, patience=3, n_train=6000, n_val=1000, batch_size=256, rank=8)
    return StudyPreset(
        name="quick",
        baseline=base,
        factors={
            "learning_rate": [3e-4, 3e-3],
            "batch_size": [64, 1024],
            "depth": [1, 3],
            "activation": ["tanh"],
            "loss": ["relative"],
            "n_train": [2000],
            "sampling": ["grid"],
            "train_snr": ["noiseless", [5, 50]],
            "rank": [4, 12],
        },
        dm_steps=[20.0, 12.0],
        dm_ranks=[4, 12],
        n_test=300,
    )


def full_preset() -> StudyPreset:
    """About an hour on 2 cores."""
    base = TrainConfig(hidden=[256, 256, 256], epochs=40, patience=8, n_train=60_000, n_val=6000, batch_size=512)
    return StudyPreset(
        name="full",
        baseline=base,
        factors={
            "learning_rate": [1e-4, 3e-4, 3e-3],
            "batch_size": [128, 2048],
            "epochs": [10, 80],
            "depth": [1, 2, 4],
            "width": [64, 128, 512],
            "activation": ["tanh", "gelu", "silu"],
            "loss": ["relative"],
            "n_train": [10_000, 30_000, 120_000],
            "sampling": ["grid"],
            "train_snr": ["noiseless", [50, 50], [5, 100]],
            "rank": [4, 8, 16, 24],
        },
        dm_steps=[15.0, 10.0, 7.0, 5.0],
        dm_ranks=[4, 6, 9, 16],
        n_test=2000,
    )


def _apply(base: TrainConfig, factor: str, level: Any) -> TrainConfig:
    if factor == "depth":
        return replace(base, hidden=[base.hidden[0]] * int(level))
    if factor == "width":
        return replace(base, hidden=[int(level)] * len(base.hidden))
    if factor == "train_snr":
        if level == "noiseless":
            return replace(base, snr_min=None, snr_max=None)
        return replace(base, snr_min=float(level[0]), snr_max=float(level[1]))
    return replace(base, **{factor: level})


def _level_text(level: Any) -> str:
    return "-".join(str(v) for v in level) if isinstance(level, list) else str(level)


@dataclass
class TestSet:
    truth: np.ndarray  # (n, 4)
    noisy: np.ndarray  # (n, T) complex64 at the study SNR


def make_test_set(sequence: Sequence, preset: StudyPreset) -> TestSet:
    grid = grid_from_dict(preset.grid_json(10.0))
    rng = np.random.default_rng(preset.seed + 999)
    truth = sample_parameters(grid, preset.n_test, rng)
    clean = simulate_fingerprints(sequence, truth[:, 0], truth[:, 1], truth[:, 2], truth[:, 3]).numpy()
    return TestSet(truth, add_noise(clean, preset.snr, rng)[0])


def _mape(est: np.ndarray, truth: np.ndarray) -> list[float]:
    return [float(100 * np.mean(np.abs(est[:, i] / truth[:, i] - 1))) for i in range(3)]


def _nn_run(
    sequence: Sequence, config: TrainConfig, data: TrainingData, test: TestSet, cancel: CancelToken | None
) -> dict[str, Any]:
    result = train(sequence, config, data=data, cancel=cancel)
    y = torch.from_numpy(test.noisy @ result.basis.conj().T)
    start = time.perf_counter()
    with torch.inference_mode():
        out, _ = result.model(fingerprint_features(y))
    infer = time.perf_counter() - start
    est = torch.exp(out.double()[:, :-1] * result.sd[:-1] + result.mean[:-1]).numpy()
    return {
        "mape": _mape(est, test.truth),
        "train_seconds": result.seconds,
        "voxels_per_s": len(y) / max(infer, 1e-9),
        "memory_mb": sum(p.numel() for p in result.model.parameters()) * 4 / 2**20,
        "epochs_run": len(result.history),
        "history": result.history,
    }


def _dm_runs(sequence: Sequence, preset: StudyPreset, test: TestSet, cancel: CancelToken | None) -> list[dict]:
    rows = []
    for step in preset.dm_steps:
        check_cancel(cancel)
        grid = grid_from_dict(preset.grid_json(step))
        start = time.perf_counter()
        dictionary = generate_dictionary(
            sequence, grid, DictionarySettings(store_rank=max(preset.dm_ranks)), cancel=cancel
        )
        gen_seconds = time.perf_counter() - start
        for rank in preset.dm_ranks:
            for refine in (False, True):
                if rank != max(preset.dm_ranks) and not refine:
                    continue  # the refinement factor is shown at the largest rank only
                y = dictionary.project(test.noisy, rank=rank)
                t0 = time.perf_counter()
                result = match_compressed(dictionary, y, rank=rank, refine=refine)
                seconds = time.perf_counter() - t0
                rows.append(
                    {
                        "kind": "dm",
                        "factor": "dm",
                        "level": f"step {step:g}% K {rank} refine {refine}",
                        "settings": json.dumps({"step_percent": step, "rank": rank, "refine": refine}),
                        "mape": _mape(result.params, test.truth),
                        "train_seconds": gen_seconds,
                        "voxels_per_s": len(y) / max(seconds, 1e-9),
                        "memory_mb": dictionary.n_atoms * rank * 8 / 2**20,
                        "epochs_run": 0,
                        "n_atoms": dictionary.n_atoms,
                    }
                )
    return rows


def run_study(
    sequence: Sequence,
    output: Path,
    preset: StudyPreset,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Run the sweep and write ``study.csv``, figures and ``study.md`` into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    test = make_test_set(sequence, preset)
    base = replace(preset.baseline, grid=preset.grid_json(10.0), seed=preset.seed)
    runs: list[tuple[str, Any, TrainConfig]] = [("baseline", "baseline", base)]
    for factor, levels in preset.factors.items():
        runs += [(factor, level, _apply(base, factor, level)) for level in levels]
    data_cache: dict[str, TrainingData] = {}
    rows: list[dict[str, Any]] = []
    total = len(runs) + 1
    for i, (factor, level, config) in enumerate(runs):
        check_cancel(cancel)
        report(progress, i / total, f"NN run {i + 1} of {len(runs)}: {factor} = {_level_text(level)}")
        key = json.dumps({k: getattr(config, k) for k in _DATA_KEYS}, sort_keys=True)
        if key not in data_cache:
            data_cache[key] = make_training_data(sequence, config, cancel=cancel)
        run = _nn_run(sequence, config, data_cache[key], test, cancel)
        rows.append(
            {
                "kind": "nn",
                "factor": factor,
                "level": _level_text(level),
                "settings": json.dumps(asdict(config) | {"grid": "study grid ranges"}),
                **run,
            }
        )
    report(progress, len(runs) / total, "DM runs")
    rows += _dm_runs(sequence, preset, test, cancel)
    for r in rows:
        r["mape_mean"] = float(np.mean(r["mape"]))
    best = select_best([r for r in rows if r["kind"] == "nn"])
    best_dm = min((r for r in rows if r["kind"] == "dm"), key=lambda r: r["mape_mean"])
    _write_outputs(output, preset, rows, best, best_dm)
    report(progress, 1.0, "study written")
    return {"best": best, "best_dm": best_dm, "rows": rows}


def select_best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The stated rule: lowest mean MAPE; within 2 % of it, the fastest inference."""
    lowest = min(r["mape_mean"] for r in rows)
    tied = [r for r in rows if r["mape_mean"] <= lowest * 1.02]
    return max(tied, key=lambda r: r["voxels_per_s"])


_CSV_COLUMNS = (
    "kind",
    "factor",
    "level",
    "mape_T1",
    "mape_T2",
    "mape_T1rho",
    "mape_mean",
    "train_seconds",
    "voxels_per_s",
    "memory_mb",
    "epochs_run",
    "settings",
)


def _write_outputs(output: Path, preset: StudyPreset, rows: list[dict], best: dict, best_dm: dict) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                r["kind"],
                r["factor"],
                r["level"],
                *(f"{m:.4f}" for m in r["mape"]),
                f"{r['mape_mean']:.4f}",
                f"{r['train_seconds']:.2f}",
                f"{r['voxels_per_s']:.4g}",
                f"{r['memory_mb']:.3f}",
                r["epochs_run"],
                r["settings"],
            ]
        )
    atomic_write_text(output / "study.csv", buffer.getvalue(), overwrite=True)
    baseline = next(r for r in rows if r["factor"] == "baseline")
    figures = []
    for factor in preset.factors:
        sub = [baseline] + [r for r in rows if r["factor"] == factor]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        x = np.arange(len(sub))
        for j, p in enumerate(PARAMS):
            ax.bar(x + (j - 1) * 0.27, [r["mape"][j] for r in sub], width=0.27, label=p)
        ax.set_xticks(x, ["baseline" if r is baseline else r["level"] for r in sub], rotation=20, fontsize=8)
        ax.set_ylabel(f"MAPE (%) at SNR {preset.snr:g}")
        ax.set_title(f"NN: {factor}")
        ax.legend(fontsize=7)
        name = f"study_{factor}.png"
        atomic_write(output / name, functools.partial(fig.savefig, dpi=100, bbox_inches="tight", format="png"), True)
        plt.close(fig)
        figures.append(name)
    dm = [r for r in rows if r["kind"] == "dm"]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for r in dm:
        ax.scatter(r["memory_mb"], r["mape_mean"], marker="o" if "True" in r["level"] else "x")
        ax.annotate(r["level"].replace(" refine", "\n"), (r["memory_mb"], r["mape_mean"]), fontsize=6)
    ax.scatter([best["memory_mb"]], [best["mape_mean"]], marker="*", s=120, color="k", label="best NN")
    ax.set_xscale("log")
    ax.set_xlabel("memory (MiB: dictionary K x atoms, or NN weights)")
    ax.set_ylabel("mean MAPE (%)")
    ax.set_title("DM settings vs best NN")
    ax.legend(fontsize=7)
    atomic_write(output / "study_dm.png", lambda p: fig.savefig(p, dpi=100, bbox_inches="tight", format="png"), True)
    plt.close(fig)
    # DM at about the memory of the best NN, for an equal-memory comparison.
    equal = min(dm, key=lambda r: abs(np.log(r["memory_mb"] / max(best["memory_mb"], 1e-9))))
    lines = [
        f"# Fine-tuning study ({preset.name} preset)",
        "",
        "All numbers from simulation: one common test set of "
        f"{preset.n_test} off-grid fingerprints at SNR {preset.snr:g} (per time point).",
        "One factor at a time is varied around the baseline; see `study.csv` for every run.",
        "",
        "Selection rule: lowest mean MAPE over T1, T2 and T1rho; runs within 2 % of it are tied and",
        "the fastest inference wins.",
        "",
        f"* baseline NN: MAPE T1/T2/T1rho {'/'.join(f'{m:.2f}' for m in baseline['mape'])} %",
        f"* best NN: {best['factor']} = {best['level']}: "
        f"{'/'.join(f'{m:.2f}' for m in best['mape'])} % ({best['voxels_per_s']:.3g} voxels/s, "
        f"{best['memory_mb']:.2f} MiB)",
        f"* best DM: {best_dm['level']}: {'/'.join(f'{m:.2f}' for m in best_dm['mape'])} % "
        f"({best_dm['voxels_per_s']:.3g} voxels/s, {best_dm['memory_mb']:.2f} MiB)",
        f"* DM at about the best NN's memory: {equal['level']}: "
        f"{'/'.join(f'{m:.2f}' for m in equal['mape'])} % ({equal['memory_mb']:.2f} MiB)",
        "",
        "| kind | factor | level | MAPE T1 | MAPE T2 | MAPE T1rho | mean | train/gen s | voxels/s | MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['factor']} | {r['level']} | "
            + " | ".join(f"{m:.2f}" for m in r["mape"])
            + f" | {r['mape_mean']:.2f} | {r['train_seconds']:.1f} | {r['voxels_per_s']:.3g} | {r['memory_mb']:.2f} |"
        )
    lines += ["", *(f"![{f}]({f})" for f in [*figures, "study_dm.png"])]
    atomic_write_text(output / "study.md", "\n".join(lines) + "\n", overwrite=True)
    best_config = {k: v for k, v in json.loads(best["settings"]).items() if k != "grid"}
    atomic_write_text(output / "best_config.json", json.dumps(best_config, indent=1) + "\n", overwrite=True)
