"""The open session: everything the viewer shows, Qt-free and evented.

In the spirit of napari's layer model, the GUI's widgets observe one :class:`Session` and
hold no science state of their own: the dataset being browsed, the open input (series,
sequence, labels), the result of each method with its provenance (DM and NN kept side by
side), the selected method, the label map, the ROIs (with their names, colours and
shapes), the current slice, time point and clicked voxel, and the statistics shown.
Every change emits an event; widgets subscribe. The map view, the ROI table, the
fingerprint plot and every export read the same selected result. Opening an input resets
all dependent state here, in one place.

Long work (opening, reconstruction, label statistics, template fits, exports) runs as a
job (a plain ``fn(progress, cancel)``) on a worker thread; a job only computes, and the
GUI thread hands its result back to the session (:meth:`Session.add_result`,
:meth:`Session.add_label_statistics`, ...), so events are always emitted on the GUI thread.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.path import Path as PolygonPath

from mrfviewer import pipeline
from mrfviewer.colormaps import BOUNDED, tissue_mask
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, report, scaled
from mrfviewer.errors import MRFError
from mrfviewer.io.atomic import atomic_write_text
from mrfviewer.phantom_fit import SphereTemplate, fit_nist_template
from mrfviewer.pipeline import (
    Dataset,
    Estimator,
    EstimatorChoice,
    Input,
    LabelMap,
    ParameterMaps,
    ReconstructionSettings,
    SeriesEntry,
)
from mrfviewer.references import NIST_ARRAYS, TEMPLATE_PREFIX, nist_array_of, roi_reference, template_sphere_name
from mrfviewer.roi import CSV_COLUMNS, RoiStats, roi_statistics

__all__ = [
    "ROI_COLOURS",
    "Agreement",
    "Dataset",
    "DrawnRoi",
    "RoiLine",
    "RoiRow",
    "SeriesEntry",
    "Session",
    "SessionEvents",
    "Signal",
    "SphereTemplate",
]

Job = Callable[[ProgressCallback, CancelToken], object]
#: What a label statistics job returns per result: (cache key, the result, {slice or None: rows}).
LabelKey = tuple[int, int, str, str]
LabelBatch = tuple[LabelKey, "ParameterMaps", dict[int | None, list["RoiRow"]]]

#: Maps whose ROI statistics are listed (in this order, where the result has them).
STAT_MAPS = ("T1", "T2", "T1rho", "B1", "PD")
#: Maps whose values a dictionary (or a network's training range) bounds: clipped voxels are counted.
BOUNDED_MAPS = BOUNDED
#: Colours of drawn ROIs, in the order they are handed out: Okabe and Ito's colour-blind
#: safe palette (Color Universal Design), black left out (invisible on the dark maps).
ROI_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#CC79A7", "#D55E00", "#0072B2")
#: Colour of the NIST template's spheres (one layout, one colour).
TEMPLATE_COLOUR = "#00FFFF"
#: Label statistics per slice or over the whole volume.
LABEL_SCOPES = ("volume", "slice")
#: The raw images' ROI statistics are of this "map" (magnitude of the shown time point).
RAW_MAP = "signal"


class Signal:
    """A minimal event: ``connect(callback)``; ``emit(*args)`` calls every callback in order."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., object]] = []

    def connect(self, callback: Callable[..., object]) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable[..., object]) -> None:
        self._callbacks.remove(callback)

    def emit(self, *args: object) -> None:
        for callback in list(self._callbacks):
            callback(*args)


@dataclass
class SessionEvents:
    """What a widget can observe. ``input``: a new series (everything else was reset)."""

    dataset: Signal = field(default_factory=Signal)  # the browsed folder's series changed
    input: Signal = field(default_factory=Signal)
    results: Signal = field(default_factory=Signal)  # a result was added (method)
    selection: Signal = field(default_factory=Signal)  # the shown method changed (method)
    labels: Signal = field(default_factory=Signal)
    rois: Signal = field(default_factory=Signal)  # ROIs or their statistics changed
    roi_selected: Signal = field(default_factory=Signal)  # (name or None)
    slice: Signal = field(default_factory=Signal)  # (z)
    time: Signal = field(default_factory=Signal)  # (t) the raw images' time point
    pixel: Signal = field(default_factory=Signal)  # (z, y, x) or None
    choices: Signal = field(default_factory=Signal)  # estimator choices or settings changed


@dataclass(frozen=True)
class DrawnRoi:
    """An ROI drawn on the image plane: its pixel mask (Y, X), applied to the current slice.

    ``kind``: "rectangle", "ellipse", "freehand" or "drawn" (a mask without a shape) and
    "template" (a sphere of the NIST template). ``polygon`` is the outline as drawn
    ((N, 2) x, y in pixels; None for a bare mask) and ``state`` what the view needs to
    draw the shape again (opaque here).
    """

    name: str
    mask: np.ndarray
    kind: str = "drawn"
    colour: str = ROI_COLOURS[0]
    polygon: np.ndarray | None = None
    state: dict | None = None

    @property
    def source(self) -> str:
        return "template" if self.kind == "template" else "drawn"


