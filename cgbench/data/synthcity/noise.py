"""The noise behind SynthCity's textures, and the camera's blur."""

from __future__ import annotations

import numpy as np


def value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth value noise in [-1, 1] of shape (h, w), with features about ``cell`` pixels wide."""
    gh, gw = int(h / cell) + 3, int(w / cell) + 3
    grid = rng.uniform(-1.0, 1.0, (gh, gw)).astype(np.float32)
    ys = (np.arange(h, dtype=np.float32) + 0.5) / cell
    xs = (np.arange(w, dtype=np.float32) + 0.5) / cell
    y0, x0 = ys.astype(np.int64), xs.astype(np.int64)
    fy, fx = ys - y0, xs - x0
    fy, fx = (fy * fy * (3 - 2 * fy))[:, None], (fx * fx * (3 - 2 * fx))[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def hash01(a: np.ndarray, b: np.ndarray, salt: float) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) for integer cell coordinates (a, b)."""
    v = np.sin(a * 12.9898 + b * 78.233 + salt * 37.719) * 43758.5453
    return (v - np.floor(v)).astype(np.float32)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (5 taps, edge-replicated) of an (h, w, 3) float image."""
    taps = np.exp(-0.5 * (np.arange(-2, 3) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    padded = np.pad(img, ((2, 2), (0, 0), (0, 0)), mode="edge")
    img = sum(t * padded[i : i + img.shape[0]] for i, t in enumerate(taps))
    padded = np.pad(img, ((0, 0), (2, 2), (0, 0)), mode="edge")
    return sum(t * padded[:, i : i + img.shape[1]] for i, t in enumerate(taps))
