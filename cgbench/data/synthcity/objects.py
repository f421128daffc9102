"""The things in the street, placed at random and painted from far to near: poles, trees, vehicles,
people and riders, and movable or static unlabelled things."""

from __future__ import annotations

import numpy as np

from cgbench.data.synthcity.furniture import draw_dynamic, draw_pole, draw_static, draw_tree
from cgbench.data.synthcity.layout import Street
from cgbench.data.synthcity.people import draw_bicycle, draw_motorcycle, draw_person
from cgbench.data.synthcity.scene import Scene
from cgbench.data.synthcity.vehicles import draw_bus, draw_car, draw_truck

_DRAW = {"pole": draw_pole, "tree": draw_tree, "car": draw_car, "bus": draw_bus, "truck": draw_truck,
         "person": draw_person, "bicycle": draw_bicycle, "motorcycle": draw_motorcycle, "static": draw_static,
         "dynamic": draw_dynamic}  # what each kind of item is painted with


def place_objects(scene: Scene, street: Street) -> None:
    """Street furniture, vehicles, people and movable things, painted from far to near."""
    rng, sides = scene.rng, street.sides
    road_l, road_r = -street.left.road_edge, street.right.road_edge
    walks = [side for side in sides if side.sidewalk > 0]
    items: list[tuple[float, str, float]] = []  # (depth, kind, lateral position)
    for _ in range(rng.integers(2, 8)):
        side = sides[rng.integers(2)]
        offset = side.kerb + min(0.4, side.sidewalk / 2) if side.sidewalk else side.road_edge + 0.6
        items.append((rng.uniform(4.0, 60.0), "pole", side.x(offset)))
    for _ in range(rng.integers(0, 5)):
        side = sides[rng.integers(2)]
        offset = side.walk_edge + (side.verge / 2 if side.verge > 0.5 else 0.4)
        items.append((rng.uniform(5.0, 80.0), "tree", side.x(offset)))
    for _ in range(rng.integers(1, 11)):
        side = sides[rng.integers(2)]
        if rng.random() < 0.35:  # parked: in a parking lane, else along the kerb
            x = side.x(side.road_edge + side.parking / 2 if side.parking else side.road_edge - 0.8)
        else:
            x = rng.uniform(road_l + 0.8, road_r - 0.8)
        items.append((rng.uniform(3.5, 60.0), "car", x))
    if rng.random() < 0.3:
        x = rng.uniform(road_l + 1.0, road_r - 1.0) if road_r - road_l > 2.0 else (road_l + road_r) / 2
        items.append((rng.uniform(8.0, 80.0), rng.choice(["bus", "truck"]), x))
    for kind, count, far in (("person", 9, 50.0), ("static", 3, 40.0), ("dynamic", 4, 40.0)):
        for _ in range(rng.integers(0, count) if walks else 0):  # on the sidewalks
            side = walks[rng.integers(len(walks))]
            x = side.x(rng.uniform(side.kerb + 0.1, side.walk_edge - 0.1))
            items.append((rng.uniform(3.0, far), kind, x))
    if rng.random() < 0.5:
        x = rng.choice([road_l + 0.5, road_r - 0.5])
        items.append((rng.uniform(4.0, 50.0), rng.choice(["bicycle", "motorcycle"]), x))
    standing = ("pole", "tree", "static", "dynamic")  # nothing stands in the cross street
    items = [(z, kind, x) for z, kind, x in items
             if kind not in standing or not street.in_cross(np.float32(z))]
    for z, kind, x in sorted(items, key=lambda item: -item[0]):
        _DRAW[kind](scene, x, z)
