"""Non-uniform FFTs of 2D images (finufft), behind a small interface.

Conventions, used by every k-space module of mrfviewer:

* an image is an array (..., Ny, Nx); pixel ``[i, j]`` sits at ``(y, x) = (i - Ny // 2, j - Nx // 2)``
  pixels from the centre (the array's middle index is the origin);
* a k-space point is ``(omega_y, omega_x)`` in radians per pixel, ``omega = 2 pi k / N`` for ``k`` in
  cycles per field of view, so the fully sampled band ``-N/2 <= k < N/2`` is ``[-pi, pi)``;
* the forward transform is ``y_p = sum_r x_r exp(-i omega_p . r) / sqrt(Ny Nx)``: unitary on a fully
  sampled Cartesian grid, so white noise of SD sigma per k-space sample gives white noise of SD sigma
  per pixel (the image-domain SNR of :mod:`mrfviewer.synthesis`); the adjoint is its conjugate
  transpose.

The library was chosen by measurement (``docs/measurements/nufft_choice.py``, 2 shared cores,
1 thread). Accuracy against the exact non-uniform DFT (64 x 64 image, 2048 radial points, complex64):
finufft 3.0e-6 (eps 1e-6) and 2.5e-5 (eps 1e-6 with upsampling factor 1.25; 2.3e-5 at our eps 2e-5), mri-nufft with its
finufft backend the same numbers (it calls finufft), torchkbnufft 7e-4 (Kaiser-Bessel table,
6 points). Time for the MRF workload of one 128 x 128 slice (8 coils, 8 spokes x 256 samples at
each of 1750 time points, a different trajectory per time point): forward per time point /
adjoint per time point / one adjoint over all 3.6 M points: finufft (eps 1e-6, upsampling 1.25)
3.6 / 3.6 / 1.8 s; finufft with its default upsampling 2 30 / 30 / 2.2 s (the FFT of the 2x grid
dominates when each time point has few points); torchkbnufft 25 / 42 / 12 s; mri-nufft (finufft
backend, upsampling 1.25) 13 / 32 / 4.5 s (per-call overhead around the same finufft plans).
So finufft, called directly: the most accurate and the fastest, a well-kept library (Flatiron
Institute; wheels for Linux, macOS and Windows). Transforms of few points per time point use an
upsampling factor of 1.25 (:data:`SPARSE_UPSAMPLING`); transforms over many points let finufft choose.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from mrfviewer.errors import MRFError

#: Requested relative accuracy of every transform (measured: 2.3e-5 in complex64; a smaller request
#: makes finufft narrow its kernel again at an upsampling factor of 1.25, with a warning on stderr).
EPS = 2e-5
#: finufft's upsampling factor for transforms with few points per image (one time point): a 1.25x
#: fine grid instead of 2x, eight times faster here at the same requested accuracy.
SPARSE_UPSAMPLING = 1.25
#: A transform is "sparse" (few points for its grid) below this many points per grid pixel.
SPARSE_DENSITY = 2.0
#: finufft's OpenMP threads per transform. One: its threads busy-wait, and on a shared machine (or
#: beside torch's own threads) two threads per time-point transform were 25x slower than one
#: (measured at a load of 9 on 2 cores: 245 ms instead of 9 ms per time point of 8 coils).
THREADS = 1


def _finufft():  # noqa: ANN202 - the module
    try:
        import finufft
    except ImportError as exc:  # pragma: no cover - a dependency; a broken install is named
        raise MRFError(f"k-space data need the finufft package ({exc}); pip install finufft") from None
    return finufft


def _plan(kind: int, shape: tuple[int, int], n_trans: int, n_points: int, upsampling: float | None = None) -> Any:
    """A finufft plan of type ``kind`` (1: adjoint, 2: forward) for ``n_trans`` images of ``shape``."""
    finufft = _finufft()
    opts = {}
    if upsampling is None and n_points < SPARSE_DENSITY * shape[0] * shape[1]:
        upsampling = SPARSE_UPSAMPLING
    if upsampling is not None:
        opts["upsampfac"] = upsampling
    return finufft.Plan(
        kind, shape, n_trans=n_trans, eps=EPS, isign=-1 if kind == 2 else 1, dtype="complex64", nthreads=THREADS, **opts
    )


def _points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(omega_y, omega_x) as contiguous float32 arrays, checked to lie in [-pi, pi]."""
    if points.ndim != 2 or points.shape[1] != 2:
        raise MRFError(f"k-space points must have shape (M, 2), got {points.shape}")
    if points.size and not (np.isfinite(points).all() and np.abs(points).max() <= math.pi * (1 + 1e-4)):
        raise MRFError("k-space points must be finite and lie within the sampled band [-pi, pi]")
    return (np.ascontiguousarray(points[:, 0], dtype=np.float32), np.ascontiguousarray(points[:, 1], dtype=np.float32))


