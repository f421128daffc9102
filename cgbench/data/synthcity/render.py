"""One SynthCity scene, painted back to front: sky, street, facades, objects, then developed."""

from __future__ import annotations

import numpy as np

from cgbench.data.synthcity.facades import draw_facades, draw_guard_rails
from cgbench.data.synthcity.ground import draw_ground
from cgbench.data.synthcity.layout import draw_street
from cgbench.data.synthcity.objects import place_objects
from cgbench.data.synthcity.scene import Scene
from cgbench.data.synthcity.sky import draw_sky, draw_skyline
from cgbench.data.synthcity.vehicles import draw_ego_vehicle


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (photo (size, 2*size, 3) uint8 RGB, label ids (size, 2*size) uint8)."""
    scene = Scene(rng, size)
    draw_sky(scene)
    draw_skyline(scene)
    street = draw_street(rng)
    draw_ground(scene, street)
    draw_facades(scene, street)
    place_objects(scene, street)
    draw_guard_rails(scene, street)
    if rng.random() < 0.5:
        draw_ego_vehicle(scene)
    return scene.develop(), scene.canvas.ids
