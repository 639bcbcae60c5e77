"""Placing the NIST/ISMRM sphere template on an image: geometry, masks and an automatic fit.

The template is the sphere layout of :mod:`mrfviewer.phantoms` (schematic: 10
spheres on a 50 mm circle, 4 inside, 20 mm diameter) under a similarity
transform: centre (pixels), rotation (degrees) and scale (pixels per mm). The
fit maximises the PD inside the sphere disks (a grid search over rotation and
scale from the image centroid, then Nelder-Mead). The layout is symmetric under
a 180 deg rotation, so sphere identity needs the relaxation values: with a T2
map, the orientation whose sphere T2 best matches the reference is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize

from mrfviewer.phantoms import NIST_T2_ARRAY, nist_sphere_centres_mm

SPHERE_RADIUS_MM = 10.0
#: Statistics use the inner part of each disk, away from partial-volume edges.
INNER_FRACTION = 0.7


@dataclass
class SphereTemplate:
    """Similarity transform of the sphere layout onto an image (x = column, y = row)."""

    cx: float
    cy: float
    angle_deg: float
    px_per_mm: float

    def centres(self) -> np.ndarray:
        """(14, 2) sphere centres (x, y) in pixel coordinates."""
        a = np.deg2rad(self.angle_deg)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        return nist_sphere_centres_mm() @ rot.T * self.px_per_mm + [self.cx, self.cy]

    @property
    def radius_px(self) -> float:
        return SPHERE_RADIUS_MM * self.px_per_mm

    def masks(self, shape: tuple[int, int], fraction: float = INNER_FRACTION) -> np.ndarray:
        """(14, Y, X) masks of the inner disks (pixel centres within ``fraction`` of the radius)."""
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
        c = self.centres()
        r = fraction * self.radius_px
        return (xx[None] - c[:, 0, None, None]) ** 2 + (yy[None] - c[:, 1, None, None]) ** 2 <= r * r


def _score(params: np.ndarray, smooth: np.ndarray) -> float:
    template = SphereTemplate(*params)
    centres = template.centres()
    # Sample the smoothed foreground on rings inside each disk (bilinear, cheap).
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    points = []
    for frac in (0.0, 0.4, 0.75):
        r = frac * template.radius_px
        points.append(centres[:, None, :] + r * np.stack([np.cos(angles), np.sin(angles)], axis=1)[None])
    pts = np.concatenate(points, axis=1).reshape(-1, 2)
    values = ndimage.map_coordinates(smooth, [pts[:, 1] - 0.5, pts[:, 0] - 0.5], order=1, mode="constant")
    return -float(values.mean())


def fit_nist_template(
    pd: np.ndarray, pixel_spacing_mm: float, t2: np.ndarray | None = None, reference_t2: list[float] | None = None
) -> SphereTemplate:
    """Fit the template to a PD map (2-D); ``t2`` (ms) resolves the 180 deg ambiguity."""
    image = np.nan_to_num(np.asarray(pd, dtype=np.float64))
    top = np.percentile(image[image > 0], 99) if np.any(image > 0) else 1.0
    foreground = (image > 0.3 * top).astype(np.float64)
    smooth = ndimage.gaussian_filter(foreground, sigma=1.0)
    cy, cx = ndimage.center_of_mass(foreground) if foreground.any() else (image.shape[0] / 2, image.shape[1] / 2)
    cx, cy = cx + 0.5, cy + 0.5
    base = 1.0 / pixel_spacing_mm
    best = None
    for scale in base * np.array([0.9, 0.95, 1.0, 1.05, 1.1]):
        for angle in np.arange(0, 180, 3.0):
            s = _score(np.array([cx, cy, angle, scale]), smooth)
            if best is None or s < best[0]:
                best = (s, np.array([cx, cy, angle, scale]))
    assert best is not None  # the loops above always run
    result = optimize.minimize(
        _score, best[1], args=(smooth,), method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-6, "maxiter": 2000}
    )
    fitted = SphereTemplate(*result.x)
    if t2 is not None:
        flipped = SphereTemplate(fitted.cx, fitted.cy, fitted.angle_deg + 180.0, fitted.px_per_mm)
        ref = np.asarray(reference_t2 or NIST_T2_ARRAY["T2"])
        fitted = min((fitted, flipped), key=lambda t: _identity_error(t, t2, ref))
    fitted.angle_deg %= 360.0
    return fitted


def _identity_error(template: SphereTemplate, t2: np.ndarray, reference: np.ndarray) -> float:
    means = sphere_means(template, t2)
    ok = np.isfinite(means) & (means > 0)
    return float(np.mean(np.abs(np.log(means[ok] / reference[ok])))) if ok.any() else np.inf


def sphere_means(template: SphereTemplate, values: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (2-D) inside each sphere's inner disk (NaN where empty)."""
    masks = template.masks(values.shape)
    out = np.full(len(masks), np.nan)
    for i, m in enumerate(masks):
        v = values[m]
        v = v[np.isfinite(v)]
        if v.size:
            out[i] = v.mean()
    return out
