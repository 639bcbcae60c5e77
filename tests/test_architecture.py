"""The scientific core never imports Qt (napari-style layering, checked in a clean interpreter)."""

import subprocess
import sys
from pathlib import Path

import mrfviewer


def core_modules() -> list[str]:
    """Every module of the package outside ``mrfviewer/gui``."""
    root = Path(mrfviewer.__file__).parent
    return sorted(
        "mrfviewer." + ".".join(p.relative_to(root).with_suffix("").parts)
        for p in root.rglob("*.py")
        if p.name != "__init__.py" and "gui" not in p.relative_to(root).parts
    )


def test_core_imports_no_qt():
    modules = core_modules()
    assert "mrfviewer.simulation" in modules and "mrfviewer.io.dicom_read" in modules
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph')]\n"
        + "print(','.join(bad))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ""
