"""Display conventions shared by the viewer and the PNG export: titles, windows from tissue, orientation letters."""

import numpy as np
import pytest

from mrfviewer.colormaps import (
    FLUID_T2_MS,
    array_directions,
    default_window,
    direction_letter,
    display_name,
    edge_labels,
    map_title,
    plane_name,
    relaxometry_table,
    tissue_mask,
)
from mrfviewer.series import Geometry

CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # rows run to the patient's left, columns downwards
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def test_titles_use_one_unit_style_and_human_names():
    assert map_title("T1", "ms") == "T1 (ms)"
    assert map_title("T1rho", "ms", "nn") == "T1\u03c1 (ms), NN"
    assert map_title("uncertainty_T2", "ms") == "T2 uncertainty (ms)"
    assert map_title("B1", "1") == "B1" and map_title("PD", "a.u.") == "PD (a.u.)"
    assert display_name("difference_T1rho") == "T1\u03c1 NN \u2212 DM"
    assert "[" not in map_title("T1", "ms") and "_" not in display_name("uncertainty_T1rho")


def test_orientation_letters_follow_the_geometry():
    assert direction_letter(np.array([1.0, 0.1, 0])) == "L" and direction_letter(np.array([0, -1.0, 0.2])) == "A"
    coronal = array_directions(CORONAL)
    assert edge_labels(coronal) == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert plane_name(coronal) == "coronal" and plane_name(coronal, "row") == "axial"
    assert plane_name(coronal, "column") == "sagittal"
    axial = array_directions(AXIAL)
    assert edge_labels(axial) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    # Slices stacked towards the patient's feet: the reformat's rows run S to I.
    down = array_directions(AXIAL, np.array([0.0, 0.0, -3.0]))
    assert edge_labels(down, "row") == {"left": "R", "right": "L", "top": "S", "bottom": "I"}


def test_windows_come_from_tissue_not_fluid_or_clipped_voxels():
    rng = np.random.default_rng(1)
    cartilage = rng.normal(40, 3, 900)
    fluid = np.full(100, 300.0)  # clipped at the dictionary's T2 maximum
    values = np.concatenate([cartilage, fluid, [np.nan] * 50])
    clipped = np.concatenate([np.zeros(900, bool), np.ones(100, bool), np.zeros(50, bool)])
    lo, hi = default_window("T2", values, ~clipped)
    assert lo == 0 and hi == pytest.approx(np.percentile(cartilage, 99))
    assert default_window("T2", values)[1] == pytest.approx(300.0)  # without the tissue mask the fluid wins
    t2 = np.array([30.0, 45.0, FLUID_T2_MS + 1, np.nan])
    np.testing.assert_array_equal(tissue_mask({"T2": t2}), [True, True, False, True])
    np.testing.assert_array_equal(
        tissue_mask({"T2": t2}, np.array([True, False, False, False])), [False, True, False, True]
    )
    lo, hi = default_window("difference_T1", np.array([-3.0, 1.0, 2.0, np.nan]))
    assert lo == -hi and hi == pytest.approx(np.percentile([3.0, 1.0, 2.0], 98))


def test_the_match_window_reaches_one_from_a_round_value():
    values = np.array([0.9961, 0.9987, 0.9999, 0.9995])
    assert default_window("match", values) == (0.99, 1.0)


def test_difference_maps_show_invalid_pixels_in_a_neutral_grey():
    table = relaxometry_table("difference_T2", -5, 5)
    assert np.allclose(table[0, :3], table[0, 0]) and not np.allclose(table[1, :3], table[1, 0])


def test_png_export_has_orientation_letters_human_titles_and_tissue_windows(tmp_path, monkeypatch, tiny_dictionary):
    from mrfviewer import pipeline
    from mrfviewer.io import png
    from mrfviewer.phantoms import knee_phantom
    from mrfviewer.synthesis import synthesize_series

    figures = []
    monkeypatch.setattr(png.plt, "close", figures.append)  # keep each figure to read its texts
    series = synthesize_series(knee_phantom((24, 24)), tiny_dictionary.sequence, snr=80)
    series.geometry = Geometry(pixel_spacing_mm=(2.0, 2.0), orientation=CORONAL)
    input = pipeline.input_from_series(series)
    maps = pipeline.run(input, pipeline.DictionaryMatching(tiny_dictionary))
    written = png.export_png(maps, tmp_path)
    assert {p.name for p in written} >= {"T1map.png", "T2map.png"}
    t2 = figures[list(maps.values).index("T2")]
    texts = {t.get_text() for t in t2.axes[0].texts}
    assert texts == {"R", "L", "S", "I"}
    assert t2._suptitle.get_text() == "T2 (ms), DM"
    tissue = tissue_mask(maps.values, maps.at_range_limit())
    bar = t2.axes[-1]
    assert bar.get_ylim()[1] == pytest.approx(
        np.percentile(maps.values["T2"][np.isfinite(maps.values["T2"]) & tissue], 99)
    )
