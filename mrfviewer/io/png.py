"""PNG export of maps: relaxometry colour maps, a colour bar with units, orientation letters, invalid pixels distinct.

The conventions are the viewer's (:mod:`mrfviewer.colormaps`): the same colour tables,
automatic windows from tissue percentiles, titles and orientation letters.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.colors import ListedColormap, Normalize  # noqa: E402

from mrfviewer.colormaps import (  # noqa: E402
    array_directions,
    colormap_for,
    default_window,
    edge_labels,
    map_title,
    relaxometry_table,
    tissue_mask,
    to_rgba,
)
from mrfviewer.io.atomic import atomic_write, check_writable_target  # noqa: E402
from mrfviewer.maps import FILE_STEMS, ParameterMaps  # noqa: E402
from mrfviewer.series import Geometry  # noqa: E402

_EDGES = {"left": (0.01, 0.5, "left", "center"), "right": (0.99, 0.5, "right", "center")}
_EDGES |= {"top": (0.5, 0.99, "center", "top"), "bottom": (0.5, 0.01, "center", "bottom")}


def map_png(
    values: np.ndarray,
    name: str,
    unit: str,
    path: str | Path,
    window: tuple[float, float] | None = None,
    title: str = "",
    overwrite: bool = False,
    orientation: dict[str, str] | None = None,
    tissue: np.ndarray | None = None,
) -> Path:
    """One PNG of a (Z, Y, X) map: slices side by side, colour bar in ``unit``.

    ``orientation`` gives the letters at the image edges (``left``, ``right``, ``top``,
    ``bottom``; see :func:`mrfviewer.colormaps.edge_labels`); ``tissue`` the voxels the
    automatic window is taken from (default: every finite voxel).
    """
    lower, upper = window or default_window(name, values, tissue)
    table = relaxometry_table(name, lower, upper)
    n_slices = values.shape[0]
    fig, axes = plt.subplots(1, n_slices, figsize=(3.6 * n_slices + 1.2, 3.8), squeeze=False)
    for z, ax in enumerate(axes[0]):
        ax.imshow(to_rgba(values[z], table, lower, upper), interpolation="nearest")
        ax.set_axis_off()
        if n_slices > 1:
            ax.set_title(f"slice {z + 1}", fontsize=9)
        for edge, letter in (orientation or {}).items():
            x, y, ha, va = _EDGES[edge]
            # White with a black outline: readable on the brightest and the darkest colours.
            ax.text(
                x,
                y,
                letter,
                transform=ax.transAxes,
                ha=ha,
                va=va,
                color="white",
                fontsize=9,
                weight="bold",
                path_effects=[patheffects.withStroke(linewidth=2.5, foreground="black")],
            )
    bar = plt.cm.ScalarMappable(norm=Normalize(lower, upper), cmap=ListedColormap(table[1:]))
    label = map_title(name, unit)
    fig.colorbar(bar, ax=axes[0].tolist(), label=label, shrink=0.85)
    fig.suptitle(title or label, fontsize=10)
    fig.text(0.01, 0.01, f"invalid pixels in the darkest colour ({colormap_for(name)})", fontsize=7, color="0.35")
    written = atomic_write(path, lambda p: fig.savefig(p, dpi=100, format="png"), overwrite=overwrite)
    plt.close(fig)
    return written


def orientation_of(geometry: Geometry, n_slices: int) -> dict[str, str]:
    """The edge letters of the acquired plane of a series with this geometry."""
    positions = geometry.slice_positions(n_slices)
    step = positions[1] - positions[0] if n_slices > 1 else None
    return edge_labels(array_directions(tuple(geometry.orientation), step))


def export_png(maps: ParameterMaps, folder: str | Path, overwrite: bool = False) -> list[Path]:
    """``<stem>.png`` per map in ``folder``: titled ``T1 (ms), DM``, with orientation letters.

    Windows come from tissue: voxels clipped at a range bound and fluid left out.
    """
    folder = Path(folder)
    paths = {name: folder / f"{FILE_STEMS.get(name, name + 'map')}.png" for name in maps.values}
    for p in paths.values():
        check_writable_target(p, overwrite)
    n_slices = next(iter(maps.values.values())).shape[0]
    orientation = orientation_of(maps.geometry, n_slices)
    tissue = tissue_mask(maps.values, maps.at_range_limit())
    return [
        map_png(
            values,
            name,
            maps.unit(name),
            paths[name],
            title=map_title(name, maps.unit(name), maps.method),
            overwrite=overwrite,
            orientation=orientation,
            tissue=tissue,
        )
        for name, values in maps.values.items()
    ]
