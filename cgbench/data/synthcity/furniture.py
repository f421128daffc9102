"""Street furniture and other things on the sidewalks: poles with signs and lights, trees, and the
unlabelled things Cityscapes ignores when scoring (prams, dogs, bins, bollards)."""

from __future__ import annotations

import numpy as np

from cgbench.data.synthcity.palette import ID, SKIN_COLORS, rgb_color
from cgbench.data.synthcity.scene import Scene


def draw_pole(scene: Scene, x: float, z: float) -> None:
    """A pole carrying a traffic sign, a traffic light on an arm, or a street lamp."""
    rng = scene.rng
    height = rng.uniform(3.0, 5.0)
    metal = rgb_color(0.45, 0.46, 0.47) * rng.uniform(0.7, 1.3)
    half = max(0.06, 0.5 / scene.px(1.0, z))  # at least one pixel wide
    scene.box(x - half, x + half, 0.0, height, z, ID["pole"], metal)
    toward_road = -np.sign(x)
    attachment = rng.choice(["sign", "light", "lamp"], p=[0.45, 0.35, 0.2])
    if attachment == "sign":
        size = rng.uniform(0.5, 0.8)
        face = [rgb_color(0.15, 0.30, 0.70), rgb_color(0.85, 0.80, 0.10), rgb_color(0.80, 0.15, 0.12),
                rgb_color(0.90, 0.90, 0.90)][rng.integers(4)]
        u = height - size * 0.6
        if rng.random() < 0.5:
            scene.blob(x, u, z, size / 2, size / 2, ID["traffic sign"], face)
        else:
            scene.box(x - size / 2, x + size / 2, u - size / 2, u + size / 2, z,
                      ID["traffic sign"], face)
        scene.box(x - size / 3, x + size / 3, u - size * 0.35, u - size * 0.15, z,
                  ID["traffic sign"], rgb_color(0.92, 0.92, 0.92))
    elif attachment == "light":
        reach = rng.uniform(0.0, 2.5)
        arm_end = x + toward_road * reach
        if reach > 0.3:
            lo, hi = sorted((x, arm_end))
            scene.box(lo, hi, height - 0.08, height, z, ID["pole"], metal)
        lamp = [rgb_color(0.95, 0.15, 0.10), rgb_color(0.95, 0.70, 0.10), rgb_color(0.20, 0.90, 0.40)]
        scene.box(arm_end - 0.18, arm_end + 0.18, height - 1.0, height, z,
                  ID["traffic light"], rgb_color(0.10, 0.10, 0.10))
        slot = rng.integers(3)
        scene.blob(arm_end, height - 0.15 - 0.3 * slot, z, 0.08, 0.08, ID["traffic light"],
                   lamp[slot])
    else:
        scene.box(x, x + toward_road * 0.6, height - 0.1, height + 0.05, z, ID["pole"], metal)


def draw_tree(scene: Scene, x: float, z: float) -> None:
    """A trunk and a ragged crown of foliage."""
    rng = scene.rng
    crown_u = rng.uniform(3.0, 5.0)
    bark = rgb_color(0.30, 0.23, 0.16) * rng.uniform(0.8, 1.2)
    scene.box(x - 0.12, x + 0.12, 0.0, crown_u, z, ID["vegetation"], bark)
    scene.blob(x, crown_u, z, rng.uniform(1.2, 2.2), rng.uniform(1.2, 2.0),
               ID["vegetation"], None, rough=True)


def draw_dynamic(scene: Scene, x: float, z: float) -> None:
    """Movable unlabelled things: a pram, a dog or a wheeled bin (Cityscapes id 5 'dynamic',
    ignored when scoring)."""
    rng, label = scene.rng, ID["dynamic"]
    kind = rng.integers(3)
    body = [rgb_color(0.10, 0.25, 0.55), rgb_color(0.75, 0.35, 0.10), rgb_color(0.20, 0.45, 0.20)][rng.integers(3)]
    if kind == 0:  # a pram: body on a frame with two wheels
        scene.box(x - 0.02, x + 0.02, 0.1, 0.6, z, label, rgb_color(0.2, 0.2, 0.2))
        scene.box(x - 0.25, x + 0.25, 0.35, 0.75, z, label, body)
        for side in (-1, 1):
            scene.blob(x + side * 0.2, 0.1, z, 0.08, 0.1, label, rgb_color(0.05, 0.05, 0.05))
    elif kind == 1:  # a dog, side on
        coat = SKIN_COLORS[rng.integers(len(SKIN_COLORS))] * 0.6
        for leg in (-0.22, 0.22):
            scene.box(x + leg - 0.04, x + leg + 0.04, 0.0, 0.3, z, label, coat * 0.8)
        scene.box(x - 0.3, x + 0.3, 0.25, 0.5, z, label, coat)
        scene.blob(x + 0.34, 0.55, z, 0.1, 0.1, label, coat)
    else:  # a wheeled bin
        scene.box(x - 0.22, x + 0.22, 0.05, 0.9, z, label, body)
        scene.box(x - 0.25, x + 0.25, 0.9, 0.98, z, label, body * 0.7)


def draw_static(scene: Scene, x: float, z: float) -> None:
    """Unlabelled street furniture (bins, bollards): Cityscapes id 4, ignored when scoring."""
    color = [rgb_color(0.15, 0.25, 0.18), rgb_color(0.25, 0.25, 0.27), rgb_color(0.55, 0.40, 0.20)][
        scene.rng.integers(3)]
    scene.box(x - 0.2, x + 0.2, 0.0, scene.rng.uniform(0.5, 0.9), z, ID["static"], color)
