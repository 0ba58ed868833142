"""genart: train and serve generative-art image models on Ray."""

__version__ = "0.1.0"
