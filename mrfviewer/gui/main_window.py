"""The main window: browser, map viewer, fingerprint plot, ROI panel, reconstruction controls.

The window collects inputs and shows the :class:`~mrfviewer.session.Session`: widgets
subscribe to its events and hold no science state. Every computation is a job of the
session or the pipeline, run by :class:`~mrfviewer.gui.worker.JobRunner` on a worker
thread; results are handed back to the session on the GUI thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from mrfviewer import __version__, pipeline
from mrfviewer.errors import MRFError
from mrfviewer.gui.fingerprint_plot import FingerprintPlot
from mrfviewer.gui.map_view import MapView
from mrfviewer.gui.roi_panel import RoiPanel
from mrfviewer.gui.worker import JobRunner
from mrfviewer.pipeline import EstimatorChoice, Input, ParameterMaps
from mrfviewer.session import Session

log = logging.getLogger(__name__)
MAX_RECENT = 8
#: The order in which maps are shown (whatever a result holds, all of it).
MAP_ORDER = ("T1", "T2", "T1rho", "B1", "PD", "match", "uncertainty_T1", "uncertainty_T2", "uncertainty_T1rho")


class StartPage(QtWidgets.QWidget):
    """Shown before anything is open: open a folder, a recent one, or the demo."""

    def __init__(self, window: MainWindow):
        super().__init__()
        title = QtWidgets.QLabel("<h2>mrfviewer</h2>Quantitative MR fingerprinting of the knee: T1, T2 and T1rho")
        title.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.open_button = QtWidgets.QPushButton("Open folder...")
        self.demo_button = QtWidgets.QPushButton("Open demo")
        self.recent = QtWidgets.QListWidget()
        self.recent.setMaximumHeight(160)
        hint = QtWidgets.QLabel("or drop a DICOM folder or an HDF5 series on this window")
        hint.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        box = QtWidgets.QVBoxLayout()
        box.addWidget(title)
        box.addSpacing(12)
        box.addWidget(self.open_button)
        box.addWidget(self.demo_button)
        box.addWidget(QtWidgets.QLabel("Recent folders"))
        box.addWidget(self.recent)
        box.addWidget(hint)
        outer = QtWidgets.QHBoxLayout(self)
        outer.addStretch(1)
        outer.addLayout(box, 2)
        outer.addStretch(1)
        self.open_button.clicked.connect(window.open_folder_dialog)
        self.demo_button.clicked.connect(window.open_demo)
        self.recent.itemActivated.connect(lambda item: window.open_path(Path(item.text())))


class MainWindow(QtWidgets.QMainWindow):
    """The application window."""

    loaded = QtCore.Signal()
    reconstructed = QtCore.Signal(str)
    job_failed = QtCore.Signal(str)
    nn_curve_added = QtCore.Signal()
    _nn_curve_ready = QtCore.Signal(object, object, str)

    def __init__(self, settings: QtCore.QSettings | None = None, session: Session | None = None):
        super().__init__()
        self.setWindowTitle("mrfviewer")
        self.setAcceptDrops(True)
        self.settings = settings or QtCore.QSettings("mrfviewer", "mrfviewer")
        self.session = session or Session()
        self.runner = JobRunner(self)
        self.path: Path | None = None
        self._pending: tuple[str, Path] | None = None
        self.demo_dialog: QtWidgets.QProgressDialog | None = None

        self.map_view = MapView()
        self.start_page = StartPage(self)
        self.stack = QtWidgets.QStackedWidget()
        self.stack.addWidget(self.start_page)
        self.stack.addWidget(self.map_view)
        self.setCentralWidget(self.stack)
        self.fingerprint = FingerprintPlot()
        self.roi_panel = RoiPanel(self.session)
        self.browser = QtWidgets.QTreeWidget()
        self.browser.setHeaderLabels(["series", "time points", "slices", "MiB", "MRF?"])
        docks = [
            self._add_dock("Dataset", self.browser, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea),
            self._add_dock("ROIs", self.roi_panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea),
            self._add_dock("Fingerprint", self.fingerprint, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea),
        ]
        self.browser.setColumnWidth(0, 150)
        self._build_toolbar()
        self._build_menus()
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMaximumWidth(240)
        self.progress.setVisible(False)
        self.statusBar().addPermanentWidget(self.progress)
        self.runner.started.connect(self._job_started)
        self.runner.progress.connect(self._job_progress)
        self.runner.finished.connect(self._job_finished)
        self.runner.failed.connect(self._job_failed)
        self.runner.cancelled.connect(self._job_cancelled)
        self.map_view.pixel_clicked.connect(self.show_pixel)
        self.map_view.hovered.connect(lambda text: self.statusBar().showMessage(text))
        self.map_view.slice_slider.valueChanged.connect(self.session.set_slice)
        self._nn_curve_ready.connect(self._add_nn_curve)
        self.roi_panel.export_requested.connect(self.export_roi_csv_dialog)
        self.roi_panel.fit_requested.connect(self.fit_template)
        self.roi_panel.outline_box.toggled.connect(lambda _: self._show_outline())
        events = self.session.events
        events.input.connect(self._on_input)
        events.selection.connect(self._on_selection)
        events.labels.connect(self._show_outline)
        events.slice.connect(self.map_view.show_slice)
        events.pixel.connect(self._on_pixel)
        events.choices.connect(self._show_choices)
        self._refresh_recent()
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = self.settings.value("state")
        if state is not None:
            self.restoreState(state)
        if geometry is None:
            self.resize(1280, 800)
        if state is None:
            # Maps get most of the window; docks a sensible share of 1280 x 800.
            self.resizeDocks(docks[:2], [230, 330], QtCore.Qt.Orientation.Horizontal)
            self.resizeDocks(docks[2:], [230], QtCore.Qt.Orientation.Vertical)
        self._update_actions()

    # -- what tests and scripts read --------------------------------------------------------
    @property
    def input(self) -> Input | None:
        return self.session.input

    @property
    def series(self):  # noqa: ANN201 - a Series or None
        return self.session.input.series if self.session.input is not None else None

    @property
    def maps(self) -> dict[str, ParameterMaps]:
        return self.session.results

    # -- construction ---------------------------------------------------------
    def _add_dock(self, title: str, widget: QtWidgets.QWidget, area: QtCore.Qt.DockWidgetArea) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_toolbar(self) -> None:
        bar = self.addToolBar("Reconstruction")
        bar.setObjectName("Reconstruction")
        self.method = QtWidgets.QComboBox()
        self.method.addItems(["DM", "NN"])
        self.method.setToolTip("dictionary matching or neural network: the method shown and reconstructed")
        self.method.currentTextChanged.connect(lambda text: self.session.select(text.lower()))
        self.mask_threshold = QtWidgets.QDoubleSpinBox()
        self.mask_threshold.setRange(0.0, 0.99)
        self.mask_threshold.setSingleStep(0.01)
        self.mask_threshold.setValue(self.session.settings.mask_threshold)
        self.mask_threshold.setToolTip("background mask: fraction of the 99th percentile of the signal norm")
        self.sequence_label = QtWidgets.QLabel("sequence: -")
        self.dictionary_label = QtWidgets.QLabel("DM: knee grid (5 %)")
        self.dictionary_label.setToolTip("what dictionary matching uses (File menu: grid or dictionary file)")
        self.model_label = QtWidgets.QLabel("NN: shipped network")
        self.reconstruct_action = QtGui.QAction("Reconstruct", self)
        self.reconstruct_action.setShortcut(QtGui.QKeySequence("Ctrl+R"))
        self.reconstruct_action.triggered.connect(self.reconstruct)
        self.cancel_action = QtGui.QAction("Cancel", self)
        self.cancel_action.setShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_Escape))
        self.cancel_action.triggered.connect(self.runner.cancel)
        for widget in (QtWidgets.QLabel(" method "), self.method, QtWidgets.QLabel(" mask "), self.mask_threshold):
            bar.addWidget(widget)
        bar.addAction(self.reconstruct_action)
        bar.addAction(self.cancel_action)
        bar.addSeparator()
        bar.addWidget(self.sequence_label)
        bar.addSeparator()
        bar.addWidget(self.dictionary_label)
        bar.addSeparator()
        bar.addWidget(self.model_label)

    def _build_menus(self) -> None:
        menu = self.menuBar().addMenu("&File")
        self.open_action = menu.addAction(
            "Open folder...", self.open_folder_dialog, QtGui.QKeySequence.StandardKey.Open
        )
        menu.addAction("Open HDF5 series...", self.open_file_dialog)
        menu.addAction("Open demo", self.open_demo)
        self.recent_menu = menu.addMenu("Recent")
        menu.addSeparator()
        menu.addAction("Load label map (NIfTI or DICOM SEG)...", self.load_labels_dialog, QtGui.QKeySequence("Ctrl+L"))
        menu.addAction("Use sequence file...", self.choose_sequence_dialog)
        nn_menu = menu.addMenu("Network for NN")
        for folder in pipeline.shipped_networks():
            nn_menu.addAction(f"Shipped: {folder.name}", lambda f=folder: self.use_model(f))
        nn_menu.addAction("Network folder...", self.choose_model_dialog)
        nn_menu.addSeparator()
        group = QtGui.QActionGroup(self)
        saved = self.settings.value("nn_precision", "auto")
        for name, text in (
            ("auto", "Precision: automatic (bfloat16 where the CPU has it)"),
            ("float32", "Precision: float32 (as trained)"),
            ("bfloat16", "Precision: bfloat16 hidden layers"),
        ):
            action = nn_menu.addAction(text)
            action.setCheckable(True)
            action.setChecked(name == saved)
            action.setData(name)
            group.addAction(action)
        if group.checkedAction() is None:  # an unknown saved value
            group.actions()[0].setChecked(True)
        self.session.set_settings(nn_precision=group.checkedAction().data())
        group.triggered.connect(self._precision_chosen)
        self.nn_precision_group = group
        dm_menu = menu.addMenu("Dictionary for DM")
        dm_menu.addAction("Default knee grid (5 % steps)", self.use_default_grid)
        dm_menu.addAction("Grid file (JSON)...", self.choose_grid_dialog)
        dm_menu.addAction("Dictionary file (HDF5)...", self.choose_dictionary_dialog)
        menu.addSeparator()
        export = menu.addMenu("Export")
        self.export_nifti_action = export.addAction(
            "Maps as NIfTI...", lambda: self.export_maps_dialog("nifti"), QtGui.QKeySequence("Ctrl+E")
        )
        self.export_png_action = export.addAction("Maps as PNG...", lambda: self.export_maps_dialog("png"))
        self.export_dicom_action = export.addAction(
            "Maps as DICOM Parametric Map...", lambda: self.export_maps_dialog("dicom")
        )
        self.export_csv_action = export.addAction("ROI statistics CSV...", self.export_roi_csv_dialog)
        self.compare_action = export.addAction("DM vs NN comparison report...", self.compare_methods_dialog)
        export.addAction("Current view as PNG...", self.save_view_dialog, QtGui.QKeySequence("Ctrl+Shift+S"))
        menu.addSeparator()
        menu.addAction("Quit", self.close, QtGui.QKeySequence.StandardKey.Quit)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("About mrfviewer", self.about)

    # -- opening ----------------------------------------------------------------
    def open_folder_dialog(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Open a DICOM folder")
        if folder:
            self.open_path(Path(folder))

    def open_file_dialog(self) -> None:
        name, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open an HDF5 series", "", "HDF5 series (*.h5 *.hdf5)")
        if name:
            self.open_path(Path(name))

    def open_demo(self) -> None:
        from mrfviewer.demo import demo_dir, ensure_demo_data

        if not self.runner.start("demo", lambda p, c: ensure_demo_data(progress=p, cancel=c)):
            self._busy_message()
            return
        self._pending = ("demo", demo_dir() / "knee")
        # First use simulates the demo series (about a minute): say so in a dialog that can cancel.
        self.demo_dialog = QtWidgets.QProgressDialog(
            "Preparing the demo data (first use only)...", "Cancel", 0, 100, self
        )
        self.demo_dialog.setWindowTitle("mrfviewer demo")
        self.demo_dialog.setMinimumDuration(500)
        self.demo_dialog.canceled.connect(self.runner.cancel)

    def open_path(self, path: Path, series_uid: str | None = None) -> None:
        """Load a DICOM folder or HDF5 series (with its label map) in the background."""
        if not path.exists():
            self._error(f"{path} does not exist")
            return
        job = lambda p, c: pipeline.open_input(path, series_uid=series_uid, in_memory=True, progress=p, cancel=c)  # noqa: E731
        if not self.runner.start("load", job):
            self._busy_message()
            return
        self._pending = ("load", path)

    def load_labels_dialog(self) -> None:
        name, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Load a label map", "", "Label maps (*.nii *.nii.gz *.dcm)"
        )
        if name:
            self.load_labels(Path(name))

    def load_labels(self, path: Path) -> None:
        """Use a label NIfTI or DICOM SEG (placed on the series by geometry) for ROI statistics and outlines."""
        try:
            labels = self.session.load_labels(path)
        except MRFError as exc:
            self._error(str(exc))
            return
        note = f" ({labels.note})" if labels.note else ""
        self.statusBar().showMessage(f"label map {path.name}: {len(labels.labels())} labels{note}")

    def choose_sequence_dialog(self) -> None:
        name, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Sequence file", "", "Sequence (*.json)")
        if name:
            self.use_sequence(Path(name))

    def use_sequence(self, path: Path) -> None:
        """Attach another sequence to the open series (the number of time points must match)."""
        try:
            self.session.use_sequence(path)
        except MRFError as exc:
            self._error(str(exc))

    def choose_model_dialog(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Network folder (model.pt + model.json)")
        if folder:
            self.use_model(Path(folder))

    def use_model(self, folder: Path) -> None:
        """Use this network for NN reconstructions instead of the shipped one."""
        choice = EstimatorChoice("nn", model=folder)
        try:
            pipeline.planned_outputs(choice)  # reads and validates the model folder
        except MRFError as exc:
            self._error(str(exc))
            return
        self.session.set_choice(choice)
        self.statusBar().showMessage(f"NN reconstructions use the network {folder.name}")

    def _precision_chosen(self, action: QtGui.QAction) -> None:
        self.settings.setValue("nn_precision", action.data())
        self.session.set_settings(nn_precision=action.data())

    def use_default_grid(self) -> None:
        self.session.set_choice(EstimatorChoice("dm"))

    def choose_grid_dialog(self) -> None:
        name, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Dictionary grid", "", "Grid (*.json)")
        if name:
            self.use_grid(Path(name))

    def use_grid(self, path: Path) -> None:
        """Match DM against a dictionary of this grid (generated and cached on first use)."""
        choice = EstimatorChoice("dm", grid=path)
        try:
            choice.grid_value()
        except MRFError as exc:
            self._error(str(exc))
            return
        self.session.set_choice(choice)

    def choose_dictionary_dialog(self) -> None:
        name, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Dictionary file", "", "Dictionary (*.h5 *.hdf5)")
        if name:
            self.use_dictionary_file(Path(name))

    def use_dictionary_file(self, path: Path) -> None:
        """Match DM against this dictionary file (read by the reconstruction job, checked there)."""
        if not path.is_file():
            self._error(f"dictionary file not found: {path}")
            return
        self.session.set_choice(EstimatorChoice("dm", dictionary_file=path))

    def _show_choices(self) -> None:
        dm, nn = self.session.dm_choice, self.session.nn_choice
        if dm.dictionary_file is not None:
            self.dictionary_label.setText(f"DM: {dm.dictionary_file.name}")
        elif dm.grid is not None:
            try:
                self.dictionary_label.setText(f"DM: grid {dm.grid.name} ({dm.grid_value().n_atoms:,} atoms)")
            except MRFError:
                self.dictionary_label.setText(f"DM: grid {dm.grid.name}")
        else:
            self.dictionary_label.setText("DM: knee grid (5 %)")
        self.model_label.setText(f"NN: {nn.model_path().name}" if nn.model is not None else "NN: shipped network")

    def _fill_browser(self, path: Path, scan) -> None:  # noqa: ANN001 - a ScanResult or None (HDF5)
        self.browser.clear()
        if scan is None:
            QtWidgets.QTreeWidgetItem(self.browser, [path.name, "", "HDF5"])
            return
        for patient, studies in scan.tree().items():
            p_item = QtWidgets.QTreeWidgetItem(self.browser, [patient])
            for study, series_list in studies.items():
                s_item = QtWidgets.QTreeWidgetItem(p_item, [study])
                for info in series_list:
                    ok, reason = info.mrf_check()
                    cells = [
                        info.description or info.uid,
                        str(info.n_timepoints),
                        str(info.n_slices),
                        f"{info.size_bytes / 2**20:.1f}",
                        "yes" if ok else "no",
                    ]
                    item = QtWidgets.QTreeWidgetItem(s_item, cells)
                    item.setToolTip(0, f"{info.uid}\n{reason}\n{info.size_bytes / 2**20:.1f} MiB")
        self.browser.expandAll()

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:  # noqa: N802 - Qt API
        urls = event.mimeData().urls()
        if urls:
            self.open_path(Path(urls[0].toLocalFile()))
            event.acceptProposedAction()

    # -- reconstruction -----------------------------------------------------------
    def reconstruct(self) -> None:
        """Reconstruct the open series with the chosen method (the other method's result stays)."""
        method = self.method.currentText().lower()
        try:
            self.session.set_settings(mask_threshold=self.mask_threshold.value())
            job = self.session.reconstruction_job(method)
        except MRFError as exc:
            self._error(str(exc))
            return
        if not self.runner.start(f"reconstruct {method}", job):
            self._busy_message()

    def fit_template(self) -> None:
        """Fit the NIST sphere template to the PD map in the background (seconds)."""
        try:
            job = self.session.template_fit_job()
        except MRFError as exc:
            self._error(str(exc))
            return
        if not self.runner.start("fit template", job):
            self._busy_message()

    # -- job signals --------------------------------------------------------------
    def _job_started(self, kind: str) -> None:
        self.progress.setVisible(True)
        self.progress.setValue(0)
        self.statusBar().showMessage(f"{kind}...")
        self._update_actions()

    def _job_progress(self, kind: str, fraction: float, message: str, left: float) -> None:
        self.progress.setValue(int(fraction * 100))
        if kind == "demo" and self.demo_dialog is not None:
            self.demo_dialog.setValue(int(fraction * 100))
            self.demo_dialog.setLabelText(f"Preparing the demo data (first use only): {message}")
        eta = f", about {left:.0f} s left" if left >= 0 else ""
        self.statusBar().showMessage(f"{kind}: {message}{eta}")

    def _close_demo_dialog(self) -> None:
        if self.demo_dialog is not None:
            self.demo_dialog.canceled.disconnect()
            self.demo_dialog.close()
            self.demo_dialog = None

    def _job_finished(self, kind: str, result: object) -> None:
        self.progress.setVisible(False)
        self._close_demo_dialog()
        self._update_actions()
        if kind == "demo" and self._pending is not None:
            _, path = self._pending
            self._pending = None
            self.open_path(path)
            return
        if kind == "load":
            _, self.path = self._pending or ("", None)
            self._pending = None
            assert isinstance(result, Input)
            if self.path is not None:
                self._fill_browser(self.path, result.scan)
            self.session.open(result)
            self._remember(self.path)
            self.loaded.emit()
        elif kind.startswith("reconstruct"):
            maps, estimator = result  # type: ignore[misc]
            self.session.add_result(maps, estimator)
            model = maps.provenance.model
            precision = f" ({model.precision})" if model is not None else ""
            self.statusBar().showMessage(f"{maps.method.upper()} reconstruction done{precision}")
            self.reconstructed.emit(maps.method)
        elif kind == "fit template":
            self.roi_panel.set_template(result)  # type: ignore[arg-type]
            self.statusBar().showMessage("NIST template fitted to the PD map")
        elif kind in ("export", "compare"):
            self.statusBar().showMessage(str(result))

    def _job_failed(self, kind: str, message: str) -> None:
        self.progress.setVisible(False)
        self._close_demo_dialog()
        self._pending = None
        self._update_actions()
        log.warning("%s failed: %s", kind, message)
        self._error(f"{kind} failed: {message}")
        self.job_failed.emit(message)

    def _job_cancelled(self, kind: str) -> None:
        self.progress.setVisible(False)
        self._close_demo_dialog()
        self._pending = None
        self._update_actions()
        self.statusBar().showMessage(f"{kind} cancelled; nothing was changed")

    # -- display (session events) -------------------------------------------------------
    def _on_input(self) -> None:
        """A new series: every view starts again from the session (which reset everything)."""
        input = self.session.input
        assert input is not None and input.series is not None
        self.stack.setCurrentWidget(self.map_view)
        self.roi_panel.forget()
        self.map_view.select(None)
        self.map_view.set_raw(np.abs(input.series.data), self.session.slice)
        seq = input.sequence
        self.sequence_label.setText(f"sequence: {seq.name} ({seq.n_timepoints} points)")
        self.fingerprint.set_markers(seq.preparation_markers())
        self.fingerprint.clear()  # the last series' voxel is gone
        self.setWindowTitle(f"mrfviewer - {self.path.name if self.path else input.name}")
        self._on_selection(self.session.method)

    def _layers(self, maps: ParameterMaps) -> dict[str, tuple[np.ndarray, str]]:
        names = [n for n in MAP_ORDER if n in maps.values] + [n for n in maps.values if n not in MAP_ORDER]
        return {n: (maps.values[n], maps.unit(n)) for n in names}

    def _on_selection(self, method: str) -> None:
        """Show the stored result of the selected method (none yet: the raw images)."""
        if self.method.currentText().lower() != method:
            self.method.blockSignals(True)
            self.method.setCurrentText(method.upper())
            self.method.blockSignals(False)
        input, maps = self.session.input, self.session.selected
        if input is None or input.series is None:
            return
        if maps is not None:
            self.map_view.set_maps(self._layers(maps), self.session.slice)
        elif self.map_view.names != ["raw"]:
            self.map_view.set_raw(np.abs(input.series.data), self.session.slice)
        self.roi_panel.attach(self.map_view.first_view(), self.map_view.first_image())
        self.roi_panel.refresh()
        self._show_outline()
        self.map_view.select(self.session.pixel)
        if self.session.pixel is not None:
            self._on_pixel(self.session.pixel)

    def _show_outline(self) -> None:
        labels = self.session.labels
        shown = labels is not None and self.roi_panel.outline_box.isChecked()
        self.map_view.set_overlay(labels.values if shown else None)  # type: ignore[union-attr]

    def show_pixel(self, z: int, y: int, x: int) -> None:
        """Select the voxel at (slice z, row y, column x): crosshair and fingerprint."""
        try:
            self.session.set_pixel(z, y, x)
        except MRFError as exc:
            self._error(str(exc))

    def _on_pixel(self, pixel: tuple[int, int, int] | None) -> None:
        """Plot the selected voxel's fingerprint against the model curves of the stored results."""
        self.map_view.select(pixel)
        if pixel is None or self.session.input is None:
            self.fingerprint.clear()
            return
        z, y, x = pixel
        curves = {}
        dm = self.session.results.get("dm")
        atom = self.session.curve("dm", z, y, x)
        if atom is not None and dm is not None:
            t1, t2, t1rho = (dm.values[p][z, y, x] for p in ("T1", "T2", "T1rho"))
            curves["DM atom"] = (atom, f"T1 {t1:.0f}, T2 {t2:.1f}, T1rho {t1rho:.1f} ms")
        self.fingerprint.set_fingerprint(self.session.measured(z, y, x), f"pixel x {x}, y {y}, slice {z + 1}", curves)
        nn = self.session.results.get("nn")
        if nn is not None and np.isfinite(nn.values["T1"][z, y, x]):
            session = self.session
            t1, t2, t1rho = (float(nn.values[p][z, y, x]) for p in ("T1", "T2", "T1rho"))
            text = f"T1 {t1:.0f}, T2 {t2:.1f}, T1rho {t1rho:.1f} ms"

            def simulate() -> None:
                # About 0.1 s for one tissue: off the GUI thread so the click stays instant.
                curve = session.curve("nn", z, y, x)
                if curve is not None:
                    self._nn_curve_ready.emit(pixel, curve, text)

            QtCore.QThreadPool.globalInstance().start(simulate)

    def _add_nn_curve(self, pixel: tuple, curve: np.ndarray, text: str) -> None:
        if pixel == self.session.pixel:  # the user may have clicked elsewhere meanwhile
            self.fingerprint.add_curve("NN", curve, text)
            self.nn_curve_added.emit()

    # -- exports --------------------------------------------------------------------
    def export_maps_dialog(self, kind: str) -> None:
        if self.session.selected is None:
            self._error("reconstruct first: there are no maps to export")
            return
        method = self.session.method.upper()
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, f"Export the {method} maps as {kind} into")
        if folder:
            self.export_maps(kind, self.session.default_export_folder(folder))

    def export_maps(self, kind: str, folder: Path, overwrite: bool = False) -> bool:
        """Export the shown result in the background; returns False if nothing was started."""
        formats = {"nifti": ("nifti", "npz"), "png": ("png",), "dicom": ("dicom",)}[kind]
        try:
            job = self.session.export_job(formats, folder, overwrite)
        except MRFError as exc:
            self._error(str(exc))
            return False
        started = self.runner.start("export", job)
        if not started:
            self._busy_message()
        return started

    def compare_methods_dialog(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Write the DM vs NN report into")
        if folder:
            self.compare_methods(Path(folder) / "mrfviewer_dm_vs_nn")

    def compare_methods(self, folder: Path, overwrite: bool = False) -> bool:
        """Reconstruct the open series with DM and NN in the background and write the comparison
        report (ROI means of both methods, Bland-Altman, difference maps) into ``folder``."""
        from mrfviewer.data_evaluation import compare_source, write_data_report
        from mrfviewer.engine import scaled
        from mrfviewer.io.atomic import check_writable_target, staged_folder

        input = self.session.input
        if input is None:
            self._error("open a series first")
            return False
        try:
            check_writable_target(folder / "report.md", overwrite)
        except MRFError as exc:
            self._error(str(exc))
            return False
        session = self.session
        dm_choice, nn_choice = session.dm_choice, session.nn_choice
        path = str(self.path or "")
        subject = self.path.parent.name if self.path is not None else ""

        def job(p, c):  # noqa: ANN001, ANN202
            dm = pipeline.make_estimator(dm_choice, input.sequence, input.signal, cache=session.cache, progress=p)
            nn = pipeline.make_estimator(nn_choice, input.sequence, input.signal, cache=session.cache)
            with staged_folder(folder, overwrite) as stage:  # all or nothing
                comparison = compare_source(
                    input, subject, input.name, dm, nn, stage, progress=scaled(p, 0.4, 0.95), cancel=c, path=path
                )
                if comparison.status == "failed":
                    raise MRFError(comparison.message)
                write_data_report(stage, [comparison], dm, nn)
            return f"wrote the DM vs NN report to {folder / 'report.md'}"

        started = self.runner.start("compare", job)
        if not started:
            self._busy_message()
        return started

    def export_roi_csv_dialog(self) -> None:
        default = f"roi_stats_{self.session.method}.csv"
        name, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export ROI statistics", default, "CSV (*.csv)")
        if name:
            try:
                self.export_roi_csv(Path(name), overwrite=True)
            except MRFError as exc:
                self._error(str(exc))

    def export_roi_csv(self, path: Path, overwrite: bool = False) -> Path:
        """The ROI statistics of the shown result (the method and each row's scope in columns)."""
        return self.session.write_roi_csv(path, overwrite=overwrite)

    def save_view_dialog(self) -> None:
        name, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save the view", "view.png", "PNG (*.png)")
        if name:
            self.grab().save(name)

    # -- misc ------------------------------------------------------------------------
    def about(self) -> None:
        import torch

        QtWidgets.QMessageBox.about(
            self,
            "About mrfviewer",
            f"<b>mrfviewer {__version__}</b><br>Quantitative MRF of the knee (T1, T2, T1rho).<br>"
            f"Qt {QtCore.qVersion()}, PySide6, torch {torch.__version__}, numpy {np.__version__}",
        )

    def _busy_message(self) -> None:
        self._error(f"busy: {self.runner.kind} is running; wait for it or cancel it (Esc)")

    def _error(self, message: str) -> None:
        self.statusBar().showMessage(message)
        if QtWidgets.QApplication.platformName() != "offscreen":
            QtWidgets.QMessageBox.warning(self, "mrfviewer", message)

    def _update_actions(self) -> None:
        busy = self.runner.busy
        self.reconstruct_action.setEnabled(not busy)
        self.cancel_action.setEnabled(busy)

    def _remember(self, path: Path | None) -> None:
        if path is None:
            return
        recent = [str(path)] + [p for p in self._recent() if p != str(path)]
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self._refresh_recent()

    def _recent(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        self.start_page.recent.clear()
        for p in self._recent():
            self.recent_menu.addAction(p, lambda p=p: self.open_path(Path(p)))
            self.start_page.recent.addItem(p)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt API
        if self.runner.busy:
            if QtWidgets.QApplication.platformName() != "offscreen":
                answer = QtWidgets.QMessageBox.question(
                    self, "mrfviewer", f"{self.runner.kind} is running. Cancel it and quit?"
                )
                if answer != QtWidgets.QMessageBox.StandardButton.Yes:
                    event.ignore()
                    return
            self.runner.cancel()
            self.runner.wait()
        # A fingerprint simulation still running would signal a deleted window (a crash at exit).
        QtCore.QThreadPool.globalInstance().waitForDone(10000)
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("state", self.saveState())
        event.accept()
