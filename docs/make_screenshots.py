"""The README's screenshots of the viewer, at 1280 x 720 and 1920 x 1080 (offscreen).

    python docs/make_screenshots.py [--sizes 1280x720 1920x1080] [--output docs]

Uses the demo data (generated on first use) and the default dictionary and network; the 3D
series of the orthogonal views is a synthetic knee of 20 slices in a coronal geometry.
Results are computed once and shown in a window of each size; ROIs are drawn and pixels
clicked through the window as a user would (mouse events on the map).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402

from mrfviewer import pipeline  # noqa: E402
from mrfviewer.demo import demo_dir, ensure_demo_data  # noqa: E402
from mrfviewer.gui.main_window import MainWindow  # noqa: E402
from mrfviewer.phantoms import knee_phantom  # noqa: E402
from mrfviewer.resources import default_sequence_path  # noqa: E402
from mrfviewer.sequence import load_sequence  # noqa: E402
from mrfviewer.series import Geometry  # noqa: E402
from mrfviewer.synthesis import synthesize_series  # noqa: E402

CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def pump(app: QtWidgets.QApplication, ms: float = 300) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def send(widget: QtWidgets.QWidget, kind: QtCore.QEvent.Type, pos: QtCore.QPoint, buttons) -> None:  # noqa: ANN001
    button = (
        QtCore.Qt.MouseButton.LeftButton if kind != QtCore.QEvent.Type.MouseMove else QtCore.Qt.MouseButton.NoButton
    )
    event = QtGui.QMouseEvent(
        kind,
        QtCore.QPointF(pos),
        QtCore.QPointF(widget.mapToGlobal(pos)),
        button,
        buttons,
        QtCore.Qt.KeyboardModifier.NoModifier,
    )
    QtWidgets.QApplication.sendEvent(widget, event)
    QtWidgets.QApplication.processEvents()
    time.sleep(0.015)


def at(window: MainWindow, key: str, x: float, y: float) -> QtCore.QPoint:
    view = window.map_view
    panel = view.panel(key)
    return view.graphics.mapFromScene(panel.view.mapViewToScene(QtCore.QPointF(x, y)))


def click(window: MainWindow, key: str, x: float, y: float) -> None:
    viewport = window.map_view.graphics.viewport()
    pos = at(window, key, x, y)
    left = QtCore.Qt.MouseButton.LeftButton
    send(viewport, QtCore.QEvent.Type.MouseMove, pos, QtCore.Qt.MouseButton.NoButton)
    send(viewport, QtCore.QEvent.Type.MouseButtonPress, pos, left)
    send(viewport, QtCore.QEvent.Type.MouseButtonRelease, pos, QtCore.Qt.MouseButton.NoButton)


def draw(window: MainWindow, shape: str, key: str, corners: tuple[float, float, float, float]) -> None:
    """Choose a drawing tool and drag a shape on a panel."""
    window.roi_panel.tools[shape].click()
    viewport = window.map_view.graphics.viewport()
    x0, y0, x1, y1 = corners
    left = QtCore.Qt.MouseButton.LeftButton
    start = at(window, key, x0, y0)
    send(viewport, QtCore.QEvent.Type.MouseMove, start, QtCore.Qt.MouseButton.NoButton)
    send(viewport, QtCore.QEvent.Type.MouseButtonPress, start, left)
    for f in np.linspace(0.1, 1.0, 8):
        send(viewport, QtCore.QEvent.Type.MouseMove, at(window, key, x0 + f * (x1 - x0), y0 + f * (y1 - y0)), left)
    send(viewport, QtCore.QEvent.Type.MouseButtonRelease, at(window, key, x1, y1), QtCore.Qt.MouseButton.NoButton)


def inside(region: np.ndarray, h: int, w: int) -> tuple[int, int]:
    """The top-left corner of the first h x w box lying wholly in ``region`` (scanning rows from the middle)."""
    rows = sorted(range(region.shape[0] - h), key=lambda y: abs(y - region.shape[0] // 2))
    for y in rows:
        for x in range(region.shape[1] - w):
            if region[y : y + h, x : x + w].all():
                return y, x
    raise ValueError("no such box")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=["1280x720", "1920x1080"])
    parser.add_argument("--output", default=str(Path(__file__).parent))
    args = parser.parse_args(argv)
    out = Path(args.output)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    ensure_demo_data()
    dataset = pipeline.list_series(demo_dir())
    entries = {("nist" if "NIST" in e.description else "knee"): e for e in dataset.usable()}
    cache = pipeline.EstimatorCache()
    inputs = {name: dataset.open(entry, in_memory=True) for name, entry in entries.items()}
    print("reconstructing the demo series...", flush=True)
    results = {
        (name, method): pipeline.reconstruct_input(inputs[name], pipeline.EstimatorChoice(method), cache=cache)
        for name in inputs
        for method in ("dm", "nn")
    }
    print("synthesizing and reconstructing the 3D knee...", flush=True)
    sequence = load_sequence(default_sequence_path())
    series = synthesize_series(knee_phantom((80, 80), n_slices=20), sequence, snr=50, seed=3)
    series.geometry = Geometry(pixel_spacing_mm=(2.0, 2.0), slice_thickness_mm=3.0, orientation=CORONAL)
    volume = pipeline.input_from_series(series)
    volume_dm = pipeline.reconstruct_input(volume, pipeline.EstimatorChoice("dm"), cache=cache)

    scratch = tempfile.mkdtemp(prefix="mrfviewer-screenshots-")
    for size in args.sizes:
        width, height = (int(v) for v in size.split("x"))
        # Window state of these runs only, in a temporary folder: QSettings writes it again when it is
        # destroyed, so a file in docs/ came back after being removed.
        settings = QtCore.QSettings(str(Path(scratch) / "screenshots.ini"), QtCore.QSettings.Format.IniFormat)
        settings.clear()
        window = MainWindow(settings)
        window.resize(width, height)
        window.show()
        session = window.session
        session.set_dataset(dataset)
        window.path = demo_dir()

        def show(name: str, methods: tuple[str, ...], session=session) -> None:  # noqa: ANN001
            session.open(inputs[name])
            for method in methods:
                session.add_result(*results[(name, method)])
            pump(app, 500)
            while session.label_statistics_pending():
                pump(app, 100)

        # 1. The maps of one method: DM, two drawn ROIs, a clicked cartilage pixel.
        show("knee", ("nn", "dm"))
        window.layout_box.setCurrentIndex(0)
        pump(app)
        y0, x0 = inside(session.labels.values[0] == 5, 12, 9)  # a box of muscle
        draw(window, "rectangle", "T2", (x0, y0, x0 + 9, y0 + 12))
        draw(window, "ellipse", "T1rho", (54, 98, 76, 114))  # tibial marrow
        cartilage = np.argwhere(session.labels.values[0] == 8)  # the lowest voxel of the medial femoral cartilage
        y, x = cartilage[np.argmax(cartilage[:, 0])]
        click(window, "T1", x + 0.5, y + 0.5)
        pump(app, 800)
        window.grab().save(str(out / f"viewer_single_{size}.png"))
        # 2. DM | NN | NN - DM of T2 with the Bland-Altman plot over the labels and ROIs.
        window.param_box.setCurrentIndex(window.param_box.findData("T2"))
        window.layout_box.setCurrentIndex(1)
        pump(app, 800)
        window.grab().save(str(out / f"viewer_compare_{size}.png"))
        # 3. Orthogonal views of the 3D knee.
        session.open(volume)
        session.add_result(*volume_dm)
        window.param_box.setCurrentIndex(window.param_box.findData("T2"))
        window.layout_box.setCurrentIndex(2)
        pump(app, 500)
        z, y, x = 10, 34, 22
        window.show_pixel(z, y, x)
        pump(app, 800)
        window.grab().save(str(out / f"viewer_ortho_{size}.png"))
        # 4. The NIST phantom: the template fitted to the PD map, and its table.
        window.layout_box.setCurrentIndex(0)
        show("nist", ("dm",))
        window.roi_panel.fit_button.click()
        while window.runner.busy:
            pump(app, 100)
        pump(app, 500)
        while session.label_statistics_pending():
            pump(app, 100)
        cx, cy = session.template.centres()[5]  # sphere 6
        click(window, "T2", float(cx), float(cy))
        pump(app, 800)
        window.grab().save(str(out / f"viewer_nist_{size}.png"))
        window.close()
        print(f"wrote the {size} screenshots to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
