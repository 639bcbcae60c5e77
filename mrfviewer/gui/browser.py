"""Dataset browser: the patient / study / series tree of the folder being browsed.

Every series the scan found is listed; an MRF acquisition is one item (magnitude and its
phase partner together, "magnitude + phase"). Series that cannot be reconstructed are
greyed, with the reason in the last column and the tooltip. A click on an MRF series
opens it; the open series is shown in bold. Names are elided in the middle (the end of
a description tells series apart), the whole name in the tooltip; columns are resizable.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from mrfviewer.session import SeriesEntry, Session

COLUMNS = ("series", "images", "time points", "slices", "MiB", "note")
_ENTRY = QtCore.Qt.ItemDataRole.UserRole + 1


def shown_name(entry: SeriesEntry) -> str:
    """The series description without a component suffix the next column states ("... (magnitude)")."""
    name = entry.description
    for suffix in (" (magnitude)", " (phase)"):
        if name.endswith(suffix) and suffix.strip(" ()") in entry.components:
            return name[: -len(suffix)]
    return name


class DatasetBrowser(QtWidgets.QTreeWidget):
    """The session's dataset as a tree; :attr:`open_requested` when an MRF series is clicked."""

    open_requested = QtCore.Signal(object)  # a SeriesEntry
    message = QtCore.Signal(str)

    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.setHeaderLabels(list(COLUMNS))
        self.setTextElideMode(QtCore.Qt.TextElideMode.ElideMiddle)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setRootIsDecorated(True)
        self.setMinimumWidth(160)
        header = self.header()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setMinimumSectionSize(30)
        self.setIndentation(12)  # three levels deep: the series names keep the width
        self.setColumnWidth(0, 250)
        for col, width in ((1, 120), (2, 80), (3, 50), (4, 55)):
            self.setColumnWidth(col, width)
        self.setToolTip("series of the folder: click an MRF series to open it")
        self.items: dict[str, QtWidgets.QTreeWidgetItem] = {}
        self.itemClicked.connect(self._clicked)
        self.itemActivated.connect(self._clicked)
        session.events.dataset.connect(self.refresh)
        session.events.input.connect(self._mark_open)

    @staticmethod
    def key(entry: SeriesEntry) -> str:
        return entry.series_uid or str(entry.path)

    def refresh(self) -> None:
        """Rebuild the tree from the session's dataset."""
        self.clear()
        self.items = {}
        dataset = self.session.dataset
        if dataset is None:
            return
        patients: dict[str, QtWidgets.QTreeWidgetItem] = {}
        studies: dict[tuple[str, str], QtWidgets.QTreeWidgetItem] = {}
        grey = self.palette().color(QtGui.QPalette.ColorGroup.Disabled, QtGui.QPalette.ColorRole.Text)
        for entry in dataset.entries:
            patient = patients.get(entry.patient)
            if patient is None:
                patient = patients[entry.patient] = QtWidgets.QTreeWidgetItem(self, [entry.patient])
                patient.setToolTip(0, entry.patient)
                patient.setFlags(QtCore.Qt.ItemFlag.ItemIsEnabled)
            study = studies.get((entry.patient, entry.study))
            if study is None:
                study = studies[(entry.patient, entry.study)] = QtWidgets.QTreeWidgetItem(patient, [entry.study])
                study.setToolTip(0, entry.study)
                study.setFlags(QtCore.Qt.ItemFlag.ItemIsEnabled)
            cells = [
                shown_name(entry),
                entry.components,
                str(entry.n_timepoints),
                str(entry.n_slices),
                f"{entry.size_bytes / 2**20:.1f}",
                "" if entry.usable else entry.reason,
            ]
            item = QtWidgets.QTreeWidgetItem(study, cells)
            item.setData(0, _ENTRY, entry)
            uid = f"\nseries UID {entry.series_uid}" if entry.series_uid else f"\n{entry.path}"
            tip = f"{entry.description} ({entry.components}){uid}\n{entry.reason}"
            tip += "\nclick to open" if entry.usable else "\nnot an MRF series that can be reconstructed"
            for col in range(len(COLUMNS)):
                item.setToolTip(col, tip)
            if not entry.usable:
                for col in range(len(COLUMNS)):
                    item.setForeground(col, grey)
                item.setFlags(QtCore.Qt.ItemFlag.ItemIsEnabled)  # visible and explained, not selectable
            self.items[self.key(entry)] = item
        self.expandAll()
        self._mark_open()

    def _clicked(self, item: QtWidgets.QTreeWidgetItem, _column: int = 0) -> None:
        entry = item.data(0, _ENTRY)
        if entry is None:
            return
        if not entry.usable:
            self.message.emit(f"'{entry.description}' cannot be opened: {entry.reason}")
            return
        if entry != self.session.entry:
            self.open_requested.emit(entry)

    def _mark_open(self) -> None:
        current = self.session.entry
        for key, item in self.items.items():
            font = item.font(0)
            font.setBold(current is not None and key == self.key(current))
            for col in range(len(COLUMNS)):
                item.setFont(col, font)
