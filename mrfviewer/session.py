"""The open session: everything the viewer shows, Qt-free and evented.

In the spirit of napari's layer model, the GUI's widgets observe one :class:`Session` and
hold no science state of their own: the open input (series, sequence, labels), the result
of each method with its provenance (DM and NN kept side by side), the selected method,
the label map, the ROIs, the current slice and the clicked voxel. Every change emits an
event; widgets subscribe. The map view, the ROI table, the fingerprint plot and every
export read the same selected result. Opening an input resets all dependent state here,
in one place.

Long work (reconstruction, exports) runs as a job (a plain ``fn(progress, cancel)``) on a
worker thread; a job only computes, and the GUI thread hands its result back to the
session (:meth:`Session.add_result`), so events are always emitted on the GUI thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrfviewer import pipeline
from mrfviewer.engine import CancelToken, ProgressCallback
from mrfviewer.errors import MRFError
from mrfviewer.io.atomic import atomic_write_text
from mrfviewer.phantom_fit import SphereTemplate, fit_nist_template
from mrfviewer.pipeline import Estimator, EstimatorChoice, Input, LabelMap, ParameterMaps, ReconstructionSettings
from mrfviewer.references import NIST_ARRAYS, nist_array_of, roi_reference, template_sphere_name
from mrfviewer.roi import RoiStats, roi_statistics, stats_to_csv

__all__ = ["DrawnRoi", "RoiRow", "Session", "SessionEvents", "Signal", "SphereTemplate"]

#: Maps whose ROI statistics are listed (in this order, where the result has them).
STAT_MAPS = ("T1", "T2", "T1rho", "B1", "PD")


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

    input: Signal = field(default_factory=Signal)
    results: Signal = field(default_factory=Signal)  # a result was added (method)
    selection: Signal = field(default_factory=Signal)  # the shown method changed (method)
    labels: Signal = field(default_factory=Signal)
    rois: Signal = field(default_factory=Signal)
    slice: Signal = field(default_factory=Signal)  # (z)
    pixel: Signal = field(default_factory=Signal)  # (z, y, x) or None
    choices: Signal = field(default_factory=Signal)  # estimator choices or settings changed


@dataclass(frozen=True)
class DrawnRoi:
    """An ROI drawn on the image plane: its pixel mask (Y, X), applied to the current slice."""

    name: str
    mask: np.ndarray
    kind: str = "drawn"  # "drawn" or "template" (NIST sphere template)


@dataclass(frozen=True)
class RoiRow:
    """One line of the ROI table and CSV: statistics of one map in one ROI, for one method."""

    stats: RoiStats
    method: str
    slice: int | None  # 0-based slice of a drawn ROI; None: all slices (label maps)
    reference: float | None

    @property
    def scope(self) -> str:
        """``slice 3`` or ``volume``, for the table."""
        return "volume" if self.slice is None else f"slice {self.slice + 1}"

    @property
    def slice_text(self) -> str:
        """The CSV's slice column: the 1-based slice or ``all``."""
        return "all" if self.slice is None else str(self.slice + 1)

    @property
    def error_pct(self) -> float | None:
        if not self.reference or not np.isfinite(self.stats.mean):
            return None
        return 100 * (self.stats.mean / self.reference - 1)