def forward(images: np.ndarray, points: np.ndarray) -> np.ndarray:
    """k-space (B, M) of images (B, Ny, Nx) at points (M, 2) (see the module conventions)."""
    b, ny, nx = images.shape
    plan = _plan(2, (ny, nx), b, points.shape[0])
    plan.setpts(*_points(points))
    out = plan.execute(np.ascontiguousarray(images, dtype=np.complex64))
    return (out.reshape(b, -1) / np.float32(math.sqrt(ny * nx))).astype(np.complex64, copy=False)


def adjoint(kdata: np.ndarray, points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Images (B, Ny, Nx) of k-space (B, M) at points (M, 2): the adjoint of :func:`forward`."""
    b = kdata.shape[0]
    plan = _plan(1, shape, b, points.shape[0])
    plan.setpts(*_points(points))
    out = plan.execute(np.ascontiguousarray(kdata, dtype=np.complex64))
    return (out.reshape(b, *shape) / np.float32(math.sqrt(shape[0] * shape[1]))).astype(np.complex64, copy=False)


def forward_frames(images: np.ndarray, points: np.ndarray) -> np.ndarray:
    """k-space (F, B, M) of F frames of B images (F, B, Ny, Nx), frame f sampled at ``points[f]`` (F, M, 2).

    One plan for all frames (new points per frame): the frames are time points with their own
    trajectory, the B images the coils.
    """
    n_f, b, ny, nx = images.shape
    out = np.empty((n_f, b, points.shape[1]), dtype=np.complex64)
    for f, plan in _frames(2, (ny, nx), b, points):
        out[f] = plan.execute(np.ascontiguousarray(images[f], dtype=np.complex64)).reshape(b, -1)
    out /= np.float32(math.sqrt(ny * nx))
    return out


def adjoint_frames(kdata: np.ndarray, points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Images (F, B, Ny, Nx) of k-space (F, B, M) of F frames at ``points[f]`` (F, M, 2): adjoint of the above."""
    n_f, b, _ = kdata.shape
    out = np.empty((n_f, b, *shape), dtype=np.complex64)
    for f, plan in _frames(1, shape, b, points):
        out[f] = plan.execute(np.ascontiguousarray(kdata[f], dtype=np.complex64)).reshape(b, *shape)
    out /= np.float32(math.sqrt(shape[0] * shape[1]))
    return out


def _frames(kind: int, shape: tuple[int, int], n_trans: int, points: np.ndarray) -> Iterator[tuple[int, Any]]:
    """One plan, its points set to those of each frame in turn: (frame index, plan)."""
    if points.ndim != 3 or points.shape[2] != 2:
        raise MRFError(f"k-space points of frames must have shape (F, M, 2), got {points.shape}")
    plan = _plan(kind, shape, n_trans, points.shape[1])
    for f in range(points.shape[0]):
        plan.setpts(*_points(points[f]))
        yield f, plan
