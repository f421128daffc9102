"""People: pedestrians, and riders on bicycles and motorcycles."""

from __future__ import annotations

from cgbench.data.synthcity.palette import CLOTHES_COLORS, ID, SKIN_COLORS, VEHICLE_COLORS, rgb_color
from cgbench.data.synthcity.scene import Scene


def _figure(scene: Scene, x: float, z: float, label: int, u0: float, height: float) -> None:
    """A person seen from front or back: legs, torso and head."""
    rng = scene.rng
    top = CLOTHES_COLORS[rng.integers(len(CLOTHES_COLORS))]
    legs = CLOTHES_COLORS[rng.integers(len(CLOTHES_COLORS))] * 0.8
    skin = SKIN_COLORS[rng.integers(len(SKIN_COLORS))]
    hip = u0 + 0.45 * height
    for side in (-1, 1):
        scene.box(x + side * 0.09 - 0.06, x + side * 0.09 + 0.06, u0, hip, z, label, legs)
    scene.box(x - 0.17, x + 0.17, hip, u0 + 0.85 * height, z, label, top)
    scene.blob(x, u0 + 0.92 * height, z, 0.085, 0.09, label, skin)


def draw_person(scene: Scene, x: float, z: float) -> None:
    _figure(scene, x, z, ID["person"], 0.0, scene.rng.uniform(1.05, 1.3))


def draw_bicycle(scene: Scene, x: float, z: float) -> None:
    frame = VEHICLE_COLORS[scene.rng.integers(len(VEHICLE_COLORS))]
    scene.blob(x, 0.33, z, 0.05, 0.33, ID["bicycle"], rgb_color(0.06, 0.06, 0.06))
    scene.box(x - 0.04, x + 0.04, 0.3, 0.75, z, ID["bicycle"], frame)
    scene.box(x - 0.3, x + 0.3, 0.75, 0.8, z, ID["bicycle"], frame * 0.6)
    _figure(scene, x, z + 0.2, ID["rider"], 0.45, 1.05)


def draw_motorcycle(scene: Scene, x: float, z: float) -> None:
    body = VEHICLE_COLORS[scene.rng.integers(len(VEHICLE_COLORS))]
    scene.blob(x, 0.3, z, 0.09, 0.3, ID["motorcycle"], rgb_color(0.05, 0.05, 0.05))
    scene.box(x - 0.25, x + 0.25, 0.35, 0.8, z, ID["motorcycle"], body)
    scene.box(x - 0.08, x + 0.08, 0.5, 0.58, z, ID["motorcycle"], rgb_color(0.8, 0.1, 0.1))
    _figure(scene, x, z + 0.3, ID["rider"], 0.5, 1.0)
