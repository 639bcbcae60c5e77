"""The EPG model of the mrpro package (PyPI) on our sequence: the peer of the dictionary benchmark.

mrpro is a dev-only benchmark dependency, installed beside (not into) the project by
``benchmarks/setup_peer.sh`` into ``.peer/``; nothing of it is committed. mrpro imports
torchvision only for its BrainWeb phantom, and PyPI's torchvision does not load beside the
torch 2.13 CPU wheel, so a stub module stands in for it (the EPG code never touches it).

Mapping of blocks: inversion -> InversionBlock, t2prep -> T2PrepBlock, spinlock ->
T1RhoPrepBlock, delay -> DelayBlock, fisp -> FispBlock. mrpro has no RF-spoiled (FLASH)
readout, so our flash trains run as FispBlocks: the same per-TR work (rf, relax, acquire,
dephase). mrpro works in seconds and radians, with a fixed number of EPG states (20, its
default in CardiacFingerprinting).
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

from mrfviewer.sequence import Delay, Inversion, Readout, Sequence, SpinLock, T2Prep

PEER_DIR = Path(__file__).resolve().parent.parent / ".peer"


def load_mrpro_epg():
    """mrpro's EPG module, or None when the peer is not installed (see benchmarks/setup_peer.sh)."""
    for sub in ("src", "deps"):
        path = str(PEER_DIR / sub)
        if (PEER_DIR / sub).is_dir() and path not in sys.path:
            sys.path.append(path)
    if "torchvision" not in sys.modules:
        stub = types.ModuleType("torchvision")
        stub.transforms = types.SimpleNamespace(functional=None, InterpolationMode=None)  # type: ignore[attr-defined]
        sys.modules["torchvision"] = stub
        sys.modules["torchvision.transforms"] = stub.transforms  # type: ignore[assignment]
        sys.modules["torchvision.transforms.functional"] = types.ModuleType("torchvision.transforms.functional")
    try:
        from mrpro.operators.models import EPG
    except Exception:  # noqa: BLE001 - any import failure means "peer not available"
        return None
    return EPG


def mrpro_sequence(epg, sequence: Sequence):
    """Our sequence as an mrpro EPGSequence (times in s, angles in rad)."""
    blocks = []
    for block in sequence.blocks:
        if isinstance(block, Inversion):
            blocks.append(epg.InversionBlock(block.ti_ms / 1000))
        elif isinstance(block, T2Prep):
            blocks.append(epg.T2PrepBlock(block.te_ms / 1000))
        elif isinstance(block, SpinLock):
            blocks.append(epg.T1RhoPrepBlock(block.tsl_ms / 1000))
        elif isinstance(block, Delay):
            blocks.append(epg.DelayBlock(block.duration_ms / 1000))
        elif isinstance(block, Readout):
            blocks.append(
                epg.FispBlock(
                    torch.as_tensor(np.deg2rad(block.flip_angle_deg), dtype=torch.float32),
                    torch.as_tensor(np.deg2rad(block.phase_deg), dtype=torch.float32),
                    torch.as_tensor(block.te_ms / 1000, dtype=torch.float32),
                    torch.as_tensor(block.tr_ms / 1000, dtype=torch.float32),
                )
            )
    return epg.EPGSequence(blocks)


def mrpro_atoms_per_s(sequence: Sequence, params_ms: np.ndarray) -> dict | None:
    """Atoms/s of mrpro's EPG for the (n, 3) T1, T2, T1rho atoms (ms), one batch; None without the peer."""
    epg = load_mrpro_epg()
    if epg is None:
        return None
    model = mrpro_sequence(epg, sequence)
    t1, t2, t1rho = (torch.as_tensor(params_ms[:, i] / 1000, dtype=torch.float32) for i in range(3))
    parameters = epg.Parameters(torch.ones_like(t1, dtype=torch.complex64), t1, t2, None, t1rho)
    with torch.inference_mode():
        start = time.perf_counter()
        _, signals = model(parameters, epg.initial_state(t1.shape, n_states=20))
        seconds = time.perf_counter() - start
    assert len(signals) == sequence.n_timepoints
    return {"atoms": len(params_ms), "atoms_per_s": len(params_ms) / seconds, "n_states": 20}
