"""Pieces of the written reports: CSV and markdown tables, figures written atomically,
and the DM-versus-NN agreement figures shared by the simulated and the measured-data reports."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mrfviewer.io.atomic import atomic_write  # noqa: E402
from mrfviewer.metrics import BlandAltman  # noqa: E402


def csv_text(rows: list[dict]) -> str:
    """Rows as CSV (the first row's keys are the columns; floats to 6 significant digits)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buffer.getvalue()


def md_table(rows: list[dict], columns: list[str]) -> str:
    """A markdown table of ``columns`` (floats to 3 significant digits; missing cells empty)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [f"{r[c]:.3g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Write ``fig`` as PNG atomically and release it."""
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"), overwrite=True)
    plt.close(fig)


def bland_altman_figure(
    pairs: dict[str, tuple[np.ndarray, np.ndarray, BlandAltman]], path: Path, what: str, unit: str = "ms"
) -> None:
    """NN minus DM against their mean, one panel per parameter, with the bias and 95 % limits.

    ``pairs`` maps a parameter to (NN values, DM values, their Bland-Altman summary).
    """
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.4 * len(pairs), 3.6), squeeze=False, layout="constrained")
    for ax, (p, (a, b, ba)) in zip(axes[0], pairs.items(), strict=True):
        ax.scatter((a + b) / 2, a - b, s=6 if len(a) < 200 else 4, alpha=0.6 if len(a) < 200 else 0.4)
        for y, style in ((ba.mean_difference, "-"), (ba.lower, "--"), (ba.upper, "--")):
            ax.axhline(y, color="k", ls=style, lw=1)
        ax.set_xlabel(f"mean of NN and DM {p} ({unit})")
        ax.set_ylabel(f"NN - DM {p} ({unit})")
        ax.set_title(f"Bland-Altman, {p} ({what})", fontsize=9)
    save_figure(fig, path)


def difference_maps_figure(
    dm: dict[str, np.ndarray], nn: dict[str, np.ndarray], params: tuple[str, ...], path: Path
) -> None:
    """(NN - DM) / DM in percent for one slice of each parameter map."""
    fig, axes = plt.subplots(1, len(params), figsize=(4.4 * len(params), 4), squeeze=False, layout="constrained")
    for ax, p in zip(axes[0], params, strict=True):
        with np.errstate(divide="ignore", invalid="ignore"):
            diff = 100 * (nn[p] / dm[p] - 1)
        im = ax.imshow(diff, cmap="RdBu_r", vmin=-10, vmax=10)
        ax.set_title(f"(NN - DM) / DM, {p}")
        ax.axis("off")
        fig.colorbar(im, ax=ax, label="%", shrink=0.8)
    save_figure(fig, path)
