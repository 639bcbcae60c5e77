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
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
_READOUT_DEFAULTS = {"phase_deg": 0.0}


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


def _number(value: Any, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MRFError(f"{where}: '{name}' must be a number, got {value!r}")
    if not math.isfinite(value):
        raise MRFError(f"{where}: '{name}' must be finite, got {value!r}")
    return float(value)


def _nonnegative(value: Any, where: str, name: str) -> float:
    number = _number(value, where, name)
    if number < 0:
        raise MRFError(f"{where}: '{name}' must not be negative, got {number:g}")
    return number


def _parse_readout(raw: dict[str, Any], where: str) -> Readout:
    kind = raw["type"]
    if "flip_angle_deg" not in raw:
        raise MRFError(f"{where}: a {kind} block needs 'flip_angle_deg'")
    for name in ("tr_ms", "te_ms"):
        if name not in raw:
            raise MRFError(f"{where}: a {kind} block needs '{name}'")
    values: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for name in _READOUT_FIELDS:
        value = raw.get(name, _READOUT_DEFAULTS.get(name))
        if isinstance(value, list):
            if not value:
                raise MRFError(f"{where}: '{name}' is an empty list")
            values[name] = [_number(v, where, name) for v in value]
            lengths[name] = len(value)
        else:
            values[name] = _number(value, where, name)
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise MRFError(f"{where}: per-excitation lists disagree in length ({detail})")
    n = next(iter(lengths.values()), 1)
    arrays = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy() for k, v in values.items()}
    if np.any(np.abs(arrays["flip_angle_deg"]) > 180):
        raise MRFError(f"{where}: flip angles must lie within [-180, 180] degrees")
    for name in ("tr_ms", "te_ms"):
        if np.any(arrays[name] < 0):
            raise MRFError(f"{where}: '{name}' must not be negative")
    if np.any(arrays["tr_ms"] <= 0):
        raise MRFError(f"{where}: 'tr_ms' must be positive")
    bad = np.nonzero(arrays["te_ms"] > arrays["tr_ms"])[0]
    if bad.size:
        i = int(bad[0])
        raise MRFError(
            f"{where}: te_ms ({arrays['te_ms'][i]:g}) is longer than tr_ms ({arrays['tr_ms'][i]:g}) at excitation {i}"
        )
    for a in arrays.values():
        a.setflags(write=False)
    return Readout(kind=kind, **arrays)


def _parse_block(raw: Any, index: int) -> Block:
    where = f"block {index}"
    if not isinstance(raw, dict):
        raise MRFError(f"{where}: expected an object, got {type(raw).__name__}")
    kind = raw.get("type")
    if kind in ("fisp", "flash"):
        allowed = {"type", *_READOUT_FIELDS}
    elif kind in _PREP_FIELDS:
        allowed = {"type", _PREP_FIELDS[kind][1]}
    else:
        known = ", ".join([*_PREP_FIELDS, "fisp", "flash"])
        raise MRFError(f"{where}: unknown block type {kind!r} (known: {known})")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise MRFError(
            f"{where} ({kind}): unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    if kind in ("fisp", "flash"):
        return _parse_readout(raw, f"{where} ({kind})")
    cls, attr = _PREP_FIELDS[kind]
    if attr not in raw:
        raise MRFError(f"{where} ({kind}): missing '{attr}'")
    return cls(_nonnegative(raw[attr], f"{where} ({kind})", attr))


def sequence_from_dict(raw: Any) -> Sequence:
    """Build and validate a :class:`Sequence` from parsed JSON.

    Raises
    ------
    MRFError
        With a message naming the block and field for any invalid content.
    """
    if not isinstance(raw, dict):
        raise MRFError("a sequence must be a JSON object with a 'blocks' list")
    blocks_raw = raw.get("blocks")
    if not isinstance(blocks_raw, list) or not blocks_raw:
        raise MRFError("a sequence needs a non-empty 'blocks' list")
    unknown = sorted(set(raw) - {"name", "description", "blocks", "dummy_trains"})
    if unknown:
        raise MRFError(f"unknown top-level field(s) in sequence: {', '.join(unknown)}")
    blocks = tuple(_parse_block(b, i) for i, b in enumerate(blocks_raw))
    if not any(isinstance(b, Readout) for b in blocks):
        raise MRFError("a sequence needs at least one fisp or flash readout block")
    dummy = raw.get("dummy_trains", 0)
    if isinstance(dummy, bool) or not isinstance(dummy, int) or not 0 <= dummy <= 100:
        raise MRFError(f"'dummy_trains' must be an integer between 0 and 100, got {dummy!r}")
    name = raw.get("name", "unnamed")
    description = raw.get("description", "")
    if isinstance(description, list):  # long descriptions may be written as a list of lines
        description = "\n".join(str(line) for line in description)
    return Sequence(blocks=blocks, name=str(name), description=str(description), dummy_trains=dummy)


def sequence_from_json(text: str, source: str = "sequence") -> Sequence:
    """Parse JSON text into a validated :class:`Sequence`."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MRFError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        return sequence_from_dict(raw)
    except MRFError as exc:
        raise MRFError(f"{source}: {exc}") from None


def load_sequence(path: str | Path) -> Sequence:
    """Load a sequence JSON file; errors name the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MRFError(f"sequence file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MRFError(f"cannot read sequence file {path}: {exc}") from None
    return sequence_from_json(text, source=str(path))
