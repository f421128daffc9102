"""The Fréchet distance between two Gaussians fitted to features: the formula behind FID and
cgbench's FD-FCN, written once (pure: NumPy and SciPy, no network).

For features X (n × d) and Y (m × d) with means μ_X, μ_Y and sample covariances Σ_X, Σ_Y
(n − 1 and m − 1 in the denominators, as torchmetrics and pytorch-fid compute them)::

    FD = ‖μ_X − μ_Y‖² + tr Σ_X + tr Σ_Y − 2 tr (Σ_X Σ_Y)^½

The trace of the square root is computed in the symmetric form tr (Σ_X^½ Σ_Y Σ_X^½)^½ (the
two products are similar matrices, so they share their eigenvalues): both square roots are of
symmetric positive semi-definite matrices, taken through ``eigh`` with eigenvalues below round-off
set to 0, so the result is real without discarding an imaginary part, and stays accurate for
rank-deficient covariances (fewer images than feature dimensions), where ``scipy.linalg.sqrtm`` of
the product is ill-conditioned.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = ["gaussian_stats", "frechet_distance", "features_distance"]


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and sample covariance (d, d) of ``features`` (n, d), n ≥ 2, in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need features of shape (n >= 2, d), got {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def _psd_eigenvalues(values: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric PSD matrix with round-off removed: those below what float64 can
    tell from 0 at the matrix's scale (d · eps · the largest, as ``numpy.linalg.matrix_rank``) are
    0, so a rank-deficient covariance does not add the square roots of its rounding errors."""
    tolerance = len(values) * np.finfo(np.float64).eps * float(np.abs(values).max(initial=0.0))
    return np.where(values > tolerance, values, 0.0)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(_psd_eigenvalues(values))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: means {mu1.shape}, {mu2.shape}; covariances "
                         f"{sigma1.shape}, {sigma2.shape}")
    root = _psd_sqrt(sigma1)
    middle = linalg.eigvalsh(root @ sigma2 @ root)
    trace_sqrt = float(np.sqrt(_psd_eigenvalues(middle)).sum())
    distance = float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)
    return max(distance, 0.0)  # a distance; round-off can leave -1e-12 for identical statistics


def features_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between the Gaussians fitted to feature sets ``a`` and ``b``."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
