"""SynthCity: procedural street scenes in the Cityscapes label space and file layout.

A stand-in for Cityscapes (which cannot be redistributed) for tests, smoke runs and CPU-sized
studies. Each scene is a camera looking down a street: sky, a skyline at the horizon, a road in
perspective with lane marks, parking lanes, kerbed sidewalks, grass or unpaved verges, facades
(buildings, walls, fences, trees), sometimes a cross street with the corner buildings beyond it
and a zebra crossing, guard rails where there is no sidewalk, poles with traffic signs and lights,
cars, buses and trucks, pedestrians, cyclists, prams, dogs and bins, and sometimes the ego
vehicle's bonnet. As in Cityscapes, some of these are classes the benchmark does not evaluate
(parking, ground, guard rail, dynamic, static, ego vehicle): they are painted with their own label
ids, colours and textures, and scored as ignored.

No two scenes share a layout: the camera's height, pitch (the horizon row), heading (the vanishing
point) and focal length vary, and so do the road's width, what lies on each side (parking,
sidewalk, verge, guard rail; buildings, greenery or open land) and whether a street crosses.

The label map is drawn first (Cityscapes label *ids*), and the photo is rendered from the same
geometry with per-class procedural textures (windows, asphalt grain, paving, foliage, clouds),
depth haze, random exposure and colour temperature, blur and sensor noise. Classes deliberately
overlap in colour (grey road / sidewalk / building / pole, green grass / trees), so photo->labels
needs texture and context rather than a per-pixel colour lookup.

Files follow the official layout (``leftImg8bit/{split}/{city}/..._leftImg8bit.png`` and
``gtFine/{split}/{city}/..._gtFine_{labelIds,color}.png``, the colour file painting every label in
its official colour) with 2:1 images (``2*size`` x ``size``). Every scene is seeded from
``(seed, split, index)``, so outputs are byte-identical whatever the number of worker processes.

The rooms, in painting order: :mod:`~.palette` (label ids, colours), :mod:`~.noise`,
:mod:`~.canvas` (label map, photo, depth), :mod:`~.layout` (the street's sides), :mod:`~.scene`
(camera, shapes, development), then the painters :mod:`~.sky`, :mod:`~.ground`, :mod:`~.facades`
and :mod:`~.objects` (with :mod:`~.furniture`, :mod:`~.vehicles`, :mod:`~.people`), put in order by
:mod:`~.render`; :mod:`~.files` writes the dataset.
"""

from cgbench.data.synthcity.files import GENERATOR_VERSION, MANIFEST, TRAIN_CITIES, VAL_CITIES, generate
from cgbench.data.synthcity.render import render_scene

__all__ = ["GENERATOR_VERSION", "MANIFEST", "TRAIN_CITIES", "VAL_CITIES", "generate", "render_scene"]
