"""cgbench: train, ablate and score CycleGAN with the paper's protocol, tracked in MLflow."""

__version__ = "0.1.0"
