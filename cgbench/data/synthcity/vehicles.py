"""Vehicles seen from behind (cars, buses, trucks) and the ego vehicle's bonnet."""

from __future__ import annotations

import numpy as np

from cgbench.data.synthcity.palette import ID, VEHICLE_COLORS, rgb_color
from cgbench.data.synthcity.scene import Scene


def _vehicle(scene: Scene, x: float, z: float, width: float, height: float, length: float,
             label: int, body: np.ndarray, cabin: float) -> None:
    """A box-shaped vehicle seen from behind, with its inner side visible in perspective."""
    c = scene.canvas
    half = width / 2
    # soft shadow on the road under the vehicle
    sx, sy = scene.project(x, 0.0, z + length / 2)
    found = c.ellipse(sy, sx, max(scene.px(0.4, z), 0.6), scene.px(half * 1.2, z))
    if found is not None:
        c.shade(found[0], found[1], 0.55)
    near_side = x - half if x > 0 else x + half
    scene.side_face(near_side, 0.15, height - cabin, z, z + length, label, body * 0.75)
    if cabin > 0:
        scene.side_face(near_side, height - cabin, height, z + 0.25 * length, z + 0.8 * length,
                        label, rgb_color(0.10, 0.12, 0.15))
    for wheel_z in (z + 0.6, z + length - 0.6):
        scene.side_face(near_side, 0.0, 0.55, wheel_z - 0.3, wheel_z + 0.3, label,
                        rgb_color(0.05, 0.05, 0.05))
    scene.box(x - half, x + half, 0.15, height - cabin, z, label, body)
    if cabin > 0:
        scene.box(x - half * 0.8, x + half * 0.8, height - cabin, height, z, label, body * 0.9)
        scene.box(x - half * 0.65, x + half * 0.65, height - cabin + 0.05, height - 0.05, z,
                  label, rgb_color(0.10, 0.12, 0.15))
    for side in (-1, 1):
        scene.box(x + side * half * 0.85 - 0.1, x + side * half * 0.85 + 0.1,
                  height - cabin - 0.25, height - cabin - 0.1, z, label, rgb_color(0.8, 0.1, 0.1))
    scene.box(x - 0.2, x + 0.2, 0.35, 0.5, z, label, rgb_color(0.9, 0.9, 0.88))
    scene.box(x - half, x + half, 0.0, 0.2, z, label, rgb_color(0.04, 0.04, 0.04))


def draw_car(scene: Scene, x: float, z: float) -> None:
    body = VEHICLE_COLORS[scene.rng.integers(len(VEHICLE_COLORS))] * scene.rng.uniform(0.85, 1.1)
    _vehicle(scene, x, z, 1.25, scene.rng.uniform(1.0, 1.25), 3.0, ID["car"], body, 0.45)


def draw_bus(scene: Scene, x: float, z: float) -> None:
    body = [rgb_color(0.85, 0.75, 0.15), rgb_color(0.75, 0.12, 0.10), rgb_color(0.85, 0.85, 0.85)][
        scene.rng.integers(3)]
    _vehicle(scene, x, z, 1.7, 2.2, 8.0, ID["bus"], body, 0.0)
    scene.box(x - 0.7, x + 0.7, 1.3, 2.0, z, ID["bus"], rgb_color(0.12, 0.14, 0.18))


def draw_truck(scene: Scene, x: float, z: float) -> None:
    body = VEHICLE_COLORS[scene.rng.integers(len(VEHICLE_COLORS))] * 0.9 + 0.1
    _vehicle(scene, x, z, 1.7, 2.3, 6.0, ID["truck"], body, 0.0)


def draw_ego_vehicle(scene: Scene) -> None:
    """The bonnet of the recording car along the bottom edge (id 1, ignored when scoring)."""
    rng, c = scene.rng, scene.canvas
    depth = c.h * rng.uniform(0.05, 0.1)
    found = c.window(c.h - depth, c.h, 0, c.w)
    if found is None:
        return
    win, yy, xx = found
    bulge = 1 - 0.5 * ((xx - c.w / 2) / (c.w / 2)) ** 2
    mask = yy > c.h - depth * bulge
    paint = VEHICLE_COLORS[rng.integers(len(VEHICLE_COLORS))] * 0.6
    gloss = 1 + 0.3 * np.exp(-(((xx - c.w * rng.uniform(0.3, 0.7)) / (c.w * 0.1)) ** 2))
    c.paint(win, mask, ID["ego vehicle"], paint * gloss[..., None] * np.ones_like(yy)[..., None],
            0.5)
