"""Layering: the core never imports Qt, and every front-end reaches the science through the pipeline.

The front-ends (the CLI's reconstruction commands, batch, the demo, the data evaluation and
the GUI) may not import the modules the pipeline is made of: what they do with a series
(open it, find its labels, choose and build an estimator, run it, export) happens in
:mod:`mrfviewer.pipeline`, once. The GUI sees only the pipeline and the session model.
"""

import ast
import subprocess
import sys
from pathlib import Path

import mrfviewer

ROOT = Path(mrfviewer.__file__).parent

#: The modules behind the pipeline: no front-end imports them.
ROAD = {
    "mrfviewer.reconstruction",
    "mrfviewer.matching",
    "mrfviewer.volume",
    "mrfviewer.cohort",
    "mrfviewer.roi",
    "mrfviewer.dictionary",
    "mrfviewer.nn.inference",
    "mrfviewer.nn.model_io",
    "mrfviewer.io.dicom_read",
    "mrfviewer.io.export",
    "mrfviewer.io.labels",
    "mrfviewer.io.seg",
    "mrfviewer.io.parametric_map",
    "mrfviewer.io.png",
    "mrfviewer.io.series_h5",
}
#: What the GUI may import besides Qt, pyqtgraph and its own modules.
GUI_ALLOWED = {
    "mrfviewer",
    "mrfviewer.pipeline",
    "mrfviewer.session",
    "mrfviewer.engine",
    "mrfviewer.errors",
    "mrfviewer.settings",
    "mrfviewer.colormaps",
    "mrfviewer.resources",
    "mrfviewer.io.atomic",
    "mrfviewer.data_evaluation",
    "mrfviewer.demo",
}
#: The CLI's commands of the reconstruction road (the others run their own science jobs).
CLI_ROAD_COMMANDS = ("cmd_reconstruct", "cmd_batch", "_evaluate_data", "cmd_demo", "cmd_gui")


def core_modules() -> list[str]:
    """Every module of the package outside ``mrfviewer/gui``."""
    return sorted(
        "mrfviewer." + ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in ROOT.rglob("*.py")
        if p.name != "__init__.py" and "gui" not in p.relative_to(ROOT).parts
    )


def imports(node: ast.AST, module: str) -> set[str]:
    """Every mrfviewer module imported anywhere under ``node`` (function-level imports too)."""
    found = set()
    for item in ast.walk(node):
        if isinstance(item, ast.Import):
            found |= {alias.name for alias in item.names}
        elif isinstance(item, ast.ImportFrom):
            assert item.level == 0, f"{module}: relative imports would hide what is imported"
            base = item.module or ""
            found.add(base)
            # "from mrfviewer import pipeline" imports the module mrfviewer.pipeline
            found |= {f"{base}.{alias.name}" for alias in item.names if (ROOT.parent / base.replace(".", "/")).is_dir()}
    return {m for m in found if m == "mrfviewer" or m.startswith("mrfviewer.")}


def _modules_that_exist(names: set[str]) -> set[str]:
    out = set()
    for name in names:
        path = ROOT.parent / name.replace(".", "/")
        if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
            out.add(name)
    return out


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


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


def test_batch_demo_and_data_evaluation_go_through_the_pipeline():
    for name in ("batch", "demo", "data_evaluation"):
        used = _modules_that_exist(imports(_tree(ROOT / f"{name}.py"), f"mrfviewer.{name}"))
        assert "mrfviewer.pipeline" in used, name
        assert not used & ROAD, (name, sorted(used & ROAD))


def test_the_cli_reconstruction_commands_go_through_the_pipeline():
    tree = _tree(ROOT / "cli.py")
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    assert set(CLI_ROAD_COMMANDS) <= set(functions)
    module_level = {n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in [*module_level, *(functions[name] for name in CLI_ROAD_COMMANDS)]:
        used = _modules_that_exist(imports(node, "mrfviewer.cli"))
        assert not used & ROAD, (getattr(node, "name", "module level"), sorted(used & ROAD))
    assert "mrfviewer.pipeline" in imports(functions["cmd_reconstruct"], "mrfviewer.cli")


def test_the_gui_sees_only_the_pipeline_and_the_session():
    for path in sorted((ROOT / "gui").glob("*.py")):
        module = "mrfviewer.gui." + path.stem
        used = _modules_that_exist(imports(_tree(path), module))
        foreign = {m for m in used if not m.startswith("mrfviewer.gui")} - GUI_ALLOWED
        assert not foreign, (path.name, sorted(foreign))
