"""The ground, band by lateral band: road (asphalt, lane marks, a zebra), parking lanes, sidewalks,
grass and unpaved verges, with a facade's shadow on sunny days."""

from __future__ import annotations

import numpy as np

from cgbench.data.synthcity.layout import Street
from cgbench.data.synthcity.palette import ID, Window, rgb_color
from cgbench.data.synthcity.scene import Scene


def draw_ground(scene: Scene, street: Street) -> None:
    """Road, parking lanes, sidewalks, verges and open ground, by lateral band, with textures."""
    c = scene.canvas
    y0 = int(np.floor(scene.yh))
    win = (slice(y0, c.h), slice(0, c.w))
    rows = np.arange(y0, c.h, dtype=np.float32)[:, None] + 0.5
    s = np.maximum(rows - scene.yh, 1e-3) / scene.cam_h  # pixels per unit at that row
    x = (np.arange(c.w, dtype=np.float32)[None, :] + 0.5 - scene.xv) / s  # lateral position
    z = np.broadcast_to(scene.focal / s, x.shape)
    below = np.broadcast_to(rows >= scene.yh, x.shape)
    left, right = street.sides
    side = lambda a, b: np.where(x < 0, a, b)  # noqa: E731  a per-pixel property of its side
    distance, road_edge = np.abs(x), side(left.road_edge, right.road_edge)
    kerb, walk_edge = side(left.kerb, right.kerb), side(left.walk_edge, right.walk_edge)
    cross = street.in_cross(z) & (distance > road_edge)
    shadow = _shadow(scene, x, street)

    road = below & ((distance <= road_edge) | cross)
    parking = below & ~cross & (distance > road_edge) & (distance <= kerb)
    walk = below & ~cross & (distance > kerb) & (distance <= walk_edge)
    verge = below & ~cross & (distance > walk_edge)
    verge_label = side(left.verge_label, right.verge_label)
    bands = [(road, ID["road"], lambda: _asphalt(scene, win, x, z, street)),
             (parking, ID["parking"], lambda: _parking_bays(scene, win, z)),
             (walk, ID["sidewalk"], lambda: _paving(scene, win, x, z, s, kerb)),
             (verge & (verge_label == ID["terrain"]), ID["terrain"], lambda: _grass(scene, win)),
             (verge & (verge_label == ID["ground"]), ID["ground"], lambda: _dirt(scene, win))]
    for mask, label, texture in bands:
        if mask.any():
            c.paint(win, mask, label, texture() * shadow, z)


def _shadow(scene: Scene, x: np.ndarray, street: Street) -> np.ndarray:
    """Light on the ground: on sunny days a facade's shadow across part of the street."""
    rng = scene.rng
    shadow = np.ones_like(x)
    if scene.sunny:
        edge = rng.uniform(-street.left.road_edge, street.right.road_edge)
        shadow = np.where((x < edge) if rng.random() < 0.5 else (x > edge), 0.6, 1.0)
    return (shadow * rng.uniform(0.85, 1.1))[..., None]


def _asphalt(scene: Scene, win: Window, x, z, street: Street) -> np.ndarray:
    """Asphalt grain, kerb lines, a dashed centre line (stopping at a cross street), a zebra."""
    rng, fine = scene.rng, scene.fine[win]
    road_l, road_r = -street.left.road_edge, street.right.road_edge
    asphalt = rgb_color(0.36, 0.36, 0.38) * rng.uniform(0.8, 1.2)
    grain = 1 + 0.10 * fine + 0.06 * scene.mid[win] + 0.05 * scene.white[win] + 0.08 * scene.coarse[win]
    rgb = asphalt * grain[..., None]
    marks = np.zeros(x.shape, dtype=bool)
    for edge in (road_l, road_r):  # solid lines just inside the kerbs
        marks |= np.abs(x - (edge - 0.3 * np.sign(edge))) < 0.06
    dash_phase = rng.uniform(0, 1)
    centre = rng.uniform(road_l + 1.0, road_r - 1.0) if road_r - road_l > 2.5 else 0.0
    marks |= (np.abs(x - centre) < 0.07) & (((z / 6.0 + dash_phase) % 1.0) < 0.45)
    if street.cross is not None:
        marks &= ~street.in_cross(z)
        near = street.cross[0]
        marks |= (z > near - 3.0) & (z < near - 0.8) & ((np.abs(x) % 0.9) < 0.45) \
            & (x > road_l) & (x < road_r)
    return np.where(marks[..., None], rgb_color(0.82, 0.82, 0.80) * (1 + 0.05 * fine[..., None]), rgb)


def _parking_bays(scene: Scene, win: Window, z) -> np.ndarray:
    """A parking lane (Cityscapes 'parking', ignored when scoring): darker or reddish asphalt
    with white lines between the bays."""
    rng, fine, white = scene.rng, scene.fine[win], scene.white[win]
    base = [rgb_color(0.30, 0.30, 0.32), rgb_color(0.42, 0.33, 0.31)][rng.integers(2)] * rng.uniform(0.85, 1.15)
    bay, phase = rng.uniform(2.2, 2.8), rng.uniform(0, 1)
    lines = ((z / bay + phase) % 1.0) < 0.06
    rgb = base * (1 + 0.08 * fine + 0.06 * white)[..., None]
    return np.where(lines[..., None], rgb_color(0.80, 0.80, 0.78), rgb)


def _paving(scene: Scene, win: Window, x, z, s, kerb) -> np.ndarray:
    """Sidewalk slabs with joints, and a bright kerb stone at the inner edge."""
    rng, fine, white = scene.rng, scene.fine[win], scene.white[win]
    if rng.random() < 0.7:
        paving = rgb_color(0.52, 0.52, 0.52) * rng.uniform(0.85, 1.2)
    else:
        paving = rgb_color(0.60, 0.45, 0.42) * rng.uniform(0.85, 1.1)
    tile = float(rng.uniform(0.4, 0.8))
    joints = ((np.abs(x) % tile) < 0.05 * tile * s / 8) | ((z % tile) < 0.06 * z * tile / 8)
    rgb = paving * ((1 + 0.05 * fine + 0.04 * white) * np.where(joints, 0.85, 1.0))[..., None]
    return np.where((np.abs(np.abs(x) - kerb) < 0.15)[..., None], paving * 1.25, rgb)


def _grass(scene: Scene, win: Window) -> np.ndarray:
    rng = scene.rng
    if rng.random() < 0.8:
        turf = rgb_color(0.36, 0.48, 0.20) * rng.uniform(0.8, 1.2)
    else:
        turf = rgb_color(0.52, 0.50, 0.32) * rng.uniform(0.8, 1.1)
    return turf * (1 + 0.08 * scene.fine[win] + 0.08 * scene.white[win] + 0.1 * scene.coarse[win])[..., None]


def _dirt(scene: Scene, win: Window) -> np.ndarray:
    """Unpaved ground (Cityscapes 'ground', ignored when scoring): gravel and packed earth."""
    rng = scene.rng
    earth = [rgb_color(0.45, 0.40, 0.33), rgb_color(0.50, 0.48, 0.45)][rng.integers(2)] * rng.uniform(0.8, 1.15)
    grain = 1 + 0.12 * scene.fine[win] + 0.14 * scene.white[win] + 0.12 * scene.coarse[win]
    return earth * grain[..., None]
