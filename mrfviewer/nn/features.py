"""Network inputs from compressed fingerprints, identical at training and inference.

Each voxel's SVD coefficients y (K, complex) are divided by their norm (PD and
receive gain drop out) and rotated so that the first coefficient is real and
non-negative (the receive phase drops out); the features are then the real and
imaginary parts, 2K numbers.
"""

from __future__ import annotations

import torch


def complex_row_norm(y: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each row of a complex (n, K) tensor, shape (n,).

    Summed over the real view: torch's complex vector_norm over short rows is several
    times slower (it cost as much as the whole network at inference).
    """
    return torch.view_as_real(y).square().sum(dim=(1, 2)).sqrt()


def fingerprint_features(y: torch.Tensor) -> torch.Tensor:
    """(n, K) complex coefficients -> (n, 2K) real features (see module docstring)."""
    norm = complex_row_norm(y)[:, None].clamp_min(torch.finfo(torch.float32).tiny)
    first = y[:, :1]
    phase = torch.where(first.abs() > 0, first / first.abs().clamp_min(1e-30), torch.ones_like(first))
    aligned = y * phase.conj() / norm
    return torch.cat([aligned.real, aligned.imag], dim=1).to(torch.float32)
