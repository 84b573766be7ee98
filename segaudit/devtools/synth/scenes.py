"""Scene layout of one synthetic image: its classes and background kind (where the context cue lives),
object shapes, sizes, colours, textures and positions, occlusion, and the optional crowd.

Every image holds 1-5 object instances of the five shape classes, 18%-44% of the image across, with a
colour from their class's hue band and a texture (solid, stripes, dots or noise). In about a third of the
images objects may overlap (later ones occlude earlier ones; every instance stays at least 40% visible).
In about 5% of the images a *crowd* of 3-6 small packed discs is drawn and annotated as one ``iscrowd=1``
region. Occluded instances (and 10% of the others) are annotated as RLE, the rest as polygons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from segaudit.devtools.synth.classes import (
    BACKGROUND_KINDS,
    CLASS_NAMES,
    CONTEXT_BACKGROUND,
    CONTEXT_CLASS,
    P_CONTEXT,
)
from segaudit.devtools.synth.colours import background_colours, object_colour
from segaudit.devtools.synth.masks import dilate, rasterise
from segaudit.devtools.synth.shapes import place_polygon, unit_shape

__all__ = ["P_CROWD", "SceneObject", "Crowd", "Scene", "sample_classes", "sample_scene"]

_OBJECT_TEXTURES = ("solid", "stripes", "dots", "noise")
_P_OVERLAP = 0.35  # images where instances may overlap (about 30% end up with an actual overlap)
#: Probability that an image holds a crowd of small discs (one ``iscrowd=1`` region).
P_CROWD = 0.05
_P_EXTRA_RLE = 0.10  # unoccluded instances written as compressed RLE anyway
_MIN_VISIBLE = 0.4
#: Object circumradius as a share of the image side, and the smallest it may shrink to when placing it:
#: objects stay at least ~18% of the image across, large enough for a stride-16 network to tell shapes apart.
_RADIUS_RANGE = (0.10, 0.22)
_RADIUS_FLOOR = 0.09


@dataclass
class SceneObject:
    """One drawn object instance."""

    category: int
    shape: str
    polygon: list[float]
    full_mask: np.ndarray  # (H, W) bool, the whole polygon
    centre: tuple[float, float]
    radius: float
    colour: np.ndarray = field(default_factory=lambda: np.zeros(3))
    texture: str = "solid"
    visible_mask: np.ndarray | None = None  # (H, W) bool, full_mask minus later objects
    as_rle: bool = False


@dataclass
class Crowd:
    """A crowd of small packed discs, annotated as one iscrowd region."""

    category: int
    polygons: list[list[float]]
    mask: np.ndarray  # (H, W) bool, union of the discs
    colour: np.ndarray = field(default_factory=lambda: np.zeros(3))
    texture: str = "solid"


@dataclass
class Scene:
    """The layout of one image: background kind, objects in drawing order, optional crowd."""

    size: int
    background: str
    bg_colours: list[np.ndarray]
    objects: list[SceneObject]
    crowd: Crowd | None = None
    allow_overlap: bool = False


def sample_classes(rng: np.random.Generator) -> tuple[list[int], str]:
    """Object classes of one image and its background kind (this is where the context cue lives).

    Returns
    -------
    classes : list of int
        1-5 category indices into :data:`CLASS_NAMES`, uniform over the five object classes.
    background : str
        ``"water"`` with probability 0.9 when a boat is present, otherwise uniform over
        :data:`BACKGROUND_KINDS` (the base rate).
    """
    n = int(rng.integers(1, 6))
    classes = [int(c) for c in rng.integers(1, len(CLASS_NAMES), size=n)]
    boat = CLASS_NAMES.index(CONTEXT_CLASS)
    if boat in classes and rng.random() < P_CONTEXT:
        background = CONTEXT_BACKGROUND
    elif boat in classes:
        others = [k for k in BACKGROUND_KINDS if k != CONTEXT_BACKGROUND]
        background = others[int(rng.integers(len(others)))]
    else:
        background = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    return classes, background


def sample_scene(rng: np.random.Generator, size: int, crowd_prob: float = P_CROWD) -> Scene:
    """Lay out one image: background kind, objects with their masks, optional crowd.

    Parameters
    ----------
    rng : np.random.Generator
        The image's generator (consumed; :func:`render_scene` continues with it).
    size : int
        Image height and width.
    crowd_prob : float
        Probability of a crowd of small discs.

    Returns
    -------
    Scene
        Objects in drawing order, each with ``full_mask`` and ``visible_mask`` of shape ``(size, size)``.
    """
    classes, background = sample_classes(rng)
    bg_colours = background_colours(background, rng)
    allow_overlap = len(classes) > 1 and rng.random() < _P_OVERLAP
    objects: list[SceneObject] = []
    occupied = np.zeros((size, size), dtype=bool)  # union of placed masks, grown by a 2 px margin
    for cat in classes:
        shape = CLASS_NAMES[cat]
        unit = unit_shape(shape, rng)
        radius = rng.uniform(_RADIUS_RANGE[0], _RADIUS_RANGE[1]) * size
        colour = object_colour(bg_colours + [o.colour for o in objects], rng, shape)
        texture = _OBJECT_TEXTURES[int(rng.integers(len(_OBJECT_TEXTURES)))]
        placed = None
        for attempt in range(25):
            if attempt >= 8:
                radius = max(_RADIUS_FLOOR * size, radius * 0.92)
            centre = None
            if allow_overlap and objects:
                other = objects[int(rng.integers(len(objects)))]
                ang = rng.uniform(0.0, 2 * np.pi)
                dist = rng.uniform(0.5, 1.0) * (other.radius + radius)
                centre = (other.centre[0] + dist * math.cos(ang), other.centre[1] + dist * math.sin(ang))
            poly, centre_used = place_polygon(unit, radius, centre, size, rng)
            mask = rasterise([poly], size)
            if not mask.any():
                continue
            if allow_overlap:
                ok = all((o.visible_mask & ~mask).sum() >= _MIN_VISIBLE * o.full_mask.sum() for o in objects)
            else:
                ok = not (mask & occupied).any()
            if ok:
                placed = (poly, centre_used, mask)
                break
        if placed is None:
            continue  # the instance cannot be placed visibly enough: drop it
        poly, centre_used, mask = placed
        for o in objects:
            o.visible_mask = o.visible_mask & ~mask
        objects.append(
            SceneObject(cat, shape, poly, mask, centre_used, radius, colour, texture, visible_mask=mask.copy())
        )
        occupied |= dilate(mask, 2)

    crowd = None
    if rng.random() < crowd_prob:
        crowd = _sample_crowd(rng, size, occupied, bg_colours)
    for o in objects:
        occluded = bool((o.full_mask & ~o.visible_mask).any())
        o.as_rle = occluded or bool(rng.random() < _P_EXTRA_RLE)
    return Scene(size, background, bg_colours, objects, crowd, allow_overlap)


def _sample_crowd(
    rng: np.random.Generator, size: int, occupied: np.ndarray, bg_colours: list[np.ndarray]
) -> Crowd | None:
    """3-6 small discs packed together in free space; ``None`` if there is no room."""
    n = int(rng.integers(3, 7))
    r = rng.uniform(0.035, 0.05) * size
    colour = object_colour(bg_colours, rng, "disc")
    texture = ("solid", "noise")[int(rng.integers(2))]
    unit = unit_shape("disc", rng)
    span = 3.0 * r
    for _ in range(20):
        cx, cy = rng.uniform(span + 1, size - span - 1, size=2)
        polys = []
        phase = rng.uniform(0.0, 2 * np.pi)
        for k in range(n):
            if k == 0:
                c = (cx, cy)
            else:
                a = phase + 2 * np.pi * (k - 1) / (n - 1) + rng.uniform(-0.2, 0.2)
                d = 1.7 * r * rng.uniform(0.9, 1.1)
                c = (cx + d * math.cos(a), cy + d * math.sin(a))
            poly, _ = place_polygon(unit, r * rng.uniform(0.85, 1.1), c, size, rng)
            polys.append(poly)
        mask = rasterise(polys, size)
        if mask.any() and not (mask & occupied).any():
            return Crowd(CLASS_NAMES.index("disc"), polys, mask, colour, texture)
    return None

