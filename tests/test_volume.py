"""3D series reconstructed slab by slab within a memory limit."""

import dataclasses
import tracemalloc

import numpy as np
import pytest

from mrfviewer.cli import main
from mrfviewer.errors import MRFError
from mrfviewer.io.dicom_write import write_mrf_dicom
from mrfviewer.io.series_h5 import write_series_h5
from mrfviewer.phantoms import knee_phantom
from mrfviewer.reconstruction import reconstruct_dm, reconstruct_nn
from mrfviewer.settings import ReconstructionSettings
from mrfviewer.synthesis import synthesize_series
from mrfviewer.volume import open_dicom_source, open_h5_source, source_from_series


@pytest.fixture(scope="module")
def volume(tiny_sequence):
    """A 24-slice knee volume of 64 x 64 pixels: 79 MiB of complex64 samples."""
    return synthesize_series(knee_phantom((64, 64), n_slices=24), tiny_sequence, snr=300, seed=3)


def test_slabs_cover_the_volume_within_the_budget(volume):
    source = source_from_series(volume)
    slabs = source.slabs(memory_mb=8)
    assert slabs[0][0] == 0 and slabs[-1][1] == 24
    assert all(a[1] == b[0] for a, b in zip(slabs, slabs[1:], strict=False))
    assert max(z1 - z0 for z0, z1 in slabs) * 2 * source.bytes_per_slice <= 8 * 2**20
    # A budget below one slice still reads one slice at a time.
    assert source.slabs(memory_mb=0.001) == [(z, z + 1) for z in range(24)]


def test_streamed_dm_from_hdf5_equals_in_memory_and_stays_within_memory(tmp_path, volume, tiny_dictionary):
    path = write_series_h5(volume, tmp_path / "volume.h5")
    series_mib = volume.data.nbytes / 2**20
    limit_mib = 8.0
    assert series_mib > 8 * limit_mib
    reference = reconstruct_dm(volume, tiny_dictionary, ReconstructionSettings(memory_mb=1024))
    source = open_h5_source(path)
    tracemalloc.start()
    try:
        streamed = reconstruct_dm(source, tiny_dictionary, ReconstructionSettings(memory_mb=limit_mib))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Only float32 ties may go either way (the GEMM's summation order differs with the blocks in
    # memory; seen: 1 voxel of 98,304 whose two best atoms correlate 0.9999492 and 0.9999494).
    np.testing.assert_allclose(streamed.values["match"], reference.values["match"], rtol=1e-6, equal_nan=True)
    same = streamed.atom == reference.atom
    assert same.mean() >= 0.9999, f"{np.sum(~same)} voxels on another atom"
    for name in ("T1", "T2", "T1rho", "PD"):
        np.testing.assert_allclose(streamed.values[name][same], reference.values[name][same], rtol=1e-5)
    # What stays for the whole volume: K coefficients + norm per voxel, and the maps.
    n_vox = volume.data[0].size
    kept_mib = n_vox * (tiny_dictionary.rank * 8 + 8 + 6 * 4 + 8) / 2**20
    assert peak / 2**20 < 2 * limit_mib + kept_mib, (peak / 2**20, kept_mib)
    assert peak / 2**20 < series_mib / 3


def test_streamed_nn_equals_in_memory(tmp_path, volume, tiny_model):
    path = write_series_h5(volume, tmp_path / "volume.h5")
    # float32: bfloat16 rounding would turn the last-digit differences of summation order into visible ones.
    settings = ReconstructionSettings(method="nn", memory_mb=1024, nn_precision="float32")
    reference = reconstruct_nn(volume, tiny_model, settings)
    streamed = reconstruct_nn(open_h5_source(path), tiny_model, dataclasses.replace(settings, memory_mb=4))
    for name in reference.values:
        np.testing.assert_allclose(streamed.values[name], reference.values[name], rtol=1e-4, equal_nan=True)


def test_dicom_source_reads_only_the_slab(tmp_path, tiny_sequence, monkeypatch):
    series = synthesize_series(knee_phantom((24, 24), n_slices=3), tiny_sequence, snr=None)
    write_mrf_dicom(series, tmp_path / "dcm", description="MRF 3D")
    source = open_dicom_source(tmp_path / "dcm")
    assert source.shape == series.data.shape
    import pydicom

    calls = []
    real_read, real_fromfile = pydicom.dcmread, np.fromfile
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: calls.append(a[0]) or real_read(*a, **k))
    monkeypatch.setattr(np, "fromfile", lambda *a, **k: calls.append(a[0]) or real_fromfile(*a, **k))
    slab = source.read(1, 2)
    np.testing.assert_allclose(slab, series.data[:, 1:2], atol=2e-3 * np.abs(series.data).max())
    # Magnitude and phase of one slice: 2 x T files, not the whole series.
    assert len(calls) == 2 * series.n_timepoints


