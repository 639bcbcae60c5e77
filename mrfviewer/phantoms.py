"""Digital phantoms with known T1, T2, T1rho and PD: ground truth for tests and the demo.

NIST/ISMRM system phantom (version 1), 3 T, 20 C: reference T1 and T2 of the
T1 (NiCl2) and T2 (MnCl2) sphere arrays from the phantom manual as tabulated
by Stupic et al., MRM 2021;86:1194. Each array has 14 spheres of 20 mm
diameter, 10 on a 50 mm radius circle and 4 inside. The slice passes through
the sphere centres. Schematic layout: spheres 1-10 clockwise from 12 o'clock
on the circle, 11-14 on a 25 mm radius inside; the fluid around the spheres is
not modelled (no signal). ASSUMPTION: T1rho is not published for these
spheres; we take T1rho = T2 (dilute paramagnetic solutions show little T1rho
dispersion at the few-hundred-Hz spin-lock amplitudes used in knee imaging).

Digital knee: a schematic coronal slice (not anatomically exact) with femur,
tibia and patella marrow, subcutaneous fat, muscle, synovial fluid, menisci and
five cartilage compartments. Values at 3 T (one per tissue):

* Cartilage T1 1200 ms (inversion recovery range 1100-1250 ms); regional T2
  medial femoral 36.3, medial tibial 33.2, lateral femoral 38.2, lateral tibial
  40.1 ms (PMC7016502); patellar T2 35 ms (ASSUMPTION, within 27-40 ms);
  T1rho 48 +/- 3 ms healthy (Wang & Regatte, Acad Radiol 2014), split by
  region 44-50 ms (ASSUMPTION).
* Meniscus T1 600 ms (PMC7016502), T2 11.4 ms, T1rho 14.7 ms (Rauscher et al.,
  Radiology 2008).
* Muscle T1 950 ms, T2 26.0 ms, T1rho 31.7 ms (lower-leg MRF, Sharafi et al.,
  MRM 2021).
* Marrow T1 380 ms, T2 55 ms; subcutaneous fat T1 370 ms, T2 80 ms (within the
  published 370-380 ms and 50-130 ms); T1rho 65 and 85 ms (ASSUMPTION).
* Synovial fluid T1 3000 ms, T2 500 ms, T1rho 550 ms (ASSUMPTION; outside a
  cartilage-focused dictionary, so it is matched to the grid edge).
* Relative PD: ASSUMPTION, plausible water content (fluid 1.0, fat 0.95,
  marrow 0.9, cartilage 0.8, muscle 0.75, meniscus 0.5).

Each tissue gets a mild smooth spatial variation (+/- 4 %, different per
parameter) so that values do not sit on a dictionary grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mrfviewer.errors import MRFError

PARAMETERS = ("T1", "T2", "T1rho", "PD")

# NIST/ISMRM system phantom v1, 3 T, 20 C (ms): T1 array (NiCl2) and T2 array (MnCl2).
NIST_T1_ARRAY = {
    "T1": [1989, 1454, 984.1, 706, 496.7, 351.5, 247.13, 175.3, 125.9, 89.0, 62.7, 44.53, 30.84, 21.719],
    "T2": [1465, 1076, 717.9, 510.1, 359.6, 255.5, 180.8, 127.3, 90.3, 64.3, 45.7, 31.86, 22.38, 15.83],
}
NIST_T2_ARRAY = {
    "T1": [2480, 2173, 1907, 1604, 1332, 1044, 801.7, 608.6, 458.4, 336.5, 244.2, 176.6, 126.9, 90.9],
    "T2": [581.3, 403.5, 278.1, 190.94, 133.27, 96.89, 64.07, 46.42, 31.97, 22.56, 15.813, 11.237, 7.911, 5.592],
}


@dataclass(frozen=True)
class Tissue:
    """Nominal values of one labelled tissue."""

    name: str
    t1_ms: float
    t2_ms: float
    t1rho_ms: float
    pd: float

    def value(self, param: str) -> float:
        """The nominal value of ``param``: T1, T2, T1rho (ms) or PD."""
        return {"T1": self.t1_ms, "T2": self.t2_ms, "T1rho": self.t1rho_ms, "PD": self.pd}[param]


KNEE_TISSUES: dict[int, Tissue] = {
    1: Tissue("femur marrow", 380, 55, 65, 0.9),
    2: Tissue("tibia marrow", 380, 55, 65, 0.9),
    3: Tissue("patella marrow", 380, 55, 65, 0.9),
    4: Tissue("subcutaneous fat", 370, 80, 85, 0.95),
    5: Tissue("muscle", 950, 26.0, 31.7, 0.75),
    6: Tissue("synovial fluid", 3000, 500, 550, 1.0),
    7: Tissue("meniscus", 600, 11.4, 14.7, 0.5),
    8: Tissue("medial femoral cartilage", 1200, 36.3, 47, 0.8),
    9: Tissue("lateral femoral cartilage", 1200, 38.2, 49, 0.8),
    10: Tissue("medial tibial cartilage", 1200, 33.2, 44, 0.8),
    11: Tissue("lateral tibial cartilage", 1200, 40.1, 50, 0.8),
    12: Tissue("patellar cartilage", 1200, 35.0, 46, 0.8),
}
CARTILAGE_LABELS = (8, 9, 10, 11, 12)
_KNEE_BY_NAME = {t.name: t for t in KNEE_TISSUES.values()}


def knee_tissue(name: str) -> Tissue | None:
    """The knee tissue called ``name`` (ROIs of any series named like ours), or None."""
    return _KNEE_BY_NAME.get(name)


@dataclass
class Phantom:
    """Ground-truth maps (Z, Y, X), a label map and the per-label nominal values."""

    name: str
    t1_ms: np.ndarray
    t2_ms: np.ndarray
    t1rho_ms: np.ndarray
    pd: np.ndarray
    labels: np.ndarray
    label_names: dict[int, str]
    pixel_spacing_mm: tuple[float, float]
    slice_thickness_mm: float
    nominal: dict[int, Tissue] = field(default_factory=dict)
    #: Relative transmit field B1+ per voxel (Z, Y, X); None: 1 everywhere.
    b1: np.ndarray | None = None
    #: Partial volume: the fraction of every label in every voxel, (max label + 1, Z, Y, X); None: one
    #: tissue per voxel. ``labels`` and the maps then hold the tissue with the largest fraction.
    fractions: np.ndarray | None = None
    #: Smooth multiplicative variation of T1, T2, T1rho and PD over the image (4, Z, Y, X), the same for
    #: every tissue: the values of tissue l in voxel v are ``nominal[l] * variation[:, v]``.
    variation: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.labels.shape

    def purity(self) -> np.ndarray:
        """The fraction of the dominant tissue in each voxel (1 without partial volume)."""
        if self.fractions is None:
            return np.ones(self.shape, dtype=np.float32)
        return self.fractions.max(axis=0)

    def maps(self) -> dict[str, np.ndarray]:
        return {"T1": self.t1_ms, "T2": self.t2_ms, "T1rho": self.t1rho_ms, "PD": self.pd}


def _check_shape(shape: tuple[int, int], n_slices: int) -> None:
    if len(shape) != 2 or min(shape) < 8 or max(shape) > 2048:
        raise MRFError(f"phantom image size must be two numbers between 8 and 2048, got {shape}")
    if not 1 <= n_slices <= 64:
        raise MRFError(f"phantom slices must be between 1 and 64, got {n_slices}")


def _smooth_field(yy: np.ndarray, xx: np.ndarray, phase: float) -> np.ndarray:
    """A smooth field in [-1, 1] varying over the image (a few low spatial frequencies)."""
    f = np.sin(2.1 * xx + 1.3 * yy + phase) + 0.6 * np.cos(1.7 * yy - 2.6 * xx + 2 * phase)
    return f / 1.6


def _paint(labels: np.ndarray, nominal: dict[int, Tissue], yy: np.ndarray, xx: np.ndarray, z: int) -> dict:
    maps = {p: np.zeros(labels.shape, dtype=np.float64) for p in PARAMETERS}
    for label, tissue in nominal.items():
        inside = labels == label
        if not inside.any():
            continue
        for i, (p, value) in enumerate(
            zip(PARAMETERS, (tissue.t1_ms, tissue.t2_ms, tissue.t1rho_ms, tissue.pd), strict=True)
        ):
            variation = 1 + 0.04 * _smooth_field(yy, xx, 1.1 * i + 0.7 * z)
            maps[p][inside] = value * variation[inside]
    # Keep the physical ordering T2 <= T1rho <= T1 after the variation.
    maps["T1rho"] = np.clip(maps["T1rho"], maps["T2"], None)
    return maps


def _stack(slices: list[dict], labels: list[np.ndarray]) -> tuple[dict, np.ndarray]:
    return {p: np.stack([s[p] for s in slices]) for p in PARAMETERS}, np.stack(labels).astype(np.int16)


def _knee_labels(xx: np.ndarray, yy: np.ndarray, s: float) -> np.ndarray:
    """The label of every point (image coordinates in [-1, 1], y down) of a coronal knee slice.

    Condyles are discs (the medial one at image left); the tibial plateaus are shallow
    cups under them, so the tibial cartilage plates curve with the femoral ones; menisci
    are wedges at the outer margins; the patella lies above the femoral shaft.
    """
    lab = np.zeros(xx.shape, dtype=np.int16)
    skin = (xx / 0.86) ** 2 + (yy / 1.25) ** 2 <= 1
    inner = (xx / 0.79) ** 2 + (yy / 1.18) ** 2 <= 1
    lab[skin] = 4
    lab[inner] = 5
    # Synovial fluid: gutters beside the condyles and a suprapatellar pouch.
    for cx in (-0.6, 0.6):
        lab[((xx - cx) / 0.06) ** 2 + ((yy + 0.12) / 0.14) ** 2 <= 1] = 6
    lab[(np.abs(xx) < 0.2) & (yy > -0.67) & (yy < -0.62)] = 6
    # Femur: shaft, rounded condyles, joined by a metaphysis.
    r = 0.26 * s
    condyles = [(-0.28, -0.12), (0.28, -0.12)]
    femur = (np.abs(xx) < 0.25) & (yy > -0.62) & (yy < -0.2)
    femur |= (np.abs(xx) < 0.46) & (yy > -0.45) & (yy < -0.14)
    for cx, cy in condyles:
        femur |= (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    femur &= ~((xx**2 + (yy - 0.1) ** 2) <= 0.11**2)  # intercondylar notch
    # Femoral cartilage: a 3.5 % FOV shell around the lower half of each condyle.
    for label, (cx, cy) in zip((8, 9), condyles, strict=True):
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        lab[(d > r) & (d <= r + 0.035) & (yy > cy - 0.02)] = label
    lab[femur] = 1
    # Tibia: the plateau under each condyle is a shallow cup (a circle of larger radius), the
    # tibial cartilage a layer on it, in contact with the femoral cartilage at the centre.
    base = -0.12 + r + 0.045
    cup_radius = 0.9
    plateau = np.full(xx.shape, base)
    for cx, _ in condyles:
        near = np.abs(xx - cx) < 0.25
        depth = cup_radius - np.sqrt(np.maximum(cup_radius**2 - (xx - cx) ** 2, 0))
        plateau = np.where(near, base + 0.035 - depth, plateau)
    tibia = ((np.abs(xx) < 0.56) & (yy > plateau + 0.035) & (yy < 0.58)) | ((np.abs(xx) < 0.3) & (yy >= 0.58))
    lab[tibia] = 2
    for label, sign in ((10, -1), (11, 1)):
        u = sign * xx
        lab[(u > 0.07) & (u < 0.5) & (yy > plateau) & (yy <= plateau + 0.035)] = label
        # Meniscus: a wedge thickening outward between the condyle's edge and the plateau.
        wedge = (u > 0.4) & (u < 0.6) & (yy <= plateau) & (yy > plateau - 0.03 - 0.5 * (u - 0.4))
        lab[wedge] = 7
    # Patella with cartilage on its deep face.
    lab[(xx / 0.2) ** 2 + ((yy + 0.83) / 0.11) ** 2 <= 1] = 3
    lab[(np.abs(xx) < 0.18) & (yy > -0.72) & (yy <= -0.67)] = 12
    return lab


def _coordinates(n: int, supersample: int) -> np.ndarray:
    """Sample positions in [-1, 1] of ``n`` pixels, ``supersample`` per pixel (pixel centres for 1)."""
    return (np.arange(n * supersample) + 0.5) / (n * supersample) * 2 - 1


def _label_fractions(labels_fine: np.ndarray, supersample: int, n_labels: int) -> np.ndarray:
    """(n_labels, Y, X) fractions of each label per pixel, from labels sampled ``supersample``^2 per pixel."""
    ny, nx = labels_fine.shape[0] // supersample, labels_fine.shape[1] // supersample
    blocks = labels_fine.reshape(ny, supersample, nx, supersample)
    one_hot = blocks[None] == np.arange(n_labels, dtype=np.int16)[:, None, None, None, None]
    return one_hot.mean(axis=(2, 4), dtype=np.float32)


def smooth_b1(shape: tuple[int, ...], low: float, high: float, z: int = 0) -> np.ndarray:
    """A smooth relative B1+ field from ``low`` to ``high`` over an image (a dielectric-like pattern).

    The field is brighter at the centre and falls towards the edges, with a left-right tilt,
    as at 3 T in the knee; it spans exactly [low, high] over the image.
    """
    ny, nx = shape[-2:]
    y, x = _coordinates(ny, 1), _coordinates(nx, 1)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    field_ = np.exp(-(xx**2 + (yy - 0.1) ** 2) / 0.8) + 0.35 * xx + 0.05 * z
    field_ = (field_ - field_.min()) / max(float(np.ptp(field_)), 1e-12)
    return low + (high - low) * field_


def knee_phantom(
    shape: tuple[int, int] = (256, 256),
    n_slices: int = 1,
    fov_mm: float = 160.0,
    *,
    b1_range: tuple[float, float] | None = None,
    partial_volume: bool = False,
) -> Phantom:
    """The digital knee (coronal), ``n_slices`` slices of ``shape`` pixels.

    Slices differ slightly in geometry and in the smooth variation of values. With
    ``b1_range`` the phantom carries a smooth B1+ field spanning it (e.g. (0.8, 1.2)); with
    ``partial_volume`` each pixel holds the tissue fractions of a 4 x 4 supersampling, so
    edges mix tissues as a real acquisition does.
    """
    _check_shape(shape, n_slices)
    ny, nx = shape
    yy, xx = np.meshgrid(_coordinates(ny, 1), _coordinates(nx, 1), indexing="ij")
    n_labels = max(KNEE_TISSUES) + 1
    all_maps, all_labels, all_fractions, all_variation, all_b1 = [], [], [], [], []
    for z in range(n_slices):
        s = 1 + 0.03 * (z - (n_slices - 1) / 2) / max(n_slices, 1)
        if partial_volume:
            fine_y, fine_x = np.meshgrid(_coordinates(ny, 4), _coordinates(nx, 4), indexing="ij")
            fractions = _label_fractions(_knee_labels(fine_x, fine_y, s), 4, n_labels)
            lab = np.argmax(fractions, axis=0).astype(np.int16)
            all_fractions.append(fractions)
        else:
            lab = _knee_labels(xx, yy, s)
        all_labels.append(lab)
        all_maps.append(_paint(lab, KNEE_TISSUES, yy, xx, z))
        all_variation.append([1 + 0.04 * _smooth_field(yy, xx, 1.1 * i + 0.7 * z) for i in range(4)])
        if b1_range is not None:
            all_b1.append(smooth_b1(shape, *b1_range, z=z))
    maps, labels = _stack(all_maps, all_labels)
    spacing = fov_mm / max(shape)
    return Phantom(
        name="digital knee",
        t1_ms=maps["T1"],
        t2_ms=maps["T2"],
        t1rho_ms=maps["T1rho"],
        pd=maps["PD"],
        labels=labels,
        label_names={k: t.name for k, t in KNEE_TISSUES.items()},
        pixel_spacing_mm=(spacing, spacing),
        slice_thickness_mm=3.0,
        nominal=dict(KNEE_TISSUES),
        b1=np.stack(all_b1) if all_b1 else None,
        fractions=np.stack(all_fractions, axis=1) if all_fractions else None,
        variation=np.stack([np.stack(v) for v in all_variation], axis=1),
    )


def nist_sphere_centres_mm() -> np.ndarray:
    """(14, 2) sphere centres (x, y) in mm of the schematic layout (y down)."""
    ring = [(50 * np.sin(a), -50 * np.cos(a)) for a in np.deg2rad(np.arange(10) * 36.0)]
    inner = [(25 * np.sin(a), -25 * np.cos(a)) for a in np.deg2rad(45.0 + np.arange(4) * 90.0)]
    return np.array(ring + inner)


def nist_phantom(
    shape: tuple[int, int] = (128, 128),
    n_slices: int = 1,
    array: str = "T2",
    fov_mm: float = 150.0,
    *,
    b1_range: tuple[float, float] | None = None,
    partial_volume: bool = False,
) -> Phantom:
    """One relaxation array of the NIST/ISMRM system phantom (see module docstring).

    Parameters
    ----------
    array
        ``"T2"`` (MnCl2 spheres) or ``"T1"`` (NiCl2 spheres).
    b1_range, partial_volume
        A smooth B1+ field spanning this range; sphere edges mixed with the background.
    """
    _check_shape(shape, n_slices)
    table = {"T1": NIST_T1_ARRAY, "T2": NIST_T2_ARRAY}.get(array.upper())
    if table is None:
        raise MRFError(f"NIST phantom array must be 'T1' or 'T2', got {array!r}")
    ny, nx = shape
    spacing = fov_mm / max(shape)
    y = (np.arange(ny) - (ny - 1) / 2) * spacing
    x = (np.arange(nx) - (nx - 1) / 2) * spacing
    yy, xx = np.meshgrid(y, x, indexing="ij")

    def spheres(xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        lab = np.zeros(xx.shape, dtype=np.int16)
        for i, (cx, cy) in enumerate(nist_sphere_centres_mm()):
            lab[(xx - cx) ** 2 + (yy - cy) ** 2 <= 10.0**2] = i + 1
        return lab

    fractions = None
    if partial_volume:
        fy = (np.arange(ny * 4) + 0.5) / 4 - 0.5 - (ny - 1) / 2
        fx = (np.arange(nx * 4) + 0.5) / 4 - 0.5 - (nx - 1) / 2
        fine_y, fine_x = np.meshgrid(fy * spacing, fx * spacing, indexing="ij")
        fractions = _label_fractions(spheres(fine_x, fine_y), 4, 15)
        lab = np.argmax(fractions, axis=0).astype(np.int16)
    else:
        lab = spheres(xx, yy)
    nominal = {
        i + 1: Tissue(f"sphere {i + 1}", float(t1), float(t2), float(t2), 1.0)
        for i, (t1, t2) in enumerate(zip(table["T1"], table["T2"], strict=True))
    }
    maps = {p: np.zeros(shape) for p in PARAMETERS}
    for label, tissue in nominal.items():
        inside = lab == label
        maps["T1"][inside], maps["T2"][inside] = tissue.t1_ms, tissue.t2_ms
        maps["T1rho"][inside], maps["PD"][inside] = tissue.t1rho_ms, tissue.pd
    stacked = {p: np.repeat(v[None], n_slices, axis=0) for p, v in maps.items()}
    return Phantom(
        name=f"NIST/ISMRM system phantom, {array.upper()} array",
        t1_ms=stacked["T1"],
        t2_ms=stacked["T2"],
        t1rho_ms=stacked["T1rho"],
        pd=stacked["PD"],
        labels=np.repeat(lab[None], n_slices, axis=0),
        label_names={k: t.name for k, t in nominal.items()},
        pixel_spacing_mm=(spacing, spacing),
        slice_thickness_mm=5.0,
        nominal=nominal,
        b1=np.stack([smooth_b1(shape, *b1_range, z=z) for z in range(n_slices)]) if b1_range else None,
        fractions=np.repeat(fractions[:, None], n_slices, axis=1) if fractions is not None else None,
    )


#: The B1+ ranges of realistic phantoms: the knee at 3 T, and the smaller spread of a head coil phantom scan.
REALISTIC_B1 = {"knee": (0.8, 1.2), "nist": (0.9, 1.1)}


def make_phantom(
    name: str, shape: tuple[int, int] = (128, 128), n_slices: int = 1, *, realistic: bool = True
) -> Phantom:
    """``"knee"``, ``"nist"`` (T2 array) or ``"nist-t1"`` (T1 array).

    ``realistic`` (what ``synthesize`` and the demo use): a smooth B1+ field
    (:data:`REALISTIC_B1`) and partial volume at tissue edges; else B1 = 1 and one tissue per voxel.
    """
    kind = "knee" if name == "knee" else "nist"
    options = {"b1_range": REALISTIC_B1[kind], "partial_volume": True} if realistic else {}
    if name == "knee":
        return knee_phantom(shape, n_slices, **options)  # type: ignore[arg-type]
    if name in ("nist", "nist-t2"):
        return nist_phantom(shape, n_slices, "T2", **options)  # type: ignore[arg-type]
    if name == "nist-t1":
        return nist_phantom(shape, n_slices, "T1", **options)  # type: ignore[arg-type]
    raise MRFError(f"unknown phantom {name!r}; choose knee, nist or nist-t1")
