"""The multilayer perceptron that maps fingerprint features to relaxation times."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "elu": nn.ELU}


class MRFNet(nn.Module):
    """MLP with a mean head (standardised log-parameters and log-scale) and a log-variance head.

    Parameters
    ----------
    n_inputs
        2K features (real and imaginary parts of K SVD coefficients).
    n_params
        Number of regressed parameters (T1, T2, T1rho, and B1 if fitted).
    hidden
        Width of each hidden layer (its length is the depth).
    activation
        One of :data:`ACTIVATIONS`.
    """

    in_mean: torch.Tensor  # buffers (register_buffer below), typed for readers and mypy
    in_sd: torch.Tensor

    def __init__(self, n_inputs: int, n_params: int, hidden: list[int], activation: str = "relu"):
        super().__init__()
        # Feature standardisation (set from the training set, saved with the weights):
        # later SVD coefficients are orders of magnitude smaller than the first.
        self.register_buffer("in_mean", torch.zeros(n_inputs))
        self.register_buffer("in_sd", torch.ones(n_inputs))
        layers: list[nn.Module] = []
        width = n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            width = h
        self.body = nn.Sequential(*layers)
        self.mean = nn.Linear(width, n_params + 1)  # parameters + log signal scale
        self.log_var = nn.Linear(width, n_params)
        self.n_params = n_params

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body((x - self.in_mean) / self.in_sd)
        # The variance head learns from detached features so it cannot disturb the mean fit.
        return self.mean(h), self.log_var(h.detach()).clamp(-20, 10)
