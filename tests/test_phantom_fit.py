import numpy as np
import pytest

from mrfviewer.phantom_fit import SphereTemplate, fit_nist_template, sphere_means
from mrfviewer.phantoms import NIST_T2_ARRAY, nist_phantom


def _shifted_phantom(dx: int, dy: int, angle: float):
    """The NIST phantom PD and T2 maps, rotated and shifted (a misplaced phantom)."""
    from scipy import ndimage

    ph = nist_phantom((128, 128), fov_mm=150.0)
    pd = ndimage.rotate(ph.pd[0], angle, reshape=False, order=0)
    t2 = ndimage.rotate(ph.t2_ms[0], angle, reshape=False, order=0)
    return np.roll(pd, (dy, dx), axis=(0, 1)), np.roll(t2, (dy, dx), axis=(0, 1)), ph


@pytest.mark.parametrize(("dx", "dy", "angle"), [(0, 0, 0.0), (6, -4, 0.0), (-3, 5, 20.0)])
def test_fit_finds_the_spheres_and_their_identity(dx, dy, angle):
    pd, t2, ph = _shifted_phantom(dx, dy, angle)
    spacing = ph.pixel_spacing_mm[0]
    fitted = fit_nist_template(pd, spacing, t2=t2)
    means = sphere_means(fitted, t2)
    np.testing.assert_allclose(means, NIST_T2_ARRAY["T2"], rtol=1e-6)
    assert fitted.px_per_mm == pytest.approx(1 / spacing, rel=0.03)


def test_template_masks_hold_one_sphere_each():
    ph = nist_phantom((128, 128))
    t = SphereTemplate(64.0, 64.0, 0.0, 1 / ph.pixel_spacing_mm[0])
    masks = t.masks((128, 128))
    for i, m in enumerate(masks):
        assert set(np.unique(ph.labels[0][m])) == {i + 1}
