"""Applying a trained network to compressed fingerprints.

Precision: ``"float32"`` runs the network as trained. ``"bfloat16"`` runs the hidden
layers in bfloat16 (float32 accumulation inside oneDNN) while the input standardisation,
the first layer and the output heads stay in float32; on CPUs with native bfloat16
matrix units (Intel AMX or AVX512-BF16) the default network runs 2.5-3x faster. Its cost
(benchmark 4; 20,000 fresh fingerprints, shipped default network): estimates differ from
float32 by 0.05 % on average (p99 0.2 %, max 0.5 %), and MAPE at SNR 50 rises by under
0.01 percentage points (T1 0.158 -> 0.164 %). ``"auto"`` picks bfloat16 only where the
CPU has native bfloat16 (elsewhere it is emulated and slower), as OpenVINO's inference
precision hint does; the precision used is recorded with every map.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch.nn import functional

from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report
from mrfviewer.errors import MRFError
from mrfviewer.nn import PRECISIONS
from mrfviewer.nn.features import complex_row_norm, fingerprint_features
from mrfviewer.nn.model import MRFNet
from mrfviewer.nn.model_io import LoadedModel


@dataclass
class NNResult:
    """Per-voxel NN outputs (1-D over the voxels)."""

    params: np.ndarray  # (n, P) ms (B1 relative)
    sd: np.ndarray  # (n, P) predicted standard deviation, same units
    pd: np.ndarray  # (n,) float32, |PD| in M0 units


@cache
def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AMX or AVX512-BF16)."""
    try:
        caps = torch._C._cpu._get_cpu_capability()
    except (AttributeError, RuntimeError):  # private API: absent means "don't know"
        return False
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``"float32"`` or ``"bfloat16"`` for a requested precision on ``device`` (see the module docstring).

    On a GPU ``auto`` means float32 (the bfloat16 path is tuned and measured on CPUs only).
    """
    if precision not in PRECISIONS:
        raise MRFError(f"NN precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        return "bfloat16" if torch.device(device).type == "cpu" and native_bfloat16() else "float32"
    return precision


Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


# oneDNN's linear with a fused activation (the op torch's own CPU compiler emits): 1.5x
# faster than linear then relu in bfloat16. Not public API, hence the plain fallback.
_FUSED_LINEAR = getattr(torch.ops.mkldnn, "_linear_pointwise", None)


def _linear_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``relu(x @ weight.T + bias)``, in one oneDNN call where torch offers it (CPU tensors)."""
    global _FUSED_LINEAR
    if _FUSED_LINEAR is not None and x.device.type == "cpu":
        try:
            return _FUSED_LINEAR(x, weight, bias, "relu", [], "")
        except RuntimeError:  # a torch build without it (or this dtype): the plain path, from now on
            _FUSED_LINEAR = None
    return torch.relu(functional.linear(x, weight, bias))


def inference_forward(net: MRFNet, hidden_dtype: torch.dtype = torch.float32) -> Forward:
    """``net.forward`` for inference, with the hidden layers after the first in ``hidden_dtype``.

    In float32 the result equals ``net.forward`` (measured bit for bit on the shipped
    network) at 1.2x its speed; bfloat16 is described in the module docstring.
    """
    layers = list(net.body)
    linears: list[torch.nn.Linear] = layers[0::2]  # type: ignore[assignment]  # Linear, activation, ...
    relu = all(isinstance(a, torch.nn.ReLU) for a in layers[1::2])
    hidden = [
        (linear.weight.to(hidden_dtype), linear.bias.to(hidden_dtype), activation)
        for linear, activation in zip(linears[1:], layers[3::2], strict=True)
    ]
    head_weight = torch.cat([net.mean.weight, net.log_var.weight])
    head_bias = torch.cat([net.mean.bias, net.log_var.bias])
    n_mean = net.mean.out_features

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (x - net.in_mean) / net.in_sd
        h = _linear_relu(x, linears[0].weight, linears[0].bias) if relu else layers[1](linears[0](x))
        h = h.to(hidden_dtype)
        for weight, bias, activation in hidden:
            h = _linear_relu(h, weight, bias) if relu else activation(functional.linear(h, weight, bias))
        # Both heads in one float32 GEMM: it is bound by reading h, so one pass costs half of two.
        out = functional.linear(h.to(torch.float32), head_weight, head_bias)
        return out[:, :n_mean], out[:, n_mean:].clamp(-20, 10)

    return forward


def predict(
    model: LoadedModel,
    y: np.ndarray,
    *,
    precision: str = "auto",
    device: torch.device | str = "cpu",
    chunk: int = 8192,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> NNResult:
    """Parameters, their uncertainty and |PD| for compressed signals ``y`` (n, K).

    ``precision`` is one of :data:`PRECISIONS` (module docstring). ``device``: where the
    network runs (a CUDA device, or the CPU); results come back as numpy arrays. ``chunk``
    voxels go through the network at a time: 8192 keeps the activations in cache
    (measured 2x the throughput of 65536 on 2 cores); on a GPU, 16 times more.
    """
    device = torch.device(device)
    net = model.net if device.type == "cpu" else copy.deepcopy(model.net).to(device)
    forward = inference_forward(net, getattr(torch, resolve_precision(precision, device)))
    chunk = chunk if device.type == "cpu" else 16 * chunk
    n = y.shape[0]
    p = len(model.param_names)
    params = np.empty((n, p))
    sd = np.empty((n, p))
    pd = np.empty(n, dtype=np.float32)
    mean, scale = model.mean, model.sd
    with torch.inference_mode():
        for start in range(0, n, chunk):
            check_cancel(cancel)
            yc = torch.from_numpy(np.ascontiguousarray(y[start : start + chunk], dtype=np.complex64))
            out, log_var = forward(fingerprint_features(yc.to(device)))
            out, log_var = out.cpu(), log_var.cpu()
            log_values = out.double() * scale + mean
            params[start : start + len(yc)] = torch.exp(log_values[:, :-1]).numpy()
            # Delta method: SD in ms = value * SD of log(value).
            sd_log = torch.exp(0.5 * log_var.double()) * scale[:-1]
            sd[start : start + len(yc)] = (torch.exp(log_values[:, :-1]) * sd_log).numpy()
            norm = complex_row_norm(yc).double()
            pd[start : start + len(yc)] = (norm / torch.exp(log_values[:, -1])).numpy()
            report(progress, min(start + chunk, n) / n, "NN inference")
    return NNResult(params=params, sd=sd, pd=pd)
