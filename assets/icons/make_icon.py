"""Draw the application icon (assets/icons/mrfviewer.png, 256 px): a fingerprint curve on a T1 map tile.

Run from the repository top: python assets/icons/make_icon.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from mrfviewer.colormaps import base_table  # noqa: E402


def main() -> None:
    fig = plt.figure(figsize=(2.56, 2.56), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    yy, xx = np.mgrid[0:1:128j, 0:1:128j]
    tile = np.exp(-((xx - 0.35) ** 2 + (yy - 0.6) ** 2) / 0.18) * 0.8 + 0.1 * yy
    image = ax.imshow(tile, extent=(0.04, 0.96, 0.04, 0.96), cmap=ListedColormap(base_table("lipari")), origin="lower")
    clip = FancyBboxPatch((0.04, 0.04), 0.92, 0.92, boxstyle="round,pad=0,rounding_size=0.16", transform=ax.transData)
    image.set_clip_path(clip)
    t = np.linspace(0, 1, 400)
    signal = 0.5 + 0.28 * np.exp(-3 * t) * np.cos(2 * np.pi * 5 * t) * (1 - 0.5 * t) + 0.12 * (t - 0.5)
    ax.plot(0.1 + 0.8 * t, signal, color="white", linewidth=7, solid_capstyle="round")
    ax.plot(0.1 + 0.8 * t, signal, color="#1b1b3a", linewidth=3, solid_capstyle="round")
    out = Path(__file__).with_name("mrfviewer.png")
    fig.savefig(out, transparent=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
