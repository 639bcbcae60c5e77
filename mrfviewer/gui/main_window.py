"""The main window: dataset browser, map views, fingerprint plot, ROI panel, reconstruction controls.

The window collects inputs and shows the :class:`~mrfviewer.session.Session`: widgets
subscribe to its events and hold no science state. Every computation is a job of the
session or the pipeline, run by :class:`~mrfviewer.gui.worker.JobRunner` on a worker
thread (label statistics on a second runner, so that they never wait for a long
reconstruction); results are handed back to the session on the GUI thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from mrfviewer import pipeline
from mrfviewer.colormaps import array_directions, map_title
from mrfviewer.errors import MRFError
from mrfviewer.gui.agreement_plot import AgreementPlot
from mrfviewer.gui.browser import DatasetBrowser
from mrfviewer.gui.fingerprint_plot import FingerprintPlot
from mrfviewer.gui.help import RESEARCH_NOTICE, GuideDialog, ShortcutsDialog, about_text
from mrfviewer.gui.map_view import MapView, PanelSpec
from mrfviewer.gui.roi_panel import RoiPanel
from mrfviewer.gui.worker import JobRunner
from mrfviewer.io.atomic import atomic_write
from mrfviewer.pipeline import EstimatorChoice, Input, ParameterMaps
from mrfviewer.session import SeriesEntry, Session, SphereTemplate

log = logging.getLogger(__name__)
MAX_RECENT = 8
#: The order in which maps are shown (whatever a result holds, all of it).
MAP_ORDER = ("T1", "T2", "T1rho", "B1", "PD", "match", "uncertainty_T1", "uncertainty_T2", "uncertainty_T1rho")
#: The layouts of the map area: (key, menu text, shortcut).
LAYOUTS = (
    ("grid", "All maps of the method", "Ctrl+1"),
    ("compare", "DM | NN | NN \u2212 DM (%)", "Ctrl+2"),
    ("ortho", "Orthogonal views (3D series)", "Ctrl+3"),
)
#: Version of the saved dock layout (2: Dataset and ROIs share the right-hand column).
STATE_VERSION = 2
#: How long an informative status message stays (errors stay longer; progress until replaced).
STATUS_MS, ERROR_MS = 8000, 20000


class StartPage(QtWidgets.QWidget):
    """Shown before anything is open: open a folder, a recent one, or the demo."""

    def __init__(self, window: MainWindow):
        super().__init__()
        title = QtWidgets.QLabel("<h2>mrfviewer</h2>Quantitative MR fingerprinting of the knee: T1, T2 and T1rho")
        title.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.open_button = QtWidgets.QPushButton("Open folder...")
        self.demo_button = QtWidgets.QPushButton("Open demo (digital knee and NIST phantom)")
        self.recent = QtWidgets.QListWidget()
        self.recent.setMaximumHeight(160)
        self.recent.setTextElideMode(QtCore.Qt.TextElideMode.ElideMiddle)
        hint = QtWidgets.QLabel("or drop a DICOM folder or an HDF5 series on this window")
        hint.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        notice = QtWidgets.QLabel(f"<small>{RESEARCH_NOTICE}</small>")
        notice.setWordWrap(True)
        notice.setStyleSheet("color: #888;")
        box = QtWidgets.QVBoxLayout()
        box.addStretch(1)
        box.addWidget(title)
        box.addSpacing(12)
        box.addWidget(self.open_button)
        box.addWidget(self.demo_button)
        box.addWidget(QtWidgets.QLabel("Recent folders"))
        box.addWidget(self.recent)
        box.addWidget(hint)
        box.addSpacing(12)
        box.addWidget(notice)
        box.addStretch(1)
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
    statistics_ready = QtCore.Signal()
    _nn_curve_ready = QtCore.Signal(object, object, str)

    def __init__(self, settings: QtCore.QSettings | None = None, session: Session | None = None):
        super().__init__()
        self.setWindowTitle("mrfviewer")
        self.setAcceptDrops(True)
        self.settings = settings or QtCore.QSettings("mrfviewer", "mrfviewer")
        self.session = session or Session()
        self.runner = JobRunner(self)
        self.stats_runner = JobRunner(self)  # label statistics: never queued behind a reconstruction
        self.path: Path | None = None
        self._pending: dict[str, object] = {}
        self._layout_note = ""
        self.ask_before_quitting = True  # False: close cancels a running job without asking (SIGTERM)
        self.demo_dialog: QtWidgets.QProgressDialog | None = None

        self.map_view = MapView()
        self.agreement = AgreementPlot()
        self.center = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        self.center.addWidget(self.map_view)
        self.center.addWidget(self.agreement)
        self.center.setStretchFactor(0, 3)
        self.center.setStretchFactor(1, 1)
        self.agreement.setMinimumHeight(150)
        self.agreement.setVisible(False)
        self.start_page = StartPage(self)
        self.stack = QtWidgets.QStackedWidget()
        self.stack.addWidget(self.start_page)
        self.stack.addWidget(self.center)
        self.setCentralWidget(self.stack)
        self.fingerprint = FingerprintPlot()
        self.roi_panel = RoiPanel(self.session)
        self.browser = DatasetBrowser(self.session)
        self.docks = [
            self._add_dock("Dataset", self.browser, QtCore.Qt.DockWidgetArea.RightDockWidgetArea),
            self._add_dock("ROIs", self.roi_panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea),
            self._add_dock("Fingerprint", self.fingerprint, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea),
        ]
        # The browser shares the right-hand column with the ROIs, as a tab: both get its width
        # (a narrow left column truncated the series names), the maps the rest.
        self.tabifyDockWidget(self.docks[0], self.docks[1])
        self._build_toolbar()
        self._build_menus()
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMaximumWidth(240)
        self.progress.setVisible(False)
        self.statusBar().addPermanentWidget(self.progress)
        self._connect()
        self._refresh_recent()
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = self.settings.value("state")
        # A dock layout of another version of the window (other docks, other places) is not restored.
        if state is not None and not self.restoreState(state, STATE_VERSION):
            state = None
        if geometry is None:
            self.resize(1280, 800)
        self._docks_fitted = state is not None  # a saved layout is the user's: left as it was
        self._update_actions()

    def _connect(self) -> None:
        for runner, prefix in ((self.runner, ""), (self.stats_runner, "stats")):
            if prefix:
                runner.finished.connect(self._stats_finished)
                runner.failed.connect(lambda kind, message: self._status(f"label statistics failed: {message}"))
                continue
            runner.started.connect(self._job_started)
            runner.progress.connect(self._job_progress)
            runner.finished.connect(self._job_finished)
            runner.failed.connect(self._job_failed)
            runner.cancelled.connect(self._job_cancelled)
        view = self.map_view
        view.pixel_clicked.connect(self.show_pixel)
        view.hovered.connect(lambda text: self.statusBar().showMessage(text, 4000))
        view.slice_slider.valueChanged.connect(self.session.set_slice)
        view.time_changed.connect(self.session.set_time_point)
        view.roi_drawn.connect(self._roi_drawn)
        view.roi_edited.connect(lambda name, polygon, state: self.session.update_roi(name, polygon, state))
        view.roi_clicked.connect(self.session.select_roi)
        view.roi_delete_requested.connect(lambda name: self.session.remove_rois([name]))
        view.roi_rename_requested.connect(self._rename_roi)
        view.template_edited.connect(self.session.set_template)
        view.save_view_requested.connect(self.save_view_dialog)
        view.draw_finished.connect(lambda: self.roi_panel.choose_tool(None))
        self.browser.open_requested.connect(self.open_entry)
        self.browser.message.connect(self._status)
        self._nn_curve_ready.connect(self._add_nn_curve)
        panel = self.roi_panel
        panel.export_requested.connect(self.export_roi_csv_dialog)
        panel.fit_requested.connect(self.fit_template)
        panel.template_requested.connect(self.add_template)
        panel.draw_requested.connect(self._draw_requested)
        panel.statistics_needed.connect(self._start_label_statistics)
        panel.message.connect(self._status)
        panel.outline_box.toggled.connect(lambda _: self._show_outline())
        events = self.session.events
        events.input.connect(self._on_input)
        events.selection.connect(self._on_selection)
        events.labels.connect(self._show_outline)
        events.slice.connect(self.map_view.show_slice)
        events.time.connect(self.map_view.show_time)
        events.pixel.connect(self._on_pixel)
        events.choices.connect(self._show_choices)
        events.input.connect(self._show_choices)  # a measured B1 map belongs to the series it was placed on
        events.rois.connect(self._show_rois)
        events.roi_selected.connect(lambda _: self._show_rois())

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

    @property
    def layout_mode(self) -> str:
        return self.layout_box.currentData()

    @property
    def param(self) -> str:
        return self.param_box.currentData()

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
        self.layout_box = QtWidgets.QComboBox()
        for key, text, _ in LAYOUTS:
            self.layout_box.addItem(text, key)
        self.layout_box.setToolTip("the map area: all maps of the method, DM against NN, or three orthogonal views")
        self.layout_box.currentIndexChanged.connect(lambda _: self._layout_changed())
        self.param_box = QtWidgets.QComboBox()
        for p in ("T1", "T2", "T1rho", "PD"):
            self.param_box.addItem(map_title(p, "").strip(), p)
        self.param_box.setToolTip("the map compared (DM | NN) or shown in orthogonal views")
        self.param_box.currentIndexChanged.connect(lambda _: self._show_view())
        self.sequence_label = QtWidgets.QLabel("sequence: -")
        self.dictionary_label = QtWidgets.QLabel("DM: knee grid (7 %, B1)")
        self.dictionary_label.setToolTip("what dictionary matching uses (File menu: grid or dictionary file)")
        self.model_label = QtWidgets.QLabel("NN: shipped network")
        self.reconstruct_action = QtGui.QAction("Reconstruct", self)
        self.reconstruct_action.setShortcut(QtGui.QKeySequence("Ctrl+R"))
        self.reconstruct_action.setToolTip("reconstruct the open series with the chosen method (Ctrl+R)")
        self.reconstruct_action.triggered.connect(self.reconstruct)
        self.cancel_action = QtGui.QAction("Cancel", self)
        self.cancel_action.setShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_Escape))
        self.cancel_action.setToolTip("cancel the running job (Esc)")
        self.cancel_action.triggered.connect(self.runner.cancel)
        for widget in (QtWidgets.QLabel(" method "), self.method, QtWidgets.QLabel(" mask "), self.mask_threshold):
            bar.addWidget(widget)
        bar.addAction(self.reconstruct_action)
        bar.addAction(self.cancel_action)
        bar.addSeparator()
        for widget in (QtWidgets.QLabel(" view "), self.layout_box, QtWidgets.QLabel(" map "), self.param_box):
            bar.addWidget(widget)
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
        menu.addAction("Open demo (knee and NIST phantom)", self.open_demo)
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
        dm_menu.addAction("Default knee grid (7 % steps, B1 0.6-1.4)", self.use_default_grid)
        dm_menu.addAction("Grid file (JSON)...", self.choose_grid_dialog)
        dm_menu.addAction("Dictionary file (HDF5)...", self.choose_dictionary_dialog)
        dm_menu.addSeparator()
        dm_menu.addAction("Measured B1+ map file (NIfTI or DICOM)...", self.choose_b1_file_dialog)
        dm_menu.addAction("Measured B1+ map, DICOM folder...", self.choose_b1_folder_dialog)
        self.clear_b1_action = dm_menu.addAction("Estimate B1+ (no measured map)", self.session.clear_b1_map)
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

        run = self.menuBar().addMenu("&Reconstruct")
        run.addAction(self.reconstruct_action)
        run.addAction(self.cancel_action)
        run.addSeparator()
        run.addAction("DM vs NN comparison report...", self.compare_methods_dialog)

        view = self.menuBar().addMenu("&View")
        self.layout_actions = QtGui.QActionGroup(self)
        for i, (key, text, keys) in enumerate(LAYOUTS):
            action = view.addAction(text, lambda i=i: self.layout_box.setCurrentIndex(i), QtGui.QKeySequence(keys))
            action.setCheckable(True)
            action.setChecked(i == 0)
            action.setData(key)
            self.layout_actions.addAction(action)
        view.addSeparator()
        view.addAction("Reset view", self.map_view.reset_view, QtGui.QKeySequence(QtCore.Qt.Key.Key_Home))
        view.addAction(
            "Next slice", lambda: self.map_view.step(slices=1), QtGui.QKeySequence(QtCore.Qt.Key.Key_PageDown)
        )
        view.addAction(
            "Previous slice", lambda: self.map_view.step(slices=-1), QtGui.QKeySequence(QtCore.Qt.Key.Key_PageUp)
        )
        view.addSeparator()
        self.clipped_action = view.addAction("Mark voxels clipped at a range bound")
        self.clipped_action.setCheckable(True)
        self.clipped_action.setChecked(True)
        self.clipped_action.setShortcut(QtGui.QKeySequence("Ctrl+K"))
        self.clipped_action.toggled.connect(self.map_view.set_clipped_visible)
        self.outline_action = view.addAction("Outline the label map")
        self.outline_action.setCheckable(True)
        self.outline_action.setChecked(True)
        self.outline_action.toggled.connect(self.roi_panel.outline_box.setChecked)
        self.roi_panel.outline_box.toggled.connect(self.outline_action.setChecked)
        view.addSeparator()
        for dock in self.docks:
            view.addAction(dock.toggleViewAction())

        roi = self.menuBar().addMenu("&ROI")
        for shape, keys in (("rectangle", "R"), ("ellipse", "E"), ("freehand", "F")):
            roi.addAction(f"Draw {shape}", lambda s=shape: self.roi_panel.choose_tool(s), QtGui.QKeySequence(keys))
        roi.addAction("Rename selected ROI...", self.roi_panel.rename_selected, QtGui.QKeySequence("F2"))
        roi.addAction("Delete selected ROI", self.roi_panel.delete_selected, QtGui.QKeySequence.StandardKey.Delete)
        roi.addSeparator()
        roi.addAction("NIST template", self.add_template)
        roi.addAction("Fit NIST template", self.fit_template, QtGui.QKeySequence("Ctrl+T"))

        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("User guide", self.show_guide, QtGui.QKeySequence.StandardKey.HelpContents)
        help_menu.addAction("Keyboard shortcuts", self.show_shortcuts, QtGui.QKeySequence("Ctrl+/"))
        help_menu.addAction("Research use only", self.show_notice)
        help_menu.addSeparator()
        help_menu.addAction("About mrfviewer", self.about)

    # -- file dialogs (they remember the last folder of each kind) ---------------------------
    def _folder(self, kind: str) -> str:
        value = self.settings.value(f"folders/{kind}") or self.settings.value("folders/last") or ""
        return str(value) if value and Path(str(value)).exists() else ""

    def _remember_folder(self, kind: str, path: str | Path) -> None:
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        self.settings.setValue(f"folders/{kind}", str(folder))
        self.settings.setValue("folders/last", str(folder))

    def _ask_folder(self, kind: str, title: str) -> Path | None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, title, self._folder(kind))
        if not folder:
            return None
        self._remember_folder(kind, folder)
        return Path(folder)

    def _ask_file(self, kind: str, title: str, pattern: str, save_as: str | None = None) -> Path | None:
        start = self._folder(kind)
        if save_as is not None:
            start = str(Path(start) / save_as) if start else save_as
            name, _ = QtWidgets.QFileDialog.getSaveFileName(self, title, start, pattern)
        else:
            name, _ = QtWidgets.QFileDialog.getOpenFileName(self, title, start, pattern)
        if not name:
            return None
        self._remember_folder(kind, name)
        return Path(name)

    # -- opening ----------------------------------------------------------------
    def open_folder_dialog(self) -> None:
        folder = self._ask_folder("input", "Open a DICOM folder")
        if folder is not None:
            self.open_path(folder)

    def open_file_dialog(self) -> None:
        name = self._ask_file("input", "Open an HDF5 series", "HDF5 series (*.h5 *.hdf5)")
        if name is not None:
            self.open_path(name)

    def open_demo(self) -> None:
        """The demo folder (knee and NIST phantom; generated on first use) in the browser; the knee opened."""
        from mrfviewer.demo import demo_dir, demo_ready, ensure_demo_data

        if not self.runner.start("demo", lambda p, c: ensure_demo_data(progress=p, cancel=c)):
            self._busy_message()
            return
        self._pending = {"path": demo_dir(), "prefer": "knee"}
        if not demo_ready():
            # First use simulates the demo series (about a minute): say so in a dialog that can cancel.
            self.demo_dialog = QtWidgets.QProgressDialog(
                "Preparing the demo data (first use only)...", "Cancel", 0, 100, self
            )
            self.demo_dialog.setWindowTitle("mrfviewer demo")
            self.demo_dialog.setMinimumDuration(500)
            self.demo_dialog.canceled.connect(self.runner.cancel)

    def open_path(self, path: Path, series_uid: str | None = None) -> None:
        """List the series of a DICOM folder or HDF5 file in the browser, then open one (in the background).

        With ``series_uid`` that series; else the only MRF series, or the first of several
        (the others are a click away in the browser).
        """
        path = Path(path)
        if not path.exists():
            self._error(f"{path} does not exist")
            return
        if not self.runner.start("scan", self.session.browse_job(path)):
            self._busy_message()
            return
        self._pending = {"path": path, "uid": series_uid}

    def open_entry(self, entry: SeriesEntry) -> None:
        """Open one series of the browsed dataset (a click in the browser)."""
        try:
            job = self.session.open_entry_job(entry)
        except MRFError as exc:
            self._error(str(exc))
            return
        if not self.runner.start("load", job):
            self._busy_message()
            return
        self._pending = {"entry": entry}

    @staticmethod
    def _choose_entry(dataset: pipeline.Dataset, pending: dict[str, object]) -> SeriesEntry | None:
        uid, prefer = pending.get("uid"), pending.get("prefer")
        usable = dataset.usable()
        if uid is not None:
            return next((e for e in dataset.entries if e.series_uid == uid), None)
        if prefer is not None:
            return next((e for e in usable if str(prefer) in e.description.lower()), usable[0] if usable else None)
        return usable[0] if usable else None

    def load_labels_dialog(self) -> None:
        name = self._ask_file("labels", "Load a label map", "Label maps (*.nii *.nii.gz *.dcm)")
        if name is not None:
            self.load_labels(name)

    def load_labels(self, path: Path) -> None:
        """Use a label NIfTI or DICOM SEG (placed on the series by geometry) for ROI statistics and outlines."""
        try:
            labels = self.session.load_labels(path)
        except MRFError as exc:
            self._error(str(exc))
            return
        note = f" ({labels.note})" if labels.note else ""
        self._status(f"label map {path.name}: {len(labels.labels())} labels{note}")

    def choose_sequence_dialog(self) -> None:
        name = self._ask_file("sequence", "Sequence file", "Sequence (*.json)")
        if name is not None:
            self.use_sequence(name)

    def use_sequence(self, path: Path) -> None:
        """Attach another sequence to the open series (the number of time points must match)."""
        try:
            self.session.use_sequence(path)
        except MRFError as exc:
            self._error(str(exc))

    def choose_model_dialog(self) -> None:
        folder = self._ask_folder("model", "Network folder (model.pt + model.json)")
        if folder is not None:
            self.use_model(folder)

    def use_model(self, folder: Path) -> None:
        """Use this network for NN reconstructions instead of the shipped one."""
        choice = EstimatorChoice("nn", model=folder)
        try:
            pipeline.planned_outputs(choice)  # reads and validates the model folder
        except MRFError as exc:
            self._error(str(exc))
            return
        self.session.set_choice(choice)
        self._status(f"NN reconstructions use the network {folder.name}")

    def _precision_chosen(self, action: QtGui.QAction) -> None:
        self.settings.setValue("nn_precision", action.data())
        self.session.set_settings(nn_precision=action.data())

    def use_default_grid(self) -> None:
        self.session.set_choice(EstimatorChoice("dm"))

    def choose_grid_dialog(self) -> None:
        name = self._ask_file("grid", "Dictionary grid", "Grid (*.json)")
        if name is not None:
            self.use_grid(name)

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
        name = self._ask_file("dictionary", "Dictionary file", "Dictionary (*.h5 *.hdf5)")
        if name is not None:
            self.use_dictionary_file(name)

    def use_dictionary_file(self, path: Path) -> None:
        """Match DM against this dictionary file (read by the reconstruction job, checked there)."""
        if not path.is_file():
            self._error(f"dictionary file not found: {path}")
            return
        self.session.set_choice(EstimatorChoice("dm", dictionary_file=path))

    def choose_b1_file_dialog(self) -> None:
        name = self._ask_file("b1", "Measured B1+ map", "B1 map (*.nii *.nii.gz *.dcm *.IMA);;All files (*)")
        if name is not None:
            self.use_b1_map(name)

    def choose_b1_folder_dialog(self) -> None:
        folder = self._ask_folder("b1", "DICOM folder of a measured B1+ map (one series)")
        if folder is not None:
            self.use_b1_map(folder)

    def use_b1_map(self, path: Path, scale: float | None = None) -> None:
        """DM matches each voxel at the measured B1 of this map (placed on the series by geometry)."""
        try:
            self.session.use_b1_map(path, scale)
        except MRFError as exc:
            self._error(str(exc))
            return
        self.statusBar().showMessage(f"DM will use the measured B1+ map {Path(path).name}", 5000)

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
            self.dictionary_label.setText("DM: knee grid (7 %, B1)")
        if self.session.measured_b1:
            self.dictionary_label.setText(self.dictionary_label.text() + ", measured B1")
        self.clear_b1_action.setEnabled(self.session.measured_b1)
        self.model_label.setText(f"NN: {nn.model_path().name}" if nn.model is not None else "NN: shipped network")

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:  # noqa: N802 - Qt API
        urls = event.mimeData().urls()
        if urls:
            self.open_path(Path(urls[0].toLocalFile()))
            event.acceptProposedAction()

    # -- reconstruction and other jobs ---------------------------------------------------
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

    def add_template(self) -> None:
        """Overlay the NIST sphere template, centred (drag, rotate and scale it, or fit it)."""
        if self.session.input is None:
            self._error("open a series first")
            return
        _, h, w = self.session.input.spatial_shape
        spacing = float(self.session.input.geometry.pixel_spacing_mm[1]) or 1.0
        self.session.set_template(SphereTemplate(w / 2, h / 2, 0.0, 1.0 / spacing))

    def fit_template(self) -> None:
        """Fit the NIST sphere template to the PD map in the background (seconds)."""
        try:
            job = self.session.template_fit_job()
        except MRFError as exc:
            self._error(str(exc))
            return
        if not self.runner.start("fit template", job):
            self._busy_message()

    def _start_label_statistics(self) -> None:
        """Label statistics of the stored results in the background (cached per result, labels and scope)."""
        if not self.session.label_statistics_pending():
            return
        if self.stats_runner.busy:
            return  # when it ends, what is still missing is computed (see _stats_finished)
        self.stats_runner.start("label statistics", self.session.label_statistics_job())

    def _stats_finished(self, kind: str, result: object) -> None:
        self.session.add_label_statistics(result)  # type: ignore[arg-type]
        if self.session.label_statistics_pending():  # the labels or the scope changed meanwhile
            self._start_label_statistics()
        else:
            self.statistics_ready.emit()

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
        dialog, self.demo_dialog = self.demo_dialog, None
        if dialog is not None:
            dialog.canceled.disconnect()
            # reset() stops the dialog's own timer: close() alone let it pop up after the
            # data were ready (and stay there).
            dialog.reset()
            dialog.hide()
            dialog.deleteLater()

    def _job_finished(self, kind: str, result: object) -> None:
        self.progress.setVisible(False)
        self._close_demo_dialog()
        self._update_actions()
        self.statusBar().clearMessage()
        pending, self._pending = self._pending, {}
        if kind == "demo":
            self._pending = pending
            self._start_scan(Path(str(pending["path"])))
        elif kind == "scan":
            self._scanned(result, pending)  # type: ignore[arg-type]
        elif kind == "load":
            assert isinstance(result, Input)
            entry = pending.get("entry")
            self.path = Path(entry.path if entry is not None else result.identity.path or ".")  # type: ignore[union-attr]
            self.session.open(result)
            self.docks[1].raise_()  # the ROI table of the series (the Dataset tab is a click away)
            self._remember(self.session.dataset.root if self.session.dataset is not None else self.path)
            self.loaded.emit()
        elif kind.startswith("reconstruct"):
            maps, estimator = result  # type: ignore[misc]
            self.session.add_result(maps, estimator)
            model = maps.provenance.model
            precision = f" ({model.precision})" if model is not None else ""
            clipped = self.session.clipped_mask(maps.method)
            n_clipped = int(clipped.sum()) if clipped is not None else 0
            note = f"; {n_clipped} voxels clipped at a range bound (hatched)" if n_clipped else ""
            self._status(f"{maps.method.upper()} reconstruction done{precision}{note}")
            self.reconstructed.emit(maps.method)
        elif kind == "fit template":
            self.session.set_template(result)  # type: ignore[arg-type]
            self._status("NIST template fitted to the PD map")
        elif kind in ("export", "compare"):
            self._status(str(result))

    def _start_scan(self, path: Path) -> None:
        pending = self._pending
        if not self.runner.start("scan", self.session.browse_job(path)):
            self._busy_message()
            return
        self._pending = pending

    def _scanned(self, dataset: pipeline.Dataset, pending: dict[str, object]) -> None:
        self.session.set_dataset(dataset)
        entry = self._choose_entry(dataset, pending)
        if entry is None:
            if pending.get("uid") is not None:
                self._error(f"series {pending['uid']} not found in {dataset.root}")
            else:
                reasons = "; ".join(f"'{e.description}': {e.reason}" for e in dataset.entries[:4])
                self._error(f"no MRF series in {dataset.root}" + (f" ({reasons})" if reasons else ""))
            self.docks[0].show()
            self.docks[0].raise_()
            return
        n = len(dataset.usable())
        if n > 1:
            self._status(
                f"{n} MRF series in {dataset.root.name}: opening '{entry.description}'; "
                "click another in the Dataset panel"
            )
        self.open_entry(entry)

    def _job_failed(self, kind: str, message: str) -> None:
        self.progress.setVisible(False)
        self._close_demo_dialog()
        self._pending = {}
        self._update_actions()
        log.warning("%s failed: %s", kind, message)
        self._error(f"{kind} failed: {message}")
        self.job_failed.emit(message)

    def _job_cancelled(self, kind: str) -> None:
        self.progress.setVisible(False)
        self._close_demo_dialog()
        self._pending = {}
        self._update_actions()
        self._status(f"{kind} cancelled; nothing was changed")

    # -- display (session events) -------------------------------------------------------
    def _on_input(self) -> None:
        """A new series: every view starts again from the session (which reset everything)."""
        input = self.session.input
        assert input is not None and input.series is not None
        self.stack.setCurrentWidget(self.center)
        geometry = input.geometry
        n_slices = input.spatial_shape[0]
        positions = geometry.slice_positions(n_slices)
        step = positions[1] - positions[0] if n_slices > 1 else None
        spacing = float(np.linalg.norm(step)) if step is not None else geometry.slice_thickness_mm
        self.map_view.set_geometry(
            array_directions(tuple(geometry.orientation), step), spacing / float(geometry.pixel_spacing_mm[0] or 1.0)
        )
        self.map_view.select(None)
        self._magnitude = np.abs(input.series.data)
        seq = input.sequence
        self.sequence_label.setText(f"sequence: {seq.name} ({seq.n_timepoints} points)")
        self.fingerprint.set_markers(seq.preparation_markers())
        self.fingerprint.clear()  # the last series' voxel is gone
        title = self.session.entry.description if self.session.entry is not None else input.name
        where = self.path.name if self.path is not None else ""
        self.setWindowTitle(f"mrfviewer - {where}" + (f" - {title}" if title and title != where else ""))
        ortho = self.layout_actions.actions()[2]
        ortho.setEnabled(n_slices > 1)
        self._on_selection(self.session.method)

    def _layers(self, maps: ParameterMaps) -> dict[str, tuple[np.ndarray, str]]:
        names = [n for n in MAP_ORDER if n in maps.values] + [n for n in maps.values if n not in MAP_ORDER]
        return {n: (maps.values[n], maps.unit(n)) for n in names}

    def _specs(self) -> tuple[list[PanelSpec], str]:
        """What the map area shows now: the panels and the layout (falling back to what the results allow)."""
        session, layout, p = self.session, self.layout_mode, self.param
        results = session.results
        if layout == "compare" and results:
            specs = []
            for method in ("dm", "nn"):
                maps = results.get(method)
                if maps is not None and p in maps.values:
                    title = map_title(p, maps.unit(p), method)
                    clipped, tissue = session.bounded(method).get(p), session.tissue_mask(method)
                    specs.append(
                        PanelSpec(f"{p} {method}", p, maps.values[p], maps.unit(p), title, "slice", clipped, tissue)
                    )
            diff = session.difference_map(p)
            if diff is not None:
                name = f"difference_{p}"
                tissue = session.tissue_mask("dm")
                specs.append(PanelSpec(name, name, diff, "%", map_title(name, "%"), tissue=tissue))
            if specs:
                return specs, "compare"
        maps = session.selected
        if maps is None:
            return [], "grid"
        bounded, tissue = session.bounded(), session.tissue_mask()
        if layout == "ortho" and session.n_slices > 1:
            name = p if p in maps.values else next(iter(maps.values))
            title, unit = map_title(name, maps.unit(name), maps.method), maps.unit(name)
            return [
                PanelSpec(f"{name} {plane}", name, maps.values[name], unit, title, plane, bounded.get(name), tissue)
                for plane in ("slice", "row", "column")
            ], "ortho"
        return [
            PanelSpec(n, n, values, unit, map_title(n, unit), "slice", bounded.get(n), tissue)
            for n, (values, unit) in self._layers(maps).items()
        ], "grid"

    def _show_view(self) -> None:
        input = self.session.input
        if input is None or input.series is None:
            return
        specs, layout = self._specs()
        if specs:
            self.map_view.set_panels(specs, layout, self.session.slice)
        elif self.map_view.names != ["raw"]:
            self.map_view.set_raw(self._magnitude, self.session.slice, self.session.time_point)
        wanted = self.layout_mode
        if wanted != layout and wanted != "grid":
            need = "a DM or NN result" if wanted == "compare" else "a result of a series with several slices"
            self._layout_note = f"{self.layout_box.currentText()}: needs {need}; showing all maps meanwhile"
            self._status(self._layout_note)
        elif self._layout_note and self.statusBar().currentMessage() == self._layout_note:
            self.statusBar().clearMessage()  # the view asked for is shown now: the note is stale
            self._layout_note = ""
        self.agreement.setVisible(layout == "compare")
        self._show_rois()
        self._show_outline()
        self.map_view.select(self.session.pixel)

    def _layout_changed(self) -> None:
        key = self.layout_mode
        for action in self.layout_actions.actions():
            action.setChecked(action.data() == key)
        self._show_view()

    def _on_selection(self, method: str) -> None:
        """Show the stored result of the selected method (none yet: the raw images)."""
        if self.method.currentText().lower() != method:
            self.method.blockSignals(True)
            self.method.setCurrentText(method.upper())
            self.method.blockSignals(False)
        self._show_view()
        if self.session.pixel is not None:
            self._on_pixel(self.session.pixel)  # the fingerprint of every run, refreshed

    def _show_rois(self) -> None:
        session = self.session
        self.map_view.set_rois(list(session.rois.values()), session.selected_roi, session.template)
        if self.layout_mode == "compare":
            self.agreement.show_agreement(session.agreement(self.param, wait=False))

    def _show_outline(self) -> None:
        labels = self.session.labels
        shown = labels is not None and self.roi_panel.outline_box.isChecked()
        self.map_view.set_overlay(labels.values if shown else None)  # type: ignore[union-attr]

    def _roi_drawn(self, kind: str, polygon: np.ndarray, state: dict) -> None:
        try:
            name = self.session.add_roi(kind, polygon, state)
        except MRFError as exc:
            self._error(str(exc))
            return
        self._status(f"{name} drawn: drag it to move, handles to resize; F2 renames, Delete removes it")

    def _rename_roi(self, name: str) -> None:
        self.session.select_roi(name)
        self.roi_panel.rename_selected()

    def _draw_requested(self, shape: str | None) -> None:
        if shape is not None and self.session.input is None:
            self.roi_panel.choose_tool(None)
            self._status("open a series first")
            return
        self.map_view.set_draw_mode(shape)
        if shape is not None:
            self._status(f"drag on any map to draw a {shape} (Esc: stop)")
            self.map_view.graphics.setFocus()

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
            curves["DM atom"] = (atom, _values_text(dm, z, y, x))
        title = f"pixel x {x}, y {y}, slice {z + 1}"
        self.fingerprint.set_fingerprint(self.session.measured(z, y, x), title, curves)
        nn = self.session.results.get("nn")
        if nn is not None and np.isfinite(nn.values["T1"][z, y, x]):
            session = self.session
            text = _values_text(nn, z, y, x)

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
        folder = self._ask_folder("export", f"Export the {method} maps as {kind} into")
        if folder is not None:
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
        folder = self._ask_folder("export", "Write the DM vs NN report into")
        if folder is not None:
            self.compare_methods(folder / "mrfviewer_dm_vs_nn")

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
        name = self._ask_file("export", "Export ROI statistics", "CSV (*.csv)", f"roi_stats_{self.session.method}.csv")
        if name is not None:
            try:
                # The file dialog asked before replacing an existing file.
                path = self.export_roi_csv(name, overwrite=True)
            except MRFError as exc:
                self._error(str(exc))
                return
            self._status(f"wrote {path}")

    def export_roi_csv(self, path: Path, overwrite: bool = False) -> Path:
        """The ROI statistics of the shown result (the method, each row's scope and clipped voxels in columns)."""
        return self.session.write_roi_csv(path, overwrite=overwrite)

    def save_view_dialog(self) -> None:
        name = self._ask_file("export", "Save the view", "PNG (*.png)", "view.png")
        if name is not None:
            try:
                # The file dialog asked before replacing an existing file.
                self.save_view(name, overwrite=True)
            except MRFError as exc:
                self._error(str(exc))
                return
            self._status(f"saved the view to {name}")

    def save_view(self, path: Path, overwrite: bool = False) -> Path:
        """The map area as shown (with its orientation letters and colour bars), as a PNG written atomically."""
        image = self.map_view.graphics.grab()

        def write(tmp: Path) -> None:
            if not image.save(str(tmp), "PNG"):
                raise MRFError(f"could not write {path}")

        return atomic_write(path, write, overwrite=overwrite)

    # -- help ------------------------------------------------------------------------
    def show_guide(self) -> None:
        self.guide = GuideDialog(self)
        self.guide.show()

    def show_shortcuts(self) -> None:
        self.shortcuts = ShortcutsDialog(self)
        self.shortcuts.show()

    def show_notice(self) -> None:
        QtWidgets.QMessageBox.information(self, "Research use only", RESEARCH_NOTICE)

    def about(self) -> None:
        import torch

        versions = f"Qt {QtCore.qVersion()}, PySide6, torch {torch.__version__}, numpy {np.__version__}"
        QtWidgets.QMessageBox.about(self, "About mrfviewer", about_text(versions))

    # -- misc ------------------------------------------------------------------------
    def _status(self, message: str, timeout: int | None = None) -> None:
        """An informative message that goes away by itself (a stale one misleads)."""
        self.statusBar().showMessage(message, timeout or STATUS_MS)

    def _busy_message(self) -> None:
        self._error(f"busy: {self.runner.kind} is running; wait for it or cancel it (Esc)")

    def _error(self, message: str) -> None:
        self.statusBar().showMessage(message, ERROR_MS)
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

    def showEvent(self, event: QtGui.QShowEvent) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if not self._docks_fitted:
            # Maps get most of the window, the docks a share of its size (first start only).
            self._docks_fitted = True
            width, height = self.width(), self.height()
            self.resizeDocks(self.docks[1:2], [max(400, int(0.28 * width))], QtCore.Qt.Orientation.Horizontal)
            self.resizeDocks(self.docks[2:], [max(200, int(0.24 * height))], QtCore.Qt.Orientation.Vertical)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt API
        if self.runner.busy:
            if self.ask_before_quitting and QtWidgets.QApplication.platformName() != "offscreen":
                answer = QtWidgets.QMessageBox.question(
                    self, "mrfviewer", f"{self.runner.kind} is running. Cancel it and quit?"
                )
                if answer != QtWidgets.QMessageBox.StandardButton.Yes:
                    event.ignore()
                    return
            self.runner.cancel()
            self.runner.wait()
        self.stats_runner.cancel()
        self.stats_runner.wait()
        # A fingerprint simulation still running would signal a deleted window (a crash at exit).
        QtCore.QThreadPool.globalInstance().waitForDone(10000)
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("state", self.saveState(STATE_VERSION))
        event.accept()


def _values_text(maps: ParameterMaps, z: int, y: int, x: int) -> str:
    t1, t2, t1rho = (float(maps.values[p][z, y, x]) for p in ("T1", "T2", "T1rho"))
    return f"T1 {t1:.0f}, T2 {t2:.1f}, T1\u03c1 {t1rho:.1f} ms"
