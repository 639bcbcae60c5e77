"""mrfviewer: quantitative MR fingerprinting (T1, T2, T1rho) of the knee."""

__version__ = "0.1.0"

__all__ = ["__version__"]
