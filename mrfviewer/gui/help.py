"""Help: the keyboard shortcuts, the user guide and the research-use notice.

The user guide is the README's section on the desktop application (between the
``<!-- gui-guide -->`` markers), bundled as ``assets/help/user_guide.md`` so that an
installed or frozen app has it; ``python -m mrfviewer.gui.help README.md`` rebuilds the
page, and a test keeps the two equal.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6 import QtGui, QtWidgets

from mrfviewer import __version__
from mrfviewer.resources import assets_dir

GUIDE_START, GUIDE_END = "<!-- gui-guide -->", "<!-- /gui-guide -->"
RESEARCH_NOTICE = (
    "mrfviewer is research software. It is not a medical device and has not been cleared or "
    "approved for clinical use: do not use its maps, statistics or reports to diagnose, treat "
    "or make any decision about a patient. Quantitative values depend on the sequence, the "
    "dictionary or network and the scanner; check them against phantoms before you rely on them."
)
#: Keys of the map view (not menu actions: they act on the focused map).
MAP_KEYS = (
    ("Down, Right, Page Down", "next slice"),
    ("Up, Left, Page Up", "previous slice"),
    ("Left, Right (raw images)", "previous / next time point"),
    ("Home, double click", "reset the view (fit the maps to their cells)"),
    ("Wheel", "zoom at the pointer"),
    ("Drag", "pan; with a drawing tool chosen: draw an ROI"),
    ("Right click", "context menu: reset view, copy value, save view"),
    ("Click", "select a voxel: crosshair and fingerprint"),
    ("Delete", "delete the selected ROI"),
    ("Esc (on a map)", "stop drawing (elsewhere: cancel the running job)"),
)


def guide_path() -> Path:
    return assets_dir() / "help" / "user_guide.md"


def guide_from_readme(readme: str) -> str:
    """The user guide: the README text between the guide markers, with a title."""
    start, end = readme.find(GUIDE_START), readme.find(GUIDE_END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {GUIDE_START} ... {GUIDE_END} section")
    body = readme[start + len(GUIDE_START) : end].strip()
    return f"# mrfviewer: the desktop application\n\n{body}\n"


def shortcut_rows(window: QtWidgets.QMainWindow) -> list[tuple[str, str]]:
    """(keys, what they do) of every menu action with a shortcut, then the map view's keys."""
    rows = []
    for menu in window.menuBar().findChildren(QtWidgets.QMenu):
        for action in menu.actions():
            keys = action.shortcut().toString(QtGui.QKeySequence.SequenceFormat.NativeText)
            if keys and not action.isSeparator():
                rows.append((keys, f"{menu.title().replace('&', '')}: {action.text().replace('&', '')}"))
    return list(dict.fromkeys(rows)) + list(MAP_KEYS)


class ShortcutsDialog(QtWidgets.QDialog):
    """A table of the keyboard and mouse shortcuts."""

    def __init__(self, window: QtWidgets.QMainWindow):
        super().__init__(window)
        self.setWindowTitle("Keyboard and mouse shortcuts")
        rows = shortcut_rows(window)
        table = QtWidgets.QTableWidget(len(rows), 2)
        table.setHorizontalHeaderLabels(["keys", "action"])
        table.verticalHeader().hide()
        table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        for i, (keys, text) in enumerate(rows):
            table.setItem(i, 0, QtWidgets.QTableWidgetItem(keys))
            table.setItem(i, 1, QtWidgets.QTableWidgetItem(text))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        self.table = table
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.resize(620, 560)


class GuideDialog(QtWidgets.QDialog):
    """The bundled user guide."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("mrfviewer user guide")
        self.browser = QtWidgets.QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        path = guide_path()
        text = path.read_text(encoding="utf-8") if path.is_file() else f"The user guide is missing ({path})."
        self.browser.setMarkdown(text + f"\n\n---\n\n*{RESEARCH_NOTICE}*\n")
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        self.resize(760, 640)


def about_text(versions: str) -> str:
    return (
        f"<b>mrfviewer {__version__}</b><br>Quantitative MR fingerprinting of the knee (T1, T2, T1rho).<br>"
        f"{versions}<br><br><i>{RESEARCH_NOTICE}</i>"
    )


def main(argv: list[str] | None = None) -> int:
    """Rebuild the bundled user guide from a README: ``python -m mrfviewer.gui.help README.md``."""
    args = sys.argv[1:] if argv is None else argv
    readme = Path(args[0] if args else "README.md")
    target = guide_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(guide_from_readme(readme.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
