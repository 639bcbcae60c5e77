"""Training the MRF network on simulated, noise-augmented fingerprints.

Training data come from the simulator, not from the DM grid: parameters are
sampled log-uniformly inside the grid's ranges and constraints (or, for
comparison, taken from the grid). Noise is drawn afresh for every batch at an
SNR drawn log-uniformly from ``[snr_min, snr_max]``; it is added in the SVD
domain, which is exact for white time-domain noise and an orthonormal basis
(the out-of-subspace part is discarded by the projection anyway).

Targets are log(T1), log(T2), log(T1rho) (and log(B1)), standardised with the
training-set mean and SD, plus the log of the compressed signal scale (used to
recover PD). A second head predicts the log-variance of each parameter with a
Gaussian likelihood on the detached residuals, giving a per-voxel uncertainty
without changing the mean fit.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrfviewer import __version__, schemas
from mrfviewer.dictionary import _svd_basis
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report
from mrfviewer.errors import MRFError
from mrfviewer.grid import ParameterGrid, default_knee_grid, grid_from_dict
from mrfviewer.io.atomic import atomic_write
from mrfviewer.nn.features import fingerprint_features
from mrfviewer.nn.model import ACTIVATIONS, MRFNet
from mrfviewer.sampling import sample_knee_prior, sample_parameters
from mrfviewer.sequence import Sequence
from mrfviewer.simulation import simulate_fingerprints

LOSSES = ("mse_log", "relative")
SAMPLINGS = ("log-uniform", "grid", "knee")
SCHEDULES = ("plateau", "cosine")


@dataclass
class TrainConfig:
    """Every setting of a training run (all recorded in the model's metadata)."""

    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    activation: str = "relu"
    loss: str = "mse_log"
    learning_rate: float = 1e-3
    batch_size: int = 512
    epochs: int = 60
    patience: int = 10
    weight_decay: float = 0.0
    n_train: int = 100_000
    n_val: int = 10_000
    sampling: str = "log-uniform"
    snr_min: float | None = 20.0
    snr_max: float | None = 200.0
    val_snr: float = 50.0
    rank: int = 12
    signal: str = "complex"
    seed: int = 0
    grid: dict[str, Any] | None = None  # grid JSON (ranges + constraints); default knee grid
    #: Learning-rate schedule: halve on a plateau of the validation loss, or cosine decay over the epochs.
    schedule: str = "plateau"

    def validate(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise MRFError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.loss not in LOSSES:
            raise MRFError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.sampling not in SAMPLINGS:
            raise MRFError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if not self.hidden or any(not isinstance(h, int) or not 1 <= h <= 8192 for h in self.hidden):
            raise MRFError("hidden must be a non-empty list of layer widths between 1 and 8192")
        for name in ("learning_rate", "batch_size", "epochs", "n_train", "n_val", "rank", "val_snr"):
            if not getattr(self, name) > 0:
                raise MRFError(f"{name} must be positive")
        if (self.snr_min is None) != (self.snr_max is None):
            raise MRFError("give both snr_min and snr_max, or neither (noiseless training)")
        if self.snr_min is not None and not 0 < self.snr_min <= self.snr_max:  # type: ignore[operator]
            raise MRFError("need 0 < snr_min <= snr_max")
        if self.signal not in ("complex", "magnitude"):
            raise MRFError("signal must be 'complex' or 'magnitude'")
        if self.schedule not in SCHEDULES:
            raise MRFError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    def parameter_grid(self) -> ParameterGrid:
        return grid_from_dict(self.grid) if self.grid is not None else default_knee_grid()


def config_from_dict(raw: Any, source: str = "training config") -> TrainConfig:
    """A :class:`TrainConfig` from parsed JSON, validated by :class:`mrfviewer.schemas.TrainConfigFile`."""
    if not isinstance(raw, dict):
        raise MRFError(f"{source}: a training config must be a JSON object")
    model = schemas.validate(schemas.TrainConfigFile, raw, source)
    values = {f.name: getattr(model, f.name) for f in fields(TrainConfig) if f.name != "grid"}
    config = TrainConfig(**values, grid=raw.get("grid"))
    config.validate()
    return config


def load_config(path: str | Path) -> TrainConfig:
    """A training config file (a regular file of bounded size); errors name the file and the field."""
    return config_from_dict(schemas.read_json(path, "training config"), str(path))


@dataclass
class TrainingData:
    """Compressed clean fingerprints and their targets (training and validation)."""

    basis: np.ndarray  # (K, T) complex64
    coeffs: torch.Tensor  # (n, K) complex64, clean
    sigma_per_snr1: torch.Tensor  # (n,) noise SD at SNR 1: time-domain RMS of the fingerprint
    log_params: torch.Tensor  # (n, P) float64
    log_scale: torch.Tensor  # (n,) float64, log norm of the compressed clean fingerprint
    n_train: int


def _param_columns(grid: ParameterGrid) -> list[int]:
    return [0, 1, 2, 3] if grid.has_b1 else [0, 1, 2]


def make_training_data(
    sequence: Sequence,
    config: TrainConfig,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    chunk: int = 8192,
) -> TrainingData:
    """Simulate and compress the training and validation fingerprints (seeded)."""
    grid = config.parameter_grid()
    rng = np.random.default_rng(config.seed)
    n = config.n_train + config.n_val
    if config.sampling == "grid":
        atoms, _ = grid.atoms()
        train = atoms[rng.choice(len(atoms), config.n_train, replace=len(atoms) < config.n_train)]
        params = np.concatenate([train, sample_parameters(grid, config.n_val, rng)])
    elif config.sampling == "knee":
        # Training on the prior of the scans it serves: the network approaches the posterior mean there.
        params = np.concatenate(
            [sample_knee_prior(grid, config.n_train, rng), sample_parameters(grid, config.n_val, rng)]
        )
    else:
        params = sample_parameters(grid, n, rng)
    t = sequence.n_timepoints

    def simulate(p: np.ndarray) -> torch.Tensor:
        fp = simulate_fingerprints(sequence, p[:, 0], p[:, 1], p[:, 2], p[:, 3], cancel=cancel)
        return fp.abs().to(fp.dtype) if config.signal == "magnitude" else fp

    first = simulate(params[: min(n, 10_000)])
    basis, _ = _svd_basis(first)
    k = min(config.rank, basis.shape[0])
    basis = np.ascontiguousarray(basis[:k]).astype(np.complex64)
    basis_t = torch.from_numpy(basis.conj().T.copy())
    coeffs = torch.empty((n, k), dtype=torch.complex64)
    rms = torch.empty(n, dtype=torch.float32)
    for start in range(0, n, chunk):
        check_cancel(cancel)
        stop = min(start + chunk, n)
        fp = first[start:stop] if stop <= first.shape[0] else simulate(params[start:stop])
        coeffs[start:stop] = fp @ basis_t
        rms[start:stop] = torch.linalg.vector_norm(fp, dim=1) / math.sqrt(t)
        report(progress, stop / n, f"simulated {stop} of {n} training fingerprints")
    cols = _param_columns(grid)
    return TrainingData(
        basis=basis,
        coeffs=coeffs,
        sigma_per_snr1=rms,
        log_params=torch.from_numpy(np.log(params[:, cols])),
        log_scale=torch.log(torch.linalg.vector_norm(coeffs, dim=1).double()),
        n_train=config.n_train,
    )


def add_compressed_noise(
    coeffs: torch.Tensor, sigma_per_snr1: torch.Tensor, snr: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Complex Gaussian noise with E|n|^2 = (rms / snr)^2 per coefficient (see module docstring)."""
    sigma = (sigma_per_snr1 / snr).to(torch.float32)[:, None] / math.sqrt(2)
    noise = torch.randn((2, *coeffs.shape), generator=generator, dtype=torch.float32)
    return coeffs + torch.complex(noise[0], noise[1]) * sigma


def _loss(config: TrainConfig, pred: torch.Tensor, target: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    if config.loss == "mse_log":
        return torch.mean((pred - target) ** 2)
    # Relative error in ms: |exp(log p_hat - log p) - 1|, on de-standardised log values.
    diff = (pred[:, :-1] - target[:, :-1]) * sd[:-1]
    return torch.mean(torch.abs(torch.expm1(diff.clamp(-10, 10)))) + torch.mean((pred[:, -1] - target[:, -1]) ** 2)


def evaluate_mape(
    model: MRFNet, features: torch.Tensor, log_params: torch.Tensor, mean: torch.Tensor, sd: torch.Tensor
) -> list[float]:
    """Mean absolute percentage error per parameter on given features."""
    model.eval()
    with torch.no_grad():
        out, _ = model(features)
    est = out[:, :-1].double() * sd[:-1] + mean[:-1]
    return (100 * torch.mean(torch.abs(torch.expm1(est - log_params)), dim=0)).tolist()


@dataclass
class TrainResult:
    """The trained network and everything needed to save and describe it."""

    model: MRFNet
    config: TrainConfig
    basis: np.ndarray
    mean: torch.Tensor
    sd: torch.Tensor
    history: list[dict[str, float]]
    val_mape: dict[str, dict[str, float]]
    param_names: list[str]
    seconds: float
    sequence: Sequence

    def metadata(self) -> dict[str, Any]:
        grid = self.config.parameter_grid()
        return {
            "format": "mrfviewer-nn",
            "format_version": 1,
            "software_version": __version__,
            "sequence_name": self.sequence.name,
            "sequence_hash": self.sequence.hash,
            "n_timepoints": self.sequence.n_timepoints,
            "signal": self.config.signal,
            "param_names": self.param_names,
            "parameter_ranges": {p: list(r) for p, r in grid.ranges().items()},
            "constraints": list(grid.constraints),
            "svd_rank": int(self.basis.shape[0]),
            "basis_sha256": basis_hash(self.basis),
            "normalisation": {
                "features": "coefficients / norm, rotated so the first is real >= 0; [real, imag]",
                "targets": "log(ms) standardised: (log p - mean) / sd; last column log signal scale",
                "mean": self.mean.tolist(),
                "sd": self.sd.tolist(),
            },
            "architecture": {
                "type": "MRFNet",
                "n_inputs": 2 * int(self.basis.shape[0]),
                "n_params": len(self.param_names),
                "hidden": list(self.config.hidden),
                "activation": self.config.activation,
            },
            "training": asdict(self.config),
            "training_seconds": round(self.seconds, 2),
            "history": self.history,
            "validation_mape_pct": self.val_mape,
        }


def basis_hash(basis: np.ndarray) -> str:
    """Content hash of an SVD basis (real and imaginary parts as float32, signed zeros unified)."""
    parts = [np.ascontiguousarray(np.asarray(x, dtype=np.float32) + np.float32(0.0)) for x in (basis.real, basis.imag)]
    return hashlib.sha256(parts[0].tobytes() + parts[1].tobytes()).hexdigest()[:16]


def train(
    sequence: Sequence,
    config: TrainConfig | None = None,
    *,
    data: TrainingData | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> TrainResult:
    """Train a network for ``sequence`` (deterministic on CPU for a given seed and thread count).

    With ``checkpoint``, the state after each epoch is saved there (atomically);
    ``resume=True`` continues from it, otherwise training restarts from scratch.
    """
    config = config or TrainConfig()
    config.validate()
    torch.manual_seed(config.seed)
    start_time = time.perf_counter()
    if data is None:
        data = make_training_data(sequence, config, progress=lambda f, m: report(progress, 0.2 * f, m), cancel=cancel)
    grid = config.parameter_grid()
    names = ["T1", "T2", "T1rho", "B1"][: len(_param_columns(grid))]
    targets = torch.cat([data.log_params, data.log_scale[:, None]], dim=1)
    tr = slice(0, data.n_train)
    va = slice(data.n_train, None)
    mean = targets[tr].mean(dim=0)
    sd = targets[tr].std(dim=0).clamp_min(1e-6)
    y_train = ((targets[tr] - mean) / sd).float()
    k = data.basis.shape[0]
    model = MRFNet(2 * k, len(names), config.hidden, config.activation)
    gen = torch.Generator().manual_seed(config.seed + 1)
    log_snr = None
    if config.snr_min is not None:
        log_snr = (math.log(config.snr_min), math.log(config.snr_max))  # type: ignore[arg-type]
    # Input standardisation from features as the network will see them (noise included):
    # clean statistics would blow up the noise in the small high-order coefficients.
    sample = torch.randperm(data.n_train, generator=gen)[:20000]
    coeffs = data.coeffs[sample]
    if log_snr is not None:
        snr = torch.exp(torch.empty(len(sample)).uniform_(*log_snr, generator=gen))
        coeffs = add_compressed_noise(coeffs, data.sigma_per_snr1[sample], snr, gen)
    features = fingerprint_features(coeffs)
    model.in_mean.copy_(features.mean(dim=0))
    model.in_sd.copy_(features.std(dim=0).clamp_min(1e-3))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler: Any
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimiser, T_max=config.epochs, eta_min=0.01 * config.learning_rate
        )
    else:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimiser, factor=0.5, patience=max(1, config.patience // 3)
        )
    val_gen = torch.Generator().manual_seed(config.seed + 2)
    val_snr = torch.full((data.coeffs[va].shape[0],), config.val_snr)
    val_noisy = fingerprint_features(add_compressed_noise(data.coeffs[va], data.sigma_per_snr1[va], val_snr, val_gen))
    val_clean = fingerprint_features(data.coeffs[va])
    y_val = ((targets[va] - mean) / sd).float()
    history: list[dict[str, float]] = []
    best_state, best_loss, stale, first_epoch = None, math.inf, 0, 0
    if resume and checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        history = json.loads(bytes(state["history"].tolist()).decode())
        best_state = state["best"]
        best_loss, stale, first_epoch = float(state["best_loss"]), int(state["stale"]), int(state["epoch"])
    n_train = data.n_train
    for epoch in range(first_epoch, config.epochs):
        model.train()
        order = torch.randperm(n_train, generator=gen)
        total, batches = 0.0, 0
        for b0 in range(0, n_train, config.batch_size):
            check_cancel(cancel)
            idx = order[b0 : b0 + config.batch_size]
            coeffs = data.coeffs[idx]
            if log_snr is not None:
                snr = torch.exp(torch.empty(len(idx)).uniform_(*log_snr, generator=gen))
                coeffs = add_compressed_noise(coeffs, data.sigma_per_snr1[idx], snr, gen)
            x = fingerprint_features(coeffs)
            pred, log_var = model(x)
            fit = _loss(config, pred, y_train[idx], sd.float())
            resid = (pred[:, :-1].detach() - y_train[idx][:, :-1]) ** 2
            nll = torch.mean(0.5 * (log_var + resid * torch.exp(-log_var)))
            optimiser.zero_grad()
            (fit + nll).backward()
            optimiser.step()
            total += float(fit.detach())
            batches += 1
        model.eval()
        with torch.no_grad():
            val_loss = float(_loss(config, model(val_noisy)[0], y_val, sd.float()))
        scheduler.step() if config.schedule == "cosine" else scheduler.step(val_loss)
        mape = evaluate_mape(model, val_noisy, data.log_params[va], mean, sd)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": total / max(batches, 1),
                "val_loss": val_loss,
                "lr": optimiser.param_groups[0]["lr"],
            }
            | {f"val_mape_{n}": round(m, 4) for n, m in zip(names, mape, strict=True)}
        )
        if val_loss < best_loss - 1e-6:
            best_loss, stale, best_state = val_loss, 0, copy.deepcopy(model.state_dict())
        else:
            stale += 1
        report(progress, 0.2 + 0.8 * (epoch + 1) / config.epochs, f"epoch {epoch + 1}: val loss {val_loss:.4g}")
        if checkpoint is not None:
            _save_checkpoint(
                checkpoint, model, optimiser, scheduler, gen, history, best_state, best_loss, stale, epoch + 1
            )
        if stale >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    val_mape = {
        f"snr_{config.val_snr:g}": dict(
            zip(names, evaluate_mape(model, val_noisy, data.log_params[va], mean, sd), strict=True)
        ),
        "noiseless": dict(zip(names, evaluate_mape(model, val_clean, data.log_params[va], mean, sd), strict=True)),
    }
    report(progress, 1.0, "training finished")
    return TrainResult(
        model=model,
        config=config,
        basis=data.basis,
        mean=mean,
        sd=sd,
        history=history,
        val_mape=val_mape,
        param_names=names,
        seconds=time.perf_counter() - start_time,
        sequence=sequence,
    )


def _save_checkpoint(path, model, optimiser, scheduler, gen, history, best, best_loss, stale, epoch) -> None:
    state = {
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": gen.get_state(),
        "history": torch.tensor(list(json.dumps(history).encode()), dtype=torch.uint8),
        "best": best if best is not None else model.state_dict(),
        "best_loss": torch.tensor(best_loss),
        "stale": torch.tensor(stale),
        "epoch": torch.tensor(epoch),
    }
    atomic_write(path, lambda p: torch.save(state, p), overwrite=True)