class Session:
    """The state behind the viewer (see the module docstring)."""

    def __init__(self, cache: pipeline.EstimatorCache | None = None) -> None:
        self.events = SessionEvents()
        self.cache = cache or pipeline.EstimatorCache()
        self.dm_choice = EstimatorChoice("dm")
        self.nn_choice = EstimatorChoice("nn")
        self.settings = ReconstructionSettings()
        self.label_statistics = True
        self._reset()

    def _reset(self) -> None:
        self.input: Input | None = None
        self.results: dict[str, ParameterMaps] = {}
        self.estimators: dict[str, Estimator] = {}
        self.method = "dm"
        self.labels: LabelMap | None = None
        self.rois: dict[str, DrawnRoi] = {}
        self.slice = 0
        self.pixel: tuple[int, int, int] | None = None
        self.nist_array = "T2"
        self._label_rows: dict[tuple[int, int, str], list[RoiRow]] = {}

    # -- the input ----------------------------------------------------------------------------
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

    def reconstruction_job(self, method: str) -> Callable[[ProgressCallback, CancelToken], object]:
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
        self.events.results.emit(maps.method)
        self.select(maps.method)

    def select(self, method: str) -> None:
        """Show the stored result of ``method`` (none yet: the raw images)."""
        self.method = method
        self.events.selection.emit(method)

    @property
    def selected(self) -> ParameterMaps | None:
        return self.results.get(self.method)

    # -- navigation ---------------------------------------------------------------------------
    def set_slice(self, z: int) -> None:
        z = int(min(max(z, 0), max(self.n_slices - 1, 0)))
        if z != self.slice:
            self.slice = z
            self.events.slice.emit(z)

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

    # -- labels and ROIs ----------------------------------------------------------------------
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

    def set_roi(self, name: str, mask: np.ndarray, kind: str = "drawn") -> None:
        self.rois[name] = DrawnRoi(name, np.asarray(mask, dtype=bool), kind)
        self.events.rois.emit()

    def remove_rois(self, names: list[str] | None = None) -> None:
        """Remove the named ROIs (None: all)."""
        for name in list(self.rois) if names is None else names:
            self.rois.pop(name, None)
        self.events.rois.emit()

    def _mask3d(self, roi: DrawnRoi) -> np.ndarray:
        assert self.input is not None
        mask = np.zeros(self.input.spatial_shape, dtype=bool)
        if roi.mask.shape == mask.shape[1:]:
            mask[self.slice] = roi.mask
        return mask

    def roi_rows(self, method: str | None = None) -> list[RoiRow]:
        """Statistics of the result of ``method`` (default: the shown one) in every ROI.

        Drawn ROIs apply to the current slice; label maps (when label statistics are on)
        to the whole volume, computed once per result and label map.
        """
        method = method or self.method
        maps = self.results.get(method)
        if maps is None or self.input is None:
            return []
        truth = self.input.truth
        names = [m for m in STAT_MAPS if m in maps.values]
        rows = []
        for roi in self.rois.values():
            mask = self._mask3d(roi)
            for m in names:
                stats = roi_statistics(maps.values[m], mask, roi.name, m, maps.unit(m))
                rows.append(RoiRow(stats, method, self.slice, roi_reference(roi.name, m, mask, truth, self.nist_array)))
        if self.label_statistics and self.labels is not None:
            rows += self._label_statistics(maps, names)
        return rows

    def _label_statistics(self, maps: ParameterMaps, names: list[str]) -> list[RoiRow]:
        assert self.labels is not None and self.input is not None
        key = (id(maps), id(self.labels), self.nist_array)
        if key not in self._label_rows:
            truth, rows = self.input.truth, []
            for label in self.labels.labels():
                mask = self.labels.values == label
                name = self.labels.name(label)
                for m in names:
                    stats = roi_statistics(maps.values[m], mask, name, m, maps.unit(m))
                    reference = roi_reference(name, m, mask, truth, self.nist_array)
                    rows.append(RoiRow(stats, maps.method, None, reference))
            self._label_rows[key] = rows
        return self._label_rows[key]

    def template_fit_job(self) -> Callable[[ProgressCallback, CancelToken], object]:
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
        if template is not None and self.input is not None:
            for i, mask in enumerate(template.masks(self.input.spatial_shape[1:])):
                self.rois[template_sphere_name(i + 1)] = DrawnRoi(template_sphere_name(i + 1), mask, "template")
        self.events.rois.emit()

    def set_nist_array(self, array: str) -> None:
        if array not in NIST_ARRAYS:
            raise MRFError(f"NIST array must be T1 or T2, got {array!r}")
        self.nist_array = array
        self.events.rois.emit()

    def write_roi_csv(self, path: str | Path, overwrite: bool = False) -> Path:
        """The ROI statistics of the shown result as CSV (with its method and each row's scope)."""
        maps = self.selected
        rows = self.roi_rows()
        if maps is None or not rows:
            raise MRFError("no ROI statistics to export: reconstruct and draw or load ROIs first")
        text = stats_to_csv([r.stats for r in rows], maps, [r.slice_text for r in rows])
        return atomic_write_text(path, text, overwrite=overwrite)

    # -- exports ------------------------------------------------------------------------------
    def export_job(
        self, formats: tuple[str, ...], folder: str | Path, overwrite: bool = False
    ) -> Callable[[ProgressCallback, CancelToken], object]:
        """A job exporting the shown result (as it is now) in ``formats`` into ``folder``."""
        maps, input = self.selected, self.input
        if maps is None or input is None:
            raise MRFError("reconstruct first: there are no maps to export")
        if "dicom" in formats and not input.source_files:
            raise MRFError("DICOM Parametric Maps need a series opened from DICOM (its images are referenced)")
        labels = self.labels if self.label_statistics else None

        def job(progress: ProgressCallback, cancel: CancelToken) -> object:
            report = pipeline.export(
                maps, folder, formats, input=input, labels=labels, overwrite=overwrite, cancel=cancel
            )
            if report.failed:
                raise MRFError(report.failure_text())
            return f"wrote {len(report.files)} {maps.method.upper()} files to {folder}"

        return job

    def default_export_folder(self, parent: str | Path) -> Path:
        """Where an export of the shown result goes inside ``parent``: the method in the name."""
        return Path(parent) / f"mrfviewer_{self.method}"
