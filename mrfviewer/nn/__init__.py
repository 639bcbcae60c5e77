"""Neural-network mapping: an MLP on SVD-compressed fingerprints (features, model, training, inference)."""

# Inference precisions (see mrfviewer.nn.inference); defined with the settings so the CLI lists them without torch.
from mrfviewer.settings import PRECISIONS

__all__ = ["PRECISIONS"]
