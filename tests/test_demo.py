import pytest


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """The README's main job: demo data created once, reconstructed, exported (about 2 minutes)."""
    from mrfviewer.demo import demo_dir, run_demo

    summary = run_demo(tmp_path / "out", size=64)
    assert (demo_dir() / "knee" / ".complete").exists()
    for case in ("knee", "nist"):
        for name in ("T1map.nii.gz", "T2map.png", "dicom/T1rhomap.dcm", "roi_stats.csv"):
            assert (tmp_path / "out" / case / "dm" / name).exists()
    assert "medial femoral cartilage" in summary
