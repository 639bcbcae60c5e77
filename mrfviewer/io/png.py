"""PNG export of maps with relaxometry colour maps, a colour bar with units, invalid pixels distinct."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap, Normalize  # noqa: E402

from mrfviewer.colormaps import colormap_for, default_window, relaxometry_table, to_rgba  # noqa: E402
from mrfviewer.io.atomic import atomic_write, check_writable_target  # noqa: E402
from mrfviewer.maps import FILE_STEMS, ParameterMaps  # noqa: E402


def map_png(
    values: np.ndarray,
    name: str,
    unit: str,
    path: str | Path,
    window: tuple[float, float] | None = None,
    title: str = "",
    overwrite: bool = False,
) -> Path:
    """One PNG of a (Z, Y, X) map: slices side by side, colour bar in ``unit``."""
    lower, upper = window or default_window(name, values)
    table = relaxometry_table(name, lower, upper)
    n_slices = values.shape[0]
    fig, axes = plt.subplots(1, n_slices, figsize=(3.6 * n_slices + 1.2, 3.8), squeeze=False)
    for z, ax in enumerate(axes[0]):
        ax.imshow(to_rgba(values[z], table, lower, upper), interpolation="nearest")
        ax.set_axis_off()
        if n_slices > 1:
            ax.set_title(f"slice {z + 1}", fontsize=9)
    bar = plt.cm.ScalarMappable(norm=Normalize(lower, upper), cmap=ListedColormap(table[1:]))
    label = f"{name} ({unit})" if unit not in ("1", "") else name
    fig.colorbar(bar, ax=axes[0].tolist(), label=label, shrink=0.85)
    fig.suptitle(title or f"{label}; invalid pixels in the darkest colour ({colormap_for(name)})", fontsize=9)
    written = atomic_write(path, lambda p: fig.savefig(p, dpi=100, format="png"), overwrite=overwrite)
    plt.close(fig)
    return written


def export_png(maps: ParameterMaps, folder: str | Path, overwrite: bool = False) -> list[Path]:
    """``<stem>.png`` per map in ``folder``."""
    folder = Path(folder)
    paths = {name: folder / f"{FILE_STEMS.get(name, name + 'map')}.png" for name in maps.values}
    for p in paths.values():
        check_writable_target(p, overwrite)
    return [
        map_png(
            values,
            name,
            maps.unit(name),
            paths[name],
            title=f"{name} [{maps.unit(name)}], {maps.method.upper()}",
            overwrite=overwrite,
        )
        for name, values in maps.values.items()
    ]
