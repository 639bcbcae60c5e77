"""Shared fixtures: tiny sequences and an isolated cache folder for every test."""

from __future__ import annotations

import os

# Before any Qt import: GUI tests run headless.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from mrfviewer.resources import default_sequence_path
from mrfviewer.sequence import Sequence, load_sequence, sequence_from_dict


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Dictionary caches and user data go to a temporary folder, never the user's."""
    root = tmp_path_factory.mktemp("mrfviewer-home")
    monkeypatch.setenv("MRFVIEWER_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("MRFVIEWER_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "config"))  # QSettings of the GUI
    monkeypatch.setenv("MRFVIEWER_LOG_DIR", str(root / "logs"))


@pytest.fixture(scope="session")
def knee_sequence() -> Sequence:
    return load_sequence(default_sequence_path())


def make_tiny_sequence(n_fisp: int = 40, n_flash: int = 20) -> Sequence:
    """A short sequence with every block type, for fast tests (same physics as the knee one)."""
    import numpy as np

    fa = (10 + 40 * np.sin(np.pi * (np.arange(n_fisp) + 0.5) / n_fisp)).round(3).tolist()
    return sequence_from_dict(
        {
            "name": "tiny",
            "blocks": [
                {"type": "inversion", "ti_ms": 20},
                {"type": "fisp", "flip_angle_deg": fa, "tr_ms": 6.0, "te_ms": 2.0},
                {"type": "t2prep", "te_ms": 40},
                {
                    "type": "flash",
                    "flip_angle_deg": 10.0 if n_flash == 1 else [10.0] * n_flash,
                    "tr_ms": 6.0,
                    "te_ms": 2.0,
                },
                {"type": "spinlock", "tsl_ms": 20},
                {"type": "flash", "flip_angle_deg": [12.0] * n_flash, "tr_ms": 6.0, "te_ms": 2.0},
                {"type": "spinlock", "tsl_ms": 45},
                {"type": "flash", "flip_angle_deg": [12.0] * n_flash, "tr_ms": 6.0, "te_ms": 2.0},
            ],
        }
    )


@pytest.fixture(scope="session")
def tiny_sequence() -> Sequence:
    return make_tiny_sequence()


@pytest.fixture(scope="session")
def tiny_grid():
    from mrfviewer.grid import grid_from_dict

    return grid_from_dict(
        {
            "t1_ms": {"min": 200, "max": 2500, "step_percent": 15},
            "t2_ms": {"min": 8, "max": 200, "step_percent": 15},
            "t1rho_ms": {"min": 8, "max": 250, "step_percent": 15},
        }
    )


@pytest.fixture(scope="session")
def tiny_dictionary(tiny_sequence, tiny_grid):
    from mrfviewer.dictionary import generate_dictionary

    return generate_dictionary(tiny_sequence, tiny_grid)


@pytest.fixture(scope="session")
def knee_dictionary(knee_sequence):
    """The shipped knee sequence on a coarse (9 % step) knee grid: about 45k atoms."""
    from mrfviewer.dictionary import generate_dictionary
    from mrfviewer.grid import grid_from_dict

    grid = grid_from_dict(
        {
            "t1_ms": {"min": 100, "max": 3000, "step_percent": 9},
            "t2_ms": {"min": 5, "max": 300, "step_percent": 9},
            "t1rho_ms": {"min": 5, "max": 300, "step_percent": 9},
        }
    )
    return generate_dictionary(knee_sequence, grid)


@pytest.fixture
def tiny_files(tmp_path, tiny_sequence, tiny_grid):
    """The tiny sequence and grid written as JSON files, for CLI tests: (sequence path, grid path)."""
    import json

    seq, grid = tmp_path / "seq.json", tmp_path / "grid.json"
    tiny_sequence.save(seq)
    grid.write_text(json.dumps(tiny_grid.to_dict()))
    return seq, grid


@pytest.fixture(scope="session")
def tiny_train_settings() -> dict:
    """Training settings of a small network for the tiny sequence (seconds to train)."""
    return dict(
        hidden=[32, 32],
        n_train=3000,
        n_val=500,
        epochs=6,
        batch_size=256,
        rank=8,
        grid={
            "t1_ms": {"min": 200, "max": 2500, "n": 5},
            "t2_ms": {"min": 8, "max": 200, "n": 5},
            "t1rho_ms": {"min": 8, "max": 250, "n": 5},
        },
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_sequence, tiny_train_settings):
    """A trained tiny network saved as a model folder."""
    from mrfviewer.nn.model_io import save_model
    from mrfviewer.nn.training import TrainConfig, train

    result = train(tiny_sequence, TrainConfig(**tiny_train_settings))
    return save_model(result, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from mrfviewer.nn.model_io import load_model

    return load_model(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_b1_grid():
    """A four-parameter grid (B1 0.6-1.4 as a fitted dimension) for the tiny sequence: about 6k atoms."""
    from mrfviewer.grid import grid_from_dict

    return grid_from_dict(
        {
            "t1_ms": {"min": 200, "max": 2500, "step_percent": 15},
            "t2_ms": {"min": 8, "max": 200, "step_percent": 15},
            "t1rho_ms": {"min": 8, "max": 250, "step_percent": 15},
            "b1": {"min": 0.6, "max": 1.4, "n": 9, "spacing": "linear"},
        }
    )


@pytest.fixture(scope="session")
def tiny_b1_dictionary(tiny_sequence, tiny_b1_grid):
    from mrfviewer.dictionary import generate_dictionary

    return generate_dictionary(tiny_sequence, tiny_b1_grid)
