"""One schema per file format, validated where a file is read (pydantic v2).

Formats: the sequence file (and the ``mrf_sequence.json`` sidecar), the grid file, the
training config, the model metadata (``model.json``), the attributes of HDF5 series files
and of dictionary caches, the header of radial raw-data files (ISMRMRD), label-name sidecars
and batch ``done.json`` records. Every
format has limits on nesting depth, sizes and ranges, so that any bad value becomes one
line naming the file, the field and what is allowed: never a traceback, never a huge
allocation. :func:`read_json` is the one way a JSON file is read: only regular files,
bounded in size, no NaN or Infinity, no thousand-digit numbers, bounded depth.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mrfviewer.errors import MRFError

#: Largest JSON file read (bytes): a sequence of 100,000 excitations is about 5 MB.
MAX_JSON_BYTES = 32 * 2**20
#: Deepest nesting accepted in any JSON file (our formats need 4).
MAX_JSON_DEPTH = 16
#: Digits allowed in a JSON number (a 5000-digit integer is no parameter of ours).
MAX_NUMBER_DIGITS = 40
#: Excitations in one train, and excitations simulated per train including dummy trains.
MAX_EXCITATIONS = 200_000
MAX_SIMULATED_EXCITATIONS = 2_000_000
#: Relaxation times and durations accepted anywhere (ms): 1 microsecond to 1000 s.
MIN_TIME_MS, MAX_TIME_MS = 1e-3, 1e6
#: Grid axes: values and counts.
MAX_AXIS_VALUES = 100_000

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Strict JSON: no unknown fields, no coercion (a string is no number, true is no integer)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- reading JSON -----------------------------------------------------------------------------


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, stopping once ``limit`` is passed."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _number(text: str) -> float | int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(text)} characters")
    return float(text) if any(c in text for c in ".eE") else int(text)


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not a number JSON allows")


def parse_json(text: str | bytes, source: str) -> Any:
    """Parse JSON text with the limits of the module docstring; errors name ``source``."""
    try:
        value = json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_no_constant)
    except RecursionError:
        raise MRFError(f"{source}: JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    except json.JSONDecodeError as exc:
        raise MRFError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MRFError(f"{source}: not valid JSON ({exc})") from None
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise MRFError(f"{source}: JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    return value


def check_regular_file(path: str | Path, what: str) -> os.stat_result:
    """Raise :class:`MRFError` unless ``path`` is an existing regular file (FIFOs, devices, folders refused)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise MRFError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise MRFError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise MRFError(f"{what} {path} is not a regular file")
    return info


