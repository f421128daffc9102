"""What stands along the street: blocks of buildings, tree rows, walls and fences on each side's
facade plane, the corner buildings across a cross street, and guard rails."""

from __future__ import annotations

import numpy as np

from cgbench.data.synthcity.layout import BLOCK_KINDS, SIDE_STYLES, Side, Street
from cgbench.data.synthcity.noise import hash01
from cgbench.data.synthcity.palette import FACADE_COLORS, ID, Window, rgb_color
from cgbench.data.synthcity.scene import Scene


def draw_facades(scene: Scene, street: Street) -> None:
    """Blocks of buildings, tree rows, walls and fences standing on each facade plane; across
    a cross street, the corner buildings on its far side."""
    for side in street.sides:
        _draw_facade_side(scene, side, street)


def _plane_columns(scene: Scene, plane: float, z_max: float):
    """Columns that see the plane x = ``plane`` (parallel to the street) nearer than z_max:
    (window, depth per column (1, w), height above the road on the plane (h, w)), or None."""
    c = scene.canvas
    dx = np.arange(c.w, dtype=np.float32) + 0.5 - scene.xv
    with np.errstate(divide="ignore"):
        zc = np.where(dx * plane > 0, scene.focal * plane / dx, np.inf)
    cols = np.nonzero(zc < z_max)[0]
    if cols.size == 0:
        return None
    win = (slice(0, c.h), slice(int(cols[0]), int(cols[-1]) + 1))
    zc = zc[win[1]][None, :].astype(np.float32)
    yy = np.arange(c.h, dtype=np.float32)[:, None] + 0.5
    return win, zc, scene.cam_h - (yy - scene.yh) * zc / scene.focal


def _facade_rgb(scene: Scene, win: Window, base: np.ndarray, u: np.ndarray, along: np.ndarray,
                top: np.ndarray | float) -> np.ndarray:
    """A building's face: plaster noise, rows of windows, shop windows at street level, eaves."""
    rng = scene.rng
    rgb = base * (1 + 0.06 * scene.fine[win] + 0.04 * scene.mid[win])[..., None]
    floor_h, bay = rng.uniform(1.8, 2.3), rng.uniform(1.6, 2.6)
    fu, fz = u / floor_h, along / bay
    window = ((fu % 1.0) > 0.35) & ((fu % 1.0) < 0.8) & ((fz % 1.0) > 0.25) & ((fz % 1.0) < 0.75)
    shop = (u > 0.2) & (u < 1.5) & ((fz % 1.0) > 0.1) & ((fz % 1.0) < 0.9)
    glass = 0.12 + 0.22 * hash01(np.floor(fu), np.floor(fz), float(rng.uniform(0, 10)))
    rgb = np.where(((window & (u > 2.0)) | shop)[..., None], glass[..., None] * rgb_color(0.9, 1.0, 1.15), rgb)
    return np.where(((top - u) < 0.25)[..., None], rgb * 0.7, rgb)


