"""Regenerate ``knee_t1_t2_t1rho.json`` (run from the repository top).

The numbers below are the design; the JSON file is what the software reads.
"""

import json
from pathlib import Path

import numpy as np


def lobe(n: int, low_deg: float, high_deg: float) -> list[float]:
    """A half-sine flip-angle lobe from ``low_deg`` up to ``high_deg`` and back."""
    x = (np.arange(n) + 0.5) / n
    return [round(float(v), 3) for v in low_deg + (high_deg - low_deg) * np.sin(np.pi * x)]


TR_MS = 6.0
TE_MS = 2.0
blocks = [
    {"type": "inversion", "ti_ms": 20.0},
    {"type": "fisp", "flip_angle_deg": lobe(250, 10, 60), "phase_deg": 0.0, "tr_ms": TR_MS, "te_ms": TE_MS},
    {"type": "fisp", "flip_angle_deg": lobe(250, 5, 40), "phase_deg": 0.0, "tr_ms": TR_MS, "te_ms": TE_MS},
    {"type": "flash", "flip_angle_deg": lobe(250, 5, 20), "phase_deg": 0.0, "tr_ms": TR_MS, "te_ms": TE_MS},
    {"type": "t2prep", "te_ms": 40.0},
    {"type": "flash", "flip_angle_deg": lobe(250, 5, 15), "phase_deg": 0.0, "tr_ms": TR_MS, "te_ms": TE_MS},
]
for tsl in (2, 4, 7, 13, 24, 45):
    blocks.append({"type": "spinlock", "tsl_ms": float(tsl)})
    blocks.append(
        {"type": "flash", "flip_angle_deg": lobe(125, 5, 12), "phase_deg": 0.0, "tr_ms": TR_MS, "te_ms": TE_MS}
    )

description = [
    "3D knee MRF for simultaneous T1, T2 and T1rho at 3 T, modelled on Sharafi, Zibetti, Chang, Cloos,",
    "Regatte, ISMRM 2022 abstract 0535 / NMR Biomed 2022 (3D MRF of articular cartilage): adiabatic",
    "inversion, two FISP segments of 250 variable-flip-angle excitations (T1/T2), two FLASH segments of",
    "250 (T1, B1+; the second after a T2-prep), then six spin-lock preparations, TSL = 2, 4, 7, 13, 24,",
    "45 ms, each followed by 125 FLASH excitations: 1750 time points.",
    "Published: block order, segment lengths, TSLs. ASSUMPTIONS (not published there): flip angles as",
    "smooth half-sine lobes (FISP 10-60 and 5-40 deg, FLASH 5-20 and 5-15 deg, spin-lock FLASH 5-12",
    "deg), TR 6.0 ms and TE 2.0 ms throughout (typical of 3 T stack-of-stars GRE readouts), inversion",
    "time 20 ms, T2-prep TE 40 ms (near cartilage T2), ideal B1-insensitive preparations, no extra",
    "recovery delays, and each train starting from equilibrium (dummy_trains 0; set it to model",
    "back-to-back trains). Train duration 10.6 s. Regenerate with make_knee_t1_t2_t1rho.py.",
]
sequence = {"name": "knee_t1_t2_t1rho", "description": description, "blocks": blocks}
Path(__file__).with_name("knee_t1_t2_t1rho.json").write_text(json.dumps(sequence, indent=1) + "\n")
