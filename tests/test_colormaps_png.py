import numpy as np
import pytest
from PIL import Image

from mrfviewer.colormaps import base_table, default_window, log_remap, relaxometry_table, to_rgba
from mrfviewer.io.png import map_png


def test_relaxometry_maps_use_lipari_and_navia():
    np.testing.assert_array_equal(relaxometry_table("T1", 0, 2000)[0], base_table("lipari")[0])
    np.testing.assert_array_equal(relaxometry_table("T2", 0, 100)[0], base_table("navia")[0])
    np.testing.assert_array_equal(relaxometry_table("T1rho", 0, 100)[0], base_table("navia")[0])


def test_log_remap_is_monotone_and_keeps_the_invalid_colour():
    table = base_table("lipari")
    remapped = log_remap(table, 0.0, 2000.0)
    np.testing.assert_array_equal(remapped[0], table[0])
    # Entries come from the original table in non-decreasing order; the top reaches the top.
    index = [int(np.argmin(np.abs(table - row).sum(axis=1))) for row in remapped[1:]]
    assert index == sorted(index) and index[-1] == len(table) - 1 and index[0] >= 1
    # Logarithmic above upper/e: more table entries are spent below it than a linear map would.
    cut = int(len(table) / np.e)
    assert index[cut] > cut


def test_to_rgba_marks_invalid_pixels_with_entry_zero():
    table = relaxometry_table("T2", 0, 100)
    values = np.array([[np.nan, 0.0, 50.0, 100.0, 1e6]])
    rgba = to_rgba(values, table, 0, 100)
    np.testing.assert_array_equal(rgba[0, 0], table[0])
    assert not np.array_equal(rgba[0, 1], table[0])
    np.testing.assert_array_equal(rgba[0, 4], table[-1])


def test_default_window():
    values = np.concatenate([np.linspace(10, 100, 1000), [np.nan]])
    lo, hi = default_window("T2", values)
    assert lo == 0 and hi == pytest.approx(np.percentile(values[:-1], 99))


def test_png_has_colour_bar_and_size(tmp_path):
    values = np.full((2, 32, 32), np.nan, dtype=np.float32)
    values[:, 8:24, 8:24] = np.linspace(20, 60, 16)
    path = map_png(values, "T2", "ms", tmp_path / "T2map.png")
    image = Image.open(path)
    assert image.size[0] > image.size[1] > 200
    with pytest.raises(Exception, match="exists"):
        map_png(values, "T2", "ms", tmp_path / "T2map.png")
