"""An independent extended-phase-graph simulator for tests (numpy, written from the equations).

It shares nothing with :mod:`mrfviewer.simulation` but the sequence description: states are
kept as arrays F+ (k = 0..K-1), F- and Z, advanced with Weigel's (JMRI 2015) operators in
their textbook order (rotate, relax over TE, sample, relax over the rest of TR, dephase),
with a generous fixed number of states. Used as an outside reference: data simulated here
are reconstructed by mrfviewer.

Block semantics (as documented in :mod:`mrfviewer.sequence`): ideal adiabatic inversion with
spoiling; T2 preparation 90x - TE/2 - 180y - TE/2 - 90(-x), spoil; spin-lock 90x - lock
(the component along the lock axis decays with T1rho, the rest is lost) - 90(-x), spoil;
preparation pulses are ideal (B1 does not scale them); readout flip angles scale with B1;
FISP: one unit of dephasing per TR; FLASH: ideal spoiling of the transverse states.
"""

from __future__ import annotations

import numpy as np

from mrfviewer.sequence import Delay, Inversion, Readout, Sequence, SpinLock, T2Prep


class _State:
    def __init__(self, n: int, k: int, t1, t2, t1rho) -> None:  # noqa: ANN001 - arrays of n tissues
        self.fp = np.zeros((k, n), np.complex128)
        self.fm = np.zeros((k, n), np.complex128)
        self.z = np.zeros((k, n), np.complex128)
        self.z[0] = 1.0
        self.t1, self.t2, self.t1rho = t1, t2, t1rho

    def pulse(self, alpha, phi: float) -> None:  # noqa: ANN001 - flip (rad) per tissue or scalar
        c2, s2 = np.cos(alpha / 2) ** 2, np.sin(alpha / 2) ** 2
        sa, ca = np.sin(alpha), np.cos(alpha)
        e = np.exp(1j * phi)
        fp, fm, z = self.fp, self.fm, self.z
        self.fp = c2 * fp + e**2 * s2 * fm - 1j * e * sa * z
        self.fm = np.conj(e) ** 2 * s2 * fp + c2 * fm + 1j * np.conj(e) * sa * z
        self.z = -0.5j * np.conj(e) * sa * fp + 0.5j * e * sa * fm + ca * z

    def relax(self, tau_ms: float) -> None:
        if tau_ms <= 0:
            return
        e1, e2 = np.exp(-tau_ms / self.t1), np.exp(-tau_ms / self.t2)
        self.fp *= e2
        self.fm *= e2
        self.z *= e1
        self.z[0] += 1 - e1

    def spoil(self) -> None:
        self.fp[:] = 0
        self.fm[:] = 0

    def dephase(self) -> None:
        self.fp = np.roll(self.fp, 1, axis=0)
        self.fm = np.roll(self.fm, -1, axis=0)
        self.fm[-1] = 0
        self.fp[0] = np.conj(self.fm[0])


def simulate(sequence: Sequence, t1, t2, t1rho, b1, n_states: int = 120) -> np.ndarray:  # noqa: ANN001
    """Fingerprints (N, T) of tissues (arrays in ms; B1 relative), M0 = 1."""
    t1, t2, t1rho, b1 = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (t1, t2, t1rho, b1))
    t1, t2, t1rho, b1 = np.broadcast_arrays(t1, t2, t1rho, b1)
    s = _State(t1.size, n_states, t1, t2, t1rho)
    samples = []
    for _ in range(sequence.dummy_trains + 1):
        samples = []
        for block in sequence.blocks:
            if isinstance(block, Inversion):
                s.z = -s.z
                s.spoil()
                s.relax(block.ti_ms)
            elif isinstance(block, Delay):
                s.relax(block.duration_ms)
            elif isinstance(block, T2Prep):
                s.pulse(np.pi / 2, 0.0)
                s.relax(block.te_ms / 2)
                s.pulse(np.pi, np.pi / 2)
                s.relax(block.te_ms / 2)
                s.pulse(np.pi / 2, np.pi)
                s.spoil()
            elif isinstance(block, SpinLock):
                s.pulse(np.pi / 2, 0.0)
                along_lock = 0.5 * (s.fp - s.fm) * np.exp(-block.tsl_ms / s.t1rho)
                s.fp, s.fm = along_lock, -along_lock
                s.z[:] = 0
                s.pulse(np.pi / 2, np.pi)
                s.spoil()
            elif isinstance(block, Readout):
                for i in range(block.n):
                    s.pulse(np.deg2rad(block.flip_angle_deg[i]) * b1, np.deg2rad(block.phase_deg[i]))
                    s.relax(0.0)
                    te, tr = float(block.te_ms[i]), float(block.tr_ms[i])
                    s.relax(te)
                    samples.append(s.fp[0].copy())
                    s.relax(tr - te)
                    if block.kind == "flash":
                        s.spoil()
                    else:
                        s.dephase()
    return np.stack(samples, axis=1)