def _draw_facade_side(scene: Scene, side: Side, street: Street) -> None:
    rng, c = scene.rng, scene.canvas
    z_max = 250.0
    ends, kinds, heights, colors = [], [], [], []
    z = 0.0
    while z < z_max:
        z += rng.uniform(5.0, 18.0)
        ends.append(z)
        kinds.append(rng.choice(BLOCK_KINDS, p=SIDE_STYLES[side.style]))
        heights.append(rng.uniform(4.0, 14.0))
        colors.append(FACADE_COLORS[rng.integers(len(FACADE_COLORS))] * rng.uniform(0.85, 1.15))
    found = _plane_columns(scene, side.x(side.facade), z_max)
    if found is None:
        return
    win, zc, u = found
    block = np.minimum(np.searchsorted(np.array(ends), zc[0]), len(ends) - 1)
    kind = np.where(street.in_cross(zc), "cross", np.array(kinds)[block][None, :])
    top = np.array(heights)[block][None, :]
    depth = np.broadcast_to(zc, u.shape)
    side_light = rng.uniform(0.65, 1.1) if scene.sunny else rng.uniform(0.85, 1.0)

    standing = u >= 0
    building = standing & (kind == "building") & (u < top)
    facade_rgb = _facade_rgb(scene, win, np.array(colors)[block][None, :, :], u, zc, top)
    c.paint(win, building, ID["building"], facade_rgb * side_light, depth)

    low = np.where(kind == "wall", rng.uniform(0.8, 1.6), rng.uniform(0.7, 1.3))
    ragged = top * 0.45 * (1 + 0.2 * np.sin(zc * 0.9)) + 0.6 * scene.mid[win]
    green = standing & np.isin(kind, ["trees", "wall", "fence"]) & (u < ragged)
    c.paint(win, green, ID["vegetation"], scene.foliage(win) * side_light, depth)

    wall = standing & (kind == "wall") & (u < low)
    concrete = FACADE_COLORS[rng.integers(len(FACADE_COLORS))]
    wall_rgb = concrete * (1 + 0.08 * scene.fine[win] + 0.05 * scene.white[win])[..., None]
    c.paint(win, wall, ID["wall"], wall_rgb * side_light, depth)

    fence = standing & (kind == "fence") & (u < low)
    slats = ((zc / 0.35) % 1.0) < 0.45
    rail = (np.abs(u - low * 0.85) < 0.06) | (np.abs(u - low * 0.3) < 0.06)
    fence_rgb = np.where((slats | rail)[..., None], rgb_color(0.45, 0.40, 0.35) * side_light,
                         scene.foliage(win) * 0.7)
    c.paint(win, fence, ID["fence"], fence_rgb, depth)
    gap = np.nonzero(kind[0] == "cross")[0] + win[1].start  # contiguous: depth is monotonic
    if gap.size:
        _draw_corner(scene, slice(int(gap[0]), int(gap[-1]) + 1), street.cross[1], side_light)


def _draw_corner(scene: Scene, columns: slice, z_far: float, light: float) -> None:
    """The building on the far corner of a cross street, facing the camera at depth z_far,
    seen in the ``columns`` where the facade plane is interrupted by the cross street."""
    rng, c = scene.rng, scene.canvas
    win = (slice(0, c.h), columns)
    yy = np.arange(c.h, dtype=np.float32)[:, None] + 0.5
    u = scene.cam_h - (yy - scene.yh) * z_far / scene.focal
    xs = np.arange(columns.start, columns.stop, dtype=np.float32)[None, :] + 0.5
    along = np.abs(xs - scene.xv) * z_far / scene.focal  # lateral distance on the corner's face
    top = rng.uniform(4.0, 14.0)
    building = np.broadcast_to((u >= 0) & (u < top), (c.h, columns.stop - columns.start))
    base = FACADE_COLORS[rng.integers(len(FACADE_COLORS))] * rng.uniform(0.85, 1.15)
    rgb = _facade_rgb(scene, win, base, u, along, top)
    c.paint(win, building, ID["building"], rgb * light, np.float32(z_far))


def draw_guard_rails(scene: Scene, street: Street) -> None:
    """Metal guard rails on posts along the road's edge where there is no sidewalk (Cityscapes
    'guard rail', ignored when scoring), in front of whatever stands behind them."""
    c = scene.canvas
    for side in street.sides:
        found = _plane_columns(scene, side.x(side.road_edge + 0.25), 150.0) if side.guard_rail else None
        if found is None:
            continue
        win, zc, u = found
        posts = ((zc % 2.0) < 0.12) & (u >= 0) & (u < 0.8)
        shown = ((u > 0.45) & (u < 0.8) | posts) & ~street.in_cross(zc) & (zc < c.depth[win])
        metal = rgb_color(0.62, 0.63, 0.65) * scene.rng.uniform(0.8, 1.1)
        shine = np.where((u > 0.58) & (u < 0.66), 1.25, 1.0) * (1 + 0.05 * scene.fine[win])
        rgb = np.where(posts[..., None], metal * 0.55, metal * shine[..., None])
        c.paint(win, shown, ID["guard rail"], rgb, np.broadcast_to(zc, u.shape))
