"""Which NUFFT library mrfviewer uses: finufft, torchkbnufft or mri-nufft, measured against each other.

Run (the three libraries installed; not dependencies of mrfviewer except the chosen one)::

    .venv/bin/pip install finufft torchkbnufft mri-nufft
    .venv/bin/python docs/measurements/nufft_choice.py [--threads 1]

Accuracy: relative L2 error of the forward (type 2, image to k-space) and adjoint (type 1)
transforms against the exact non-uniform DFT (float64 matrix) on a 64 x 64 image and a
golden-angle radial trajectory of 16 spokes x 128 samples.

Speed: the workload of one 128 x 128 MRF slice: 8 coils, 8 spokes x 256 samples per time point
(2x readout oversampling), a different golden-angle trajectory at each of the time points;
per-time-point forward (simulation) and adjoint (gridding), and one adjoint over the points of
all time points at once (the subspace reconstruction's right-hand side and Toeplitz kernels).
Times are per 1750 time points (the knee sequence), measured on ``--timepoints`` and scaled.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

GOLDEN_DEG = 180.0 / ((1 + 5**0.5) / 2)


def radial(n_image: int, spokes: int, readout: int, offset: int = 0) -> np.ndarray:
    """(spokes * readout, 2) points in radians, [-pi, pi) = [-N/2, N/2) cycles per field of view."""
    angles = np.deg2rad(GOLDEN_DEG * (offset + np.arange(spokes)))
    r = (np.arange(readout) - readout / 2) / readout * 2 * np.pi  # 2x oversampled readout spans [-pi, pi)
    return np.stack([np.outer(np.cos(angles), r).ravel(), np.outer(np.sin(angles), r).ravel()], axis=1)


def exact_matrix(points: np.ndarray, n: int) -> np.ndarray:
    """The non-uniform DFT E[j, (y, x)] = exp(-i (ky y + kx x)), pixel indices -n/2..n/2-1."""
    grid = np.arange(n) - n // 2
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    return np.exp(-1j * (np.outer(points[:, 0], yy.ravel()) + np.outer(points[:, 1], xx.ravel())))


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# -- the three libraries behind one call each: forward(images (B, C, N, N), points (B, M, 2)) and adjoint


def finufft_ops(eps: float, threads: int, **opts):
    import finufft

    def forward(images, pts):
        b, c, n, _ = images.shape
        plan = finufft.Plan(2, (n, n), n_trans=c, eps=eps, isign=-1, dtype="complex64", nthreads=threads, **opts)
        out = np.empty((b, c, pts.shape[1]), dtype=np.complex64)
        for i in range(b):
            plan.setpts(*(np.ascontiguousarray(pts[i, :, d], dtype=np.float32) for d in (0, 1)))
            out[i] = plan.execute(images[i])
        return out

    def adjoint(kdata, pts, n):
        b, c, m = kdata.shape
        plan = finufft.Plan(1, (n, n), n_trans=c, eps=eps, isign=1, dtype="complex64", nthreads=threads, **opts)
        out = np.empty((b, c, n, n), dtype=np.complex64)
        for i in range(b):
            plan.setpts(*(np.ascontiguousarray(pts[i, :, d], dtype=np.float32) for d in (0, 1)))
            out[i] = plan.execute(kdata[i])
        return out

    return forward, adjoint


def torchkbnufft_ops(batch: int):
    import torch
    import torchkbnufft as tkbn

    ops = {}

    def get(n):
        if n not in ops:
            ops[n] = (tkbn.KbNufft(im_size=(n, n)), tkbn.KbNufftAdjoint(im_size=(n, n)))
        return ops[n]

    def forward(images, pts):
        fwd, _ = get(images.shape[-1])
        out = []
        for s in range(0, images.shape[0], batch):
            omega = torch.from_numpy(pts[s : s + batch].transpose(0, 2, 1).astype(np.float32).copy())
            out.append(fwd(torch.from_numpy(images[s : s + batch]), omega).numpy())
        return np.concatenate(out)

    def adjoint(kdata, pts, n):
        _, adj = get(n)
        out = []
        for s in range(0, kdata.shape[0], batch):
            omega = torch.from_numpy(pts[s : s + batch].transpose(0, 2, 1).astype(np.float32).copy())
            out.append(adj(torch.from_numpy(kdata[s : s + batch]), omega).numpy())
        return np.concatenate(out)

    return forward, adjoint


def mrinufft_ops(eps: float, threads: int, **opts):
    import warnings

    import mrinufft

    warnings.filterwarnings("ignore", message="Samples will be rescaled")

    cls = mrinufft.get_operator("finufft")
    cache = {}

    def op_for(pts, n, c):
        key = (n, c, pts.shape[0])
        samples = (pts / (2 * np.pi)).astype(np.float32)  # mri-nufft takes [-0.5, 0.5)
        if key not in cache:
            cache[key] = cls(samples, (n, n), n_coils=c, eps=eps, nthreads=threads, squeeze_dims=False, **opts)
        else:
            cache[key].update_samples(samples)
        return cache[key]

    def forward(images, pts):
        b, c, n, _ = images.shape
        # mri-nufft scales both transforms by 1 / norm_factor (orthonormal-like); undo it to compare.
        return np.stack(
            [(lambda op: op.op(images[i][None])[0] * op.norm_factor)(op_for(pts[i], n, c)) for i in range(b)]
        )

    def adjoint(kdata, pts, n):
        b, c, _ = kdata.shape
        return np.stack(
            [(lambda op: op.adj_op(kdata[i][None])[0] * op.norm_factor)(op_for(pts[i], n, c)) for i in range(b)]
        )

    return forward, adjoint


def best(job, repeats: int = 3) -> float:
    """Shortest wall time of ``repeats`` runs (the machine is shared: the minimum is the cleanest)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timepoints", type=int, default=100)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    libs = {
        "finufft eps 1e-6": lambda: finufft_ops(1e-6, args.threads),
        "finufft eps 1e-6 upsampfac 1.25": lambda: finufft_ops(1e-6, args.threads, upsampfac=1.25),
        "finufft eps 1e-4": lambda: finufft_ops(1e-4, args.threads),
        "torchkbnufft (6 points, table)": lambda: torchkbnufft_ops(50),
        "mri-nufft (finufft backend, eps 1e-6)": lambda: mrinufft_ops(1e-6, args.threads),
        "mri-nufft (finufft, 1e-6, upsampfac 1.25)": lambda: mrinufft_ops(1e-6, args.threads, upsampfac=1.25),
    }

    # Accuracy: and the sign and centre conventions of every library checked against one matrix.
    n = 64
    pts = radial(n, 16, 128)[None]
    e = exact_matrix(pts[0], n)
    img = (rng.standard_normal((1, 1, n, n)) + 1j * rng.standard_normal((1, 1, n, n))).astype(np.complex64)
    ksp = (rng.standard_normal((1, 1, pts.shape[1])) + 1j * rng.standard_normal((1, 1, pts.shape[1]))).astype(
        np.complex64
    )
    exact_fwd = e @ img[0, 0].ravel().astype(np.complex128)
    exact_adj = (e.conj().T @ ksp[0, 0].astype(np.complex128)).reshape(n, n)
    print(f"accuracy (64 x 64, {pts.shape[1]} points), relative L2 error against the exact NUDFT:")
    for name, make in libs.items():
        fwd, adj = make()
        forward_error, adjoint_error = rel(fwd(img, pts)[0, 0], exact_fwd), rel(adj(ksp, pts, n)[0, 0], exact_adj)
        print(f"  {name:40s} forward {forward_error:.2e}   adjoint {adjoint_error:.2e}")

    # Speed: the MRF slice workload.
    n, coils, spokes, readout, t = 128, 8, 8, 256, args.timepoints
    pts = np.stack([radial(n, spokes, readout, i * spokes) for i in range(t)])
    images = (rng.standard_normal((t, coils, n, n)) + 1j * rng.standard_normal((t, coils, n, n))).astype(np.complex64)
    kdata = (
        rng.standard_normal((t, coils, spokes * readout)) + 1j * rng.standard_normal((t, coils, spokes * readout))
    ).astype(np.complex64)
    scale = 1750 / t
    print(
        f"\nspeed ({n} x {n}, {coils} coils, {spokes} spokes x {readout} samples per time point, "
        f"{args.threads} thread(s)); seconds per 1750 time points:"
    )
    for name, make in libs.items():
        fwd, adj = make()
        fwd(images[:2], pts[:2])  # warm-up (plans, tables)
        # One adjoint over all time points' points at once (n_trans = coils).
        all_pts = pts.reshape(1, -1, 2)
        all_k = np.ascontiguousarray(kdata.transpose(1, 0, 2).reshape(1, coils, -1))
        t_fwd = best(partial(fwd, images, pts)) * scale
        t_adj = best(partial(adj, kdata, pts, n)) * scale
        t_all = best(partial(adj, all_k, all_pts, n)) * scale
        print(
            f"  {name:40s} forward per time point {t_fwd:6.2f}   adjoint per time point {t_adj:6.2f}   "
            f"adjoint over all points {t_all:6.2f}"
        )


if __name__ == "__main__":
    main()
