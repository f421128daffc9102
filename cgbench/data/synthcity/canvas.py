"""Where a SynthCity scene is painted: the label map, the unlit photo and the depth of each pixel,
and the pixel windows and masks of the shapes painted on them."""

from __future__ import annotations

import numpy as np

from cgbench.data.synthcity.palette import ID, Color, Window


class Canvas:
    """The label map (Cityscapes ids), the unlit photo and a depth map, painted back to front."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.ids = np.full((h, w), ID["unlabeled"], dtype=np.uint8)
        self.rgb = np.zeros((h, w, 3), dtype=np.float32)
        self.depth = np.full((h, w), np.inf, dtype=np.float32)

    def window(self, y0: float, y1: float, x0: float, x1: float):
        """Pixel window covering [y0, y1) x [x0, x1), with pixel-centre coordinates, or None."""
        iy0, iy1 = max(0, int(np.floor(y0))), min(self.h, int(np.ceil(y1)))
        ix0, ix1 = max(0, int(np.floor(x0))), min(self.w, int(np.ceil(x1)))
        if iy0 >= iy1 or ix0 >= ix1:
            return None
        yy = (np.arange(iy0, iy1, dtype=np.float32) + 0.5)[:, None]
        xx = (np.arange(ix0, ix1, dtype=np.float32) + 0.5)[None, :]
        return (slice(iy0, iy1), slice(ix0, ix1)), yy, xx

    def paint(self, win: Window, mask: np.ndarray, label: int, color: Color, depth) -> None:
        """Give the masked pixels of ``win`` a label id, a colour and a depth (nearer wins later)."""
        if color.ndim == 3:
            color = color[mask]
        self.ids[win][mask] = label
        self.rgb[win][mask] = color
        self.depth[win][mask] = depth[mask] if np.ndim(depth) == 2 else depth

    def shade(self, win: Window, mask: np.ndarray, factor: float) -> None:
        """Darken already painted pixels (shadows); labels are unchanged."""
        self.rgb[win][mask] *= factor

    def rect(self, y0: float, y1: float, x0: float, x1: float):
        """(window, mask) of an axis-aligned rectangle, or None when off-screen."""
        found = self.window(y0, y1, x0, x1)
        if found is None:
            return None
        win, yy, xx = found
        mask = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
        return (win, mask) if mask.any() else None

    def ellipse(self, cy: float, cx: float, ry: float, rx: float, rough: np.ndarray | None = None):
        """(window, mask) of an ellipse; ``rough`` (full-frame noise) makes its outline ragged."""
        grow = 1.4 if rough is not None else 1.0
        found = self.window(cy - ry * grow, cy + ry * grow, cx - rx * grow, cx + rx * grow)
        if found is None:
            return None
        win, yy, xx = found
        r = ((yy - cy) / max(ry, 1e-3)) ** 2 + ((xx - cx) / max(rx, 1e-3)) ** 2
        mask = r < (1.0 if rough is None else 1.0 + 0.45 * rough[win])
        return (win, mask) if mask.any() else None

    def quad(self, pts: list[tuple[float, float]]):
        """(window, mask) of a convex polygon given as (x, y) vertices in order."""
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        found = self.window(min(ys), max(ys), min(xs), max(xs))
        if found is None:
            return None
        win, yy, xx = found
        area = sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(pts)))
        sign = 1.0 if area >= 0 else -1.0
        mask = np.ones(np.broadcast_shapes(yy.shape, xx.shape), dtype=bool)
        for i in range(len(pts)):
            (ax, ay), (bx, by) = pts[i - 1], pts[i]
            mask &= sign * ((bx - ax) * (yy - ay) - (by - ay) * (xx - ax)) >= 0
        return (win, mask) if mask.any() else None
