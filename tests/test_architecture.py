"""The scientific core never imports Qt (napari-style layering, checked in a clean interpreter)."""

import subprocess
import sys

CORE = [
    "mrfviewer.cli",
    "mrfviewer.demo",
    "mrfviewer.dictionary",
    "mrfviewer.engine",
    "mrfviewer.grid",
    "mrfviewer.io.atomic",
    "mrfviewer.io.export",
    "mrfviewer.io.series_h5",
    "mrfviewer.maps",
    "mrfviewer.matching",
    "mrfviewer.phantoms",
    "mrfviewer.rank",
    "mrfviewer.reconstruction",
    "mrfviewer.roi",
    "mrfviewer.sampling",
    "mrfviewer.sequence",
    "mrfviewer.series",
    "mrfviewer.simulation",
    "mrfviewer.synthesis",
]


def test_core_imports_no_qt():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph')]\n"
        + "print(','.join(bad))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ""


def test_every_core_module_is_listed():
    from pathlib import Path

    import mrfviewer

    root = Path(mrfviewer.__file__).parent
    modules = {
        "mrfviewer." + ".".join(p.relative_to(root).with_suffix("").parts)
        for p in root.rglob("*.py")
        if p.name != "__init__.py" and "gui" not in p.parts
    }
    missing = modules - set(CORE) - {"mrfviewer.errors", "mrfviewer.resources"}
    assert not missing, f"add to CORE: {sorted(missing)}"