@dataclass(frozen=True)
class RoiRow:
    """One line of the ROI CSV: statistics of one map in one ROI, for one method.

    ``slice`` is the 0-based slice (None: the whole volume); ``n_clipped`` the voxels whose
    value sits at a bound of the dictionary (or beyond the network's training range):
    clipped there, not measured.
    """

    stats: RoiStats
    method: str
    slice: int | None
    reference: float | None
    n_clipped: int = 0
    source: str = "drawn"  # "drawn", "template" or "labels"
    time_point: int | None = None  # raw images: the 0-based time point

    @property
    def scope(self) -> str:
        """``slice 3``, ``volume`` or ``slice 3, time point 7``, for the table."""
        text = "volume" if self.slice is None else f"slice {self.slice + 1}"
        return text if self.time_point is None else f"{text}, time point {self.time_point + 1}"

    @property
    def slice_text(self) -> str:
        """The CSV's slice column: the 1-based slice or ``all``."""
        return "all" if self.slice is None else str(self.slice + 1)

    @property
    def error_pct(self) -> float | None:
        if not self.reference or not np.isfinite(self.stats.mean):
            return None
        return 100 * (self.stats.mean / self.reference - 1)


@dataclass(frozen=True)
class RoiLine:
    """One ROI of the table: its statistics for every map (map name -> row)."""

    name: str
    source: str  # "drawn", "template" or "labels"
    colour: str | None
    scope: str
    cells: dict[str, RoiRow]

    @property
    def editable(self) -> bool:
        """Drawn ROIs can be renamed and deleted; label names come from the label map."""
        return self.source == "drawn"


@dataclass(frozen=True)
class Agreement:
    """Bland-Altman of NN against DM over the ROI means of one parameter.

    ROIs with voxels clipped at a DM dictionary bound (or beyond the network's range) are
    kept in ``names`` but marked in ``clipped`` and left out of the bias and the limits:
    their DM mean is a bound, not a measurement.
    """

    param: str
    unit: str
    names: list[str]
    dm: np.ndarray
    nn: np.ndarray
    clipped: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return (self.dm + self.nn) / 2

    @property
    def difference(self) -> np.ndarray:
        return self.nn - self.dm

    @property
    def n_used(self) -> int:
        return int(np.count_nonzero(~self.clipped))

    @property
    def bias(self) -> float:
        used = self.difference[~self.clipped]
        return float(used.mean()) if used.size else float("nan")

    @property
    def limits(self) -> tuple[float, float]:
        """Bias -/+ 1.96 SD of the differences (ddof = 1; NaN below two ROIs)."""
        used = self.difference[~self.clipped]
        if used.size < 2:
            return float("nan"), float("nan")
        sd = float(np.std(used, ddof=1))
        return self.bias - 1.96 * sd, self.bias + 1.96 * sd


