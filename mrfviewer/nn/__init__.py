"""Neural-network mapping: an MLP on SVD-compressed fingerprints (features, model, training, inference)."""