def read_regular_file(path: str | Path, what: str, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (FIFOs, devices and folders refused)."""
    path = Path(path)
    info = check_regular_file(path, what)
    if info.st_size > max_bytes:
        raise MRFError(f"{what} {path} has {info.st_size:,} bytes; at most {max_bytes:,} are read")
    try:
        # O_NONBLOCK: a file swapped for a FIFO between stat and open must not hang the read.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise MRFError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise MRFError(f"{what} {path} is larger than {max_bytes:,} bytes")
    return data


def read_json(path: str | Path, what: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A JSON file, read under the limits of the module docstring."""
    data = read_regular_file(path, what, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MRFError(f"{path}: not UTF-8 text") from None
    return parse_json(text, str(path))


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("fisp", "flash", "inversion", "t2prep", "spinlock", "delay", "list[...]", "float", "int"):
            continue  # pydantic's names of union members add nothing for a reader
        elif part.startswith(("list[", "function-", "constrained-", "json-or-python")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "top level"


_WRONG_FORM = {"float_type", "int_type", "list_type", "model_type", "dict_type", "string_type", "bool_type"}


def validate(model: type[M], raw: Any, source: str) -> M:
    """``raw`` validated against ``model``; the first problem as one line naming ``source`` and the field."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A value may take several forms (a number, a list, a range): the branches it does not
        # take report "should be a valid list" and the like; the branch it took says what is wrong.
        real = [e for e in errors if e["type"] not in _WRONG_FORM] or errors
        first = max(real, key=lambda e: len(e["loc"]))
        errors = real
        where = _location(tuple(first["loc"]))
        message = first["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        got = first.get("input")
        shown = "" if isinstance(got, dict | list) else f" (got {str(got)[:40]!r})"
        more = f"; {len(errors) - 1} more problem(s)" if len(errors) > 1 else ""
        raise MRFError(f"{source}: {where}: {message}{shown}{more}") from None


# -- shared field types ------------------------------------------------------------------------

Time = Annotated[float, Field(ge=0, le=MAX_TIME_MS, allow_inf_nan=False)]
PositiveTime = Annotated[float, Field(ge=MIN_TIME_MS, le=MAX_TIME_MS, allow_inf_nan=False)]
Angle = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
Phase = Annotated[float, Field(ge=-36000, le=36000, allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=10_000)]


def _plain_name(value: str) -> str:
    """Names are shown and hashed, never used as paths; still, no control or unpaired surrogate characters."""
    if any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValueError("contains control or unpaired surrogate characters")
    return value


Name = Annotated[str, Field(max_length=200)]


def _per_excitation(low: float, high: float) -> Any:
    bound = Annotated[float, Field(ge=low, le=high, allow_inf_nan=False)]
    return bound | Annotated[list[bound], Field(min_length=1, max_length=MAX_EXCITATIONS)]  # type: ignore[valid-type]


# -- sequence -----------------------------------------------------------------------------


class ReadoutBlock(Strict):
    """A fisp or flash train: scalars or per-excitation lists (all lists of one length)."""

    type: Literal["fisp", "flash"]
    flip_angle_deg: _per_excitation(-180, 180)  # type: ignore[valid-type]
    phase_deg: _per_excitation(-36000, 36000) = 0.0  # type: ignore[valid-type]
    tr_ms: _per_excitation(MIN_TIME_MS, MAX_TIME_MS)  # type: ignore[valid-type]
    te_ms: _per_excitation(0, MAX_TIME_MS)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _lengths_and_echo(self) -> ReadoutBlock:
        lists = {
            k: len(v)
            for k in ("flip_angle_deg", "phase_deg", "tr_ms", "te_ms")
            if isinstance(v := getattr(self, k), list)
        }
        if len(set(lists.values())) > 1:
            detail = ", ".join(f"{k} has {n}" for k, n in lists.items())
            raise ValueError(f"per-excitation lists disagree in length ({detail})")
        n = next(iter(lists.values()), 1)
        tr = self.tr_ms if isinstance(self.tr_ms, list) else [self.tr_ms] * n
        te = self.te_ms if isinstance(self.te_ms, list) else [self.te_ms] * n
        for i, (a, b) in enumerate(zip(te, tr, strict=True)):
            if a > b:
                raise ValueError(f"te_ms ({a:g}) is longer than tr_ms ({b:g}) at excitation {i}")
        return self

    @property
    def n(self) -> int:
        for name in ("flip_angle_deg", "phase_deg", "tr_ms", "te_ms"):
            value = getattr(self, name)
            if isinstance(value, list):
                return len(value)
        return 1


class InversionBlock(Strict):
    type: Literal["inversion"]
    ti_ms: Time


class T2PrepBlock(Strict):
    type: Literal["t2prep"]
    te_ms: Time


class SpinLockBlock(Strict):
    type: Literal["spinlock"]
    tsl_ms: Time


class DelayBlock(Strict):
    type: Literal["delay"]
    duration_ms: Time


SequenceBlock = Annotated[
    ReadoutBlock | InversionBlock | T2PrepBlock | SpinLockBlock | DelayBlock, Field(discriminator="type")
]


class SequenceFile(Strict):
    """A sequence file (see :mod:`mrfviewer.sequence`)."""

    name: Name = "unnamed"
    description: Text | Annotated[list[Annotated[str, Field(max_length=1000)]], Field(max_length=1000)] = ""
    blocks: Annotated[list[SequenceBlock], Field(min_length=1, max_length=10_000)]
    dummy_trains: Annotated[int, Field(ge=0, le=100)] = 0

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _plain_name(value)

    @model_validator(mode="after")
    def _work(self) -> SequenceFile:
        readouts = [b for b in self.blocks if isinstance(b, ReadoutBlock)]
        if not readouts:
            raise ValueError("a sequence needs at least one fisp or flash readout block")
        n = sum(b.n for b in readouts)
        if n > MAX_EXCITATIONS:
            raise ValueError(f"{n:,} excitations per train; at most {MAX_EXCITATIONS:,}")
        if n * (self.dummy_trains + 1) > MAX_SIMULATED_EXCITATIONS:
            raise ValueError(
                f"{self.dummy_trains} dummy trains of {n:,} excitations: at most "
                f"{MAX_SIMULATED_EXCITATIONS:,} excitations are simulated per train"
            )
        return self


# -- grid -------------------------------------------------------------------------------------


class RangeAxis(Strict):
    """``{"min", "max", "n" or "step_percent", "spacing"}``."""

    min: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    max: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    n: Annotated[int, Field(ge=1, le=MAX_AXIS_VALUES)] | None = None
    step_percent: Annotated[float, Field(ge=0.01, le=1000, allow_inf_nan=False)] | None = None
    spacing: Literal["log", "linear"] = "log"

    @model_validator(mode="after")
    def _consistent(self) -> RangeAxis:
        if self.max < self.min:
            raise ValueError(f"need min <= max, got min={self.min:g}, max={self.max:g}")
        if (self.n is None) == (self.step_percent is None):
            raise ValueError("a range needs 'n' or 'step_percent' (one of them)")
        if self.step_percent is not None and self.count() > MAX_AXIS_VALUES:
            raise ValueError(f"{self.count():,} values on one axis; at most {MAX_AXIS_VALUES:,}")
        return self

    def count(self) -> int:
        if self.n is not None:
            return self.n
        assert self.step_percent is not None
        if self.max == self.min:
            return 1
        if self.spacing == "log":
            return int(math.ceil(math.log(self.max / self.min) / math.log1p(self.step_percent / 100))) + 1
        return int(math.ceil((self.max - self.min) / (self.min * self.step_percent / 100))) + 1


def _axis(low: float, high: float) -> Any:
    value = Annotated[float, Field(ge=low, le=high, allow_inf_nan=False)]
    return value | Annotated[list[value], Field(min_length=1, max_length=MAX_AXIS_VALUES)] | RangeAxis  # type: ignore[valid-type]


class GridFile(Strict):
    """A grid file (see :mod:`mrfviewer.grid`); relaxation times in ms, B1 relative."""

    t1_ms: _axis(MIN_TIME_MS, MAX_TIME_MS)  # type: ignore[valid-type]
    t2_ms: _axis(MIN_TIME_MS, MAX_TIME_MS)  # type: ignore[valid-type]
    t1rho_ms: _axis(MIN_TIME_MS, MAX_TIME_MS)  # type: ignore[valid-type]
    b1: _axis(0.01, 10.0) = 1.0  # type: ignore[valid-type]
    constraints: Annotated[
        list[Literal["t2<=t1", "t2<=t1rho", "t1rho<=t1", "t1rho<=t2", "t1<=t2", "t1<=t1rho"]], Field(max_length=6)
    ] = ["t2<=t1", "t2<=t1rho", "t1rho<=t1"]
    name: Name = ""
    description: Text = ""

    @field_validator("t1_ms", "t2_ms", "t1rho_ms", "b1")
    @classmethod
    def _range_bounds(cls, value: Any, info: Any) -> Any:
        if isinstance(value, RangeAxis):
            low, high = (0.01, 10.0) if info.field_name == "b1" else (MIN_TIME_MS, MAX_TIME_MS)
            if value.min < low or value.max > high:
                raise ValueError(f"a range must lie within {low:g} to {high:g}")
        return value


# -- training config --------------------------------------------------------------------------


class TrainConfigFile(Strict):
    """A training config (``mrfviewer train --config``); see :class:`mrfviewer.nn.training.TrainConfig`."""

    hidden: Annotated[list[Annotated[int, Field(ge=1, le=8192)]], Field(min_length=1, max_length=16)] = [256, 256, 256]
    activation: Literal["relu", "gelu", "silu", "tanh", "elu"] = "relu"
    loss: Literal["mse_log", "relative"] = "mse_log"
    learning_rate: Annotated[float, Field(gt=0, le=1.0, allow_inf_nan=False)] = 1e-3
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 512
    epochs: Annotated[int, Field(ge=1, le=100_000)] = 60
    patience: Annotated[int, Field(ge=0, le=100_000)] = 10
    weight_decay: Annotated[float, Field(ge=0, le=1.0, allow_inf_nan=False)] = 0.0
    n_train: Annotated[int, Field(ge=1, le=20_000_000)] = 100_000
    n_val: Annotated[int, Field(ge=1, le=2_000_000)] = 10_000
    sampling: Literal["log-uniform", "grid", "knee"] = "log-uniform"
    schedule: Literal["plateau", "cosine"] = "plateau"
    snr_min: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)] | None = 20.0
    snr_max: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)] | None = 200.0
    val_snr: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)] = 50.0
    rank: Annotated[int, Field(ge=1, le=64)] = 12
    signal: Literal["complex", "magnitude"] = "complex"
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    grid: GridFile | None = None

    @model_validator(mode="after")
    def _snr(self) -> TrainConfigFile:
        if (self.snr_min is None) != (self.snr_max is None):
            raise ValueError("give both snr_min and snr_max, or neither (noiseless training)")
        if self.snr_min is not None and self.snr_max is not None and self.snr_min > self.snr_max:
            raise ValueError("need snr_min <= snr_max")
        return self


# -- model metadata ---------------------------------------------------------------------------

Hex16 = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]


class Architecture(Strict):
    type: Literal["MRFNet"] = "MRFNet"
    n_inputs: Annotated[int, Field(ge=2, le=128)]
    n_params: Literal[3, 4]
    hidden: Annotated[list[Annotated[int, Field(ge=1, le=8192)]], Field(min_length=1, max_length=16)]
    activation: Literal["relu", "gelu", "silu", "tanh", "elu"]


class ModelMetadata(BaseModel):
    """``model.json`` of a network folder: the fields inference relies on (others are kept as they are)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    format: Literal["mrfviewer-nn"]
    format_version: Literal[1]
    sequence_name: Name = ""
    sequence_hash: Hex16
    n_timepoints: Annotated[int, Field(ge=1, le=MAX_EXCITATIONS)]
    signal: Literal["complex", "magnitude"]
    param_names: Annotated[list[str], Field(min_length=3, max_length=4)]
    parameter_ranges: dict[
        Literal["T1", "T2", "T1rho", "B1"],
        Annotated[
            list[Annotated[float, Field(ge=0, le=MAX_TIME_MS, allow_inf_nan=False)]], Field(min_length=2, max_length=2)
        ],
    ]
    svd_rank: Annotated[int, Field(ge=1, le=64)]
    basis_sha256: Hex16
    architecture: Architecture
    validation_mape_pct: dict[str, Any]

    @model_validator(mode="after")
    def _consistent(self) -> ModelMetadata:
        names = list(self.param_names)
        if names not in (["T1", "T2", "T1rho"], ["T1", "T2", "T1rho", "B1"]):
            raise ValueError(f"unexpected model parameters {names}")
        if self.architecture.n_params != len(names):
            raise ValueError(f"architecture has {self.architecture.n_params} outputs for {len(names)} parameters")
        if self.architecture.n_inputs != 2 * self.svd_rank:
            raise ValueError(
                f"architecture takes {self.architecture.n_inputs} inputs; rank {self.svd_rank} gives "
                f"{2 * self.svd_rank}"
            )
        for name, (lo, hi) in self.parameter_ranges.items():
            if lo > hi:
                raise ValueError(f"parameter range of {name} has min {lo:g} > max {hi:g}")
        return self


# -- HDF5 attributes, label names, batch records -----------------------------------------------

Spacing = Annotated[float, Field(ge=1e-3, le=1e4, allow_inf_nan=False)]


class SeriesAttributes(Strict):
    """Attributes of an HDF5 series file (see :mod:`mrfviewer.io.series_h5`)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    pixel_spacing_mm: Spacing | Annotated[list[Spacing], Field(min_length=1, max_length=2)] = [1.0, 1.0]
    slice_thickness_mm: Spacing = 1.0
    description: Text = ""
    sequence: Annotated[str, Field(max_length=MAX_JSON_BYTES)] | None = None


class DictionaryAttributes(Strict):
    """Attributes of a dictionary file (see :mod:`mrfviewer.dictionary`)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    format: Literal["mrfviewer-dictionary"]
    format_version: int
    complete: bool
    key: Annotated[str, Field(pattern=r"^[0-9a-f]{16,64}$")]
    sequence_hash: Hex16
    sequence: Annotated[str, Field(max_length=MAX_JSON_BYTES)]
    grid: Annotated[str, Field(max_length=MAX_JSON_BYTES)]
    signal: Literal["complex", "magnitude"]
    rank: Annotated[int, Field(ge=1, le=64)]
    checksum: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


class RadialKspaceHeader(Strict):
    """What mrfviewer reads from the XML header of a radial MRF raw-data file (ISMRMRD, see
    :mod:`mrfviewer.io.ismrmrd_io`): the encoding (square reconstructed matrix, field of view,
    slices, time points as ``contrast``, spokes per time point as ``kspace_encoding_step_1``) and
    the sequence JSON of the user parameters."""

    trajectory: Literal["radial", "goldenangle"]
    matrix: Annotated[int, Field(ge=8, le=2048)]
    matrix_y: Annotated[int, Field(ge=8, le=2048)]
    fov_mm: Spacing
    fov_y_mm: Spacing
    slice_thickness_mm: Spacing
    n_slices: Annotated[int, Field(ge=1, le=512)]
    n_timepoints: Annotated[int, Field(ge=1, le=MAX_EXCITATIONS)]
    spokes: Annotated[int, Field(ge=1, le=512)]
    sequence: Annotated[str, Field(max_length=MAX_JSON_BYTES)] | None = None
    description: Text = ""

    @model_validator(mode="after")
    def _square(self) -> RadialKspaceHeader:
        if self.matrix != self.matrix_y or not math.isclose(self.fov_mm, self.fov_y_mm, rel_tol=1e-6):
            raise ValueError(
                f"the reconstructed matrix must be square with a square field of view, got {self.matrix} x "
                f"{self.matrix_y} pixels and {self.fov_mm:g} x {self.fov_y_mm:g} mm"
            )
        return self


class LabelNames(BaseModel):
    """A label-name sidecar: ``{"1": "femur marrow", ...}``."""

    model_config = ConfigDict(strict=True, frozen=True)

    names: dict[Annotated[str, Field(pattern=r"^-?[0-9]{1,9}$")], Annotated[str, Field(max_length=200)]] = Field(
        max_length=100_000
    )


class DoneRecord(BaseModel):
    """``done.json`` of a finished batch series (written by :mod:`mrfviewer.batch`)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    key: dict[str, Any]
    source: str
    seconds: float
    voxels: int
    failed_formats: dict[str, str] = {}


def h5_attributes(attrs: Any) -> dict[str, Any]:
    """HDF5 attributes as plain Python values (numpy scalars and arrays to numbers and lists)."""
    import numpy as np

    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[str(key)] = value
    return out
