"""Batched extended-phase-graph (EPG) simulation of MRF sequences in torch.

Conventions follow Weigel, J Magn Reson Imaging 2015;41:266 ("Extended phase
graphs: dephasing, RF pulses, and echoes - pure and simple"): states F+_k, F-_k
(transverse) and Z_k (longitudinal) for k = 0..K-1; an RF pulse of flip angle
a about an axis at phase phi mixes them by the 3 x 3 matrix of Weigel's eq. 15;
relaxation multiplies F by E2 and Z_{k>0} by E1 and lets Z_0 recover; one unit
of gradient dephasing shifts F+ up and F- down. The acquired sample is F+_0 at
the echo time: a fully relaxed spin hit by a 90 deg pulse at phase 0 gives -1j
(M0 = 1).

Every operation is vectorised over tissues: state tensors have shape (K, N)
for N tissues, and the only Python loop runs over excitations, which all
tissues share. Preparation pulses are ideal (B1-insensitive) and instantaneous;
readout flip angles scale with relative B1.

Spin-lock model: after the 90x tip-down the magnetisation lies along the lock
axis; the component along it decays as exp(-TSL / T1rho), the perpendicular
components dephase about the lock field and are discarded, and the 90(-x)
pulse returns the locked component to z (then ideal spoiling).

Two implementations give the same numbers: a general complex one (any RF
phase; also the readable reference) and a real-valued fast one used when all
readout phases are 0 or 180 deg (see :class:`_RealEpg`).

State truncation: a state F_k decays by exp(-TR/T2) per shift, so the number of
states needed grows with T2/TR. By default each chunk of tissues (sorted by T2)
keeps ``states_for_t2`` states, which keeps the truncation error below about
1e-4 of the fingerprint norm (``tests/test_simulation.py`` checks 5e-4 against
512 states over the knee grid's T2 range).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report
from mrfviewer.errors import MRFError
from mrfviewer.sequence import Delay, Inversion, Readout, Sequence, SpinLock, T2Prep

#: Cap on the number of EPG states (very long T2 only).
MAX_STATES = 256

#: Tissues simulated together; sized so the state tensors stay cache-resident.
DEFAULT_CHUNK = 2048
#: Most pulses between folding the deferred relaxation factors into the states (fast path).
_FOLD = 16

T = TypeVar("T")


def states_for_t2(sequence: Sequence, t2_ms: float, max_states: int = MAX_STATES) -> int:
    """Number of EPG states that keeps truncation error below ~1e-4 for ``t2_ms``.

    Empirical rule from the convergence study (error vs states per T2 for the
    knee sequence): K = 2.5 T2 / TR + 8, with TR the shortest FISP repetition
    time. Sequences without FISP blocks never shift states and need one.
    """
    fisp_tr = [float(b.tr_ms.min()) for b in sequence.readouts if b.kind == "fisp"]
    if not fisp_tr:
        return 1
    return int(min(max_states, math.ceil(2.5 * t2_ms / min(fisp_tr) + 8)))


def _is_real_sequence(sequence: Sequence) -> bool:
    """True if all readout RF phases are 0 or 180 deg (the real-valued path applies)."""
    return all(np.all(np.isclose(np.mod(r.phase_deg, 180.0), 0.0)) for r in sequence.readouts)


@dataclass
class _Tissues:
    """Relaxation times (ms) and relative B1 of the N tissues of a chunk."""

    t1: torch.Tensor
    t2: torch.Tensor
    t1rho: torch.Tensor
    b1: torch.Tensor


class _Epg:
    """General complex EPG state of N tissues with K states each (reference path)."""

    def __init__(self, n_states: int, tissues: _Tissues, cplx: torch.dtype):
        n = tissues.t1.numel()
        self.fp = torch.zeros((n_states, n), dtype=cplx)
        self.fm = torch.zeros((n_states, n), dtype=cplx)
        self.z = torch.zeros((n_states, n), dtype=cplx)
        self.z[0] = 1.0
        self.tissues = tissues
        self.transverse_zero = True  # after spoiling; lets FLASH skip the F states

    def relax(self, duration_ms: float) -> None:
        if duration_ms <= 0:
            return
        e1 = torch.exp(-duration_ms / self.tissues.t1)
        if not self.transverse_zero:
            e2 = torch.exp(-duration_ms / self.tissues.t2)
            self.fp.mul_(e2)
            self.fm.mul_(e2)
        self.z.mul_(e1)
        self.z[0].add_(1.0 - e1)

    def rotate(self, cos_a: torch.Tensor | float, sin_a: torch.Tensor | float, phi: float) -> None:
        """RF pulse with flip angle given by its cosine and sine (per tissue or scalar) at phase phi (rad)."""
        e = complex(math.cos(phi), math.sin(phi))
        cos_half2 = (1.0 + cos_a) / 2
        sin_half2 = (1.0 - cos_a) / 2
        fp, fm, z = self.fp, self.fm, self.z
        self.fp = cos_half2 * fp + (e * e * sin_half2) * fm + (-1j * e * sin_a) * z
        self.fm = ((e * e).conjugate() * sin_half2) * fp + cos_half2 * fm + (1j * e.conjugate() * sin_a) * z
        self.z = (-0.5j * e.conjugate() * sin_a) * fp + (0.5j * e * sin_a) * fm + cos_a * z
        self.transverse_zero = False

    def spoil(self) -> None:
        self.fp.zero_()
        self.fm.zero_()
        self.transverse_zero = True

    def invert(self) -> None:
        self.z.neg_()
        self.spoil()

    def t2prep(self, te_ms: float) -> None:
        self.rotate(0.0, 1.0, 0.0)
        self.relax(te_ms / 2)
        self.rotate(-1.0, 0.0, math.pi / 2)
        self.relax(te_ms / 2)
        self.rotate(0.0, 1.0, math.pi)
        self.spoil()

    def spinlock(self, tsl_ms: float) -> None:
        self.rotate(0.0, 1.0, 0.0)
        # The component along the lock axis (y after a 90x) is (F+ - F-) / 2.
        locked = (self.fp - self.fm) * (0.5 * torch.exp(-tsl_ms / self.tissues.t1rho))
        self.fp, self.fm = locked, -locked
        self.z.zero_()
        self.rotate(0.0, 1.0, math.pi)
        self.spoil()

    def shift(self) -> None:
        """One unit of gradient dephasing: F+_k -> F+_{k+1}, F-_k -> F-_{k-1}."""
        fp = torch.roll(self.fp, 1, dims=0)
        fm = torch.roll(self.fm, -1, dims=0)
        fm[-1] = 0
        fp[0] = fm[0].conj()
        self.fp, self.fm = fp, fm

    def sample(self) -> torch.Tensor:
        return self.fp[0]

    def z0(self) -> torch.Tensor:
        return self.z[0]


class _RealEpg:
    """Real-valued EPG for readouts whose RF phases are all 0 or 180 deg.

    With such pulses (a phase of 180 deg is a negative flip angle) and no
    off-resonance the states keep the form F+_k = -1j P_k, F-_k = 1j M_k with P, M,
    Z real. An RF pulse of flip angle a then rotates (u / 2, Z), u = P + M, by a and
    leaves P - M unchanged; a 180 deg pulse about y swaps P and M and negates Z.
    The gradient shift moves views into over-allocated buffers instead of
    copying the states.
    """

    def __init__(self, n_states: int, tissues: _Tissues):
        n = tissues.t1.numel()
        dtype = tissues.t1.dtype
        self.k = n_states
        self.room = 256  # shifts between re-centring the views
        self.pbuf = torch.zeros((n_states + self.room, n), dtype=dtype)
        self.mbuf = torch.zeros((n_states + self.room + 1, n), dtype=dtype)
        self.p0 = self.room
        self.m0 = 0
        self.z = torch.zeros((n_states, n), dtype=dtype)
        self.z[0] = 1.0
        self.u = torch.empty_like(self.z)
        self.t = torch.empty_like(self.z)
        self.tissues = tissues
        self.transverse_zero = True

    @property
    def p(self) -> torch.Tensor:
        return self.pbuf[self.p0 : self.p0 + self.k]

    @property
    def m(self) -> torch.Tensor:
        return self.mbuf[self.m0 : self.m0 + self.k]

    def relax(self, duration_ms: float) -> None:
        if duration_ms <= 0:
            return
        e1 = torch.exp(-duration_ms / self.tissues.t1)
        if not self.transverse_zero:
            e2 = torch.exp(-duration_ms / self.tissues.t2)
            self.relax_with(e1, 1.0 - e1, e2)
        else:
            self.z.mul_(e1)
            self.z[0].add_(1.0 - e1)

    def relax_with(self, e1: torch.Tensor, recovery: torch.Tensor, e2: torch.Tensor) -> None:
        self.p.mul_(e2)
        self.m.mul_(e2)
        self.z.mul_(e1)
        self.z[0].add_(recovery)

    def fisp_train(
        self,
        cos_a: torch.Tensor,
        sin_a: torch.Tensor,
        relax: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        samples: torch.Tensor | None,
    ) -> None:
        """A FISP train (rotate, sample, relax over TR, shift per pulse) with deferred relaxation.

        Relaxation scales every transverse state of a tissue by the same e2 and every
        Z state by the same e1, so it is carried as per-tissue factors D (transverse)
        and E (longitudinal): the stored states are P / D, M / D and Z / E, the
        rotation mixes them with D / E ratios, and the recovery adds (1 - e1) / E to
        Z_0. That saves four passes over the (K, N) states per pulse. The factors are
        folded back every ``_FOLD`` pulses (before they can underflow) and at the end.
        ``samples`` (n_pulses, N) receives P_0 after each pulse (true scale).
        """
        d = torch.ones_like(self.tissues.t1)
        e = torch.ones_like(d)
        p_rows = self.pbuf
        # Fold before D can fall below e^-60 (float32 ends near e^-87): fewer pulses for very short T2.
        distinct = {id(r[2]): r[2] for r in relax}.values()
        worst = max(float(-torch.log(e2.clamp_min(1e-300)).max()) for e2 in distinct) if relax else 0.0
        fold = max(1, min(_FOLD, int(60.0 / worst) if worst > 0 else _FOLD))
        for i in range(cos_a.shape[0]):
            p, m, z, u, t = self.p, self.m, self.z, self.u, self.t
            ratio = e / d
            torch.add(p, m, out=u)
            torch.mul(u, (cos_a[i] - 1.0) * 0.5, out=t)
            t.addcmul_(z, sin_a[i] * ratio)
            z.mul_(cos_a[i]).addcmul_(u, sin_a[i] * (-0.5) / ratio)
            p.add_(t)
            m.add_(t)
            if samples is not None:
                torch.mul(p_rows[self.p0], d, out=samples[i])
            e1, recovery, e2 = relax[i]
            d = d * e2
            e = e * e1
            z[0].addcmul_(recovery, 1.0 / e)
            self.shift()
            if (i + 1) % fold == 0:
                self._fold(d, e)
                d, e = torch.ones_like(d), torch.ones_like(e)
        self._fold(d, e)
        self.transverse_zero = False

    def _fold(self, d: torch.Tensor, e: torch.Tensor) -> None:
        self.p.mul_(d)
        self.m.mul_(d)
        self.z.mul_(e)

    def rotate(self, cos_a: torch.Tensor | float, sin_a: torch.Tensor | float, phi: float = 0.0) -> None:
        """RF pulse at phase 0 (``phi`` must be 0; 180 deg is a negative angle)."""
        p, m, z, u, t = self.p, self.m, self.z, self.u, self.t
        torch.add(p, m, out=u)
        # The increment of both P and M is ((cos a - 1) u + 2 sin a Z) / 2.
        torch.mul(u, (cos_a - 1.0) * 0.5, out=t)
        if isinstance(sin_a, torch.Tensor):
            t.addcmul_(z, sin_a)
            z.mul_(cos_a).addcmul_(u, -0.5 * sin_a)
        else:
            t.add_(z, alpha=sin_a)
            z.mul_(cos_a).add_(u, alpha=-0.5 * sin_a)
        p.add_(t)
        m.add_(t)
        self.transverse_zero = False

    def spoil(self) -> None:
        self.p.zero_()
        self.m.zero_()
        self.transverse_zero = True

    def invert(self) -> None:
        self.z.neg_()
        self.spoil()

    def t2prep(self, te_ms: float) -> None:
        self.rotate(0.0, 1.0)
        self.relax(te_ms / 2)
        swapped = self.p.clone()
        self.p.copy_(self.m)
        self.m.copy_(swapped)
        self.z.neg_()
        self.relax(te_ms / 2)
        self.rotate(0.0, -1.0)
        self.spoil()

    def spinlock(self, tsl_ms: float) -> None:
        self.rotate(0.0, 1.0)
        # Locked component (F+ - F-) / 2 = -1j (P + M) / 2: P and M both become (P + M) / 2.
        locked = (self.p + self.m) * (0.5 * torch.exp(-tsl_ms / self.tissues.t1rho))
        self.p.copy_(locked)
        self.m.copy_(locked)
        self.z.zero_()
        self.rotate(0.0, -1.0)
        self.spoil()

    def shift(self) -> None:
        if self.p0 == 0:
            self.pbuf[self.room : self.room + self.k] = self.pbuf[: self.k].clone()
            self.p0 = self.room
        if self.m0 + self.k + 1 >= self.mbuf.shape[0]:
            self.mbuf[: self.k] = self.mbuf[self.m0 : self.m0 + self.k].clone()
            self.m0 = 0
        self.m0 += 1
        self.mbuf[self.m0 + self.k - 1].zero_()
        self.p0 -= 1
        self.pbuf[self.p0] = self.mbuf[self.m0]  # F+_0 = conj(F-_0) means P_0 = M_0

    def sample(self) -> torch.Tensor:
        return -1j * self.p[0]

    def z0(self) -> torch.Tensor:
        return self.z[0]


State = _Epg | _RealEpg


def _readout_pulses(state: State, block: Readout) -> tuple[torch.Tensor, torch.Tensor, list[float], list[complex]]:
    """cos and sin (n, N) of the B1-scaled flip angles, phases (rad) and their phase factors.

    On the real path a phase of 180 deg becomes a negative flip angle at phase 0.
    """
    phases = np.deg2rad(block.phase_deg)
    alpha = np.deg2rad(block.flip_angle_deg)
    if isinstance(state, _RealEpg):
        alpha = alpha * np.where(np.isclose(np.mod(block.phase_deg, 360.0), 180.0), -1.0, 1.0)
        phases = np.zeros_like(phases)
    angles = torch.as_tensor(alpha, dtype=state.tissues.t1.dtype)[:, None] * state.tissues.b1[None, :]
    factors = [complex(math.cos(p), math.sin(p)) for p in phases]
    return torch.cos(angles), torch.sin(angles), [float(p) for p in phases], factors


def _per_value(values: np.ndarray, make: Callable[[float], T]) -> list[T]:
    """``make(v)`` for each entry of ``values``, computed once per distinct value."""
    cache: dict[float, T] = {}
    for v in map(float, values):
        if v not in cache:
            cache[v] = make(v)
    return [cache[float(v)] for v in values]


def _fisp(state: State, block: Readout, out: torch.Tensor | None, offset: int) -> None:
    cos_a, sin_a, phases, _ = _readout_pulses(state, block)
    t = state.tissues
    echo = _per_value(block.te_ms, lambda te: torch.exp(-te / t.t2))
    relax = _per_value(
        block.tr_ms, lambda tr: (torch.exp(-tr / t.t1), 1.0 - torch.exp(-tr / t.t1), torch.exp(-tr / t.t2))
    )
    if isinstance(state, _RealEpg):
        samples = None if out is None else torch.empty((block.n, t.t1.numel()), dtype=t.t1.dtype)
        state.fisp_train(cos_a, sin_a, relax, samples)
        if out is not None and samples is not None:
            # Sample = -1j P_0 times the echo decay (TE), one column per pulse.
            out[:, offset : offset + block.n] = -1j * (samples * torch.stack(echo)).T
        return
    for i in range(block.n):
        state.rotate(cos_a[i], sin_a[i], phases[i])
        if out is not None:
            out[:, offset + i] = state.sample() * echo[i]
        # Relaxation commutes with the shift, so TE and TR - TE are applied at once.
        if isinstance(state, _RealEpg):
            state.relax_with(*relax[i])
        else:
            state.relax(float(block.tr_ms[i]))
        state.shift()


def _flash(state: State, block: Readout, out: torch.Tensor | None, offset: int) -> None:
    cos_a, sin_a, phases, factors = _readout_pulses(state, block)
    t = state.tissues
    echo = _per_value(block.te_ms, lambda te: torch.exp(-te / t.t2))
    start = 0
    if not state.transverse_zero:
        # First excitation after unspoiled states: full RF mixing, then spoil.
        state.rotate(cos_a[0], sin_a[0], phases[0])
        if out is not None:
            out[:, offset] = state.sample() * echo[0]
        state.spoil()
        state.relax(float(block.tr_ms[0]))
        start = 1
    # With all F states zero before each pulse only Z evolves: Z <- cos(a) Z, the
    # sample is -1j e^{i phi} sin(a) Z_0, then spoiling and T1 relaxation over TR.
    z0 = state.z0().clone()
    zk_factor = torch.ones_like(t.t1)
    relax = _per_value(block.tr_ms, lambda tr: torch.exp(-tr / t.t1))
    # Z_0 before each pulse, one contiguous row per pulse (the samples follow in one vectorised step).
    rows = torch.empty((block.n - start, t.t1.numel()), dtype=z0.dtype)
    for i in range(start, block.n):
        rows[i - start] = z0
        e1 = relax[i]
        factor = cos_a[i] * e1
        z0 = torch.addcmul(1.0 - e1, z0, factor)
        zk_factor.mul_(factor)
    if out is not None and block.n > start:
        weights = sin_a[start:] * torch.stack(echo[start:])  # (pulses, N)
        phase = torch.tensor([-1j * f for f in factors[start:]], dtype=out.dtype)[:, None]
        out[:, offset + start : offset + block.n] = (phase * (weights * rows)).T
    state.z[1:].mul_(zk_factor)
    state.z[0] = z0


def _run_train(state: State, sequence: Sequence, out: torch.Tensor | None) -> None:
    offset = 0
    for block in sequence.blocks:
        if isinstance(block, Readout):
            (_fisp if block.kind == "fisp" else _flash)(state, block, out, offset)
            offset += block.n
        elif isinstance(block, Inversion):
            state.invert()
            state.relax(block.ti_ms)
        elif isinstance(block, T2Prep):
            state.t2prep(block.te_ms)
        elif isinstance(block, SpinLock):
            state.spinlock(block.tsl_ms)
        elif isinstance(block, Delay):
            state.relax(block.duration_ms)


def _as_tensor(x: object, name: str, n: int, dtype: torch.dtype) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    t = t.to(dtype).reshape(-1)
    if t.numel() == 1 and n > 1:
        t = t.expand(n)
    if t.numel() != n:
        raise MRFError(f"{name} has {t.numel()} values, expected {n}")
    if not bool(torch.all(torch.isfinite(t))) or bool(torch.any(t <= 0)):
        raise MRFError(f"{name} must be finite and positive")
    return t.contiguous()


def simulate_fingerprints(
    sequence: Sequence,
    t1_ms: object,
    t2_ms: object,
    t1rho_ms: object,
    b1: object | None = None,
    *,
    n_states: int | None = None,
    double: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    reference: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> torch.Tensor:
    """Simulate the fingerprints of N tissues (M0 = 1).

    Parameters
    ----------
    sequence
        The MRF sequence.
    t1_ms, t2_ms, t1rho_ms
        Relaxation times in ms: scalars or arrays/tensors of N values.
    b1
        Relative transmit field (1 = nominal), scalar or N values; scales the
        readout flip angles only. ``None`` means 1.
    n_states
        Number of EPG states kept; ``None`` chooses per chunk from T2 with
        :func:`states_for_t2`.
    double
        Compute in float64/complex128 instead of float32/complex64.
    chunk_size
        Tissues simulated at once (bounds memory, keeps states in cache).
    reference
        Use the general complex implementation even where the real-valued fast
        path applies (for testing the fast path against it).
    progress, cancel
        Optional progress callback and cancel token, checked between chunks.

    Returns
    -------
    torch.Tensor
        Complex tensor of shape (N, T), T = ``sequence.n_timepoints``.
    """
    if n_states is not None and n_states < 1:
        raise MRFError(f"n_states must be at least 1, got {n_states}")
    real = torch.float64 if double else torch.float32
    cplx = torch.complex128 if double else torch.complex64
    inputs: tuple[Any, ...] = (t1_ms, t2_ms, t1rho_ms, 1.0 if b1 is None else b1)
    n = max(int(x.numel()) if isinstance(x, torch.Tensor) else int(np.size(x)) for x in inputs)
    t1, t2, t1rho, rel_b1 = (
        _as_tensor(x, name, n, real) for x, name in zip(inputs, ("T1", "T2", "T1rho", "B1"), strict=True)
    )
    use_real = _is_real_sequence(sequence) and not reference
    # Chunks of similar T2 need similar numbers of states.
    order = torch.argsort(t2) if n_states is None else torch.arange(n)
    out = torch.empty((n, sequence.n_timepoints), dtype=cplx)
    for start in range(0, n, chunk_size):
        check_cancel(cancel)
        idx = order[start : start + chunk_size]
        tissues = _Tissues(t1[idx], t2[idx], t1rho[idx], rel_b1[idx])
        k = n_states if n_states is not None else states_for_t2(sequence, float(tissues.t2.max()))
        state: State = _RealEpg(k, tissues) if use_real else _Epg(k, tissues, cplx)
        chunk_out = torch.empty((idx.numel(), sequence.n_timepoints), dtype=cplx)
        for _ in range(sequence.dummy_trains):
            _run_train(state, sequence, None)
        _run_train(state, sequence, chunk_out)
        out[idx] = chunk_out
        report(progress, (start + idx.numel()) / n, f"simulated {start + idx.numel()} of {n} fingerprints")
    return out


def simulate_one(
    sequence: Sequence, t1_ms: float, t2_ms: float, t1rho_ms: float, b1: float = 1.0, **kwargs: object
) -> np.ndarray:
    """The fingerprint of one tissue as a complex numpy array of length T."""
    return simulate_fingerprints(sequence, t1_ms, t2_ms, t1rho_ms, b1, **kwargs)[0].numpy()  # type: ignore[arg-type]
