"""One road from an input to exported maps, taken by every front-end.

The CLI (``reconstruct``, ``batch``, ``demo``, ``evaluate --data``) and the GUI call these
functions, in this order, and nothing below them::

    open_input(path, sequence=..., labels=...)   -> Input        headers only; sequence and labels resolved,
                                                                  labels placed by geometry; checked
    check_output(folder, formats, outputs)                        targets checked before any long step
    make_estimator(choice, input.key)            -> Estimator    DM: the dictionary of that sequence and
                                                                  signal type (cached); NN: a checked network
    run(input, estimator, settings)              -> ParameterMaps maps with a typed Provenance
    export(result, folder, formats, input=...)   -> ExportReport each format all or nothing on its own

Rules that used to live in several front-ends live here once: the sequence of a series is
``--sequence`` if given, else the ``mrf_sequence.json`` beside the images, else the HDF5
attribute; the label map is ``--labels`` if given, else the one found by
:func:`mrfviewer.io.labels.discover_labels`, else the labels stored in an HDF5 series; a DM
dictionary is built for the input's own sequence and signal type (complex or magnitude).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from mrfviewer.cohort import CohortItem, find_cohort
from mrfviewer.dictionary import Dictionary, DictionarySettings, get_dictionary, load_dictionary
from mrfviewer.engine import CancelToken, ProgressCallback, check_cancel, prefixed, report, scaled
from mrfviewer.errors import MRFError
from mrfviewer.grid import ParameterGrid, default_knee_grid, load_grid
from mrfviewer.io.bids import BidsLayout, layout_for
from mrfviewer.io.bids import write_dataset_files as write_bids_dataset
from mrfviewer.io.export import FORMATS, ExportReport, check_export_targets, export_maps
from mrfviewer.io.labels import LabelMap, discover_labels, read_label_map, write_label_map
from mrfviewer.maps import ParameterMaps
from mrfviewer.nn.model_io import LoadedModel, default_model_path, load_model, resolve_model_path, shipped_models
from mrfviewer.provenance import InputIdentity, Provenance
from mrfviewer.reconstruction import check_dictionary_for, check_model_for, reconstruct_dm, reconstruct_nn
from mrfviewer.roi import RoiStats, label_statistics, roi_statistics, stats_to_csv
from mrfviewer.sequence import Sequence, load_sequence
from mrfviewer.series import Geometry, Series
from mrfviewer.settings import METHODS, PRECISIONS, ReconstructionSettings
from mrfviewer.volume import SlabSource, open_h5_source, source_from_plan, source_from_series

__all__ = [
    "FORMATS",
    "METHODS",
    "PRECISIONS",
    "CohortItem",
    "Dataset",
    "DictionaryMatching",
    "Estimator",
    "EstimatorCache",
    "EstimatorChoice",
    "ExportReport",
    "Input",
    "LabelMap",
    "NeuralNetwork",
    "ParameterMaps",
    "Provenance",
    "ReconstructionSettings",
    "RoiStats",
    "SeriesEntry",
    "build_estimate",
    "BidsLayout",
    "bids_layout",
    "bids_series_layout",
    "write_bids_dataset",
    "check_output",
    "default_formats",
    "export",
    "find_cohort",
    "label_statistics",
    "input_from_series",
    "list_series",
    "load_labels",
    "load_sequence_file",
    "make_estimator",
    "open_input",
    "open_item",
    "preflight",
    "planned_outputs",
    "roi_statistics",
    "run",
    "stats_to_csv",
    "write_label_map",
]

if TYPE_CHECKING:
    from mrfviewer.io.dicom_read import ScanResult
    from mrfviewer.raw_source import KspaceSeries

#: (sequence hash, signal type): what a DM dictionary or a network must fit.
EstimatorKey = tuple[str, str]


# -- input ------------------------------------------------------------------------------------


@dataclass
class Input:
    """A series ready for reconstruction: its source, sequence, labels and identity.

    ``source`` reads slabs of slices; ``series`` holds the whole series in memory when
    the input was opened with ``in_memory=True`` (the GUI: clicks read any voxel).
    """

    source: SlabSource
    sequence_origin: str
    labels: LabelMap | None = None
    series: Series | None = None
    scan: object | None = None  # the DICOM folder scan (a ScanResult), for a browser
    warnings: list[str] = field(default_factory=list)  # fallbacks taken (also in every result's provenance)
    b1_map: np.ndarray | None = None  # a measured relative B1 (Z, Y, X) on the series grid, NaN where unknown
    kspace: KspaceSeries | None = None  # raw k-space: how its series is reconstructed (done in run())

    @property
    def sequence(self) -> Sequence:
        assert self.source.sequence is not None  # open_input refuses inputs without one
        return self.source.sequence

    @property
    def signal(self) -> str:
        return "complex" if self.source.is_complex else "magnitude"

    @property
    def key(self) -> EstimatorKey:
        return (self.sequence.hash, self.signal)

    @property
    def identity(self) -> InputIdentity:
        return self.source.identity

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return self.source.spatial_shape

    @property
    def geometry(self) -> Geometry:
        return self.source.geometry

    @property
    def source_files(self) -> list[Path]:
        return list(self.source.source_files)

    @property
    def truth(self) -> dict[str, np.ndarray]:
        """Ground-truth maps of a synthetic series (in memory only), else empty."""
        return self.series.truth if self.series is not None else {}

    @property
    def name(self) -> str:
        path = Path(self.identity.path) if self.identity.path else None
        return self.source.description or (path.name if path else "") or self.source.uid or "series"


def _sequence(sequence: Sequence | str | Path | None) -> Sequence | None:
    if sequence is None or isinstance(sequence, Sequence):
        return sequence
    return load_sequence(sequence)


def load_sequence_file(path: str | Path) -> Sequence:
    """A sequence file (JSON), validated."""
    return load_sequence(path)


def load_labels(path: str | Path, source: SlabSource) -> LabelMap:
    """A label map file (NIfTI or DICOM SEG) placed on the grid of ``source`` by geometry."""
    return read_label_map(path, source.geometry, source.spatial_shape)


def open_input(
    path: str | Path,
    *,
    sequence: Sequence | str | Path | None = None,
    series_uid: str | None = None,
    labels: str | Path | None = None,
    find_labels: bool = True,
    root: str | Path | None = None,
    extra_folders: Seq[Path] = (),
    in_memory: bool = False,
    scan: ScanResult | None = None,
    allow_external: bool = False,
    b1_map: str | Path | None = None,
    b1_map_scale: float | None = None,
    kspace_recon: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Input:
    """Open a DICOM folder, an HDF5 series file or radial raw k-space (ISMRMRD; headers only unless ``in_memory``).

    ``sequence`` overrides the series' own; ``labels`` names a label map (else the
    discovery rule applies when ``find_labels``; ``root`` bounds its search, default
    ``path``); ``extra_folders`` are folders holding the phase partner; ``scan`` is a
    scan of ``path`` already made (:func:`list_series`), not repeated; ``allow_external``
    lets an HDF5 series take data from other files (refused by default); ``b1_map`` names a
    measured B1+ map (NIfTI or DICOM) placed on the series by geometry, ``b1_map_scale`` its
    relative B1 per stored unit (None: told from the values, :func:`mrfviewer.b1map.read_b1_map`);
    ``kspace_recon`` (raw k-space only:
    ``subspace``, the default, or ``gridding``) says how the time series is formed from k-space
    (:mod:`mrfviewer.raw_source`; done in :func:`run`, or here when ``in_memory``). Every check
    (sequence, time points, labels and their placement) happens here, before any
    expensive step. Raises :class:`MRFError` naming the problem.
    """
    from mrfviewer.io.dicom_read import find_mrf_series, plan_series, scan_folders

    path = Path(path)
    override = _sequence(sequence)
    if not path.exists():
        raise MRFError(f"series file not found: {path}" if path.suffix else f"series folder not found: {path}")
    kspace = None
    if kspace_recon is not None and not (path.is_file() and _is_raw(path)):
        raise MRFError(f"--kspace-recon applies to raw k-space (ISMRMRD) input; {path} holds images")
    if path.is_dir():
        if scan is None:
            scan = scan_folders([path, *extra_folders], progress=progress, cancel=cancel)
        infos = find_mrf_series(path, series_uid, scan=scan)
        plan = plan_series(infos, override)
        source = source_from_plan(plan, path)
        warnings = _phase_fallback(scan, infos)
        series_location = infos[0].folder
        origin = "--sequence" if override else "mrf_sequence.json"
        if source.sequence is None:
            raise MRFError(f"{path} has no mrf_sequence.json beside the images: give the sequence with --sequence")
    elif path.is_file() and _is_raw(path):
        from mrfviewer.raw_source import open_raw_source

        scan, warnings, series_location = None, [], path
        kspace = open_raw_source(path, recon=kspace_recon or "subspace", sequence=override, cancel=cancel)
        source = kspace.source
        origin = "--sequence" if override else "ISMRMRD header"
    elif path.is_file():
        scan = None
        warnings = []
        source = open_h5_source(path, allow_external=allow_external)
        series_location = path
        origin = "--sequence" if override else "HDF5 attribute"
        if override is not None:
            source = source.with_sequence(override)
        if source.sequence is None:
            raise MRFError(f"{path} names no sequence: give the sequence with --sequence")
    else:
        raise MRFError(f"{path} is neither a folder nor a regular file")
    check_cancel(cancel)
    label_path = Path(labels) if labels is not None else None
    if label_path is None and find_labels:
        label_path = discover_labels(series_location, root if root is not None else path)
    label_map = None
    if label_path is not None:
        label_map = load_labels(label_path, source)
    elif source.labels is not None and np.shape(source.labels) == source.spatial_shape:
        label_map = LabelMap(np.asarray(source.labels, dtype=np.int32), dict(source.label_names), None, "")
    series = None
    if in_memory:
        if kspace is not None:
            kspace.prepare(prefixed(progress, "k-space"), cancel)
        series = _read_whole(path, source)
        if kspace is not None:
            series.truth = kspace.truth_maps()
        source = dataclasses.replace(source_from_series(series), identity=source.identity)
    measured_b1 = None
    if b1_map_scale is not None and b1_map is None:
        raise MRFError("--b1-map-scale applies to a --b1-map")
    if b1_map is not None:
        from mrfviewer.b1map import read_b1_map

        measured_b1 = read_b1_map(b1_map, source.geometry, source.spatial_shape, scale=b1_map_scale)
    return Input(
        source=source,
        sequence_origin=origin,
        labels=label_map,
        series=series,
        scan=scan,
        warnings=warnings,
        b1_map=measured_b1,
        kspace=kspace,
    )


def _is_raw(path: Path) -> bool:
    from mrfviewer.io.ismrmrd_io import is_ismrmrd

    return is_ismrmrd(path)


def _phase_fallback(scan: ScanResult, infos: list) -> list[str]:  # noqa: ANN001 - SeriesInfo items
    """A warning when a magnitude series is read without the phase series that looks like its partner.

    A phase series of the same study and geometry with another image count (files lost
    in a transfer, say) leaves only the magnitude: say so, as the result depends on it.
    """
    if len(infos) > 1 or "P" in infos[0].components:
        return []
    first = infos[0].first
    out = []
    for other in scan.series.values():
        b = other.first
        if other.components == {"P"} and (b.study_uid, b.frame_of_reference, b.rows, b.columns) == (
            first.study_uid,
            first.frame_of_reference,
            first.rows,
            first.columns,
        ):
            out.append(
                f"the phase series '{other.description or other.uid}' has {other.n_images} images, the magnitude "
                f"{infos[0].n_images}: reconstructing from magnitude only"
            )
    return out


def _read_whole(path: Path, source: SlabSource) -> Series:
    """The whole series in memory (for the GUI), with ground truth where an HDF5 file has it."""
    from mrfviewer.io.series_h5 import read_series_h5

    if path.is_file() and source.identity.kind == "hdf5":
        series = read_series_h5(path)
        assert source.sequence is not None  # open_input refused a series without one
        return series.with_sequence(source.sequence) if source.sequence is not series.sequence else series
    limit = 8 * 2**30
    if np.prod(source.shape, dtype=np.float64) * 8 > limit:
        raise MRFError(
            f"{path}: {source.shape} is too large to load ({np.prod(source.shape, dtype=np.float64) * 8 / 2**30:.1f}"
            " GiB); reconstruct it slab-wise with 'mrfviewer reconstruct' or 'mrfviewer batch'"
        )
    return Series(
        data=source.read(0, source.shape[1]),
        sequence=source.sequence,
        geometry=source.geometry,
        description=source.description,
        uid=source.uid,
        source_files=list(source.source_files),
    )


def input_from_series(
    series: Series, *, labels: LabelMap | None = None, identity: InputIdentity | None = None
) -> Input:
    """An input over a series already in memory (synthetic data, another sequence attached, tests)."""
    if series.sequence is None:
        raise MRFError("the series has no sequence")
    source = source_from_series(series)
    if identity is not None:
        source = dataclasses.replace(source, identity=identity)
    if labels is None and series.labels is not None:
        labels = LabelMap(np.asarray(series.labels, dtype=np.int32), dict(series.label_names))
    return Input(source=source, sequence_origin="series", labels=labels, series=series)


#: Cohort series grouped by what their estimator must fit: key -> (sequence, [(item, input)]).
Groups = dict[EstimatorKey, tuple[Sequence, list[tuple[CohortItem, Input]]]]


def preflight(
    items: Seq[CohortItem],
    sequence: Sequence | str | Path | None = None,
    *,
    allow_external: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[Groups, list[tuple[CohortItem, str]]]:
    """Open every series of a cohort (headers, sequence, label map placed) before any long step.

    Returns the series grouped by (sequence hash, signal type), each group to get one
    estimator, and the series that cannot be used with the reason (a row each, never a stop).
    """
    override = _sequence(sequence)
    groups: Groups = {}
    failed = []
    for i, item in enumerate(items):
        check_cancel(cancel)
        report(progress, i / max(len(items), 1), f"checking series {i + 1} of {len(items)}")
        try:
            opened = open_item(item, override, allow_external=allow_external)
        except MRFError as exc:
            failed.append((item, str(exc)))
            continue
        groups.setdefault(opened.key, (opened.sequence, []))[1].append((item, opened))
    report(progress, 1.0, f"{len(items) - len(failed)} of {len(items)} series ready")
    return groups, failed


def build_estimate(
    choice: EstimatorChoice, sequence: Sequence, signal: str, cache: EstimatorCache | None = None
) -> str:
    """What building the estimator of ``choice`` will cost, when it has to be built ("" when it is ready).

    A dictionary not in memory nor in the disk cache is simulated: its atoms, memory and time.
    """
    from mrfviewer.dictionary import cached_path, estimate

    if choice.method == "nn" or choice.dictionary_file is not None or (cache or _CACHE).has(choice, sequence, signal):
        return ""
    grid = choice.grid_value()
    if cached_path(sequence, grid, DictionarySettings(signal=signal)).exists():
        return ""
    atoms, gib, seconds = estimate(grid, sequence)
    return (
        f"building a {signal} dictionary of {atoms:,} atoms for sequence '{sequence.name}': about {gib:.2g} GiB "
        f"and {seconds / 60:.1f} min (cached afterwards)"
    )


def open_item(item: CohortItem, sequence: Sequence | str | Path | None = None, **kwargs: object) -> Input:
    """:func:`open_input` on a cohort series (its label map was found when the cohort was scanned)."""
    return open_input(
        item.path,
        sequence=sequence,
        series_uid=item.series_uid,
        labels=item.labels,
        find_labels=False,
        extra_folders=item.partner_folders,
        **kwargs,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class SeriesEntry:
    """One series of a dataset, for a browser: an MRF series (its phase partner in the same
    entry) or another series, with the reason it cannot be reconstructed."""

    path: Path  # what open_input takes: the folder scanned, or the HDF5 file
    series_uid: str | None  # None: an HDF5 series file
    patient: str
    study: str
    description: str
    components: str  # "magnitude + phase", "magnitude", "phase", "complex (HDF5)", ...
    n_timepoints: int
    n_slices: int
    size_bytes: int
    usable: bool
    reason: str  # why it is (or is not) an MRF series


@dataclass
class Dataset:
    """What a folder (or an HDF5 file) holds (:func:`list_series`); ``scan`` is reused when an entry is opened."""

    root: Path  # the folder or file listed
    entries: list[SeriesEntry]
    scan: ScanResult | None = None

    def usable(self) -> list[SeriesEntry]:
        return [e for e in self.entries if e.usable]

    def open(self, entry: SeriesEntry, **kwargs: object) -> Input:
        """:func:`open_input` on one entry (a DICOM folder is not scanned again)."""
        if entry.series_uid is None:
            return open_input(entry.path, **kwargs)  # type: ignore[arg-type]
        return open_input(entry.path, series_uid=entry.series_uid, scan=self.scan, **kwargs)  # type: ignore[arg-type]


def list_series(
    path: str | Path, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> Dataset:
    """Every series under a folder (headers only) or the one series of an HDF5 file.

    DICOM series come with patient and study; a phase series is folded into the entry of
    the magnitude series it partners (the pairing :func:`open_input` makes), so an MRF
    acquisition is one entry. Series that are not MRF are listed with the reason.
    """
    from mrfviewer.cohort import is_h5_series
    from mrfviewer.io.dicom_read import partner_series, scan_folder

    path = Path(path)
    if not path.exists():
        raise MRFError(f"not found: {path}")
    if path.is_file():
        return Dataset(path, [_h5_entry(path)])
    scan = scan_folder(path, progress=progress, cancel=cancel)
    partner = {info.uid: partner_series(scan, info)[:1] for info in scan.series.values() if info.components != {"P"}}
    folded = {p.uid for partners in partner.values() for p in partners}
    entries = []
    for info in scan.series.values():
        if info.uid in folded:
            continue  # shown in its magnitude series' entry
        ok, reason = info.mrf_check()
        partners = partner.get(info.uid, [])
        if info.components == {"P"}:
            kind = "phase"
            ok, reason = False, "phase images without their magnitude series"
        else:
            kind = "magnitude + phase" if partners or "P" in info.components else "magnitude"
        first = info.first
        entries.append(
            SeriesEntry(
                path=path,
                series_uid=info.uid,
                patient=f"{first.patient} ({first.patient_id})" if first.patient_id else first.patient or "?",
                study=first.study_description or first.study_uid,
                description=info.description or info.uid,
                components=kind,
                n_timepoints=info.n_timepoints,
                n_slices=info.n_slices,
                size_bytes=info.size_bytes + sum(p.size_bytes for p in partners),
                usable=ok,
                reason=reason,
            )
        )
    for file in sorted(path.rglob("*.h5")):
        check_cancel(cancel)
        if is_h5_series(file):
            entries.append(_h5_entry(file))
    return Dataset(path, entries, scan)


def _h5_entry(path: Path) -> SeriesEntry:
    try:
        if _is_raw(path):
            from mrfviewer.raw_source import open_raw_source

            kspace = open_raw_source(path)
            h = kspace.file.header
            return SeriesEntry(
                path, None, "HDF5 files", path.parent.name, kspace.source.description, "radial k-space (ISMRMRD)",
                h.n_timepoints, h.n_slices, path.stat().st_size, True,
                f"{h.n_timepoints} time points x {h.n_slices} slice(s), {h.spokes} spokes per time point",
            )  # fmt: skip
        source = open_h5_source(path)
    except MRFError as exc:
        return SeriesEntry(path, None, "HDF5 files", path.parent.name, path.name, "HDF5", 0, 0, 0, False, str(exc))
    usable = source.sequence is not None
    n_t, n_z = source.shape[0], source.shape[1]
    return SeriesEntry(
        path=path,
        series_uid=None,
        patient="HDF5 files",
        study=path.parent.name,
        description=source.description or path.name,
        components=f"{'complex' if source.is_complex else 'magnitude'} (HDF5)",
        n_timepoints=n_t,
        n_slices=n_z,
        size_bytes=path.stat().st_size,
        usable=usable,
        reason=f"{n_t} time points x {n_z} slice(s)" if usable else "names no sequence (give one with --sequence)",
    )


# -- estimators -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EstimatorChoice:
    """What the user chose to estimate with.

    DM: ``grid`` (a grid file; None: the default knee grid) or ``dictionary_file``.
    NN: ``model`` (a model folder or the name of a shipped network; None: the default).
    """

    method: str = "dm"
    grid: Path | None = None
    dictionary_file: Path | None = None
    model: str | Path | None = None

    def validate(self) -> None:
        if self.method not in METHODS:
            raise MRFError(f"method must be 'dm' or 'nn', got {self.method!r}")
        if self.grid is not None and self.dictionary_file is not None:
            raise MRFError("give a grid or a dictionary file, not both")

    def model_path(self) -> Path:
        return resolve_model_path(self.model) if self.model is not None else default_model_path()

    def grid_value(self) -> ParameterGrid:
        return load_grid(self.grid) if self.grid is not None else default_knee_grid()

    def describe(self) -> str:
        if self.method == "nn":
            return f"network {self.model_path().name}"
        if self.dictionary_file is not None:
            return f"dictionary file {self.dictionary_file.name}"
        return f"grid {self.grid.name}" if self.grid is not None else "default knee grid"


class Estimator(Protocol):
    """DM or NN behind one small protocol: the outputs it returns, a check, a run, a model curve."""

    @property
    def method(self) -> str: ...

    @property
    def outputs(self) -> list[str]: ...

    @property
    def name(self) -> str: ...

    @property
    def identity(self) -> str: ...

    def check(self, source: SlabSource) -> None: ...

    def run(
        self,
        source: SlabSource,
        settings: ReconstructionSettings,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
        b1_map: np.ndarray | None = None,
    ) -> ParameterMaps: ...

    def curve(self, maps: ParameterMaps, sequence: Sequence, z: int, y: int, x: int) -> np.ndarray | None: ...


@dataclass(frozen=True, eq=False)
class DictionaryMatching:
    """Dictionary matching against one dictionary."""

    dictionary: Dictionary
    method: str = field(default="dm", init=False)

    @property
    def outputs(self) -> list[str]:
        return ["T1", "T2", "T1rho", *(["B1"] if self.dictionary.grid.has_b1 else []), "PD", "match"]

    @property
    def name(self) -> str:
        return f"dictionary {self.dictionary.key} ({self.dictionary.n_atoms:,} atoms)"

    @property
    def identity(self) -> str:
        return f"dictionary {self.dictionary.key}"

    def check(self, source: SlabSource) -> None:
        check_dictionary_for(source, self.dictionary)

    def run(self, source, settings, progress, cancel, b1_map=None) -> ParameterMaps:  # noqa: ANN001 - the protocol's
        return reconstruct_dm(source, self.dictionary, settings, b1_map=b1_map, progress=progress, cancel=cancel)

    def curve(self, maps: ParameterMaps, sequence: Sequence, z: int, y: int, x: int) -> np.ndarray | None:
        """The matched atom of a voxel, expanded from its SVD coefficients (instant)."""
        if maps.atom is None or maps.atom[z, y, x] < 0:
            return None
        d = self.dictionary
        return np.asarray(d.coeffs[int(maps.atom[z, y, x])] @ d.basis)


@dataclass(frozen=True, eq=False)
class NeuralNetwork:
    """The network of a model folder."""

    model: LoadedModel
    method: str = field(default="nn", init=False)

    @property
    def outputs(self) -> list[str]:
        names = self.model.param_names
        return [*names, "PD", *(f"uncertainty_{n}" for n in names if n != "B1")]

    @property
    def name(self) -> str:
        return f"network {self.model.name}"

    @property
    def identity(self) -> str:
        return self.model.identity

    def check(self, source: SlabSource) -> None:
        check_model_for(source, self.model)

    def run(self, source, settings, progress, cancel, b1_map=None) -> ParameterMaps:  # noqa: ANN001 - the protocol's
        return reconstruct_nn(source, self.model, settings, progress=progress, cancel=cancel)  # it estimates B1 itself

    def curve(self, maps: ParameterMaps, sequence: Sequence, z: int, y: int, x: int) -> np.ndarray | None:
        """The fingerprint simulated with the network's T1, T2, T1rho (and B1) of a voxel (about 0.1 s)."""
        from mrfviewer.simulation import simulate_one

        values = {p: float(maps.values[p][z, y, x]) for p in ("T1", "T2", "T1rho", "B1") if p in maps.values}
        if not all(np.isfinite(v) for v in values.values()):
            return None
        return simulate_one(sequence, values["T1"], values["T2"], values["T1rho"], values.get("B1", 1.0))


