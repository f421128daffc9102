"""A SynthCity scene: the camera (height, pitch, heading, focal length), the noise fields its
textures share, the shapes that stand in the street (boxes, blobs, side faces), and the
development of the painted canvas into a photo."""

from __future__ import annotations

import numpy as np

from cgbench.data.synthcity.canvas import Canvas
from cgbench.data.synthcity.noise import blur, value_noise
from cgbench.data.synthcity.palette import Window, rgb_color


class Scene:
    """One street scene, seen by a camera at a random height, pitch and heading along the street.

    Lengths are in units of about 1.4 m (cars are about 1 unit tall); x is lateral (to the right),
    u the height above the road, z the depth along the street."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng = rng
        self.h, self.w = size, 2 * size
        self.scale = size / 128.0  # pixel sizes below are given for size 128
        self.canvas = Canvas(self.h, self.w)
        self.cam_h = rng.uniform(0.75, 1.5)  # camera height
        self.focal = self.w * rng.uniform(0.7, 1.1)
        self.yh = self.h * rng.uniform(0.26, 0.56)  # horizon row: the camera's pitch
        self.xv = self.w * rng.uniform(0.30, 0.70)  # vanishing point: its heading along the street
        h, w, s = self.h, self.w, self.scale
        self.fine = value_noise(rng, h, w, 1.5 * s)
        self.mid = value_noise(rng, h, w, 4.0 * s)
        self.coarse = value_noise(rng, h, w, 24.0 * s)
        self.white = rng.standard_normal((h, w)).astype(np.float32)
        self.sunny = rng.random() < 0.5
        self.haze_color = rgb_color(0.75, 0.80, 0.86) * rng.uniform(0.85, 1.05)

    def project(self, x: float, u: float, z: float) -> tuple[float, float]:
        """Screen (x, y) of the point at lateral x, height u above the road, depth z."""
        return self.xv + self.focal * x / z, self.yh + self.focal * (self.cam_h - u) / z

    def px(self, units: float, z: float) -> float:
        """Pixels covered by ``units`` camera heights at depth z."""
        return self.focal * units / z

    def foliage(self, win: Window) -> np.ndarray:
        """Tree leaves: dark greens with strong clumpy noise."""
        base = rgb_color(0.20, 0.34, 0.12) * self.rng.uniform(0.7, 1.25)
        clumps = 0.75 + 0.35 * self.mid[win] + 0.15 * self.fine[win]
        return base * clumps[..., None]

    def box(self, x0: float, x1: float, u0: float, u1: float, z: float, label: int,
            color: np.ndarray) -> None:
        """A camera-facing rectangle standing at depth z."""
        ax, ay = self.project(x0, u1, z)
        bx, by = self.project(x1, u0, z)
        found = self.canvas.rect(ay, by, ax, max(bx, ax + 1.0))
        if found is not None:
            win, mask = found
            shading = (1 + 0.05 * self.fine[win] + 0.03 * self.white[win])[..., None]
            self.canvas.paint(win, mask, label, color * shading, z)

    def blob(self, x: float, u: float, z: float, rx: float, ru: float, label: int,
             color: np.ndarray | None, rough: bool = False) -> None:
        """An ellipse centred at lateral x, height u, depth z (radii in units)."""
        cx, cy = self.project(x, u, z)
        found = self.canvas.ellipse(cy, cx, max(self.px(ru, z), 0.6), max(self.px(rx, z), 0.6),
                                    self.mid if rough else None)
        if found is not None:
            win, mask = found
            rgb = self.foliage(win) if color is None else color
            self.canvas.paint(win, mask, label, rgb, z)

    def side_face(self, x: float, u0: float, u1: float, z0: float, z1: float, label: int,
                  color: np.ndarray) -> None:
        """A face parallel to the street (a vehicle's side) from depth z0 to z1."""
        pts = [self.project(x, u0, z0), self.project(x, u1, z0),
               self.project(x, u1, z1), self.project(x, u0, z1)]
        found = self.canvas.quad(pts)
        if found is not None:
            win, mask = found
            self.canvas.paint(win, mask, label, color, np.float32((z0 + z1) / 2))

    def develop(self) -> np.ndarray:
        """Haze, exposure, colour temperature, vignetting, blur and sensor noise -> uint8 RGB."""
        rng, c = self.rng, self.canvas
        haze = (1 - np.exp(-c.depth / rng.uniform(120.0, 400.0))) * 0.85
        haze = np.where(np.isfinite(c.depth), haze, 0.0).astype(np.float32)[..., None]
        img = c.rgb * (1 - haze) + self.haze_color * haze
        warmth = rng.uniform(-0.1, 0.1)
        img = img * rng.uniform(0.75, 1.2) * rgb_color(1 + warmth, 1.0, 1 - warmth)
        yy = (np.arange(c.h, dtype=np.float32)[:, None] + 0.5) / c.h - 0.5
        xx = (np.arange(c.w, dtype=np.float32)[None, :] + 0.5) / c.w - 0.5
        img = img * (1 - 0.35 * (xx**2 + yy**2))[..., None]
        img = blur(img, rng.uniform(0.45, 0.75) * self.scale)
        noise = rng.standard_normal(img.shape).astype(np.float32) * rng.uniform(0.008, 0.025)
        return np.clip((img + noise) * 255.0 + 0.5, 0, 255).astype(np.uint8)
