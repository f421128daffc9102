"""SynthCity's vocabulary: the Cityscapes label ids it paints and its colour palettes."""

from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers.labels import name2label

ID = {name: name2label[name].id for name in (
    "unlabeled", "ego vehicle", "static", "dynamic", "ground", "road", "sidewalk", "parking",
    "building", "wall", "fence", "guard rail", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "motorcycle",
    "bicycle",
)}

Color = np.ndarray  # float RGB in [0, 1]: (3,), (n, 3) for masked pixels, or (h, w, 3) per window
Window = tuple[slice, slice]


def rgb_color(r: float, g: float, b: float) -> np.ndarray:
    return np.array([r, g, b], dtype=np.float32)


# Palettes (linear-ish display RGB in [0, 1]). Greys and greens are shared between classes on
# purpose: a segmenter must use texture and position, not colour alone.
FACADE_COLORS = np.array([
    [0.55, 0.55, 0.55], [0.42, 0.42, 0.44], [0.68, 0.66, 0.62], [0.72, 0.64, 0.52],
    [0.55, 0.36, 0.30], [0.62, 0.50, 0.42], [0.80, 0.78, 0.74], [0.48, 0.46, 0.40],
], dtype=np.float32)
VEHICLE_COLORS = np.array([
    [0.08, 0.08, 0.09], [0.85, 0.85, 0.86], [0.55, 0.56, 0.58], [0.35, 0.36, 0.38],
    [0.60, 0.10, 0.10], [0.12, 0.20, 0.45], [0.20, 0.30, 0.25], [0.70, 0.65, 0.55],
], dtype=np.float32)
CLOTHES_COLORS = np.array([
    [0.10, 0.10, 0.12], [0.20, 0.22, 0.35], [0.45, 0.10, 0.10], [0.55, 0.55, 0.55],
    [0.70, 0.60, 0.45], [0.15, 0.30, 0.20], [0.80, 0.80, 0.78], [0.35, 0.25, 0.20],
], dtype=np.float32)
SKIN_COLORS = np.array([[0.85, 0.68, 0.56], [0.62, 0.45, 0.33], [0.40, 0.27, 0.20]],
                        dtype=np.float32)