def _check_dictionary_key(dictionary: Dictionary, key: EstimatorKey, where: str) -> None:
    sequence_hash, signal = key
    if dictionary.sequence.hash != sequence_hash:
        raise MRFError(
            f"{where} was made for sequence '{dictionary.sequence.name}' ({dictionary.sequence.hash}), "
            f"the series uses sequence {sequence_hash}"
        )
    if signal == "magnitude" and dictionary.signal != "magnitude":
        raise MRFError(f"the series holds magnitude images but {where} is {dictionary.signal}")


def _check_model_key(model: LoadedModel, key: EstimatorKey) -> None:
    sequence_hash, signal = key
    meta = model.metadata
    if meta["sequence_hash"] != sequence_hash:
        raise MRFError(
            f"the network {model.name} was trained for sequence '{meta.get('sequence_name', '?')}' "
            f"({meta['sequence_hash']}), the series uses sequence {sequence_hash}"
        )
    if meta["signal"] != signal:
        raise MRFError(f"the series holds {signal} data but the network {model.name} was trained on {meta['signal']}")


class EstimatorCache:
    """Estimators built in this process, by (choice, sequence, signal), the most recent few kept.

    Building a DM estimator means a dictionary (from the disk cache, or simulated); the
    GUI and the batch driver ask again and again for the same few.
    """

    def __init__(self, size: int = 3) -> None:
        self._size = size
        self._items: OrderedDict[tuple, Estimator] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        choice: EstimatorChoice,
        sequence: Sequence,
        signal: str,
        *,
        device: str = "auto",
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Estimator:
        key = (choice, sequence.hash, signal)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                report(progress, 1.0, "estimator ready")
                return self._items[key]
        estimator = _build_estimator(choice, sequence, signal, progress, cancel, device)
        with self._lock:
            self._items[key] = estimator
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return estimator

    def has(self, choice: EstimatorChoice, sequence: Sequence, signal: str) -> bool:
        with self._lock:
            return (choice, sequence.hash, signal) in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_CACHE = EstimatorCache()


