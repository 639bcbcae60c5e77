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

Work shared between atoms (the fast path, exact): everything before the first
spin-lock is independent of T1rho, so atoms that differ only in T1rho share that
prefix (the 5 % four-parameter knee grid: 2.1 M atoms, 52k distinct T1, T2, B1);
after the last FISP block no gradient shift follows, so the states k no longer mix
and only k = 0 is sampled: the remaining blocks run on one state; and there, with the
transverse states spoiled before every pulse, Z_0 evolves affinely and spin-locks
scale it by exp(-TSL / T1rho), so the samples are ``a + b z`` with ``a``, ``b`` per
distinct T1, T2, B1 and one ``z`` per tissue and spin-lock (:class:`AffineTail`).

Chunks run in parallel threads, each op on its own thread (torch's intra-op threads
wait for each other at every op, which collapses on a loaded machine) and large
enough that Python's dispatch does not serialise them; on a GPU when a CUDA device
is given.

State truncation: a state F_k decays by exp(-TR/T2) per shift, so the number of
states needed grows with T2/TR. By default each chunk of tissues (sorted by T2)
keeps ``states_for_t2`` states, which keeps the truncation error below about
1e-4 of the fingerprint norm (``tests/test_simulation.py`` checks 5e-4 against
512 states over the knee grid's T2 range).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from mrfviewer.devices import single_threaded_ops, usable_cores
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report
from mrfviewer.errors import MRFError
from mrfviewer.sequence import Block, Delay, Inversion, Readout, Sequence, SpinLock, T2Prep

#: Cap on the number of EPG states (very long T2 only).
MAX_STATES = 256

#: Tissues simulated together (at most; see ``_STATE_ELEMENTS``).
DEFAULT_CHUNK = 4096
#: Elements of one state tensor at most. Every op runs on the thread that issued it (threads
#: are used across chunks instead), and each op's Python dispatch holds the GIL: ops must be
#: large enough that the arithmetic, not the dispatch, fills the time, or the chunk threads
#: queue for the GIL. Measured on the 2.1 M-atom knee grid, 2 cores: 32k elements ran at
#: 0.24 M atoms/s (two threads slower than one), 128k at 0.53 M (0.47 M with a competing
#: process on one core); the five state tensors (2.5 MB) still fit the last-level cache.
_STATE_ELEMENTS = 131072
#: Tissues per piece after the shared prefix (one state each: cheap; bounds the output block).
_PIECE = 4096
#: Cost of a pulse of one tissue after the shared prefix relative to one FISP state-pulse
#: (measured on the knee sequence; only weighs progress, so the ETA stays honest).
_REST_WEIGHT = 1.0
#: Cost of one tissue on the affine tail (its z values and its block's share of the consumer's
#: work: projection or the full fingerprint), in the same units (measured, knee sequence).
_AFFINE_TISSUE_UNITS = 800.0
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
    #: cos and sin of the flip angles of readout trains, by the trains' angles (filled on use).
    pulses: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


class _Epg:
    """General complex EPG state of N tissues with K states each (reference path)."""

    def __init__(self, n_states: int, tissues: _Tissues, cplx: torch.dtype):
        n = tissues.t1.numel()
        device = tissues.t1.device
        self.fp = torch.zeros((n_states, n), dtype=cplx, device=device)
        self.fm = torch.zeros((n_states, n), dtype=cplx, device=device)
        self.z = torch.zeros((n_states, n), dtype=cplx, device=device)
        self.z[0] = 1.0
        self.tissues = tissues
        self.transverse_zero = True  # after spoiling; lets FLASH skip the F states

    def select(self, columns: torch.Tensor, n_states: int, tissues: _Tissues) -> _Epg:
        """The states of the tissues ``columns`` (the first ``n_states`` states) for ``tissues``."""
        new = _Epg(n_states, tissues, self.z.dtype)
        k = min(n_states, self.z.shape[0])
        new.fp[:k] = self.fp[:k, columns]
        new.fm[:k] = self.fm[:k, columns]
        new.z[:k] = self.z[:k, columns]
        new.transverse_zero = self.transverse_zero
        return new

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

    #: Samples are ``phase`` times what :meth:`sample` returns.
    phase = 1.0 + 0.0j

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
        dtype, device = tissues.t1.dtype, tissues.t1.device
        self.k = n_states
        # Shifts between re-centring the views; one state never shifts (no room needed).
        self.room = 256 if n_states > 1 else 1
        self.pbuf = torch.zeros((n_states + self.room, n), dtype=dtype, device=device)
        self.mbuf = torch.zeros((n_states + self.room + 1, n), dtype=dtype, device=device)
        self.p0 = self.room
        self.m0 = 0
        self.z = torch.zeros((n_states, n), dtype=dtype, device=device)
        self.z[0] = 1.0
        self.u = torch.empty_like(self.z)
        self.t = torch.empty_like(self.z)
        self.tissues = tissues
        self.transverse_zero = True

    def select(self, columns: torch.Tensor, n_states: int, tissues: _Tissues) -> _RealEpg:
        """The states of the tissues ``columns`` (the first ``n_states`` states) for ``tissues``."""
        new = _RealEpg(n_states, tissues)
        k = min(n_states, self.k)
        new.p[:k] = self.p[:k, columns]
        new.m[:k] = self.m[:k, columns]
        new.z[:k] = self.z[:k, columns]
        new.transverse_zero = self.transverse_zero
        return new

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
        # Fold before D can fall below e^-60 (float32 ends near e^-87): fewer pulses for very short T2.
        distinct = {id(r[2]): r[2] for r in relax}.values()
        worst = max(float(-torch.log(e2.clamp_min(1e-300)).max()) for e2 in distinct) if relax else 0.0
        fold = max(1, min(_FOLD, int(60.0 / worst) if worst > 0 else _FOLD))
        n = cos_a.shape[0]
        if n == 0:
            return
        # Per-pulse factors of the train, computed a window of ``fold`` pulses at a time in a few
        # (pulses, N) ops: the loop below is left with the passes over the (K, N) states.
        half_cos_m1 = (cos_a - 1.0) * 0.5
        e1_rows, recovery_rows, e2_rows = (torch.stack([r[j] for r in relax]) for j in range(3))
        ones = torch.ones_like(self.tissues.t1)[None, :]
        p_rows = self.pbuf
        for w0 in range(0, n, fold):
            w1 = min(n, w0 + fold)
            d_after = torch.cumprod(e2_rows[w0:w1], dim=0)  # D after each pulse of the window
            e_after = torch.cumprod(e1_rows[w0:w1], dim=0)
            d_before = torch.cat([ones, d_after[:-1]])
            ratio = torch.cat([ones, e_after[:-1]]) / d_before
            z_gain = sin_a[w0:w1] * ratio
            u_gain = sin_a[w0:w1] * (-0.5) / ratio
            recovery = recovery_rows[w0:w1] * e_after.reciprocal()
            for j, i in enumerate(range(w0, w1)):
                p, m, z, u, t = self.p, self.m, self.z, self.u, self.t
                torch.add(p, m, out=u)
                torch.mul(u, half_cos_m1[i], out=t)
                t.addcmul_(z, z_gain[j])
                z.mul_(cos_a[i]).addcmul_(u, u_gain[j])
                p.add_(t)
                m.add_(t)
                if samples is not None:
                    torch.mul(p_rows[self.p0], d_before[j], out=samples[i])
                z[0].add_(recovery[j])
                self.shift()
            self._fold(d_after[-1], e_after[-1])
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

    #: Samples are ``phase`` times what :meth:`sample` returns: F+_0 = -1j P_0 (real outputs).
    phase = -1j

    def sample(self) -> torch.Tensor:
        return self.p[0]

    def z0(self) -> torch.Tensor:
        return self.z[0]


State = _Epg | _RealEpg


def _readout_pulses(state: State, block: Readout) -> tuple[torch.Tensor, torch.Tensor, list[float], list[complex]]:
    """cos and sin (n, N) of the B1-scaled flip angles, phases (rad) and their phase factors.

    On the real path a phase of 180 deg becomes a negative flip angle at phase 0. Trains
    with the same flip angles (the knee sequence repeats one after each spin-lock) share
    one computation per set of tissues.
    """
    phases = np.deg2rad(block.phase_deg)
    alpha = np.deg2rad(block.flip_angle_deg)
    if isinstance(state, _RealEpg):
        alpha = alpha * np.where(np.isclose(np.mod(block.phase_deg, 360.0), 180.0), -1.0, 1.0)
        phases = np.zeros_like(phases)
    factors = [complex(math.cos(p), math.sin(p)) for p in phases]
    tissues = state.tissues
    key = alpha.tobytes()
    if key not in tissues.pulses:
        t1 = tissues.t1
        angles = torch.as_tensor(alpha, dtype=t1.dtype, device=t1.device)[:, None] * tissues.b1[None, :]
        tissues.pulses[key] = (torch.cos(angles), torch.sin(angles))
    cos_a, sin_a = tissues.pulses[key]
    return cos_a, sin_a, [float(p) for p in phases], factors


def _per_value(values: np.ndarray, make: Callable[[float], T]) -> list[T]:
    """``make(v)`` for each entry of ``values``, computed once per distinct value."""
    cache: dict[float, T] = {}
    for v in map(float, values):
        if v not in cache:
            cache[v] = make(v)
    return [cache[float(v)] for v in values]


def _per_pulse(values: np.ndarray, per_value: list[torch.Tensor]) -> torch.Tensor:
    """(pulses, N) rows of per-tissue factors, or one broadcast row (1, N) when ``values`` are all equal."""
    if values.size and np.all(values == values[0]):
        return per_value[0][None, :]
    return torch.stack(per_value)


def _fisp(state: State, block: Readout, out: torch.Tensor | None, offset: int) -> None:
    cos_a, sin_a, phases, _ = _readout_pulses(state, block)
    t = state.tissues
    echo = _per_value(block.te_ms, lambda te: torch.exp(-te / t.t2))
    relax = _per_value(
        block.tr_ms, lambda tr: (torch.exp(-tr / t.t1), 1.0 - torch.exp(-tr / t.t1), torch.exp(-tr / t.t2))
    )
    if isinstance(state, _RealEpg):
        n = t.t1.numel()
        samples = None if out is None else torch.empty((block.n, n), dtype=t.t1.dtype, device=t.t1.device)
        state.fisp_train(cos_a, sin_a, relax, samples)
        if out is not None and samples is not None:
            # Sample (times the state's phase, -1j) = P_0 times the echo decay (TE), one row per pulse.
            torch.mul(samples, _per_pulse(block.te_ms, echo), out=out[offset : offset + block.n])
        return
    for i in range(block.n):
        state.rotate(cos_a[i], sin_a[i], phases[i])
        if out is not None:
            out[offset + i] = state.sample() * echo[i]
        # Relaxation commutes with the shift, so TE and TR - TE are applied at once.
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
            out[offset] = state.sample() * echo[0]
        state.spoil()
        state.relax(float(block.tr_ms[0]))
        start = 1
    if block.n == start:
        return
    # With all F states zero before each pulse only Z evolves: Z <- cos(a) Z, the
    # sample is -1j e^{i phi} sin(a) Z_0, then spoiling and T1 relaxation over TR:
    # Z_0 <- (1 - E1) + cos(a) E1 Z_0, one op per pulse on a row of Z_0 per pulse.
    e1 = _per_pulse(block.tr_ms[start:], _per_value(block.tr_ms[start:], lambda tr: torch.exp(-tr / t.t1)))
    factor = cos_a[start:] * e1  # (pulses, N)
    recovery = 1.0 - e1  # (pulses or 1, N)
    varying = recovery.shape[0] > 1
    z0 = state.z0()
    rows = torch.empty((block.n - start + 1, t.t1.numel()), dtype=z0.dtype, device=z0.device)
    rows[0] = z0
    reference = not isinstance(state, _RealEpg)  # the general path: plain ops, so forward-mode AD runs through
    for i in range(block.n - start):
        if reference:
            rows[i + 1] = torch.addcmul(recovery[i if varying else 0], rows[i], factor[i])
        else:
            torch.addcmul(recovery[i if varying else 0], rows[i], factor[i], out=rows[i + 1])
    if out is not None:
        weights = sin_a[start:] * _per_pulse(block.te_ms[start:], echo[start:])  # (pulses, N)
        target = out[offset + start : offset + block.n]
        if isinstance(state, _RealEpg):  # phases 0: the sample is -1j sin(a) Z_0, the state's phase
            torch.mul(weights, rows[:-1], out=target)
        else:
            phase = torch.tensor([-1j * f for f in factors[start:]], dtype=out.dtype, device=out.device)[:, None]
            target.copy_(phase * (weights * rows[:-1]))
    if state.z.shape[0] > 1:
        state.z[1:].mul_(torch.prod(factor, dim=0))
    state.z[0] = rows[-1]


@dataclass(frozen=True, eq=False)
class _Step:
    """One block of the simulated trains; ``offset`` is its first output column (None: not acquired)."""

    block: Block
    offset: int | None


def _steps(sequence: Sequence) -> list[_Step]:
    """The blocks of the dummy trains and of the acquired train, in order."""
    steps = []
    for train in range(sequence.dummy_trains + 1):
        offset = 0
        for block in sequence.blocks:
            acquired = train == sequence.dummy_trains and isinstance(block, Readout)
            steps.append(_Step(block, offset if acquired else None))
            if isinstance(block, Readout):
                offset += block.n
    return steps


def _run_steps(state: State, steps: list[_Step], out: torch.Tensor | None, reduce_after: int = -1) -> State:
    """Run ``steps`` on ``state``; after step ``reduce_after`` keep only the state k = 0. Returns the state."""
    for i, step in enumerate(steps):
        block = step.block
        if isinstance(block, Readout):
            target = out if step.offset is not None else None
            (_fisp if block.kind == "fisp" else _flash)(state, block, target, step.offset or 0)
        elif isinstance(block, Inversion):
            state.invert()
            state.relax(block.ti_ms)
        elif isinstance(block, T2Prep):
            state.t2prep(block.te_ms)
        elif isinstance(block, SpinLock):
            state.spinlock(block.tsl_ms)
        elif isinstance(block, Delay):
            state.relax(block.duration_ms)
        if i == reduce_after:
            # No gradient shift follows: states k evolve on their own and only k = 0 is sampled.
            state = state.select(
                torch.arange(state.tissues.t1.numel(), device=state.tissues.t1.device), 1, state.tissues
            )
    return state


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


@dataclass
class FingerprintBlock:
    """The fingerprints of a block of tissues, handed to a consumer by :func:`simulate_chunked`.

    Samples are stored time-major, as ``phase`` times ``head`` and ``tail`` (real arrays
    with phase -1j on the real-valued path, else complex with phase 1). The first
    ``head.shape[0]`` time points are shared by tissues of equal T1, T2 and B1 (the part
    before the first spin-lock): ``head`` has one column per such group and ``group``
    names each tissue's column; :meth:`tail` gives the remaining time points, one column
    per tissue. When they are affine in per-tissue values (:class:`AffineTail`, the
    real path after the last FISP train) they are kept in that form: ``affine`` per group
    and ``z`` per tissue. ``cache`` is one dictionary per chunk of groups (the same object
    for every block of that chunk, used from one thread), where a consumer may keep what
    it derived from ``head`` and ``affine``.
    """

    atoms: torch.Tensor  # (m,) indices of the tissues in the simulated set
    head: torch.Tensor  # (P, u), shared time points, one column per group
    group: torch.Tensor  # (m,) column of ``head`` of each tissue
    samples: torch.Tensor | None  # (T - P, m), the other time points, unless affine
    cache: dict[str, Any]
    phase: complex = 1.0 + 0.0j
    affine: AffineTail | None = None
    z: torch.Tensor | None = None  # (S, m) the tissues' values of the affine tail

    def tail(self) -> torch.Tensor:
        """The time points after the shared head, (T - P, m)."""
        if self.affine is None:
            assert self.samples is not None
            return self.samples
        assert self.z is not None
        a, b = self.affine.a[:, self.group], self.affine.b[:, self.group]
        return torch.addcmul(a, b, self.z[self.affine.segment])

    def full(self) -> torch.Tensor:
        """The fingerprints (m, T), complex."""
        return (self.phase * torch.cat([self.head[:, self.group], self.tail()])).T


@dataclass
class AffineTail:
    """Samples after the last FISP train of a chunk of groups: ``a + b * z[segment]`` per time point.

    After the last FISP train no gradient shift follows and the transverse states are
    spoiled before every pulse, so only Z_0 of a tissue evolves, affinely, and the
    samples are linear in it. Spin-locks (the only blocks that see T1rho) scale Z_0 by
    exp(-TSL / T1rho): between two of them, in segment s, each sample is
    ``a + b z_s`` with ``a``, ``b`` the same for tissues of equal T1, T2 and B1 and
    ``z_s`` the tissue's Z_0 after spin-lock s (``z_0 = 1``, with ``b = 0`` before the first).
    """

    a: torch.Tensor  # (T - P, u)
    b: torch.Tensor  # (T - P, u)
    segment: torch.Tensor  # (T - P,) int64: the segment of each time point
    locks: list[tuple[float, torch.Tensor, torch.Tensor]]  # per spin-lock: TSL, (alpha, beta) of Z_0 entering it

    def values(self, group: torch.Tensor, t1rho: torch.Tensor) -> torch.Tensor:
        """``z`` (S, m) of tissues in groups ``group`` with these T1rho: Z_0 after each spin-lock."""
        z = [torch.ones_like(t1rho)]
        for tsl, alpha, beta in self.locks:
            z.append(torch.exp(-tsl / t1rho) * torch.addcmul(alpha[group], beta[group], z[-1]))
        return torch.stack(z)


#: ``consume(block)``: receives every :class:`FingerprintBlock` of a simulation.
Consumer = Callable[[FingerprintBlock], None]

#: A chunk of groups: (group indices, EPG states, estimated relative cost).
Chunk = tuple[torch.Tensor, int, float]


@dataclass
class _Plan:
    """How the tissues are simulated: the shared prefix, the rest, and the chunks of distinct prefixes."""

    steps: list[_Step]
    split: int  # steps[:split] are shared by tissues with equal T1, T2, B1
    reduce_after: int  # index of the last FISP step (then one state suffices), -1 if none
    prefix_columns: int  # output time points written by the shared prefix
    groups: torch.Tensor  # (U, 3) distinct T1, T2, B1 of the prefix
    group_of_atom: torch.Tensor  # (N,) index into groups
    chunks: list[Chunk]


def _distinct_rows(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of ``key`` (N, C) and the row of each (``torch.unique(dim=0)``, 10x faster)."""
    code = torch.zeros(key.shape[0], dtype=torch.int64, device=key.device)
    for col in range(key.shape[1]):
        values, inverse = torch.unique(key[:, col], return_inverse=True)
        code = code * values.numel() + inverse
    codes, group = torch.unique(code, return_inverse=True)
    first = torch.full((codes.numel(),), key.shape[0], dtype=torch.int64, device=key.device)
    first.scatter_reduce_(0, group, torch.arange(key.shape[0], device=key.device), reduce="amin")
    return key[first], group


def _plan(sequence: Sequence, tissues: _Tissues, n_states: int | None, chunk_size: int) -> _Plan:
    steps = _steps(sequence)
    split = next((i for i, s in enumerate(steps) if isinstance(s.block, SpinLock)), len(steps))
    fisp = [i for i, s in enumerate(steps) if isinstance(s.block, Readout) and s.block.kind == "fisp"]
    reduce_after = fisp[-1] if fisp else -1
    affine = (
        _is_real_sequence(sequence)
        and reduce_after < split
        and all(isinstance(s.block, (*_Z_ONLY, Readout)) for s in steps[split:])
    )
    prefix_columns = max(
        [s.offset + s.block.n for s in steps[:split] if s.offset is not None and isinstance(s.block, Readout)],
        default=0,
    )
    key = torch.stack([tissues.t1, tissues.t2, tissues.b1], dim=1)
    if split > 0:
        groups, group_of_atom = _distinct_rows(key)
    else:
        groups, group_of_atom = key, torch.arange(key.shape[0], device=key.device)
    # Chunks of similar T2 need similar numbers of states.
    order = torch.argsort(groups[:, 1]) if n_states is None else torch.arange(groups.shape[0], device=key.device)
    members = torch.bincount(group_of_atom, minlength=groups.shape[0])
    pulses = [(s.block.n if isinstance(s.block, Readout) else 1) for s in steps]
    shift_pulses = sum(pulses[i] for i in fisp)
    rest_pulses = sum(pulses) - shift_pulses
    chunks = []
    start = 0
    while start < order.numel():
        # Cache-sized state tensors: the state count follows the chunk's largest T2.
        size = chunk_size
        for _ in range(3):
            idx = order[start : start + size]
            k = n_states if n_states is not None else states_for_t2(sequence, float(groups[idx, 1].max()))
            size = max(64, min(chunk_size, _STATE_ELEMENTS // k))
        idx = order[start : start + size]
        # Cost model for honest progress: state-pulses of the FISP trains per distinct prefix,
        # plus the other pulses per tissue, weighted by their measured relative cost.
        if affine:  # the rest runs per group (three probe columns) plus a fixed cost per tissue
            rest = 3 * idx.numel() * rest_pulses + _AFFINE_TISSUE_UNITS * members[idx].sum()
        else:
            rest = members[idx].sum() * rest_pulses
        cost = float(idx.numel() * k * shift_pulses + _REST_WEIGHT * rest)
        chunks.append((idx, k, cost))
        start += size
    return _Plan(steps, split, reduce_after, prefix_columns, groups, group_of_atom, chunks)


def _run_chunk(
    plan: _Plan,
    chunk: Chunk,
    tissues: _Tissues,
    atoms_by_group: torch.Tensor,
    group_starts: torch.Tensor,
    use_real: bool,
    cplx: torch.dtype,
    n_timepoints: int,
    consume: Consumer,
    done: Callable[[float], None],
    cancel: CancelToken | None,
) -> None:
    """Simulate the shared prefix of one chunk of groups, then the rest per tissue, in pieces."""
    idx, k, cost = chunk
    check_cancel(cancel)
    device = tissues.t1.device
    g = plan.groups[idx]
    prefix_tissues = _Tissues(g[:, 0], g[:, 1], torch.ones_like(g[:, 0]), g[:, 2])  # T1rho unused before a lock
    state: State = _RealEpg(k, prefix_tissues) if use_real else _Epg(k, prefix_tissues, cplx)
    samples = g.dtype if use_real else cplx  # the real path writes real samples (times -1j)
    head = torch.empty((plan.prefix_columns, idx.numel()), dtype=samples, device=device)
    reduce_in_prefix = plan.reduce_after if plan.reduce_after < plan.split else -1
    state = _run_steps(state, plan.steps[: plan.split], head, reduce_in_prefix)
    # The tissues of these groups, each with the column of its group in this chunk.
    counts = group_starts[idx + 1] - group_starts[idx]
    local = torch.repeat_interleave(torch.arange(idx.numel(), device=device), counts)
    within = torch.arange(local.numel(), device=device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    atoms = atoms_by_group[group_starts[idx][local] + within]
    rest = plan.steps[plan.split :]
    reduce_in_rest = plan.reduce_after - plan.split if plan.reduce_after >= plan.split else -1
    piece = max(1, min(_PIECE, _STATE_ELEMENTS // state.z.shape[0]))
    share = cost / max(atoms.numel(), 1)
    cache: dict[str, Any] = {}
    shifted = _shifted(rest, plan.prefix_columns)
    if reduce_in_rest < 0 and _affine_ready(state, rest):
        assert isinstance(state, _RealEpg)
        affine = _affine_tail(state, shifted, n_timepoints - plan.prefix_columns)
        for p0 in range(0, atoms.numel(), 2 * _PIECE):  # no per-tissue state: larger pieces
            check_cancel(cancel)
            cols, sel = local[p0 : p0 + 2 * _PIECE], atoms[p0 : p0 + 2 * _PIECE]
            z = affine.values(cols, tissues.t1rho[sel])
            consume(FingerprintBlock(sel, head, cols, None, cache, state.phase, affine, z))
            done(share * sel.numel())
        return
    for p0 in range(0, atoms.numel(), piece):
        check_cancel(cancel)
        cols, sel = local[p0 : p0 + piece], atoms[p0 : p0 + piece]
        sub_tissues = _Tissues(tissues.t1[sel], tissues.t2[sel], tissues.t1rho[sel], tissues.b1[sel])
        sub = state.select(cols, state.z.shape[0], sub_tissues)
        tail = torch.empty((n_timepoints - plan.prefix_columns, sel.numel()), dtype=samples, device=device)
        # The rest writes time points from prefix_columns on: shift the output view accordingly.
        _run_steps(sub, shifted, tail, reduce_in_rest)
        consume(FingerprintBlock(sel, head, cols, tail, cache, state.phase))
        done(share * sel.numel())


_Z_ONLY = (SpinLock, Delay, Inversion, T2Prep)


def _affine_ready(state: State, rest: list[_Step]) -> bool:
    """Whether the rest runs on Z_0 alone (one state, spoiled, no FISP train): see :class:`AffineTail`."""
    return (
        isinstance(state, _RealEpg)
        and state.k == 1
        and state.transverse_zero
        and all(
            isinstance(s.block, _Z_ONLY) or (isinstance(s.block, Readout) and s.block.kind == "flash") for s in rest
        )
    )


def _affine_tail(state: _RealEpg, rest: list[_Step], rows: int) -> AffineTail:
    """The :class:`AffineTail` of the groups of ``state`` over ``rest`` (output rows from 0).

    Each segment between spin-locks runs once on three copies of the groups, starting from
    Z_0 = alpha, beta and 0: the blocks are affine in Z_0 (f(z) = c + d z), so the first copy
    gives the offsets (f(alpha)) and the difference of the others the slopes (f(beta) - f(0)).
    """
    t = state.tissues
    u, dtype, device = t.t1.numel(), t.t1.dtype, t.t1.device
    three = _Tissues(t.t1.repeat(3), t.t2.repeat(3), torch.ones(3 * u, dtype=dtype, device=device), t.b1.repeat(3))
    a = torch.zeros((rows, u), dtype=dtype, device=device)
    b = torch.zeros((rows, u), dtype=dtype, device=device)
    segment = torch.zeros(rows, dtype=torch.int64, device=device)
    zero = torch.zeros(u, dtype=dtype, device=device)
    # One buffer for the samples of every segment (they write disjoint rows, only those are read):
    # zeroing a (T, 3u) array per segment had cost a quarter of the simulation.
    out = torch.empty((rows, 3 * u), dtype=dtype, device=device)

    def run(part: list[_Step], seg: int, alpha: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probe = _RealEpg(1, three)
        probe.z[0] = torch.cat([alpha, beta, zero])
        _run_steps(probe, part, out)
        for s in part:
            if s.offset is not None and isinstance(s.block, Readout):
                r = slice(s.offset, s.offset + s.block.n)
                a[r], b[r] = out[r, :u], out[r, u : 2 * u] - out[r, 2 * u :]
                segment[r] = seg
        z = probe.z0()
        return z[:u].clone(), z[u : 2 * u] - z[2 * u :]

    alpha, beta = state.z0().clone(), zero.clone()  # before the first lock Z_0 is the group's own
    locks: list[tuple[float, torch.Tensor, torch.Tensor]] = []
    part: list[_Step] = []
    for step in rest:
        if isinstance(step.block, SpinLock):
            alpha, beta = run(part, len(locks), alpha, beta)
            locks.append((step.block.tsl_ms, alpha, beta))
            part, alpha, beta = [], zero.clone(), torch.ones_like(zero)
        else:
            part.append(step)
    run(part, len(locks), alpha, beta)
    return AffineTail(a, b, segment, locks)


def _shifted(steps: list[_Step], columns: int) -> list[_Step]:
    """``steps`` with output offsets moved back by ``columns`` (they write into a block starting there)."""
    return [_Step(s.block, None if s.offset is None else s.offset - columns) for s in steps]


def simulation_cost(
    sequence: Sequence, t1_ms: object, t2_ms: object, t1rho_ms: object, b1: object | None = None
) -> float:
    """Estimated work of simulating these tissues (arbitrary units, proportional to time on one device).

    The fast path shares work between tissues, so the cost is not proportional to their
    number; progress over several simulations is weighed with it.
    """
    inputs: tuple[Any, ...] = (t1_ms, t2_ms, t1rho_ms, 1.0 if b1 is None else b1)
    n = max(int(x.numel()) if isinstance(x, torch.Tensor) else int(np.size(x)) for x in inputs)
    t1, t2, t1rho, b1_values = (
        _as_tensor(x, name, n, torch.float64) for x, name in zip(inputs, ("T1", "T2", "T1rho", "B1"), strict=True)
    )
    plan = _plan(sequence, _Tissues(t1, t2, t1rho, b1_values), None, DEFAULT_CHUNK)
    return sum(c[2] for c in plan.chunks)


def simulate_chunked(
    sequence: Sequence,
    t1_ms: object,
    t2_ms: object,
    t1rho_ms: object,
    b1: object | None,
    consume: Consumer,
    *,
    n_states: int | None = None,
    double: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    reference: bool = False,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> None:
    """Simulate the fingerprints of N tissues (M0 = 1), handing them to ``consume`` block by block.

    ``consume`` receives :class:`FingerprintBlock` objects (on ``device``) from worker
    threads: it must be safe for disjoint blocks in parallel. Parameters as in
    :func:`simulate_fingerprints`; ``threads`` (default: the usable cores, one on a GPU)
    simulate chunks in parallel, each op on one thread. Progress is reported from the
    calling thread, as the share of the estimated work done.
    """
    if n_states is not None and n_states < 1:
        raise MRFError(f"n_states must be at least 1, got {n_states}")
    on_cpu = torch.device(device).type == "cpu"
    workers = threads if threads is not None else (usable_cores() if on_cpu else 1)
    with single_threaded_ops() if on_cpu else contextlib.nullcontext():
        _simulate_chunked(
            sequence,
            (t1_ms, t2_ms, t1rho_ms, b1),
            consume,
            n_states,
            double,
            chunk_size,
            reference,
            device,
            workers,
            progress,
            cancel,
        )


def _simulate_chunked(
    sequence: Sequence,
    values: tuple[object, object, object, object | None],
    consume: Consumer,
    n_states: int | None,
    double: bool,
    chunk_size: int,
    reference: bool,
    device: str | torch.device,
    workers: int,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> None:
    t1_ms, t2_ms, t1rho_ms, b1 = values
    real = torch.float64 if double else torch.float32
    cplx = torch.complex128 if double else torch.complex64
    inputs: tuple[Any, ...] = (t1_ms, t2_ms, t1rho_ms, 1.0 if b1 is None else b1)
    n = max(int(x.numel()) if isinstance(x, torch.Tensor) else int(np.size(x)) for x in inputs)
    t1, t2, t1rho, rel_b1 = (
        _as_tensor(x, name, n, real).to(device) for x, name in zip(inputs, ("T1", "T2", "T1rho", "B1"), strict=True)
    )
    tissues = _Tissues(t1, t2, t1rho, rel_b1)
    if reference:
        _simulate_reference(sequence, tissues, n_states, chunk_size, cplx, consume, progress, cancel)
        return
    use_real = _is_real_sequence(sequence)
    plan = _plan(sequence, tissues, n_states, chunk_size)
    atoms_by_group = torch.argsort(plan.group_of_atom, stable=True)
    counts = torch.bincount(plan.group_of_atom, minlength=plan.groups.shape[0])
    group_starts = torch.cat([torch.zeros(1, dtype=counts.dtype, device=counts.device), torch.cumsum(counts, 0)])
    total = sum(c[2] for c in plan.chunks) or 1.0
    finished = [0.0]
    lock = threading.Lock()
    caller = threading.get_ident()

    def done(cost: float) -> None:
        with lock:
            finished[0] += cost
        if threading.get_ident() == caller:  # chunks run here (one worker): report per piece, not per chunk
            tell()

    def run(chunk: Chunk) -> None:
        _run_chunk(
            plan,
            chunk,
            tissues,
            atoms_by_group,
            group_starts,
            use_real,
            cplx,
            sequence.n_timepoints,
            consume,
            done,
            cancel,
        )

    def tell() -> None:
        fraction = min(finished[0] / total, 1.0)
        report(progress, fraction, f"simulated about {int(n * fraction)} of {n} fingerprints")

    tell()  # the stage shows from its start (a small simulation may be one chunk)
    _run_chunks(plan.chunks, run, tell, workers)


def _run_chunks(chunks: list[Chunk], run: Callable[[Chunk], None], tell: Callable[[], None], workers: int) -> None:
    """``run`` every chunk, on ``workers`` threads; ``tell`` (progress) from this thread."""
    if workers <= 1 or len(chunks) == 1:
        for chunk in chunks:
            run(chunk)
            tell()
        return
    with ThreadPoolExecutor(min(workers, len(chunks))) as pool:
        pending = {pool.submit(run, chunk) for chunk in chunks}
        try:
            while pending:
                ready, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                for future in ready:
                    future.result()
                tell()
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _simulate_reference(
    sequence: Sequence,
    tissues: _Tissues,
    n_states: int | None,
    chunk_size: int,
    cplx: torch.dtype,
    consume: Consumer,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> None:
    """The general complex EPG, chunk after chunk, nothing shared or reduced (the readable reference)."""
    n = tissues.t1.numel()
    order = torch.argsort(tissues.t2) if n_states is None else torch.arange(n)
    steps = _steps(sequence)
    device = tissues.t1.device
    for start in range(0, n, chunk_size):
        check_cancel(cancel)
        idx = order[start : start + chunk_size]
        sub = _Tissues(tissues.t1[idx], tissues.t2[idx], tissues.t1rho[idx], tissues.b1[idx])
        k = n_states if n_states is not None else states_for_t2(sequence, float(sub.t2.max()))
        out = torch.empty((sequence.n_timepoints, idx.numel()), dtype=cplx, device=device)
        _run_steps(_Epg(k, sub, cplx), steps, out)
        empty = torch.empty((0, 1), dtype=cplx, device=device)
        consume(FingerprintBlock(idx, empty, torch.zeros_like(idx), out, {}))
        report(progress, (start + idx.numel()) / n, f"simulated {start + idx.numel()} of {n} fingerprints")


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
    device: str | torch.device = "cpu",
    threads: int | None = None,
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
        Most tissues simulated at once (bounds memory, keeps states in cache).
    reference
        Use the general complex implementation, chunk after chunk with nothing shared,
        even where the fast path applies (for testing the fast path against it).
    device
        Torch device to simulate on (``"cpu"`` or a CUDA device); the result is on the CPU.
    threads
        Worker threads for chunks (default: the usable cores; one on a GPU).
    progress, cancel
        Optional progress callback and cancel token, checked between chunks.

    Returns
    -------
    torch.Tensor
        Complex tensor of shape (N, T), T = ``sequence.n_timepoints``, on the CPU.
    """
    cplx = torch.complex128 if double else torch.complex64
    inputs: tuple[Any, ...] = (t1_ms, t2_ms, t1rho_ms, b1)
    n = max(int(x.numel()) if isinstance(x, torch.Tensor) else int(np.size(x)) for x in inputs if x is not None)
    out = torch.empty((n, sequence.n_timepoints), dtype=cplx)

    def keep(block: FingerprintBlock) -> None:
        out[block.atoms.cpu()] = block.full().cpu()

    simulate_chunked(
        sequence,
        t1_ms,
        t2_ms,
        t1rho_ms,
        b1,
        keep,
        n_states=n_states,
        double=double,
        chunk_size=chunk_size,
        reference=reference,
        device=device,
        threads=threads,
        progress=progress,
        cancel=cancel,
    )
    return out


def simulate_one(
    sequence: Sequence, t1_ms: float, t2_ms: float, t1rho_ms: float, b1: float = 1.0, **kwargs: object
) -> np.ndarray:
    """The fingerprint of one tissue as a complex numpy array of length T."""
    return simulate_fingerprints(sequence, t1_ms, t2_ms, t1rho_ms, b1, **kwargs)[0].numpy()  # type: ignore[arg-type]
