"""The MRF sequence as data: preparation blocks and readout trains.

A sequence file is JSON: ``{"name": ..., "description": ..., "blocks": [...]}``,
the blocks run in order, times in ms and angles in degrees. Block types:

``inversion``  ``{"ti_ms"}``: ideal adiabatic 180 deg inversion, spoil, relax ti_ms.
``t2prep``     ``{"te_ms"}``: 90x, relax te/2, 180y, relax te/2, 90(-x), spoil.
``spinlock``   ``{"tsl_ms"}``: 90x, spin-lock (T1rho decay of the locked
               magnetisation), 90(-x), spoil.
``delay``      ``{"duration_ms"}``: free relaxation.
``fisp`` / ``flash``  ``{"flip_angle_deg", "phase_deg", "tr_ms", "te_ms"}``: one
               excitation per TR; each field is a scalar or a per-excitation list.

An optional top-level ``"dummy_trains": n`` runs the whole block list ``n`` times
without sampling before the acquired train, for sequences whose trains repeat
back to back (the acquired train then starts from the train-to-train steady
state instead of from equilibrium).

The content hash covers only what changes the signal (blocks and dummy trains),
not the name or description, so dictionaries and models can be tied to it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrfviewer import schemas
from mrfviewer.errors import MRFError


@dataclass(frozen=True)
class Inversion:
    """Ideal (adiabatic, B1-insensitive) inversion followed by ``ti_ms`` of relaxation."""

    ti_ms: float
    type: str = field(default="inversion", init=False)


@dataclass(frozen=True)
class T2Prep:
    """Ideal 90x - TE/2 - 180y - TE/2 - 90(-x) T2 preparation, then spoiling."""

    te_ms: float
    type: str = field(default="t2prep", init=False)


@dataclass(frozen=True)
class SpinLock:
    """Ideal 90x - spin-lock for ``tsl_ms`` - 90(-x) T1rho preparation, then spoiling."""

    tsl_ms: float
    type: str = field(default="spinlock", init=False)


@dataclass(frozen=True)
class Delay:
    """Free relaxation for ``duration_ms``."""

    duration_ms: float
    type: str = field(default="delay", init=False)


@dataclass(frozen=True, eq=False)
class Readout:
    """A train of excitations, one acquired sample each.

    ``kind`` is ``"fisp"`` (one unit of gradient dephasing per TR) or ``"flash"``
    (ideal RF spoiling: all transverse states zeroed each TR). All arrays have one
    entry per excitation; times in ms, angles in degrees.
    """

    kind: str
    flip_angle_deg: np.ndarray
    phase_deg: np.ndarray
    tr_ms: np.ndarray
    te_ms: np.ndarray

    @property
    def type(self) -> str:
        return self.kind

    @property
    def n(self) -> int:
        return int(self.flip_angle_deg.size)

    @property
    def duration_ms(self) -> float:
        return float(self.tr_ms.sum())


Block = Inversion | T2Prep | SpinLock | Delay | Readout

_PREP_FIELDS: dict[str, tuple[type, str]] = {
    "inversion": (Inversion, "ti_ms"),
    "t2prep": (T2Prep, "te_ms"),
    "spinlock": (SpinLock, "tsl_ms"),
    "delay": (Delay, "duration_ms"),
}
_READOUT_FIELDS = ("flip_angle_deg", "phase_deg", "tr_ms", "te_ms")


@dataclass(frozen=True, eq=False)
class Sequence:
    """An MRF sequence: preparation blocks and readout trains, run in order."""

    blocks: tuple[Block, ...]
    name: str = "unnamed"
    description: str = ""
    dummy_trains: int = 0

    @property
    def readouts(self) -> list[Readout]:
        return [b for b in self.blocks if isinstance(b, Readout)]

    @property
    def n_timepoints(self) -> int:
        """Number of acquired samples (images) per train."""
        return sum(r.n for r in self.readouts)

    @property
    def duration_ms(self) -> float:
        """Duration of one train in ms (preparation pulses taken as instantaneous)."""
        total = 0.0
        for b in self.blocks:
            if isinstance(b, Readout):
                total += b.duration_ms
            elif isinstance(b, Inversion):
                total += b.ti_ms
            elif isinstance(b, T2Prep):
                total += b.te_ms
            elif isinstance(b, SpinLock):
                total += b.tsl_ms
            else:
                total += b.duration_ms
        return total

    def sample_times_ms(self) -> np.ndarray:
        """Time of each acquired sample from the start of the train, in ms."""
        times = []
        t = 0.0
        for b in self.blocks:
            if isinstance(b, Readout):
                starts = t + np.concatenate([[0.0], np.cumsum(b.tr_ms)[:-1]])
                times.append(starts + b.te_ms)
                t += b.duration_ms
            else:
                t += Sequence(blocks=(b,)).duration_ms
        return np.concatenate(times) if times else np.zeros(0)

    def preparation_markers(self) -> list[tuple[int, str]]:
        """``(first sample index after the block, label)`` for each preparation block.

        Used to mark inversions, T2-preps and spin-locks along the time axis of a
        fingerprint plot.
        """
        markers = []
        index = 0
        for b in self.blocks:
            if isinstance(b, Readout):
                index += b.n
            elif isinstance(b, Inversion):
                markers.append((index, "IR"))
            elif isinstance(b, T2Prep):
                markers.append((index, f"T2prep {b.te_ms:g} ms"))
            elif isinstance(b, SpinLock):
                markers.append((index, f"SL {b.tsl_ms:g} ms"))
        return markers

    def to_dict(self) -> dict[str, Any]:
        """The sequence as a JSON-ready dict (lists collapsed to scalars where constant)."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.dummy_trains:
            out["dummy_trains"] = self.dummy_trains
        out["blocks"] = [_block_to_dict(b) for b in self.blocks]
        return out

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @property
    def hash(self) -> str:
        """SHA-256 (hex, 16 characters) of the signal-relevant content."""
        physics = {
            "dummy_trains": self.dummy_trains,
            "blocks": [_block_to_dict(b, collapse=False) for b in self.blocks],
        }
        text = json.dumps(physics, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        from mrfviewer.io.atomic import atomic_write_text

        atomic_write_text(Path(path), self.to_json() + "\n", overwrite=True)


def _block_to_dict(block: Block, collapse: bool = True) -> dict[str, Any]:
    if isinstance(block, Readout):
        out: dict[str, Any] = {"type": block.kind}
        for name in _READOUT_FIELDS:
            values = getattr(block, name)
            if collapse and np.all(values == values[0]) and name != "flip_angle_deg":
                out[name] = float(values[0])
            else:
                out[name] = [round(float(v), 6) for v in values]
        return out
    cls_name, attr = next((k, v[1]) for k, v in _PREP_FIELDS.items() if isinstance(block, v[0]))
    return {"type": cls_name, attr: float(getattr(block, attr))}


def _readout(block: schemas.ReadoutBlock) -> Readout:
    n = block.n
    arrays = {
        name: np.broadcast_to(np.asarray(getattr(block, name), dtype=np.float64), (n,)).copy()
        for name in _READOUT_FIELDS
    }
    for a in arrays.values():
        a.setflags(write=False)
    return Readout(kind=block.type, **arrays)


def _block(block: Any) -> Block:
    if isinstance(block, schemas.ReadoutBlock):
        return _readout(block)
    cls, attr = _PREP_FIELDS[block.type]
    return cls(float(getattr(block, attr)))


def sequence_from_dict(raw: Any, source: str = "sequence") -> Sequence:
    """Build a :class:`Sequence` from parsed JSON, validated by :class:`mrfviewer.schemas.SequenceFile`.

    Raises
    ------
    MRFError
        One line naming ``source``, the block and field, and what is allowed.
    """
    if not isinstance(raw, dict):
        raise MRFError(f"{source}: a sequence must be a JSON object with a 'blocks' list")
    model = schemas.validate(schemas.SequenceFile, raw, source)
    description = model.description
    if isinstance(description, list):  # long descriptions may be written as a list of lines
        description = "\n".join(description)
    return Sequence(
        blocks=tuple(_block(b) for b in model.blocks),
        name=model.name,
        description=description,
        dummy_trains=model.dummy_trains,
    )


def sequence_from_json(text: str, source: str = "sequence") -> Sequence:
    """Parse JSON text into a validated :class:`Sequence`."""
    return sequence_from_dict(schemas.parse_json(text, source), source)


def load_sequence(path: str | Path) -> Sequence:
    """Load a sequence JSON file (a regular file of bounded size); errors name the file and the problem."""
    return sequence_from_dict(schemas.read_json(path, "sequence file"), str(path))