def _build_estimator(
    choice: EstimatorChoice,
    sequence: Sequence,
    signal: str,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
    device: str = "auto",
) -> Estimator:
    from mrfviewer.devices import resolve_device

    choice.validate()
    key = (sequence.hash, signal)
    if choice.method == "nn":
        model = load_model(choice.model_path())
        _check_model_key(model, key)
        report(progress, 1.0, "network loaded")
        return NeuralNetwork(model)
    if choice.dictionary_file is not None:
        dictionary = load_dictionary(choice.dictionary_file)
        _check_dictionary_key(dictionary, key, f"the dictionary {choice.dictionary_file.name}")
        report(progress, 1.0, "dictionary loaded")
        return DictionaryMatching(dictionary)
    dictionary = get_dictionary(
        sequence,
        choice.grid_value(),
        DictionarySettings(signal=signal),
        device=resolve_device(device)[0],
        progress=progress,
        cancel=cancel,
    )
    return DictionaryMatching(dictionary)


def make_estimator(
    choice: EstimatorChoice,
    sequence: Sequence,
    signal: str,
    *,
    cache: EstimatorCache | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Estimator:
    """The estimator of ``choice`` for series of ``sequence`` and ``signal`` ("complex"/"magnitude").

    DM builds (or reads from the disk cache) the dictionary of that sequence and signal,
    simulated on ``device`` (``auto``: a CUDA GPU if torch sees one); a dictionary file or
    network made for another sequence or signal is refused here.
    """
    return (cache or _CACHE).get(choice, sequence, signal, device=device, progress=progress, cancel=cancel)


def planned_outputs(choice: EstimatorChoice) -> list[str]:
    """The maps ``choice`` will produce, known before the estimator is built (for output checks)."""
    choice.validate()
    if choice.method == "nn":
        model = load_model(choice.model_path())  # about a megabyte: cheap
        return NeuralNetwork(model).outputs
    if choice.dictionary_file is not None:
        import json

        import h5py

        try:
            with h5py.File(choice.dictionary_file, "r") as f:
                has_b1 = len(json.loads(str(f.attrs["grid"])).get("b1", [1.0])) > 1
        except (OSError, KeyError, ValueError, TypeError, AttributeError):
            has_b1 = False  # load_dictionary names the problem when the estimator is built
    else:
        has_b1 = choice.grid_value().has_b1
    return ["T1", "T2", "T1rho", *(["B1"] if has_b1 else []), "PD", "match"]


# -- running and exporting --------------------------------------------------------------------


def run(
    input: Input,
    estimator: Estimator,
    settings: ReconstructionSettings | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ParameterMaps:
    """Reconstruct ``input`` with ``estimator``: maps with their provenance (input identity, timing)."""
    settings = dataclasses.replace(settings or ReconstructionSettings(), method=estimator.method)
    settings.validate()
    estimator.check(input.source)
    start = time.perf_counter()
    if input.kspace is not None and input.kspace.pending:  # raw k-space: its series first
        input.kspace.prepare(prefixed(scaled(progress, 0.0, 0.5), "k-space"), cancel)
        progress = scaled(progress, 0.5, 1.0)
    maps = estimator.run(input.source, settings, progress, cancel, input.b1_map)
    warnings = list(maps.provenance.warnings) + list(input.warnings)
    if input.kspace is not None:
        warnings.append(input.kspace.describe())
    if input.b1_map is not None:
        warnings.append(
            "B1 from the measured map" if estimator.method == "dm" else "the network estimates B1 itself; map not used"
        )
    if input.labels is not None and input.labels.note:
        warnings.append(f"labels: {input.labels.note}")
    provenance = maps.provenance.replace(
        input=input.identity, seconds=time.perf_counter() - start, warnings=tuple(warnings)
    )
    return dataclasses.replace(maps, provenance=provenance)


def default_formats(input: Input) -> tuple[str, ...]:
    """What ``reconstruct`` writes for an input: NIfTI, npz, PNG; Parametric Maps from DICOM; ROI CSV with labels."""
    return (
        "nifti",
        "npz",
        "png",
        *(("dicom",) if input.source_files else ()),
        *(("csv",) if input.labels is not None else ()),
    )


def bids_layout(layout: str | BidsLayout, input: Input | None) -> BidsLayout | None:
    """The BIDS layout of ``input`` for ``layout`` "bids" (None for "flat"; a :class:`BidsLayout` as it is)."""
    if isinstance(layout, BidsLayout) or layout == "flat":
        return layout if isinstance(layout, BidsLayout) else None
    if layout != "bids":
        raise MRFError(f"layout must be 'flat' or 'bids', got {layout!r}")
    if input is None:
        return layout_for(InputIdentity())
    return layout_for(input.identity, input.source_files)


def bids_series_layout(item: CohortItem, input: Input | None = None) -> BidsLayout:
    """Where a cohort series goes in a BIDS batch: its own session folder ``sub-<s>/ses-<t>``.

    The subject is the cohort's; the session a ``ses-*`` folder on the series' path, else
    the series name (each series is written, and moved in, as one folder).
    """
    session = next((part for part in Path(item.relative).parts if part.startswith("ses-")), None)
    identity, files = (input.identity, input.source_files) if input is not None else (InputIdentity(), [])
    return layout_for(identity, files, subject=item.subject, session=session or item.name, within_session=True)


def check_output(
    folder: str | Path,
    formats: Seq[str],
    outputs: Seq[str],
    *,
    overwrite: bool = False,
    input: Input | None = None,
    layout: str | BidsLayout = "flat",
) -> None:
    """Refuse, before any long step, an output that would replace files or write into the input."""
    folder = Path(folder)
    if input is not None and input.identity.path and not overwrite:
        source = Path(input.identity.path).resolve()
        target = folder.resolve()
        if target == source or target == source.parent and source.is_file():
            raise MRFError("refusing to write into the input's folder; choose another --output")
    check_export_targets(outputs, folder, formats, overwrite, bids_layout(layout, input))
    check_writable_folder(folder)


def check_writable_folder(folder: Path) -> None:
    """Raise :class:`MRFError` if files cannot be created in ``folder`` (or the folder it would be created in)."""
    import tempfile

    probe_in = folder
    while not probe_in.exists() and probe_in.parent != probe_in:
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise MRFError(f"cannot write to {folder}: {probe_in} is not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".mrfviewer-probe-", dir=probe_in)
    except OSError as exc:
        raise MRFError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    import os

    os.close(fd)
    os.unlink(name)


def export(
    result: ParameterMaps,
    folder: str | Path,
    formats: Seq[str] | None = None,
    *,
    input: Input | None = None,
    labels: LabelMap | None = None,
    units: str = "ms",
    overwrite: bool = False,
    roi_scope: str = "all",
    cancel: CancelToken | None = None,
    layout: str | BidsLayout = "flat",
) -> ExportReport:
    """Write ``result`` in ``formats`` (default: :func:`default_formats`) into ``folder``.

    The input gives the DICOM source images (Parametric Maps) and the label map (ROI CSV)
    unless ``labels`` is given. Each format is written all or nothing on its own; the
    report names those that failed. ``layout``: "flat" (the default) or "bids" (a BIDS
    derivatives dataset, :mod:`mrfviewer.io.bids`), or a :class:`BidsLayout`.
    """
    if formats is None:
        formats = default_formats(input) if input is not None else ("nifti", "npz", "png")
    labels = labels if labels is not None else (input.labels if input is not None else None)
    return export_maps(
        result,
        folder,
        formats,
        units=units,
        overwrite=overwrite,
        source_files=input.source_files if input is not None else None,
        labels=labels,
        roi_scope=roi_scope,
        cancel=cancel,
        layout=bids_layout(layout, input),
    )


def reconstruct_input(
    input: Input,
    choice: EstimatorChoice,
    settings: ReconstructionSettings | None = None,
    *,
    cache: EstimatorCache | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[ParameterMaps, Estimator]:
    """Build (or reuse) the estimator of ``choice`` for ``input`` and run it.

    Progress: building the estimator takes the first half, unless it is already in memory
    (then the reconstruction has the whole bar).
    """
    cache = cache or _CACHE
    split = 0.0 if cache.has(choice, input.sequence, input.signal) else 0.5
    stage = "network" if choice.method == "nn" else "dictionary"
    estimator = make_estimator(
        choice,
        input.sequence,
        input.signal,
        cache=cache,
        device=(settings or ReconstructionSettings()).device,
        progress=prefixed(scaled(progress, 0.0, split), stage),
        cancel=cancel,
    )
    maps = run(
        input,
        estimator,
        settings,
        progress=prefixed(scaled(progress, split, 1.0), choice.method.upper()),
        cancel=cancel,
    )
    return maps, estimator


def shipped_networks() -> list[Path]:
    """Model folders shipped with mrfviewer (for menus)."""
    return shipped_models()
