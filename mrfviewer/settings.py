"""Settings of a reconstruction, shared by every front-end and recorded with every result."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mrfviewer.errors import MRFError

#: Methods a reconstruction can use: dictionary matching or the neural network.
METHODS = ("dm", "nn")
#: NN inference precisions (see :mod:`mrfviewer.nn.inference`).
PRECISIONS = ("auto", "float32", "bfloat16")
#: Evaluations measure the network as trained: float32 on every machine (see mrfviewer.nn.inference).
EVALUATION_PRECISION = "float32"
#: Default memory budget in MiB for slabs of the series and matching blocks.
DEFAULT_MEMORY_MB = 64.0
#: DM searches (see :mod:`mrfviewer.search`) and compute devices (see :mod:`mrfviewer.devices`).
SEARCHES = ("fast", "exhaustive")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ReconstructionSettings:
    """Settings of a reconstruction.

    ``mask_threshold``: voxels whose signal norm (over time) is below this
    fraction of the 99th percentile of all voxel norms are background (NaN).
    ``memory_mb``: budget in MiB for one slab of the series and the matching blocks.
    ``refine``: DM sub-grid refinement. ``rank``: SVD rank for DM (None: the
    dictionary's). ``nn_precision``: ``auto``, ``float32`` or ``bfloat16``. ``search``: DM
    search, ``fast`` (coarse to fine on the grid) or ``exhaustive``. ``device``: where the
    GEMMs and the network run: ``auto`` (a CUDA GPU if torch sees one), ``cpu`` or ``cuda``
    (falls back to the CPU with a warning).
    """

    method: str = "dm"
    mask_threshold: float = 0.05
    memory_mb: float = DEFAULT_MEMORY_MB
    refine: bool = True
    rank: int | None = None
    nn_precision: str = "auto"
    search: str = "fast"
    device: str = "auto"

    def validate(self) -> None:
        """Raise :class:`MRFError` naming the first setting out of range."""
        if self.method not in METHODS:
            raise MRFError(f"method must be 'dm' or 'nn', got {self.method!r}")
        if not (math.isfinite(self.mask_threshold) and 0 <= self.mask_threshold < 1):
            raise MRFError(f"mask threshold must lie in [0, 1), got {self.mask_threshold}")
        if not (math.isfinite(self.memory_mb) and 1 <= self.memory_mb <= 2**24):
            raise MRFError(f"memory setting must be 1 to 16777216 MiB, got {self.memory_mb}")
        if self.rank is not None and not 1 <= self.rank <= 64:
            raise MRFError(f"SVD rank must lie in 1..64, got {self.rank}")
        if self.nn_precision not in PRECISIONS:
            raise MRFError(f"NN precision must be one of {', '.join(PRECISIONS)}; got {self.nn_precision!r}")
        if self.search not in SEARCHES:
            raise MRFError(f"search must be one of {', '.join(SEARCHES)}; got {self.search!r}")
        if self.device not in DEVICES and not (self.device.startswith("cuda:") and self.device[5:].isdigit()):
            raise MRFError(f"device must be one of {', '.join(DEVICES)} (or cuda:N); got {self.device!r}")
