"""The background: the sky with its clouds, and the skyline closing the street at the horizon."""

from __future__ import annotations

import numpy as np

from cgbench.data.synthcity.palette import FACADE_COLORS, ID, rgb_color
from cgbench.data.synthcity.scene import Scene


def draw_sky(scene: Scene) -> None:
    """A blue or overcast gradient with clouds; its horizon colour is also the haze's."""
    rng, c = scene.rng, scene.canvas
    if rng.random() < 0.6:
        top, horizon = rgb_color(0.30, 0.50, 0.85), rgb_color(0.70, 0.80, 0.92)
    else:  # overcast: grey, close to building and road greys
        top, horizon = rgb_color(0.62, 0.64, 0.68), rgb_color(0.80, 0.81, 0.83)
    scene.haze_color = horizon
    t = np.clip(np.arange(c.h, dtype=np.float32)[:, None] / max(scene.yh, 1.0), 0, 1)[..., None]
    sky = top * (1 - t) + horizon * t
    clouds = np.clip((scene.coarse + 0.3 * scene.mid - rng.uniform(-0.2, 0.5)) * 2.0, 0, 1)
    sky = sky * (1 - 0.8 * clouds[..., None]) + 0.8 * clouds[..., None] * rgb_color(0.93, 0.93, 0.95)
    c.paint((slice(None), slice(None)), np.ones((c.h, c.w), bool), ID["sky"], sky, np.inf)


def draw_skyline(scene: Scene) -> None:
    """Distant buildings and trees closing the street at the horizon."""
    rng, c = scene.rng, scene.canvas
    x = 0.0
    while x < c.w:
        width = c.w * rng.uniform(0.03, 0.12)
        height = c.h * rng.uniform(0.01, 0.07)
        found = c.rect(scene.yh - height, scene.yh + 1, x, x + width)
        if found is not None:
            win, mask = found
            if rng.random() < 0.7:
                color = FACADE_COLORS[rng.integers(len(FACADE_COLORS))] * 0.9
                c.paint(win, mask, ID["building"], color, 400.0)
            else:
                c.paint(win, mask, ID["vegetation"], scene.foliage(win), 400.0)
        x += width