def polygon_mask(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels of a (Y, X) plane whose centres lie inside ``polygon`` ((N, 2) x, y in pixels)."""
    mask = np.zeros(shape, dtype=bool)
    polygon = np.asarray(polygon, dtype=np.float64)
    if len(polygon) < 3:
        return mask
    # Only the pixels of the bounding box are tested.
    x0, y0 = np.maximum(np.floor(polygon.min(axis=0)).astype(int), 0)
    x1 = min(int(np.ceil(polygon[:, 0].max())), shape[1])
    y1 = min(int(np.ceil(polygon[:, 1].max())), shape[0])
    if x1 <= x0 or y1 <= y0:
        return mask
    yy, xx = np.mgrid[y0:y1, x0:x1]
    centres = np.column_stack([xx.ravel() + 0.5, yy.ravel() + 0.5])
    mask[y0:y1, x0:x1] = PolygonPath(polygon).contains_points(centres).reshape(yy.shape)
    return mask


def label_rows(
    maps: ParameterMaps,
    labels: LabelMap,
    scope: str,
    truth: dict[str, np.ndarray],
    nist_array: str,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[int | None, list[RoiRow]]:
    """Statistics of every label and map of ``maps``: over the volume (key None) or per slice (key z).

    ``n_clipped`` counts the voxels at a bound of the estimator's range (see
    :meth:`ParameterMaps.at_range_limit`); references come from ``truth`` or the names.
    """
    names = [m for m in STAT_MAPS if m in maps.values]
    limits = {m: maps.at_range_limit((m,)) for m in BOUNDED_MAPS if m in maps.values}
    present = labels.labels()
    out: dict[int | None, list[RoiRow]] = {}
    for j, label in enumerate(present):
        check_cancel(cancel)
        report(progress, j / max(len(present), 1), "label statistics")
        region = labels.values == label
        name = labels.name(label)
        slices = [None] if scope == "volume" else [int(z) for z in np.flatnonzero(region.any(axis=(1, 2)))]
        for z in slices:
            mask = region if z is None else region[z]
            for m in names:
                plane = maps.values[m] if z is None else maps.values[m][z]
                stats = roi_statistics(plane, mask, name, m, maps.unit(m))
                reference = _plane_reference(name, m, mask, truth, z, nist_array)
                limit = limits.get(m)
                clipped = 0 if limit is None else int(np.count_nonzero((limit if z is None else limit[z]) & mask))
                out.setdefault(z, []).append(RoiRow(stats, maps.method, z, reference, clipped, "labels"))
    report(progress, 1.0, "label statistics ready")
    return out


def _plane_reference(
    name: str, map_name: str, mask: np.ndarray, truth: dict[str, np.ndarray], z: int | None, nist_array: str
) -> float | None:
    """The reference value of an ROI on slice ``z`` (None: ``mask`` covers the volume)."""
    plane_truth = truth if z is None else {k: v[z] for k, v in truth.items()}
    return roi_reference(name, map_name, mask, plane_truth, nist_array)


class Session:
    """The state behind the viewer (see the module docstring)."""

    def __init__(self, cache: pipeline.EstimatorCache | None = None) -> None:
        self.events = SessionEvents()
        self.cache = cache or pipeline.EstimatorCache()
        self.dm_choice = EstimatorChoice("dm")
        self.nn_choice = EstimatorChoice("nn")
        self.settings = ReconstructionSettings()
        self.label_statistics = True
        self.label_scope = "volume"
        self.dataset: Dataset | None = None
        self._reset()

    def _reset(self) -> None:
        self.input: Input | None = None
        self.results: dict[str, ParameterMaps] = {}
        self.estimators: dict[str, Estimator] = {}
        self.method = "dm"
        self.labels: LabelMap | None = None
        self.rois: dict[str, DrawnRoi] = {}
        self.selected_roi: str | None = None
        self.slice = 0
        self.time_point = 0
        self.pixel: tuple[int, int, int] | None = None
        self.nist_array = "T2"
        self.template: SphereTemplate | None = None  # where the NIST template lies (its spheres are ROIs)
        self._roi_counter = 0
        # Label statistics: (result, labels, scope, NIST array) -> (the result, {slice or None: rows}).
        # The result is held so that its id stays unique while the entry lives.
        self._label_rows: dict[LabelKey, tuple[ParameterMaps, dict[int | None, list[RoiRow]]]] = {}
        self._bounded: dict[int, tuple[ParameterMaps, dict[str, np.ndarray]]] = {}
        # Drawn-ROI rows: (method, result, ROI, slice, NIST array) -> (the result, the ROI, rows). ROIs are
        # frozen and replaced when edited, so an entry holds until one changes (a refresh of the
        # 14 template spheres had recomputed 56 statistics each time).
        self._roi_rows: dict[tuple[str, int, int, int, str], tuple[ParameterMaps, DrawnRoi, list[RoiRow]]] = {}
        self._tissue: dict[tuple, tuple[tuple[ParameterMaps, ...], np.ndarray]] = {}
        self._differences: dict[tuple[int, int, str], tuple[ParameterMaps, ParameterMaps, np.ndarray]] = {}

    # -- the dataset and the input ------------------------------------------------------------
    def browse_job(self, path: str | Path) -> Job:
        """A job listing the series of a folder (or an HDF5 file); hand its result to :meth:`set_dataset`."""
        path = Path(path)

        def job(progress: ProgressCallback, cancel: CancelToken) -> object:
            return pipeline.list_series(path, progress=progress, cancel=cancel)

        return job

    def set_dataset(self, dataset: Dataset | None) -> None:
        """The folder being browsed (kept when one of its series is opened)."""
        self.dataset = dataset
        self.events.dataset.emit()

    def open_entry_job(self, entry: SeriesEntry) -> Job:
        """A job opening one series of the dataset in memory; hand its result to :meth:`open`."""
        dataset = self.dataset
        if dataset is None or entry not in dataset.entries:
            raise MRFError("that series is not in the open dataset")
        if not entry.usable:
            raise MRFError(f"'{entry.description}' cannot be reconstructed: {entry.reason}")

        def job(progress: ProgressCallback, cancel: CancelToken) -> object:
            return dataset.open(entry, in_memory=True, progress=progress, cancel=cancel)

        return job

    def open(self, input: Input) -> None:
        """Show ``input``: every result, ROI, label map, slice and pixel of the last one goes."""
        method = self.method
        self._reset()
        self.method = method
        self.input = input
        self.labels = input.labels
        self.nist_array = nist_array_of(input.source.description or input.name)
        self.events.input.emit()

    @property
    def n_slices(self) -> int:
        return self.input.spatial_shape[0] if self.input is not None else 0

    @property
    def n_timepoints(self) -> int:
        return self.input.sequence.n_timepoints if self.input is not None else 0

    @property
    def entry(self) -> SeriesEntry | None:
        """The dataset entry of the open series, if it came from the browsed dataset."""
        if self.dataset is None or self.input is None:
            return None
        uid, path = self.input.identity.series_uid, self.input.identity.path
        for entry in self.dataset.entries:
            if entry.series_uid is not None and entry.series_uid == uid:
                return entry
            if entry.series_uid is None and path and Path(path) == entry.path:
                return entry
        return None

    def use_b1_map(self, path: str | Path, scale: float | None = None) -> None:
        """Give DM a measured B1+ map (NIfTI or DICOM; see :func:`mrfviewer.b1map.read_b1_map`) for later runs.

        Placed on the open series by geometry and checked now; results already shown stay.
        """
        if self.input is None:
            raise MRFError("open a series first")
        from mrfviewer.b1map import read_b1_map

        placed = read_b1_map(path, self.input.source.geometry, self.input.source.spatial_shape, scale=scale)
        self.input = dataclasses.replace(self.input, b1_map=placed)
        self.events.choices.emit()

    def clear_b1_map(self) -> None:
        """DM estimates B1 again (the dictionary's B1 dimension)."""
        if self.input is not None and self.input.b1_map is not None:
            self.input = dataclasses.replace(self.input, b1_map=None)
            self.events.choices.emit()

    @property
    def measured_b1(self) -> bool:
        return self.input is not None and self.input.b1_map is not None

    def use_sequence(self, path: str | Path) -> None:
        """Attach another sequence to the open series (its results go: they were for the old one)."""
        if self.input is None or self.input.series is None:
            raise MRFError("open a series first")
        series = self.input.series.with_sequence(pipeline.load_sequence_file(path))
        self.open(pipeline.input_from_series(series, labels=self.labels, identity=self.input.identity))

    # -- estimators and results ---------------------------------------------------------------
    def choice(self, method: str) -> EstimatorChoice:
        return self.nn_choice if method == "nn" else self.dm_choice

    def set_choice(self, choice: EstimatorChoice) -> None:
        choice.validate()
        if choice.method == "nn":
            self.nn_choice = choice
        else:
            self.dm_choice = choice
        self.events.choices.emit()

    def set_settings(self, **changes: object) -> None:
        settings = dataclasses.replace(self.settings, **changes)  # type: ignore[arg-type]
        settings.validate()
        self.settings = settings
        self.events.choices.emit()

    def reconstruction_job(self, method: str) -> Job:
        """A job reconstructing the open input with ``method`` (the choices and settings of now).

        The job returns ``(maps, estimator)``; hand it to :meth:`add_result` on the GUI thread.
        """
        if self.input is None:
            raise MRFError("open a series first")
        input, choice, cache = self.input, self.choice(method), self.cache
        settings = dataclasses.replace(self.settings, method=method)
        settings.validate()

        def job(progress: ProgressCallback, cancel: CancelToken) -> object:
            return pipeline.reconstruct_input(input, choice, settings, cache=cache, progress=progress, cancel=cancel)

        return job

    def add_result(self, maps: ParameterMaps, estimator: Estimator) -> None:
        """Keep a result (replacing the method's earlier one) and show it."""
        if self.input is None or maps.provenance.input.series_uid != self.input.identity.series_uid:
            return  # a late result of a series that is no longer open
        self.results[maps.method] = maps
        self.estimators[maps.method] = estimator
        self._forget_replaced()
        self.events.results.emit(maps.method)
        self.select(maps.method)

    def _forget_replaced(self) -> None:
        """Drop what the caches derived from results no longer stored (each entry holds its result)."""
        kept = {id(m) for m in self.results.values()}
        self._bounded = {k: v for k, v in self._bounded.items() if k in kept}
        self._label_rows = {k: v for k, v in self._label_rows.items() if id(v[0]) in kept}
        self._roi_rows = {k: v for k, v in self._roi_rows.items() if id(v[0]) in kept}
        self._tissue = {k: v for k, v in self._tissue.items() if all(id(m) in kept for m in v[0])}
        self._differences = {k: v for k, v in self._differences.items() if id(v[0]) in kept and id(v[1]) in kept}

    def select(self, method: str) -> None:
        """Show the stored result of ``method`` (none yet: the raw images)."""
        self.method = method
        self.events.selection.emit(method)

    @property
    def selected(self) -> ParameterMaps | None:
        return self.results.get(self.method)

    def bounded(self, method: str | None = None) -> dict[str, np.ndarray]:
        """Per map, the voxels of a result at a bound of its estimator's range (see ``n_clipped``)."""
        maps = self.results.get(method or self.method)
        if maps is None:
            return {}
        entry = self._bounded.get(id(maps))
        if entry is None:
            limits = {m: maps.at_range_limit((m,)) for m in BOUNDED_MAPS if m in maps.values}
            entry = self._bounded[id(maps)] = (maps, limits)
        return entry[1]

    def tissue_mask(self, method: str | None = None) -> np.ndarray | None:
        """Voxels automatic windows of a result are taken from (see :func:`mrfviewer.colormaps.tissue_mask`).

        Voxels clipped in any stored result count as clipped in all: a network stops short
        of the fluid's values where DM sits at the dictionary's bound.
        """
        maps = self.results.get(method or self.method)
        if maps is None:
            return None
        key = ("tissue", id(maps), *sorted(id(m) for m in self.results.values()))
        if key not in self._tissue:
            clipped = [c for c in (self.clipped_mask(m) for m in self.results) if c is not None]
            union = np.logical_or.reduce(clipped) if clipped else None
            if len(self._tissue) > 4:
                self._tissue.clear()
            self._tissue[key] = (tuple(self.results.values()), tissue_mask(maps.values, union))
        return self._tissue[key][1]

    def clipped_mask(self, method: str | None = None) -> np.ndarray | None:
        """(Z, Y, X) voxels of the shown (or ``method``'s) result clipped in any bounded map."""
        limits = self.bounded(method)
        if not limits:
            return None
        return np.logical_or.reduce(list(limits.values()))

    # -- navigation ---------------------------------------------------------------------------
    def set_slice(self, z: int) -> None:
        z = int(min(max(z, 0), max(self.n_slices - 1, 0)))
        if z != self.slice:
            self.slice = z
            self.events.slice.emit(z)

    def step_slice(self, step: int) -> None:
        """Move ``step`` slices (clamped at the ends)."""
        self.set_slice(self.slice + step)

    def set_time_point(self, t: int) -> None:
        """The time point of the raw images shown (before a reconstruction)."""
        t = int(min(max(t, 0), max(self.n_timepoints - 1, 0)))
        if t != self.time_point:
            self.time_point = t
            self.events.time.emit(t)

    def set_pixel(self, z: int, y: int, x: int) -> None:
        if self.input is None:
            return
        shape = self.input.spatial_shape
        if not (0 <= z < shape[0] and 0 <= y < shape[1] and 0 <= x < shape[2]):
            raise MRFError(f"pixel x {x}, y {y}, slice {z + 1} lies outside the {shape[2]} x {shape[1]} image")
        self.set_slice(z)
        self.pixel = (z, y, x)
        self.events.pixel.emit(self.pixel)

    def measured(self, z: int, y: int, x: int) -> np.ndarray:
        """The measured fingerprint of a voxel (the series is in memory in the GUI)."""
        if self.input is None or self.input.series is None:
            raise MRFError("no series in memory")
        return self.input.series.data[:, z, y, x]

    def curve(self, method: str, z: int, y: int, x: int) -> np.ndarray | None:
        """The model fingerprint of a voxel for a stored result (DM: its atom; NN: simulated)."""
        maps, estimator = self.results.get(method), self.estimators.get(method)
        if maps is None or estimator is None or self.input is None:
            return None
        return estimator.curve(maps, self.input.sequence, z, y, x)

    # -- labels -------------------------------------------------------------------------------
    def set_labels(self, labels: LabelMap | None) -> None:
        if labels is not None and self.input is not None and labels.values.shape != self.input.spatial_shape:
            raise MRFError(f"label map has shape {labels.values.shape}, the series {self.input.spatial_shape}")
        self.labels = labels
        self._label_rows.clear()
        self.events.labels.emit()

    def load_labels(self, path: str | Path) -> LabelMap:
        """Read a NIfTI or DICOM SEG label map, place it on the series by geometry and use it."""
        if self.input is None:
            raise MRFError("open a series before loading its label map")
        labels = pipeline.load_labels(path, self.input.source)
        self.set_labels(labels)
        return labels

    def set_label_statistics(self, on: bool) -> None:
        self.label_statistics = bool(on)
        self.events.rois.emit()

    def set_label_scope(self, scope: str) -> None:
        """Label statistics per ``"slice"`` (the current one) or over the ``"volume"``."""
        if scope not in LABEL_SCOPES:
            raise MRFError(f"label statistics are per slice or per volume, got {scope!r}")
        self.label_scope = scope
        self.events.rois.emit()

    # -- drawn ROIs ---------------------------------------------------------------------------
    def _next_colour(self) -> str:
        used = [r.colour for r in self.rois.values() if r.kind != "template"]
        free = [c for c in ROI_COLOURS if c not in used]
        return free[0] if free else ROI_COLOURS[len(used) % len(ROI_COLOURS)]

    def _plane_shape(self) -> tuple[int, int]:
        if self.input is None:
            raise MRFError("open a series first")
        return self.input.spatial_shape[1:]

    def add_roi(self, kind: str, polygon: np.ndarray, state: dict | None = None, name: str | None = None) -> str:
        """A new ROI drawn as ``polygon`` ((N, 2) x, y in pixels); its own colour; selected. Returns its name."""
        shape = self._plane_shape()
        if name is None:
            taken = set(self.rois) | self._label_names()
            self._roi_counter += 1
            while f"{kind} {self._roi_counter}" in taken:
                self._roi_counter += 1
            name = f"{kind} {self._roi_counter}"
        polygon = np.asarray(polygon, dtype=np.float64)
        self.rois[name] = DrawnRoi(name, polygon_mask(polygon, shape), kind, self._next_colour(), polygon, state)
        self.selected_roi = name
        self.events.rois.emit()
        self.events.roi_selected.emit(name)
        return name

    def update_roi(self, name: str, polygon: np.ndarray, state: dict | None = None) -> None:
        """An ROI moved or resized: its new outline (and view state)."""
        roi = self.rois.get(name)
        if roi is None:
            return
        polygon = np.asarray(polygon, dtype=np.float64)
        mask = polygon_mask(polygon, self._plane_shape())
        self.rois[name] = dataclasses.replace(roi, mask=mask, polygon=polygon, state=state)
        self.events.rois.emit()

    def set_roi(self, name: str, mask: np.ndarray, kind: str = "drawn") -> None:
        """An ROI given as a (Y, X) mask (no shape to draw)."""
        previous = self.rois.get(name)
        colour = previous.colour if previous is not None else self._next_colour()
        self.rois[name] = DrawnRoi(name, np.asarray(mask, dtype=bool), kind, colour)
        self.events.rois.emit()

    def _label_names(self) -> set[str]:
        return {self.labels.name(v) for v in self.labels.labels()} if self.labels is not None else set()

    def rename_roi(self, old: str, new: str) -> None:
        """Rename a drawn ROI; the name must be new (not another ROI's or a label's)."""
        new = new.strip()
        if old not in self.rois:
            raise MRFError(f"no ROI called {old!r}")
        if self.rois[old].kind == "template":
            raise MRFError("the template's spheres keep their numbers")
        if not new:
            raise MRFError("an ROI needs a name")
        if new == old:
            return
        if new in self.rois or new in self._label_names() or new.startswith(TEMPLATE_PREFIX):
            raise MRFError(f"the name {new!r} is taken: choose another")
        self.rois = {
            (new if k == old else k): (dataclasses.replace(r, name=new) if k == old else r)
            for k, r in self.rois.items()
        }
        if self.selected_roi == old:
            self.selected_roi = new
        self.events.rois.emit()
        self.events.roi_selected.emit(self.selected_roi)

    def remove_rois(self, names: list[str] | None = None) -> None:
        """Remove the named ROIs (None: all)."""
        for name in list(self.rois) if names is None else names:
            self.rois.pop(name, None)
        if self.selected_roi not in self.rois:
            self.selected_roi = None
            self.events.roi_selected.emit(None)
        self.events.rois.emit()

    def select_roi(self, name: str | None) -> None:
        """The ROI the user picked (in the table or on a map); None: none."""
        name = name if name in self.rois else None
        if name != self.selected_roi:
            self.selected_roi = name
            self.events.roi_selected.emit(name)

    # -- statistics ---------------------------------------------------------------------------
    def roi_rows(self, method: str | None = None, *, wait: bool = True) -> list[RoiRow]:
        """Statistics of the result of ``method`` (default: the shown one) in every ROI and label.

        Drawn ROIs apply to the current slice; label maps (when label statistics are on)
        to the volume or the current slice (:attr:`label_scope`), computed once per result,
        label map and scope. ``wait=False`` leaves label rows out until they were computed
        (by :meth:`label_statistics_job`, as the GUI does). With no result, the statistics
        are of the raw images' magnitude at the current slice and time point.
        """
        method = method or self.method
        maps = self.results.get(method)
        if self.input is None:
            return []
        if maps is None:
            return self._raw_rows() if method == self.method else []
        names = [m for m in STAT_MAPS if m in maps.values]
        limits = self.bounded(method)
        truth, z = self.input.truth, self.slice
        rows = []
        if len(self._roi_rows) > 1024:  # ROIs drawn and redrawn over a long session
            self._roi_rows.clear()
        for roi in self.rois.values():
            roi_key = (method, id(maps), id(roi), z, self.nist_array)
            entry = self._roi_rows.get(roi_key)
            if entry is None or entry[0] is not maps or entry[1] is not roi:
                roi_rows = []
                for m in names:
                    stats = roi_statistics(maps.values[m][z], roi.mask, roi.name, m, maps.unit(m))
                    reference = _plane_reference(roi.name, m, roi.mask, truth, z, self.nist_array)
                    clipped = int(np.count_nonzero(limits[m][z] & roi.mask)) if m in limits else 0
                    roi_rows.append(RoiRow(stats, method, z, reference, clipped, roi.source))
                entry = self._roi_rows[roi_key] = (maps, roi, roi_rows)
            rows += entry[2]
        if self.label_statistics and self.labels is not None:
            key = self._label_key(maps)
            if key not in self._label_rows and wait:
                rows_by_slice = label_rows(maps, self.labels, self.label_scope, self.input.truth, self.nist_array)
                self.add_label_statistics([(key, maps, rows_by_slice)], emit=False)
            if key in self._label_rows:
                by_slice = self._label_rows[key][1]
                rows += by_slice.get(None if self.label_scope == "volume" else z, [])
        return rows

    def _raw_rows(self) -> list[RoiRow]:
        """ROIs and labels on the raw images' magnitude, at the current slice and time point."""
        assert self.input is not None
        series = self.input.series
        if series is None:
            return []
        z, t = self.slice, self.time_point
        plane = np.abs(series.data[t, z])
        regions = [(roi.name, roi.mask, roi.source) for roi in self.rois.values()]
        if self.label_statistics and self.labels is not None:
            values = self.labels.values[z]
            regions += [(self.labels.name(v), values == v, "labels") for v in self.labels.labels()]
        rows = []
        for name, mask, source in regions:
            if mask.any():
                stats = roi_statistics(plane, mask, name, RAW_MAP, "a.u.")
                rows.append(RoiRow(stats, "raw", z, None, 0, source, t))
        return rows

    def _label_key(self, maps: ParameterMaps) -> LabelKey:
        return (id(maps), id(self.labels), self.label_scope, self.nist_array)

    def label_statistics_pending(self) -> bool:
        """Whether a stored result lacks the label statistics the table shows (start the job)."""
        if not self.label_statistics or self.labels is None:
            return False
        return any(self._label_key(maps) not in self._label_rows for maps in self.results.values())

    def label_statistics_job(self, results: list[ParameterMaps] | None = None) -> Job:
        """A job computing the label statistics of every stored result that lacks them (or of ``results``).

        Per slice: every slice at once, so that stepping through slices only reads them.
        The job works on the state of now; hand its result to :meth:`add_label_statistics`.
        """
        todo = (
            results
            if results is not None
            else [m for m in self.results.values() if self._label_key(m) not in self._label_rows]
        )
        labels, scope, nist = self.labels, self.label_scope, self.nist_array
        truth = self.input.truth if self.input is not None else {}

        def job(progress: ProgressCallback, cancel: CancelToken) -> object:
            if labels is None:
                return []
            out: list[LabelBatch] = []
            for i, maps in enumerate(todo):
                rows = label_rows(
                    maps, labels, scope, truth, nist, scaled(progress, i / len(todo), (i + 1) / len(todo)), cancel
                )
                out.append(((id(maps), id(labels), scope, nist), maps, rows))
            return out

        return job

    def add_label_statistics(self, computed: list[LabelBatch], emit: bool = True) -> None:
        """Keep label statistics computed by :meth:`label_statistics_job` (dropped if the results or labels changed)."""
        for key, maps, by_slice in computed:
            if self.results.get(maps.method) is maps and key[1] == id(self.labels):
                self._label_rows[key] = (maps, by_slice)
        if emit:
            self.events.rois.emit()

    def roi_lines(self, method: str | None = None, *, wait: bool = True) -> list[RoiLine]:
        """The ROI table: one line per ROI or label, with its statistics for every map."""
        lines: dict[tuple[str, str], RoiLine] = {}
        for row in self.roi_rows(method, wait=wait):
            key = (row.source, row.stats.label)
            if key not in lines:
                roi = self.rois.get(row.stats.label) if row.source != "labels" else None
                colour = roi.colour if roi is not None else None
                lines[key] = RoiLine(row.stats.label, row.source, colour, row.scope, {})
            lines[key].cells[row.stats.map] = row
        return list(lines.values())

    def difference_map(self, param: str) -> np.ndarray | None:
        """100 (NN - DM) / DM of ``param`` in percent (NaN where either is invalid); None without both results."""
        dm, nn = self.results.get("dm"), self.results.get("nn")
        if dm is None or nn is None or param not in dm.values or param not in nn.values:
            return None
        key = (id(dm), id(nn), param)
        if key not in self._differences:
            a, b = dm.values[param], nn.values[param]
            with np.errstate(divide="ignore", invalid="ignore"):
                diff = (100 * (b - a) / a).astype(np.float32)
            diff[~(np.isfinite(a) & np.isfinite(b) & (a != 0))] = np.nan
            self._differences = {key: (dm, nn, diff)}  # one parameter at a time is shown
        return self._differences[key][2]

    def agreement(self, param: str, *, wait: bool = True) -> Agreement | None:
        """Bland-Altman of NN against DM over the ROI and label means of ``param`` (both results needed)."""
        dm, nn = self.results.get("dm"), self.results.get("nn")
        if dm is None or nn is None or param not in dm.values or param not in nn.values:
            return None
        nn_lines = {(line.source, line.name): line for line in self.roi_lines("nn", wait=wait)}
        names, a, b, clipped = [], [], [], []
        for line in self.roi_lines("dm", wait=wait):
            other = nn_lines.get((line.source, line.name))
            if other is None or param not in line.cells or param not in other.cells:
                continue
            x, y = line.cells[param], other.cells[param]
            if not (np.isfinite(x.stats.mean) and np.isfinite(y.stats.mean)):
                continue
            names.append(line.name)
            a.append(x.stats.mean)
            b.append(y.stats.mean)
            clipped.append(x.n_clipped > 0 or y.n_clipped > 0)
        return Agreement(param, dm.unit(param), names, np.array(a), np.array(b), np.array(clipped, dtype=bool))

    # -- the NIST template --------------------------------------------------------------------
    def template_fit_job(self) -> Job:
        """A job fitting the NIST sphere template to the shown result's PD map on the current slice.

        T2 decides between the two 180-degree orientations (against the series' array).
        """
        maps, z = self.selected, self.slice
        if maps is None or "PD" not in maps.values or self.input is None:
            raise MRFError("reconstruct first: the template is fitted to the PD map")
        pd, t2 = maps.values["PD"][z], maps.values["T2"][z] if "T2" in maps.values else None
        spacing = float(self.input.geometry.pixel_spacing_mm[1])
        reference = NIST_ARRAYS[self.nist_array]["T2"]

        def job(progress: ProgressCallback, cancel: CancelToken) -> object:
            return fit_nist_template(pd, spacing, t2=t2, reference_t2=reference)

        return job

    def set_template(self, template: SphereTemplate | None) -> None:
        """The NIST sphere template's 14 inner disks as ROIs on the current slice (None: removed)."""
        for name in [n for n, r in self.rois.items() if r.kind == "template"]:
            self.rois.pop(name)
        self.template = template if self.input is not None else None
        if template is not None and self.input is not None:
            for i, mask in enumerate(template.masks(self.input.spatial_shape[1:])):
                name = template_sphere_name(i + 1)
                self.rois[name] = DrawnRoi(name, mask, "template", TEMPLATE_COLOUR)
        if self.selected_roi not in self.rois:
            self.selected_roi = None
        self.events.rois.emit()

    def set_nist_array(self, array: str) -> None:
        if array not in NIST_ARRAYS:
            raise MRFError(f"NIST array must be T1 or T2, got {array!r}")
        self.nist_array = array
        self.events.rois.emit()

    # -- exports ------------------------------------------------------------------------------
    def roi_csv_text(self) -> str:
        """The ROI statistics of the shown result as CSV.

        The columns of the pipeline's ROI CSV (``slice``: the 1-based slice, or ``all`` for
        a statistic over the volume; ``n_at_range_limit``: the voxels clipped at a bound of
        the estimator's range), then ``reference`` and ``error_pct``. Label statistics per slice
        give a row per label and slice, every slice.
        """
        maps = self.selected
        if maps is None:
            raise MRFError("no ROI statistics to export: reconstruct first")
        rows = [r for r in self.roi_rows() if r.source != "labels"]
        if self.label_statistics and self.labels is not None:
            self.roi_rows()  # the label statistics of the shown result, computed if missing
            by_slice = self._label_rows[self._label_key(maps)][1]
            rows += [r for key in sorted(by_slice, key=lambda k: -1 if k is None else k) for r in by_slice[key]]
        if not rows:
            raise MRFError("no ROI statistics to export: draw ROIs or load a label map first")
        # By column name: the pipeline's ROI CSV columns first, then what the table adds.
        columns = [*CSV_COLUMNS, *(c for c in ("n_at_range_limit", "reference", "error_pct") if c not in CSV_COLUMNS)]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            s, error = r.stats, r.error_pct
            numbers = {k: f"{getattr(s, k):.6g}" for k in ("mean", "sd", "median", "iqr", "min", "max")}
            writer.writerow(
                {"label": s.label, "map": s.map, "unit": s.unit, "n_voxels": s.n_voxels, "n_excluded": s.n_excluded}
                | numbers
                | {"series_uid": maps.series_uid, "slice": r.slice_text, "method": maps.method}
                | {"n_at_range_limit": r.n_clipped, "reference": f"{r.reference:.6g}" if r.reference else ""}
                | {"error_pct": f"{error:.3f}" if error is not None else ""}
            )
        return buffer.getvalue()

    def write_roi_csv(self, path: str | Path, overwrite: bool = False) -> Path:
        """The ROI statistics of the shown result as a CSV file (:meth:`roi_csv_text`), written atomically."""
        return atomic_write_text(path, self.roi_csv_text(), overwrite=overwrite)

    def export_job(self, formats: tuple[str, ...], folder: str | Path, overwrite: bool = False) -> Job:
        """A job exporting the shown result (as it is now) in ``formats`` into ``folder``."""
        maps, input = self.selected, self.input
        if maps is None or input is None:
            raise MRFError("reconstruct first: there are no maps to export")
        if "dicom" in formats and not input.source_files:
            raise MRFError("DICOM Parametric Maps need a series opened from DICOM (its images are referenced)")
        labels = self.labels if self.label_statistics else None

        def job(progress: ProgressCallback, cancel: CancelToken) -> object:
            report_ = pipeline.export(
                maps, folder, formats, input=input, labels=labels, overwrite=overwrite, cancel=cancel
            )
            if report_.failed:
                raise MRFError(report_.failure_text())
            return f"wrote {len(report_.files)} {maps.method.upper()} files to {folder}"

        return job

    def default_export_folder(self, parent: str | Path) -> Path:
        """Where an export of the shown result goes inside ``parent``: the method in the name."""
        return Path(parent) / f"mrfviewer_{self.method}"
