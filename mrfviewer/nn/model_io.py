"""Saving and loading trained networks safely.

A model is a folder with ``model.pt`` (a flat dict of tensors: the state dict,
the SVD basis as real and imaginary parts and the target normalisation, loaded
with ``torch.load(weights_only=True)`` so no pickled code can run) and
``model.json`` (metadata, validated on load).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrfviewer import schemas
from mrfviewer.errors import MRFError
from mrfviewer.io.atomic import atomic_write, atomic_write_text, check_writable_target
from mrfviewer.nn.model import MRFNet
from mrfviewer.nn.training import TrainResult, basis_hash
from mrfviewer.resources import models_dir

WEIGHTS = "model.pt"
METADATA = "model.json"
#: Largest weights file read (the shipped networks have under 1 MiB).
MAX_WEIGHTS_BYTES = 512 * 2**20


@dataclass
class LoadedModel:
    """A network ready for inference, with its basis, normalisation and metadata."""

    net: MRFNet
    basis: np.ndarray  # (K, T) complex64
    mean: torch.Tensor
    sd: torch.Tensor
    metadata: dict[str, Any]
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def param_names(self) -> list[str]:
        return list(self.metadata["param_names"])

    @property
    def identity(self) -> str:
        return f"model {self.name} (basis {self.metadata['basis_sha256']})"


def save_model(result: TrainResult, folder: str | Path, overwrite: bool = False) -> Path:
    """Write ``model.pt`` and ``model.json`` into ``folder`` atomically."""
    folder = Path(folder)
    for name in (WEIGHTS, METADATA):
        check_writable_target(folder / name, overwrite)
    tensors = {f"net.{k}": v.detach().clone() for k, v in result.model.state_dict().items()}
    tensors["basis_real"] = torch.from_numpy(result.basis.real.astype(np.float32).copy())
    tensors["basis_imag"] = torch.from_numpy(result.basis.imag.astype(np.float32).copy())
    tensors["target_mean"] = result.mean.double().clone()
    tensors["target_sd"] = result.sd.double().clone()
    atomic_write(folder / WEIGHTS, lambda p: torch.save(tensors, p), overwrite=overwrite)
    atomic_write_text(folder / METADATA, json.dumps(result.metadata(), indent=1) + "\n", overwrite=overwrite)
    return folder


def _validate_metadata(meta: Any, path: Path) -> dict[str, Any]:
    """``model.json`` checked against :class:`mrfviewer.schemas.ModelMetadata` (the fields inference uses)."""
    if not isinstance(meta, dict):
        raise MRFError(f"{path}: model metadata must be a JSON object")
    if meta.get("format") != "mrfviewer-nn" or meta.get("format_version") != 1:
        raise MRFError(
            f"{path}: not an mrfviewer network (format {meta.get('format')!r} v{meta.get('format_version')})"
        )
    schemas.validate(schemas.ModelMetadata, meta, str(path))
    return meta


def load_model(folder: str | Path) -> LoadedModel:
    """Load and validate a model folder; refuses anything but plain tensors."""
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    meta_path, weights_path = folder / METADATA, folder / WEIGHTS
    if not meta_path.exists() or not weights_path.exists():
        raise MRFError(f"{folder} is not a model folder (needs {METADATA} and {WEIGHTS})")
    meta = _validate_metadata(schemas.read_json(meta_path, "model metadata"), meta_path)
    if not weights_path.is_file() or weights_path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise MRFError(f"{weights_path}: not a regular file of at most {MAX_WEIGHTS_BYTES // 2**20} MiB")
    try:
        tensors = torch.load(weights_path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise MRFError(f"{weights_path}: refused, the file holds more than plain tensors ({first})") from None
    except Exception as exc:  # noqa: BLE001 - any corrupt file is a user-facing error
        raise MRFError(f"{weights_path}: cannot read model weights ({type(exc).__name__})") from None
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise MRFError(f"{weights_path}: expected a dict of tensors")
    arch = meta["architecture"]
    net = MRFNet(arch["n_inputs"], arch["n_params"], arch["hidden"], arch["activation"])
    state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    try:
        net.load_state_dict(state, strict=True)
        basis = np.empty(tuple(tensors["basis_real"].shape), dtype=np.complex64)
        basis.real, basis.imag = tensors["basis_real"].numpy(), tensors["basis_imag"].numpy()
        mean, sd = tensors["target_mean"].double(), tensors["target_sd"].double()
    except (KeyError, RuntimeError) as exc:
        raise MRFError(f"{weights_path}: weights do not match the metadata ({str(exc)[:200]})") from None
    if basis.shape != (meta["svd_rank"], meta["n_timepoints"]) or basis_hash(basis) != meta["basis_sha256"]:
        raise MRFError(f"{weights_path}: the stored SVD basis does not match the metadata")
    if mean.shape != (arch["n_params"] + 1,) or sd.shape != mean.shape:
        raise MRFError(f"{weights_path}: normalisation does not match the architecture")
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise MRFError(f"{weights_path}: {', '.join(sorted(bad)[:3])} hold NaN or infinite values")
    if not bool((sd > 0).all()):
        raise MRFError(f"{weights_path}: the target standard deviations must be positive")
    for name, buffer in net.named_buffers():
        if name.endswith(("sd", "std", "scale")) and not bool((buffer > 0).all()):
            raise MRFError(f"{weights_path}: the network's input scale '{name}' must be positive")
    net.eval()
    return LoadedModel(net=net, basis=basis, mean=mean, sd=sd, metadata=meta, path=folder)


def shipped_models() -> list[Path]:
    """Model folders shipped in ``models/``."""
    root = models_dir()
    return sorted(p for p in root.iterdir() if (p / METADATA).exists()) if root.is_dir() else []


def default_model_path() -> Path:
    """The shipped model for the knee sequence."""
    return models_dir() / "knee_t1_t2_t1rho_b1"


def resolve_model_path(text: str | Path) -> Path:
    """A model folder given as a path or as the name of a shipped network (e.g. ``knee_t1_t2_t1rho_fast``)."""
    path = Path(text)
    if path.exists() or path.is_absolute() or len(path.parts) > 1:
        return path
    shipped = {p.name: p for p in shipped_models()}
    if str(text) in shipped:
        return shipped[str(text)]
    names = ", ".join(shipped) or "none"
    raise MRFError(f"no model folder '{text}' (shipped networks: {names})")
