"""The ``mrfviewer`` command: one entry point for all headless work.

Every subcommand reports bad input as one line on stderr and exits non-zero
(2 for bad input, 130 when cancelled with Ctrl-C, 1 for an internal error);
``--debug`` shows the traceback of internal errors.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from mrfviewer import __version__
from mrfviewer.engine import CancelToken
from mrfviewer.errors import Cancelled, MRFError
from mrfviewer.nn import PRECISIONS

EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130

_EPILOG = """\
examples:
  mrfviewer simulate --t1 1200 --t2 35 --t1rho 45 --output fingerprint.csv
  mrfviewer dictionary --output knee_dict.h5
  mrfviewer synthesize --phantom knee --snr 50 --output knee.h5
  mrfviewer reconstruct knee.h5 --method dm --output maps/
  mrfviewer train --output models/my_model
  mrfviewer reconstruct knee.h5 --method nn --output nn_maps/
  mrfviewer demo --output demo/
  mrfviewer batch cohort/ --output results/ --workers 2

Without --sequence the shipped knee T1/T2/T1rho sequence is used
(assets/sequences/knee_t1_t2_t1rho.json). Times are in ms, angles in degrees.
"""


def _progress_bar(label: str, enabled: bool = True):  # noqa: ANN202 - a context manager of a callback
    """Progress on stderr: a bar on a terminal, timestamped lines elsewhere (see mrfviewer.progress)."""
    from mrfviewer.progress import progress_reporter

    return progress_reporter(label, enabled)


@contextlib.contextmanager
def _cancel_on_interrupt(restore: bool = True) -> Iterator[CancelToken]:
    """A cancel token set by Ctrl-C or SIGTERM (a scheduler's kill), so long jobs stop cleanly between chunks.

    On leaving, the previous handlers come back, or with ``restore=False`` (the process exits
    next) the signals are ignored: the outcome is decided, and a signal during the interpreter's
    shutdown (a second or so with torch loaded) would otherwise kill a run whose outputs are complete.
    """
    token = CancelToken()
    signals = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    previous = {s: signal.getsignal(s) for s in signals}

    def handler(signum: int, frame: object) -> None:
        if token.cancelled:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        token.cancel()

    with contextlib.suppress(ValueError):  # not in the main thread
        for s in signals:
            signal.signal(s, handler)
    try:
        yield token
    finally:
        with contextlib.suppress(ValueError):
            for s, old in previous.items():
                signal.signal(s, old if restore else signal.SIG_IGN)


def _sequence(args: argparse.Namespace):
    from mrfviewer.resources import default_sequence_path
    from mrfviewer.sequence import load_sequence

    return load_sequence(args.sequence or default_sequence_path())


def _grid(args: argparse.Namespace):
    from mrfviewer.grid import default_knee_grid, load_grid

    return load_grid(args.grid) if getattr(args, "grid", None) else default_knee_grid()


def _reconstruction_settings(args: argparse.Namespace):  # noqa: ANN202 - keeps the core unimported
    """The reconstruction settings of ``reconstruct`` and ``batch`` (batch has no --rank)."""
    from mrfviewer.settings import ReconstructionSettings

    return ReconstructionSettings(
        method=args.method,
        mask_threshold=args.mask_threshold,
        memory_mb=args.memory_mb,
        refine=not args.no_refine,
        rank=getattr(args, "rank", None),
        nn_precision=args.nn_precision,
        search=args.search,
        device=args.device,
    )


def _choice(args: argparse.Namespace, method: str | None = None):  # noqa: ANN202 - keeps the core unimported
    """What the user chose to estimate with: --method with --grid / --dictionary or --model."""
    from mrfviewer.pipeline import EstimatorChoice

    method = method or args.method
    return EstimatorChoice(
        method=method,
        grid=Path(args.grid) if getattr(args, "grid", None) and method == "dm" else None,
        dictionary_file=Path(args.dictionary) if getattr(args, "dictionary", None) and method == "dm" else None,
        model=args.model if getattr(args, "model", None) and method == "nn" else None,
    )


def _dictionary_estimate(grid, sequence) -> str:  # noqa: ANN001 - a ParameterGrid and a Sequence
    """The size of a dictionary before it is built: atoms, memory and time (measured rate of this code)."""
    from mrfviewer.dictionary import estimate

    atoms, gib, seconds = estimate(grid, sequence)
    return f"dictionary of {atoms:,} atoms: about {gib:.2g} GiB in memory and {seconds / 60:.1f} min to simulate"


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)


def cmd_simulate(args: argparse.Namespace, cancel: CancelToken) -> int:
    import numpy as np

    from mrfviewer.io.atomic import atomic_write_text
    from mrfviewer.simulation import simulate_fingerprints

    sequence = _sequence(args)
    fp = simulate_fingerprints(sequence, args.t1, args.t2, args.t1rho, args.b1, double=True)[0].numpy()
    lines = ["index,real,imag"] + [f"{i},{v.real:.9g},{v.imag:.9g}" for i, v in enumerate(fp)]
    atomic_write_text(args.output, "\n".join(lines) + "\n", overwrite=args.overwrite)
    _say(args, f"wrote {len(fp)} time points to {args.output} (|signal| max {np.abs(fp).max():.4g}, M0 = 1)")
    return 0


def cmd_crb(args: argparse.Namespace, cancel: CancelToken) -> int:
    """The Cramer-Rao bound of T1, T2, T1rho and B1 for tissues, printed as a table (and CSV with --output)."""
    from mrfviewer.crb import PARAMS, crb_rows

    sequence = _sequence(args)
    if not (args.snr > 0 and args.snr < float("inf")):
        raise MRFError(f"--snr must be a positive number, got {args.snr}")
    if not (0.05 <= args.b1 <= 5):
        raise MRFError(f"--b1 must lie in 0.05 to 5, got {args.b1}")
    if args.tissues == "knee":
        from mrfviewer.phantoms import KNEE_TISSUES

        tissues = {t.name: (t.t1_ms, t.t2_ms, t.t1rho_ms) for t in KNEE_TISSUES.values()}
    else:
        if None in (args.t1, args.t2, args.t1rho):
            raise MRFError("give --t1, --t2 and --t1rho (ms), or --tissues knee")
        tissues = {"tissue": (args.t1, args.t2, args.t1rho)}
    rows = crb_rows(sequence, tissues, args.snr, args.b1)
    head = f"{'tissue':<28s}" + "".join(f"{p + ' (value, CRB SD, %)':>30s}" for p in PARAMS)
    lines = [f"Cramer-Rao bound, sequence '{sequence.name}', SNR {args.snr:g}, B1 {args.b1:g}", head]
    for r in rows:
        cells = "".join(f"{r[p]:>12.4g} {r[p + '_crb_sd']:>9.3g} {r[p + '_crb_pct']:>6.2f}%" for p in PARAMS)
        lines.append(f"{r['tissue']:<28s}{cells}")
    print("\n".join(lines))
    if args.output:
        from mrfviewer.io.atomic import atomic_write_text
        from mrfviewer.reporting import csv_text

        atomic_write_text(args.output, csv_text(rows), overwrite=args.overwrite)
    return 0


def cmd_dictionary(args: argparse.Namespace, cancel: CancelToken) -> int:
    from mrfviewer.dictionary import DictionarySettings, generate_dictionary, save_dictionary
    from mrfviewer.io.atomic import check_writable_target

    sequence, grid = _sequence(args), _grid(args)
    check_writable_target(Path(args.output), args.overwrite)
    if args.rank_report:
        if Path(args.rank_report).resolve() == Path(args.output).resolve():
            raise MRFError("--rank-report names the dictionary file itself; choose another file")
        check_writable_target(Path(args.rank_report), args.overwrite)
    _say(args, _dictionary_estimate(grid, sequence))
    settings = DictionarySettings(
        signal="magnitude" if args.magnitude else "complex", energy=args.energy, rank=args.rank
    )
    start = time.perf_counter()
    from mrfviewer.devices import resolve_device

    device, device_warning = resolve_device(args.device)
    if device_warning:
        print(f"mrfviewer: warning: {device_warning}", file=sys.stderr)
    with _progress_bar("dictionary", not args.quiet) as progress:
        dictionary = generate_dictionary(sequence, grid, settings, device=device, progress=progress, cancel=cancel)
    elapsed = time.perf_counter() - start
    save_dictionary(dictionary, args.output, overwrite=args.overwrite)
    _say(args, f"{dictionary.describe()}")
    if args.rank_report:
        from mrfviewer.io.atomic import atomic_write_text
        from mrfviewer.rank import rank_analysis

        rows = rank_analysis(dictionary, snr=args.rank_snr or None)
        lines = ["rank,energy,min_atom_energy,mape_t1_pct,mape_t2_pct,mape_t1rho_pct,seconds"]
        lines += [
            f"{r.rank},{r.energy:.8f},{r.min_atom_energy:.6f},{r.mape_t1:.4f},{r.mape_t2:.4f},"
            f"{r.mape_t1rho:.4f},{r.seconds:.3f}"
            for r in rows
        ]
        atomic_write_text(args.rank_report, "\n".join(lines) + "\n", overwrite=args.overwrite)
        _say(args, f"wrote the rank analysis to {args.rank_report}")
    _say(args, f"generated in {elapsed:.1f} s ({dictionary.n_atoms / elapsed:.0f} atoms/s); wrote {args.output}")
    return 0


def cmd_synthesize(args: argparse.Namespace, cancel: CancelToken) -> int:
    from mrfviewer.io.atomic import check_output_folder, check_writable_target, staged_folder
    from mrfviewer.io.series_h5 import write_series_h5
    from mrfviewer.phantoms import make_phantom
    from mrfviewer.synthesis import Mismatch, synthesize_series

    if not 0 <= args.seed < 2**32:
        raise MRFError(f"--seed must be an integer from 0 to {2**32 - 1}, got {args.seed}")
    if not (args.snr == args.snr and args.snr < float("inf")):  # NaN or infinity
        raise MRFError(f"--snr must be a finite number (0 = noiseless), got {args.snr}")
    if not 1 <= args.slices <= 512:
        raise MRFError(f"--slices must be 1 to 512, got {args.slices}")
    output = Path(args.output)
    if args.format == "dicom":
        check_output_folder(output)
        for name in ("magnitude", "phase", "labels.nii.gz", "labels.json"):
            check_writable_target(output / name, args.overwrite)
    else:
        check_writable_target(output, args.overwrite)
    sequence = _sequence(args)
    phantom = make_phantom(args.phantom, (args.size, args.size), args.slices, realistic=not args.ideal)
    snr = None if args.snr <= 0 else args.snr
    mismatch = Mismatch(args.inversion_efficiency, args.slice_profile, args.spoiling_leak)
    mismatch.validate()
    if args.acquisition == "radial":
        return _synthesize_radial(args, phantom, sequence, snr, mismatch, cancel)
    if args.spokes is not None or args.coils is not None:
        raise MRFError("--spokes and --coils describe a radial acquisition: add --acquisition radial")
    with _progress_bar("synthesize", not args.quiet) as progress:
        series = synthesize_series(
            phantom,
            sequence,
            snr=snr,
            magnitude=args.magnitude,
            with_coil_phase=not args.no_coil_phase,
            seed=args.seed,
            mismatch=mismatch,
            progress=progress,
            cancel=cancel,
        )
    if args.format == "dicom":
        from mrfviewer.io.dicom_write import write_mrf_dicom
        from mrfviewer.pipeline import write_label_map

        # All or nothing: the series folders and the label map move in when every file is written.
        with _progress_bar("write DICOM", not args.quiet) as progress, staged_folder(output, args.overwrite) as stage:
            write_mrf_dicom(
                series,
                stage,
                description=f"MRF {phantom.name}",
                layout=args.dicom_layout,
                progress=progress,
                cancel=cancel,
            )
            affine = series.geometry.affine_ras(series.spatial_shape[0])
            write_label_map(phantom.labels, phantom.label_names, stage / "labels.nii.gz", affine)
        _say(args, f"wrote DICOM magnitude and phase series of the {phantom.name} and labels.nii.gz to {output}")
        return 0
    write_series_h5(series, args.output, overwrite=args.overwrite)
    _say(args, f"wrote {series.data.shape} {series.data.dtype} series of the {phantom.name} to {args.output}")
    return 0


def _synthesize_radial(args: argparse.Namespace, phantom, sequence, snr, mismatch, cancel: CancelToken) -> int:  # noqa: ANN001
    """``synthesize --acquisition radial``: golden-angle radial multi-coil k-space as an ISMRMRD file."""
    from mrfviewer.acquisition import MAX_COILS, MAX_SPOKES, simulate_radial, write_radial

    if args.format != "hdf5":
        raise MRFError(
            "--acquisition radial writes raw k-space as one ISMRMRD (HDF5) file; --format dicom is for images"
        )
    if args.magnitude or args.no_coil_phase:
        raise MRFError(
            "--magnitude and --no-coil-phase are for images: radial k-space is complex, its coils carry the phase"
        )
    spokes = 8 if args.spokes is None else args.spokes
    coils = 8 if args.coils is None else args.coils
    if not 1 <= spokes <= MAX_SPOKES:
        raise MRFError(f"--spokes must be 1 to {MAX_SPOKES}, got {spokes}")
    if not 1 <= coils <= MAX_COILS:
        raise MRFError(f"--coils must be 1 to {MAX_COILS}, got {coils}")
    simulation = simulate_radial(
        phantom, sequence, spokes=spokes, coils=coils, snr=snr, seed=args.seed, mismatch=mismatch
    )
    with _progress_bar("synthesize radial k-space", not args.quiet) as progress:
        write_radial(
            simulation,
            args.output,
            description=f"radial MRF {phantom.name}",
            overwrite=args.overwrite,
            progress=progress,
            cancel=cancel,
        )
    s = simulation.sampling
    _say(
        args,
        f"wrote golden-angle radial k-space of the {phantom.name} to {args.output} (ISMRMRD: {phantom.shape[0]} "
        f"slice(s) x {s.n_timepoints} time points x {spokes} spokes of {s.readout} samples, {coils} coils; "
        "ground truth in /mrfviewer)",
    )
    return 0


def cmd_reconstruct(args: argparse.Namespace, cancel: CancelToken) -> int:
    from mrfviewer import pipeline

    settings = _reconstruction_settings(args)
    settings.validate()
    choice = _choice(args)
    choice.validate()
    # Everything that can be checked is checked before the long work: input, labels, output.
    source = pipeline.open_input(
        args.input,
        sequence=args.sequence,
        series_uid=args.series,
        labels=args.labels,
        allow_external=args.allow_external,
        b1_map=args.b1_map,
        b1_map_scale=args.b1_map_scale,
        kspace_recon=args.kspace_recon,
        cancel=cancel,
    )
    for warning in source.warnings:
        print(f"mrfviewer: warning: {warning}", file=sys.stderr)
    formats = pipeline.default_formats(source)
    output = Path(args.output)
    pipeline.check_output(
        output, formats, pipeline.planned_outputs(choice), overwrite=args.overwrite, input=source, layout=args.layout
    )
    if source.labels is not None and source.labels.note:
        _say(args, f"note: {source.labels.note}")
    cost = pipeline.build_estimate(choice, source.sequence, source.signal)
    if cost:
        _say(args, cost)
    start = time.perf_counter()
    with _progress_bar(f"reconstruct ({args.method})", not args.quiet) as progress:
        maps, _ = pipeline.reconstruct_input(source, choice, settings, progress=progress, cancel=cancel)
    elapsed = time.perf_counter() - start
    report = pipeline.export(
        maps,
        output,
        formats,
        input=source,
        units=args.units,
        overwrite=args.overwrite,
        cancel=cancel,
        layout=args.layout,
    )
    n = int(maps.mask.sum())
    _say(args, f"reconstructed {n} voxels in {elapsed:.1f} s; wrote {len(report.files)} files to {output}")
    edge = maps.provenance.at_range_limit
    if edge:
        detail = ", ".join(f"{v} with {k} ms" if not k.startswith("B1") else f"{v} with {k}" for k, v in edge.items())
        _say(args, f"note: values at the dictionary's range limits (outside its range?): {detail}")
    if report.failed:
        print(f"mrfviewer: error: {report.failure_text()}", file=sys.stderr)
    return EXIT_BAD_INPUT if report.failed else 0


def _check_scheduler_address(address: str) -> None:
    """A dask scheduler address: ``[tcp|tls|ws|wss|ucx]://host:port`` or ``host:port``."""
    import re

    match = re.fullmatch(r"(?:(tcp|tls|ws|wss|ucx)://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):(\d{1,5})", address)
    if match is None or not 0 < int(match.group(3)) < 65536:
        raise MRFError(f"--scheduler {address!r} is not a dask scheduler address (e.g. tcp://host:8786 or host:8786)")


def cmd_batch(args: argparse.Namespace, cancel: CancelToken) -> int:
    from mrfviewer.batch import SUMMARY, run_batch
    from mrfviewer.pipeline import find_cohort

    root, output = Path(args.cohort), Path(args.output)
    if not root.exists():
        raise MRFError(f"not found: {root}")
    if output.resolve() == root.resolve():
        raise MRFError("refusing to write into the cohort folder itself; choose another --output")
    if output.exists() and not output.is_dir():
        raise MRFError(f"{output} exists and is not a folder; choose another --output")
    settings = _reconstruction_settings(args)
    settings.validate()
    choice = _choice(args)
    choice.validate()
    if args.workers is not None and not 1 <= args.workers <= 1024:
        raise MRFError(f"--workers must be 1 to 1024, got {args.workers}")
    if args.scheduler is not None:
        _check_scheduler_address(args.scheduler)
    sequence = _sequence(args) if args.sequence else None
    with _progress_bar("scan cohort", not args.quiet) as progress:
        items = find_cohort(root, subject_from=args.subject_from, progress=progress, cancel=cancel)
    if not items:
        raise MRFError(f"no MRF series found under {root}")
    _say(args, f"found {len(items)} MRF series of {len({i.subject for i in items})} subject(s)")

    def tell(result) -> None:  # noqa: ANN001 - an ItemResult
        if result.status == "failed":
            _say(args, f"failed: {result.item.subject}/{result.item.name}: {result.message}")

    start = time.perf_counter()
    with _progress_bar(f"batch ({args.method})", not args.quiet) as progress:
        results = run_batch(
            items,
            choice,
            output,
            settings,
            sequence=sequence,
            units=args.units,
            layout=args.layout,
            redo=args.redo,
            overwrite=args.overwrite,
            allow_external=args.allow_external,
            scheduler=args.scheduler,
            n_workers=args.workers,
            progress=progress,
            cancel=cancel,
            on_result=tell,
        )
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    _say(
        args,
        f"{counts['done']} reconstructed, {counts['skipped']} already done, {counts['failed']} failed "
        f"in {time.perf_counter() - start:.0f} s; summary: {output / SUMMARY}",
    )
    return EXIT_BAD_INPUT if counts["failed"] else 0


def cmd_train(args: argparse.Namespace, cancel: CancelToken) -> int:
    from mrfviewer.io.atomic import check_output_folder, check_writable_target
    from mrfviewer.nn.model_io import METADATA, WEIGHTS, save_model
    from mrfviewer.nn.training import TrainConfig, load_config, train

    sequence = _sequence(args)
    config = load_config(args.config) if args.config else TrainConfig()
    if args.grid:
        config.grid = _grid(args).to_dict()
    if args.seed is not None:
        config.seed = args.seed
    if args.epochs is not None:
        config.epochs = args.epochs
    config.validate()
    output = Path(args.output)
    check_output_folder(output)
    for name in (WEIGHTS, METADATA):
        check_writable_target(output / name, args.overwrite)
    checkpoint = output / "checkpoint.pt"
    with _progress_bar("train", not args.quiet) as progress:
        result = train(sequence, config, checkpoint=checkpoint, resume=args.resume, progress=progress, cancel=cancel)
    save_model(result, output, overwrite=args.overwrite)
    checkpoint.unlink(missing_ok=True)
    mape = result.val_mape[f"snr_{config.val_snr:g}"]
    errors = ", ".join(f"{k} {v:.2f} %" for k, v in mape.items())
    _say(
        args,
        f"trained in {result.seconds:.0f} s ({len(result.history)} epochs); validation MAPE at SNR "
        f"{config.val_snr:g}: {errors}; wrote {output}",
    )
    return 0


def cmd_study(args: argparse.Namespace, cancel: CancelToken) -> int:
    from mrfviewer.io.atomic import check_output_folder, check_writable_target, staged_folder
    from mrfviewer.study import full_preset, quick_preset, run_study

    sequence = _sequence(args)
    preset = quick_preset() if args.quick else full_preset()
    output = Path(args.output)
    check_output_folder(output)
    check_writable_target(output / "study.csv", args.overwrite)
    with (
        _progress_bar(f"study ({preset.name})", not args.quiet) as progress,
        staged_folder(output, args.overwrite) as stage,
    ):
        result = run_study(sequence, stage, preset, progress=progress, cancel=cancel)
    best, dm = result["best"], result["best_dm"]
    _say(
        args,
        f"best NN: {best['factor']} = {best['level']} (mean MAPE {best['mape_mean']:.2f} %); "
        f"best DM: {dm['level']} ({dm['mape_mean']:.2f} %); wrote {output / 'study.md'}",
    )
    return 0


def cmd_evaluate(args: argparse.Namespace, cancel: CancelToken) -> int:
    from mrfviewer.io.atomic import check_output_folder, check_writable_target, staged_folder

    if args.labels and not args.data:
        raise MRFError("--labels goes with --data (the label map of your series)")
    output = Path(args.output)
    check_output_folder(output)
    check_writable_target(output / "report.md", args.overwrite)
    if args.data:
        return _evaluate_data(args, output, cancel)
    from mrfviewer.dictionary import get_dictionary, load_dictionary
    from mrfviewer.evaluation import EvaluationSettings, run_evaluation
    from mrfviewer.nn.model_io import default_model_path, load_model, resolve_model_path

    model = load_model(resolve_model_path(args.model) if args.model else default_model_path())
    with _progress_bar("evaluate", not args.quiet) as progress:
        if args.dictionary:
            dictionary = load_dictionary(args.dictionary)
        else:
            dictionary = get_dictionary(_sequence(args), _grid(args), cancel=cancel)
        if dictionary.sequence.hash != model.metadata["sequence_hash"]:
            raise MRFError(
                f"the network {model.name} was trained for another sequence than the dictionary "
                f"('{dictionary.sequence.name}')"
            )
        settings = EvaluationSettings.quick() if args.quick else EvaluationSettings()
        with staged_folder(output, args.overwrite) as stage:  # all or nothing; nothing replaced unasked
            run_evaluation(stage, dictionary, model, settings, progress=progress, cancel=cancel)
    _say(args, f"wrote {output / 'report.md'}")
    return 0


def _evaluate_data(args: argparse.Namespace, output: Path, cancel: CancelToken) -> int:
    """``evaluate --data``: DM versus NN on the user's series; exit 2 if a series failed.

    The data, the label map and the output are checked before any dictionary is built.
    """
    from mrfviewer.data_evaluation import run_data_evaluation, with_labels
    from mrfviewer.pipeline import find_cohort

    data = Path(args.data)
    if not data.exists():
        raise MRFError(f"not found: {data}")
    items = with_labels(find_cohort(data, cancel=cancel), Path(args.labels) if args.labels else None)
    if not items:
        raise MRFError(f"no MRF series found under {data}")
    with _progress_bar("evaluate", not args.quiet) as progress:
        path, comparisons = run_data_evaluation(
            output,
            items,
            _choice(args, "dm"),
            _choice(args, "nn"),
            sequence=_sequence(args) if args.sequence else None,
            memory_mb=args.memory_mb,
            overwrite=args.overwrite,
            progress=progress,
            cancel=cancel,
        )
    failed = [c for c in comparisons if c.status == "failed"]
    for c in failed:
        print(f"mrfviewer: series {c.path} failed: {c.message}", file=sys.stderr)
    _say(args, f"wrote {path} ({len(comparisons) - len(failed)} of {len(comparisons)} series)")
    return 2 if failed else 0


def cmd_gui(args: argparse.Namespace, cancel: CancelToken) -> int:
    import os

    if args.screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a scripted screenshot needs no screen
    elif (
        sys.platform.startswith("linux")
        and not os.environ.get("QT_QPA_PLATFORM")
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    ):
        raise MRFError(
            "no display to open the window on (DISPLAY is not set): run it on a desktop or an X server, "
            "or save a picture headless with --screenshot OUT.png"
        )
    try:
        from mrfviewer.gui.app import run_gui
    except ImportError as exc:
        raise MRFError(f"the desktop application needs PySide6 and pyqtgraph ({exc})") from None
    click = None
    if args.click:
        try:
            x, y = (int(v) for v in args.click.split(","))
        except ValueError:
            raise MRFError(f"--click needs X,Y in pixels, got {args.click!r}") from None
        click = (x, y)
    path = Path(args.path) if args.path else None
    if path is not None and not path.exists():
        raise MRFError(f"{path} does not exist")
    screenshot = Path(args.screenshot) if args.screenshot else None
    return run_gui(path, demo=args.demo, screenshot=screenshot, method=args.method, click=click)


def cmd_demo(args: argparse.Namespace, cancel: CancelToken) -> int:
    from mrfviewer.demo import run_demo

    with _progress_bar("demo", not args.quiet) as progress:
        summary = run_demo(Path(args.output), overwrite=args.overwrite, progress=progress, cancel=cancel)
    _say(args, summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrfviewer",
        description="Quantitative MR fingerprinting of the knee: T1, T2 and T1rho maps "
        "by dictionary matching or a neural network, from simulation to exported maps, one series or a cohort.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mrfviewer {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return p

    def seq_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--sequence", metavar="SEQ.json", help="sequence file (default: the shipped knee sequence)")

    def nn_precision_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--nn-precision",
            choices=PRECISIONS,
            default="auto",
            help="NN arithmetic: float32 (as trained), bfloat16 hidden layers (about 3x faster on CPUs with"
            " AMX or AVX512-BF16; estimates within 0.05%% of float32 on average), or auto (bfloat16 where the"
            " CPU has it natively; the default)",
        )

    def device_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--device",
            default="auto",
            metavar="auto|cpu|cuda",
            help="where dictionaries are simulated, DM's GEMMs and the network run: auto (a CUDA GPU if torch"
            " sees one, else the CPU; the default), cpu, or cuda (cuda:N; the CPU with a warning when there is none)",
        )

    def search_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--search",
            choices=["fast", "exhaustive"],
            default="fast",
            help="DM search: fast (coarse to fine on the parameter grid, then a local climb: the exhaustive"
            " atom for over 99.5%% of voxels in the benchmark, 10-30x faster on 4-parameter dictionaries; the"
            " default) or exhaustive (every atom)",
        )

    def external_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--allow-external",
            action="store_true",
            help="read HDF5 series whose data lie in other files (external links, external storage, virtual"
            " datasets); refused by default",
        )

    def overwrite_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--overwrite", action="store_true", help="replace existing output files")

    p = add("simulate", "Simulate one fingerprint and write it as CSV (index,real,imag; M0 = 1).")
    seq_arg(p)
    p.add_argument("--t1", type=float, required=True, metavar="MS", help="T1 in ms")
    p.add_argument("--t2", type=float, required=True, metavar="MS", help="T2 in ms")
    p.add_argument("--t1rho", type=float, required=True, metavar="MS", help="T1rho in ms")
    p.add_argument("--b1", type=float, default=1.0, help="relative B1 (default 1)")
    p.add_argument("--output", required=True, metavar="OUT.csv")
    overwrite_arg(p)
    p.set_defaults(func=cmd_simulate)

    p = add(
        "crb",
        "Cramer-Rao bound of T1, T2, T1rho and B1 for a tissue and a sequence (the best precision any unbiased "
        "estimator can reach at that SNR).",
    )
    seq_arg(p)
    p.add_argument("--t1", type=float, metavar="MS", help="T1 in ms")
    p.add_argument("--t2", type=float, metavar="MS", help="T2 in ms")
    p.add_argument("--t1rho", type=float, metavar="MS", help="T1rho in ms")
    p.add_argument("--b1", type=float, default=1.0, help="relative B1 (default 1)")
    p.add_argument("--snr", type=float, default=50.0, help="SNR as in synthesize (default 50)")
    p.add_argument("--tissues", choices=["knee"], help="instead of one tissue: every tissue of the digital knee")
    p.add_argument("--output", metavar="CRB.csv", help="also write the table as CSV")
    overwrite_arg(p)
    p.set_defaults(func=cmd_crb)

    p = add("dictionary", "Generate an SVD-compressed dictionary (HDF5).")
    seq_arg(p)
    p.add_argument(
        "--grid", metavar="GRID.json", help="parameter grid (default: the knee grid, 7%% log steps and B1 0.6-1.4)"
    )
    p.add_argument("--output", required=True, metavar="DICT.h5")
    p.add_argument("--rank", type=int, help="SVD rank (default: from --energy)")
    p.add_argument("--energy", type=float, default=0.9999, help="SVD energy to keep (default 0.9999)")
    p.add_argument("--magnitude", action="store_true", help="dictionary of magnitude fingerprints")
    p.add_argument("--rank-report", metavar="RANK.csv", help="also write matching error vs SVD rank (CSV)")
    p.add_argument("--rank-snr", type=float, default=0, help="SNR of the rank-report test set (0 = noiseless)")
    device_arg(p)
    overwrite_arg(p)
    p.set_defaults(func=cmd_dictionary)

    p = add("synthesize", "Synthesize an MRF image series of a digital phantom.")
    seq_arg(p)
    p.add_argument("--phantom", choices=["knee", "nist", "nist-t1"], default="knee")
    p.add_argument("--snr", type=float, default=50.0, help="SNR (mean RMS signal / noise SD; 0 = noiseless)")
    p.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    p.add_argument("--slices", type=int, default=1, help="number of slices (default 1)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--magnitude", action="store_true", help="magnitude images instead of complex")
    p.add_argument("--no-coil-phase", action="store_true", help="no smooth receive phase")
    p.add_argument(
        "--ideal",
        action="store_true",
        help="an ideal phantom: B1 = 1 everywhere and one tissue per voxel (default: a smooth B1+ field, "
        "knee 0.8-1.2, NIST 0.9-1.1, and partial volume at tissue edges)",
    )
    p.add_argument(
        "--inversion-efficiency", type=float, default=1.0, help="model mismatch: inversion efficiency (0.5-1)"
    )
    p.add_argument("--slice-profile", action="store_true", help="model mismatch: the slice profile of 2D excitations")
    p.add_argument(
        "--spoiling-leak", type=float, default=0.0, help="model mismatch: unspoiled fraction of FLASH signal (0-0.5)"
    )
    p.add_argument("--format", choices=["hdf5", "dicom"], default="hdf5", help="HDF5 file or DICOM folder")
    p.add_argument(
        "--acquisition",
        choices=["images", "radial"],
        default="images",
        help="images: the image series (fully sampled); radial: golden-angle radial multi-coil k-space with noise "
        "in k-space, written as an ISMRMRD file (see README, Radial raw data)",
    )
    p.add_argument("--spokes", type=int, help="with --acquisition radial: spokes per time point (default 8)")
    p.add_argument("--coils", type=int, help="with --acquisition radial: receive coils (default 8)")
    p.add_argument(
        "--dicom-layout", choices=["classic", "enhanced"], default="classic", help="one file per image, or multi-frame"
    )
    p.add_argument("--output", required=True, metavar="SERIES.h5|FOLDER")
    overwrite_arg(p)
    p.set_defaults(func=cmd_synthesize)

    p = add("reconstruct", "Reconstruct T1, T2, T1rho, PD and match maps from a series.")
    p.add_argument("input", metavar="INPUT", help="HDF5 series file, DICOM folder or radial raw k-space (ISMRMRD)")
    p.add_argument(
        "--kspace-recon",
        choices=["subspace", "gridding"],
        help="raw k-space input: form the time series by low-rank subspace reconstruction (the default) or by "
        "per-time-point gridding (aliased)",
    )
    p.add_argument("--series", metavar="UID", help="SeriesInstanceUID, when the folder holds several MRF series")
    p.add_argument(
        "--labels",
        metavar="LABELS.nii.gz",
        help="label map for ROI statistics: NIfTI (names in LABELS.json) or DICOM SEG (.dcm)",
    )
    seq_arg(p)
    p.add_argument(
        "--method", choices=["dm", "nn"], default="dm", help="dictionary matching (dm) or neural network (nn)"
    )
    p.add_argument("--model", metavar="MODEL_DIR", help="network for --method nn (default: the shipped model)")
    nn_precision_arg(p)
    p.add_argument("--output", required=True, metavar="DIR")
    p.add_argument("--grid", metavar="GRID.json", help="dictionary grid (default: knee grid)")
    p.add_argument("--dictionary", metavar="DICT.h5", help="use this dictionary file instead of the cache")
    p.add_argument("--mask-threshold", type=float, default=0.05, help="background threshold (default 0.05)")
    p.add_argument(
        "--memory-mb",
        type=float,
        default=64,
        help="memory budget in MiB for slabs of the series and matching blocks (default 64)",
    )
    p.add_argument("--rank", type=int, help="SVD rank for matching (default: the dictionary's)")
    search_arg(p)
    device_arg(p)
    p.add_argument("--no-refine", action="store_true", help="no sub-grid refinement")
    p.add_argument("--units", choices=["ms", "s"], default="ms", help="time units of NIfTI maps")
    p.add_argument(
        "--layout",
        choices=["flat", "bids"],
        default="flat",
        help="flat: maps side by side (default); bids: a BIDS derivatives dataset (sub-*/anat/, times in s)",
    )
    p.add_argument(
        "--b1-map",
        metavar="B1",
        help="a measured B1+ map: NIfTI, a DICOM file or a folder holding one DICOM series (relative or percent), "
        "placed by geometry: DM matches each voxel at its B1 (the dictionary must span B1)",
    )
    p.add_argument(
        "--b1-map-scale",
        type=float,
        metavar="FACTOR",
        help="relative B1 per stored unit of --b1-map, for other units (e.g. 0.00125 for a map of 10 x the flip "
        "angle at 80 degrees nominal); default: percent or relative, told from the values",
    )
    external_arg(p)
    overwrite_arg(p)
    p.set_defaults(func=cmd_reconstruct)

    p = add(
        "batch",
        "Reconstruct every MRF series under a cohort folder on dask (maps, exports, ROI CSVs, cohort summary CSV).",
    )
    p.add_argument("cohort", metavar="COHORT_DIR", help="folder with DICOM series and/or HDF5 series files")
    p.add_argument("--output", required=True, metavar="DIR", help="results: DIR/<subject>/<series>/ and the summary")
    p.add_argument("--method", choices=["dm", "nn"], default="dm")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler address (default: a local cluster)")
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per core)")
    seq_arg(p)
    p.add_argument("--grid", metavar="GRID.json", help="dictionary grid (default: knee grid)")
    p.add_argument("--dictionary", metavar="DICT.h5", help="use this dictionary file instead of the cache")
    p.add_argument("--model", metavar="MODEL_DIR", help="network for --method nn (default: the shipped model)")
    nn_precision_arg(p)
    p.add_argument("--mask-threshold", type=float, default=0.05, help="background threshold (default 0.05)")
    p.add_argument("--memory-mb", type=float, default=64, help="memory budget per task in MiB (default 64)")
    search_arg(p)
    device_arg(p)
    p.add_argument("--no-refine", action="store_true", help="no sub-grid refinement")
    p.add_argument("--units", choices=["ms", "s"], default="ms", help="time units of NIfTI maps")
    p.add_argument(
        "--layout",
        choices=["flat", "bids"],
        default="flat",
        help="flat: maps side by side (default); bids: a BIDS derivatives dataset (sub-*/anat/, times in s)",
    )
    p.add_argument("--redo", action="store_true", help="recompute series finished in an earlier run")
    p.add_argument("--overwrite", action="store_true", help="replace a cohort_summary.csv this batch did not write")
    external_arg(p)
    p.add_argument(
        "--subject-from",
        choices=["folder", "patientid"],
        default="folder",
        help="subject of a series: the first folder level below the cohort folder (default) or the DICOM PatientID",
    )
    p.set_defaults(func=cmd_batch)

    p = add("train", "Train a network that maps fingerprints to T1, T2, T1rho (writes model.pt + model.json).")
    seq_arg(p)
    p.add_argument("--config", metavar="TRAIN.json", help="training settings (JSON; see TrainConfig)")
    p.add_argument("--grid", metavar="GRID.json", help="parameter ranges (default: knee grid)")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--seed", type=int, help="override the random seed")
    p.add_argument("--output", required=True, metavar="models/NAME", help="model folder")
    p.add_argument("--resume", action="store_true", help="continue from the folder's checkpoint")
    overwrite_arg(p)
    p.set_defaults(func=cmd_train)

    p = add("study", "Fine-tuning study: sweep training choices and DM settings; CSV, figures, best config.")
    seq_arg(p)
    p.add_argument("--output", required=True, metavar="DIR")
    p.add_argument("--quick", action="store_true", help="minutes instead of about an hour")
    overwrite_arg(p)
    p.set_defaults(func=cmd_study)

    p = add(
        "evaluate",
        "DM vs NN evaluation report: on simulated data (synthetic, NIST phantom, digital knee, timing), "
        "or with --data on your own series (ROI means of both methods, Bland-Altman, difference maps).",
    )
    seq_arg(p)
    p.add_argument("--output", required=True, metavar="DIR")
    p.add_argument(
        "--data",
        metavar="PATH",
        help="a DICOM series folder, an HDF5 series or a cohort folder: compare DM and NN on these series"
        " (ROIs from labels.nii.gz beside the images, else all tissue)",
    )
    p.add_argument("--labels", metavar="LABELS", help="with --data and one series: label map (NIfTI or DICOM SEG)")
    p.add_argument("--memory-mb", type=float, default=64, help="with --data: memory budget in MiB (default 64)")
    p.add_argument("--model", metavar="MODEL_DIR", help="network (default: the shipped model)")
    p.add_argument("--dictionary", metavar="DICT.h5", help="dictionary file (default: cached knee grid)")
    p.add_argument("--grid", metavar="GRID.json", help="dictionary grid (default: knee grid)")
    p.add_argument("--quick", action="store_true", help="small test set and images (about a minute)")
    overwrite_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = add("gui", "Open the desktop application (the default without a command).")
    p.add_argument("path", nargs="?", metavar="PATH", help="DICOM folder or HDF5 series to open")
    p.add_argument("--demo", action="store_true", help="open the bundled demo (generated on first use)")
    p.add_argument("--screenshot", metavar="OUT.png", help="load, reconstruct, click, save the window and exit")
    p.add_argument("--method", choices=["dm", "nn"], help="with --screenshot: reconstruct with this method")
    p.add_argument("--click", metavar="X,Y", help="with --screenshot: click this pixel")
    p.set_defaults(func=cmd_gui)

    p = add(
        "demo",
        "Create the demo DICOM data (digital knee + NIST phantom, in the user data folder, on first use) "
        "and reconstruct it: maps, PNGs, Parametric Maps, ROI CSVs.",
    )
    p.add_argument("--output", default="mrfviewer-demo", metavar="DIR", help="output folder (default mrfviewer-demo)")
    overwrite_arg(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui", *(sys.argv[1:] if argv is None else argv)])
    from mrfviewer import logs

    log_path = logs.setup(debug=args.debug)
    code: int | None = None
    try:
        with _cancel_on_interrupt(restore=argv is not None) as cancel:  # argv None: this process's command line
            code = int(args.func(args, cancel))
        return code
    except MRFError as exc:
        print(f"mrfviewer: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (Cancelled, KeyboardInterrupt):
        if code is not None:
            # The command had finished (its outputs are in place) when the signal came, as
            # Python's own handler was being restored: the outcome stands.
            return code
        print("mrfviewer: cancelled; no output was written", file=sys.stderr)
        return EXIT_CANCELLED
    except MemoryError:
        print("mrfviewer: error: out of memory; lower --memory-mb or use a smaller input", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - the last line of defence for users
        if args.debug:
            raise
        logging.getLogger("traceback").error("internal error", exc_info=True)  # to the log file, not the terminal
        where = f"details in {log_path}" if log_path else "rerun with --debug"
        print(f"mrfviewer: internal error: {type(exc).__name__}: {exc} ({where})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
