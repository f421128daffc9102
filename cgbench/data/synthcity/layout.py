"""A street's lateral layout: what lies on each side (parking, sidewalk, verge, guard rail, facade
style), drawn at random, and whether a street crosses it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cgbench.data.synthcity.palette import ID

SIDE_STYLES = {  # what stands along one side of the street: facade block kinds and their odds
    "urban": [0.74, 0.10, 0.07, 0.05, 0.04],
    "green": [0.30, 0.40, 0.06, 0.14, 0.10],
    "open": [0.12, 0.30, 0.04, 0.14, 0.40],
}
BLOCK_KINDS = ["building", "trees", "wall", "fence", "open"]


@dataclass
class Side:
    """One side of the street, from the road's edge outward; distances in units from the camera."""

    sign: int  # -1 left, +1 right
    road_edge: float
    parking: float  # width of a parking lane beside the road (0: none)
    sidewalk: float  # width (0: none)
    verge: float  # width of the strip between sidewalk and facades (0: none)
    verge_label: int  # terrain or ground: also what lies behind open facade blocks
    style: str  # a key of SIDE_STYLES
    guard_rail: bool  # along the road's edge (only where there is no sidewalk)

    @property
    def kerb(self) -> float:
        return self.road_edge + self.parking

    @property
    def walk_edge(self) -> float:
        return self.kerb + self.sidewalk

    @property
    def facade(self) -> float:
        return self.walk_edge + self.verge

    def x(self, distance: float) -> float:
        """Lateral position ``distance`` units from the camera on this side."""
        return self.sign * distance


def draw_side(rng: np.random.Generator, sign: int) -> Side:
    """One side of the street, drawn at random (``sign``: -1 left, +1 right)."""
    style = str(rng.choice(list(SIDE_STYLES), p=[0.6, 0.25, 0.15]))
    road_edge = rng.uniform(0.9, 4.5)
    sidewalk = 0.0 if rng.random() < (0.1 if style == "urban" else 0.35) else rng.uniform(0.6, 3.0)
    parking = rng.uniform(0.9, 1.4) if sidewalk and rng.random() < 0.3 else 0.0
    verge = rng.uniform(0.4, 3.0) if rng.random() < (0.3 if style == "urban" else 0.7) else 0.0
    verge_label = ID["ground"] if rng.random() < 0.35 else ID["terrain"]
    guard_rail = not sidewalk and rng.random() < 0.6
    return Side(sign, road_edge, parking, sidewalk, verge, verge_label, style, guard_rail)


@dataclass
class Street:
    """The street's lateral layout, and an intersection's depth range when there is one."""

    left: Side
    right: Side
    cross: tuple[float, float] | None

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.left, self.right

    def in_cross(self, z: np.ndarray) -> np.ndarray:
        """Whether depth z lies in the cross street."""
        if self.cross is None:
            return np.zeros(np.shape(z), dtype=bool)
        return (z >= self.cross[0]) & (z <= self.cross[1])


def draw_street(rng: np.random.Generator) -> Street:
    """Both sides of the street, and a cross street's depth range about a third of the time."""
    cross = None
    if rng.random() < 0.35:
        near = rng.uniform(6.0, 35.0)
        cross = (near, near + rng.uniform(4.0, 12.0))
    return Street(draw_side(rng, -1), draw_side(rng, 1), cross)
