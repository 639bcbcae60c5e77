"""Neural-network mapping: an MLP on SVD-compressed fingerprints (features, model, training, inference)."""

# Inference precisions (see mrfviewer.nn.inference); here so the CLI can list them without torch.
PRECISIONS = ("auto", "float32", "bfloat16")