def test_nan_in_a_streamed_hdf5_slab_is_a_clear_error_and_in_memory_voxels_are_left_out(
    tmp_path, volume, tiny_dictionary
):
    data = volume.data.copy()
    data[5, 10, 30, 30] = np.nan
    broken = volume.__class__(data=data, sequence=volume.sequence)
    with pytest.raises(MRFError, match=r"1 NaN or infinite values in slices \d+-\d+"):
        reconstruct_dm(open_h5_source(write_series_h5(broken, tmp_path / "nan.h5")), tiny_dictionary)
    maps = reconstruct_dm(broken, tiny_dictionary)
    assert not maps.mask[10, 30, 30] and np.isnan(maps.values["T1"][10, 30, 30])
    assert maps.mask[10].sum() > 100


def test_cli_reconstructs_a_volume_larger_than_its_memory_setting(tmp_path, volume, tiny_dictionary):
    from mrfviewer.dictionary import save_dictionary

    path = write_series_h5(volume, tmp_path / "volume.h5")
    save_dictionary(tiny_dictionary, tmp_path / "dict.h5")
    code = main(
        ["-q", "reconstruct", str(path), "--dictionary", str(tmp_path / "dict.h5"), "--memory-mb", "4"]
        + ["--output", str(tmp_path / "out")]
    )
    assert code == 0
    import nibabel as nib

    t2 = nib.load(tmp_path / "out" / "T2map.nii.gz").get_fdata()
    assert t2.shape == (64, 64, 24)


def test_h5_source_errors_are_readable(tmp_path):
    with pytest.raises(MRFError, match="not found"):
        open_h5_source(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(MRFError, match="HDF5"):
        open_h5_source(tmp_path / "junk.h5")


def test_a_header_claiming_huge_slices_is_refused_before_allocation(tmp_path):
    import h5py

    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:  # chunked and never written: no data on disk, absurd dimensions
        f.create_dataset("series", shape=(1750, 2, 60000, 60000), dtype="c8", chunks=(1, 1, 64, 64))
    source = open_h5_source(path)
    with pytest.raises(MRFError, match="needs .* GiB; the limit is 4 GiB"):
        source.slabs(64)


def test_a_slice_larger_than_the_budget_is_read_in_time_ranges(tmp_path, tiny_sequence, tiny_dictionary):
    """One 96 x 96 slice of the tiny sequence is 7 MiB: at a 1 MiB budget it is read in ranges of time points,
    with the same maps and a peak far below the slice."""
    series = synthesize_series(knee_phantom((96, 96)), tiny_sequence, snr=100)
    path = write_series_h5(series, tmp_path / "big_slice.h5")
    source = open_h5_source(path)
    assert source.bytes_per_slice > 6 * 2**20 and len(source.time_chunks(1.0)) > 10
    from mrfviewer.reconstruction import project_source

    reference = reconstruct_dm(series, tiny_dictionary, ReconstructionSettings(memory_mb=1024))
    streamed = reconstruct_dm(source, tiny_dictionary, ReconstructionSettings(memory_mb=1.0))
    basis = tiny_dictionary.basis[: tiny_dictionary.rank]
    tracemalloc.start()
    try:
        project_source(source, basis, memory_mb=1.0)  # the reading: what a large slice would exhaust
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Sums over time ranges round differently in the last digit: a near tie may pick a neighbouring atom.
    same = streamed.atom == reference.atom
    assert same.mean() > 0.999 and np.array_equal(streamed.mask, reference.mask)
    for name in ("T1", "T2", "PD"):
        np.testing.assert_allclose(streamed.values[name][same], reference.values[name][same], rtol=1e-4)
    assert peak < 0.6 * source.bytes_per_slice, peak / 2**20


def test_huge_hdf5_chunks_are_refused_before_reading(tmp_path, tiny_sequence):
    import h5py

    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as f:
        # 100 x 1 x 1200 x 1200 complex64 in one gzip chunk: 1.1 GB decompressed, a few kB on disk.
        ds = f.create_dataset(
            "series", shape=(100, 1, 1200, 1200), dtype=np.complex64, chunks=(100, 1, 1200, 1200), compression="gzip"
        )
        ds[0, 0, 0, 0] = 1
        f.attrs["sequence"] = tiny_sequence.to_json()
    assert path.stat().st_size < 10 * 2**20
    with pytest.raises(MRFError, match="chunks of 1,099 MiB"):
        open_h5_source(path)
