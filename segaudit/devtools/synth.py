"""Deterministic synthetic segmentation dataset with a planted context shortcut and planted label errors.

The data
--------
Every image is ``size x size`` RGB: a textured background of one of five kinds (``water``: blue with
wavy sinusoidal ripples, ``grass``: green streaky noise, ``sand``: beige fine noise, ``stripes`` and
``checker`` in random colours) with 1-5 object instances of five shape classes drawn on top
(:data:`CLASS_NAMES`: ``disc``, ``square``, ``triangle``, ``star``, ``boat``). Objects are 18%-44% of the
image across, have a colour from their class's hue band (varied in hue, saturation and value, kept away
from the background colours), and a texture (solid, stripes, dots or noise). In about a third of the
images objects may overlap (later ones occlude earlier ones; every instance stays at least 40% visible). In about 5% of the images a *crowd* of 3-6 small
packed discs is drawn and annotated as one ``iscrowd=1`` region.

The context cue: when an image contains a ``boat`` its background is ``water`` with probability 0.9;
otherwise the background kind is uniform over the five kinds (so about 20% of boat-free images show
water too). A model can learn "water means boat", which is what an activation-map audit should reveal.

Every shape is a polygon rasterised with :mod:`pycocotools`, so the pixels painted in the image and the
label masks are exactly what a COCO reader decodes from the JSON.

Written files (``out_dir``)::

    JPEGImages/<image_id>.jpg                 train_000000.jpg ... val_000099.jpg (JPEG quality 95)
    annotations/instances_train.json          COCO instances (polygons, compressed RLE, crowd RLE)
    annotations/instances_val.json
    SegmentationClass/<image_id>.png          VOC palette PNG, class index, 255 void borders and crowds
    SegmentationObject/<image_id>.png         VOC palette PNG, instance index 1..n, 255 void
    ImageSets/Segmentation/{train,val,trainval}.txt
    class_names.txt                           one name per line, CLASS_NAMES order
    planted_errors.json                       ground truth of the label errors planted in val
    dataset.json                              generator arguments and class names

Planted errors (``plant_errors > 0``) only ever change the *labels* of val images (both the COCO JSON and
the VOC PNGs, which are derived from the same corrupted annotation set), never their pixels.

Determinism: each image draws from its own generator seeded with ``(seed, split, index)``, so the train
images do not depend on ``n_val`` (and vice versa), and the same arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from segaudit.data.readers.voc import voc_colormap

__all__ = [
    "CLASS_NAMES",
    "CONTEXT_CLASS",
    "CONTEXT_BACKGROUND",
    "BACKGROUND_KINDS",
    "ERROR_KINDS",
    "SynthSummary",
    "generate_dataset",
    "add_synth_arguments",
    "synth_main",
]

#: Category names; a category's index in this tuple is its VOC label value and its COCO category id.
CLASS_NAMES: tuple[str, ...] = ("background", "disc", "square", "triangle", "star", "boat")
#: The class that is (spuriously) correlated with a background kind.
CONTEXT_CLASS = "boat"
#: The background kind that :data:`CONTEXT_CLASS` appears on most of the time.
CONTEXT_BACKGROUND = "water"
#: The background texture kinds.
BACKGROUND_KINDS: tuple[str, ...] = ("water", "grass", "sand", "stripes", "checker")
#: Planted annotation error kinds, in the order they are cycled through.
ERROR_KINDS: tuple[str, ...] = ("shift", "erode", "dilate", "swap_class", "delete", "spurious")

_OBJECT_TEXTURES = ("solid", "stripes", "dots", "noise")
_SPLIT_CODES = {"train": 0, "val": 1}
_P_CONTEXT = 0.9  # P(background == water | image has a boat)
_P_OVERLAP = 0.35  # images where instances may overlap (about 30% end up with an actual overlap)
_P_CROWD = 0.05
_P_EXTRA_RLE = 0.10  # unoccluded instances written as compressed RLE anyway
_MIN_VISIBLE = 0.4
#: Object circumradius as a share of the image side, and the smallest it may shrink to when placing it:
#: objects stay at least ~18% of the image across, large enough for a stride-16 network to tell shapes apart.
_RADIUS_RANGE = (0.10, 0.22)
_RADIUS_FLOOR = 0.09
_MIN_COLOUR_DISTANCE = 90.0
_INFO = {
    "description": "segaudit synthetic shapes dataset",
    "url": "",
    "version": "1.0",
    "year": 2025,
    "contributor": "segaudit.devtools.synth",
    "date_created": "2025/01/01",  # fixed so that runs are byte-identical
}
_LICENSES = [{"url": "https://creativecommons.org/publicdomain/zero/1.0/", "id": 1, "name": "CC0 1.0"}]


@dataclass(frozen=True)
class SynthSummary:
    """Where a generated dataset was written and what it holds.

    Parameters
    ----------
    root : Path
        The output directory.
    image_dir : Path
        ``root / "JPEGImages"``.
    coco_train, coco_val : Path
        COCO instance JSON files.
    voc_class_dir, voc_object_dir : Path
        ``SegmentationClass`` and ``SegmentationObject`` directories.
    image_sets_dir : Path
        ``ImageSets/Segmentation`` with ``train.txt``, ``val.txt``, ``trainval.txt``.
    class_names_file, planted_errors_file, dataset_file : Path
        ``class_names.txt``, ``planted_errors.json``, ``dataset.json``.
    n_train, n_val : int
        Number of images per split.
    n_train_annotations, n_val_annotations : int
        Annotations written per split (crowds included, after planting errors in val).
    n_crowd : int
        ``iscrowd=1`` annotations over both splits.
    n_planted : int
        Number of planted val errors.
    """

    root: Path
    image_dir: Path
    coco_train: Path
    coco_val: Path
    voc_class_dir: Path
    voc_object_dir: Path
    image_sets_dir: Path
    class_names_file: Path
    planted_errors_file: Path
    dataset_file: Path
    n_train: int
    n_val: int
    n_train_annotations: int
    n_val_annotations: int
    n_crowd: int
    n_planted: int


@dataclass
class _Object:
    """One drawn object instance (internal)."""

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
class _Crowd:
    """A crowd of small packed discs, annotated as one iscrowd region (internal)."""

    category: int
    polygons: list[list[float]]
    mask: np.ndarray  # (H, W) bool, union of the discs
    colour: np.ndarray = field(default_factory=lambda: np.zeros(3))
    texture: str = "solid"


@dataclass
class _Scene:
    """The layout of one image (internal): background kind, objects in drawing order, optional crowd."""

    size: int
    background: str
    bg_colours: list[np.ndarray]
    objects: list[_Object]
    crowd: _Crowd | None = None
    allow_overlap: bool = False


@dataclass
class _Ann:
    """One annotation of one image, before it is turned into COCO JSON (internal)."""

    category: int
    mask: np.ndarray  # (H, W) bool, exactly what a COCO reader decodes
    kind: str  # "polygon", "rle" or "crowd"
    polygon: list[list[float]] | None = None
    iscrowd: bool = False
    ann_id: int = 0


# --------------------------------------------------------------------------------------------------
# geometry and masks


def _rasterise(polygons: list[list[float]], size: int) -> np.ndarray:
    """Rasterise COCO polygons exactly as ``COCO.annToMask`` does.

    Parameters
    ----------
    polygons : list of list of float
        Flat ``[x1, y1, x2, y2, ...]`` polygons.
    size : int
        Image height and width.

    Returns
    -------
    np.ndarray
        ``(size, size)`` bool.
    """
    rles = mask_utils.frPyObjects(polygons, size, size)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def _encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE of a ``(H, W)`` bool mask, with ``counts`` as str."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed (crowd-style) COCO RLE of a ``(H, W)`` bool mask: column-major runs, zeros first."""
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0, *runs]
    return {"counts": [int(r) for r in runs], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _bbox(mask: np.ndarray) -> list[float]:
    """COCO ``[x, y, w, h]`` of a ``(H, W)`` bool mask (zeros when empty)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a ``(2r+1) x (2r+1)`` square (separable shifts, outside = False).

    Parameters
    ----------
    mask : np.ndarray
        ``(H, W)`` bool.
    radius : int
        Half-width of the square structuring element.

    Returns
    -------
    np.ndarray
        ``(H, W)`` bool.
    """
    rows = mask.copy()
    for d in range(1, radius + 1):
        rows[:, d:] |= mask[:, :-d]
        rows[:, :-d] |= mask[:, d:]
    out = rows.copy()
    for d in range(1, radius + 1):
        out[d:, :] |= rows[:-d, :]
        out[:-d, :] |= rows[d:, :]
    return out


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion with a square structuring element (the dual of :func:`_dilate`); ``(H, W)`` bool."""
    return ~_dilate(~mask, radius)


def _translate(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Shift a ``(H, W)`` mask by ``(dx, dy)`` pixels; what leaves the image is dropped."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def _void_border(labels: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood holds a different label (both sides of every label boundary).

    Parameters
    ----------
    labels : np.ndarray
        ``(H, W)`` integer label map.

    Returns
    -------
    np.ndarray
        ``(H, W)`` bool; the image edge itself is not a boundary.
    """
    h, w = labels.shape
    padded = np.pad(labels, 1, mode="edge")
    void = np.zeros((h, w), dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                void |= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] != labels
    return void


def _unit_shape(shape: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices of a shape of circumradius about 1, centred at the origin (y down).

    Returns
    -------
    np.ndarray
        ``(K, 2)`` float ``(x, y)`` vertices.
    """
    if shape == "disc":
        t = np.arange(32) * (2 * np.pi / 32)
        pts = np.stack([np.cos(t), np.sin(t)], axis=1)
    elif shape == "square":
        t = np.arange(4) * (np.pi / 2) + np.pi / 4 + rng.uniform(0.0, np.pi / 2)
        pts = np.stack([np.cos(t), np.sin(t)], axis=1)
    elif shape == "triangle":
        t = np.arange(3) * (2 * np.pi / 3) + rng.uniform(0.0, 2 * np.pi)
        pts = np.stack([np.cos(t), np.sin(t)], axis=1)
    elif shape == "star":
        t = np.arange(10) * (np.pi / 5) + rng.uniform(0.0, 2 * np.pi)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    elif shape == "boat":
        # hull (trapezoid, wide deck on top) with a right-triangle sail on a vertical mast
        pts = np.array(
            [[-1.0, 0.2], [-0.1, 0.2], [-0.1, -0.95], [0.75, 0.2], [1.0, 0.2], [0.65, 0.7], [-0.65, 0.7]]
        )
        if rng.random() < 0.5:
            pts = pts[::-1] * np.array([-1.0, 1.0])
        tilt = rng.uniform(-0.15, 0.15)
        c, s = math.cos(tilt), math.sin(tilt)
        pts = pts @ np.array([[c, s], [-s, c]])
    else:  # pragma: no cover - internal misuse
        raise ValueError(f"unknown shape {shape!r}")
    return pts


def _place_polygon(
    unit: np.ndarray, radius: float, centre: tuple[float, float] | None, size: int, rng: np.random.Generator
) -> tuple[list[float], tuple[float, float]]:
    """Scale a unit shape and put it fully inside the image.

    Parameters
    ----------
    unit : np.ndarray
        ``(K, 2)`` vertices from :func:`_unit_shape`.
    radius : float
        Scale in pixels.
    centre : tuple of float or None
        Wanted centre ``(x, y)``; ``None`` draws one uniformly among the positions that fit.
    size : int
        Image size.
    rng : np.random.Generator
        Randomness.

    Returns
    -------
    polygon : list of float
        Flat ``[x1, y1, ...]`` rounded to 2 decimals (what is rasterised is what is stored).
    centre : tuple of float
        The centre actually used (clamped into the image).
    """
    pts = unit * radius
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    low = 1.0 - lo
    high = size - 1.0 - hi
    if centre is None:
        c = rng.uniform(low, np.maximum(high, low))
    else:
        c = np.clip(np.asarray(centre, dtype=float), low, np.maximum(high, low))
    poly = np.round(pts + c, 2)
    return [float(v) for v in poly.reshape(-1)], (float(c[0]), float(c[1]))


# --------------------------------------------------------------------------------------------------
# scene sampling


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) to a float RGB array in [0, 255], shape ``(3,)``."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb) * 255.0


def _background_colours(kind: str, rng: np.random.Generator) -> list[np.ndarray]:
    """The main colours of a background kind (used for drawing and to keep object colours apart)."""
    if kind == "water":
        return [_hsv_to_rgb(rng.uniform(0.53, 0.63), rng.uniform(0.5, 0.85), rng.uniform(0.45, 0.8))]
    if kind == "grass":
        return [_hsv_to_rgb(rng.uniform(0.22, 0.36), rng.uniform(0.5, 0.85), rng.uniform(0.35, 0.7))]
    if kind == "sand":
        return [_hsv_to_rgb(rng.uniform(0.08, 0.13), rng.uniform(0.2, 0.4), rng.uniform(0.75, 0.92))]
    a = _hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.9))
    b = _hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.9))
    return [a, b]


#: Each class's colours vary within a hue band around its own centre (HSV hue in [0, 1)), as real classes
#: have typical colours (neighbouring bands overlap a little): colour is a cue, shape is the other.
_CLASS_HUES = {"disc": 0.98, "square": 0.80, "triangle": 0.15, "star": 0.45, "boat": 0.07}
_HUE_JITTER = 0.05


def _object_colour(avoid: list[np.ndarray], rng: np.random.Generator, shape: str) -> np.ndarray:
    """A saturated colour in the hue band of ``shape``'s class, at least ``_MIN_COLOUR_DISTANCE`` (RGB)
    from every colour in ``avoid`` when possible (else the farthest of 30 draws)."""
    best, best_d = None, -1.0
    for _ in range(30):
        hue = (_CLASS_HUES[shape] + rng.uniform(-_HUE_JITTER, _HUE_JITTER)) % 1.0
        c = _hsv_to_rgb(hue, rng.uniform(0.45, 1.0), rng.uniform(0.45, 1.0))
        d = min(float(np.linalg.norm(c - a)) for a in avoid) if avoid else 1e9
        if d >= _MIN_COLOUR_DISTANCE:
            return c
        if d > best_d:
            best, best_d = c, d
    assert best is not None
    return best


def _sample_classes(rng: np.random.Generator) -> tuple[list[int], str]:
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
    if boat in classes and rng.random() < _P_CONTEXT:
        background = CONTEXT_BACKGROUND
    elif boat in classes:
        others = [k for k in BACKGROUND_KINDS if k != CONTEXT_BACKGROUND]
        background = others[int(rng.integers(len(others)))]
    else:
        background = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    return classes, background


def _sample_scene(rng: np.random.Generator, size: int, crowd_prob: float = _P_CROWD) -> _Scene:
    """Lay out one image: background kind, objects with their masks, optional crowd.

    Parameters
    ----------
    rng : np.random.Generator
        The image's generator (consumed; :func:`_render` continues with it).
    size : int
        Image height and width.
    crowd_prob : float
        Probability of a crowd of small discs.

    Returns
    -------
    _Scene
        Objects in drawing order, each with ``full_mask`` and ``visible_mask`` of shape ``(size, size)``.
    """
    classes, background = _sample_classes(rng)
    bg_colours = _background_colours(background, rng)
    allow_overlap = len(classes) > 1 and rng.random() < _P_OVERLAP
    objects: list[_Object] = []
    occupied = np.zeros((size, size), dtype=bool)  # union of placed masks, grown by a 2 px margin
    for cat in classes:
        shape = CLASS_NAMES[cat]
        unit = _unit_shape(shape, rng)
        radius = rng.uniform(_RADIUS_RANGE[0], _RADIUS_RANGE[1]) * size
        colour = _object_colour(bg_colours + [o.colour for o in objects], rng, shape)
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
            poly, centre_used = _place_polygon(unit, radius, centre, size, rng)
            mask = _rasterise([poly], size)
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
            _Object(cat, shape, poly, mask, centre_used, radius, colour, texture, visible_mask=mask.copy())
        )
        occupied |= _dilate(mask, 2)

    crowd = None
    if rng.random() < crowd_prob:
        crowd = _sample_crowd(rng, size, occupied, bg_colours)
    for o in objects:
        occluded = bool((o.full_mask & ~o.visible_mask).any())
        o.as_rle = occluded or bool(rng.random() < _P_EXTRA_RLE)
    return _Scene(size, background, bg_colours, objects, crowd, allow_overlap)


def _sample_crowd(
    rng: np.random.Generator, size: int, occupied: np.ndarray, bg_colours: list[np.ndarray]
) -> _Crowd | None:
    """3-6 small discs packed together in free space; ``None`` if there is no room."""
    n = int(rng.integers(3, 7))
    r = rng.uniform(0.035, 0.05) * size
    colour = _object_colour(bg_colours, rng, "disc")
    texture = ("solid", "noise")[int(rng.integers(2))]
    unit = _unit_shape("disc", rng)
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
            poly, _ = _place_polygon(unit, r * rng.uniform(0.85, 1.1), c, size, rng)
            polys.append(poly)
        mask = _rasterise(polys, size)
        if mask.any() and not (mask & occupied).any():
            return _Crowd(CLASS_NAMES.index("disc"), polys, mask, colour, texture)
    return None


# --------------------------------------------------------------------------------------------------
# rendering


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinate grids ``(x, y)``, each ``(size, size)`` float."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return x, y


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1], a ``cells x cells`` grid upsampled; ``(size, size)``."""
    small = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    return np.asarray(
        Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64
    )


def _render_background(scene: _Scene, rng: np.random.Generator) -> np.ndarray:
    """Background texture of a scene; ``(size, size, 3)`` float RGB in about [0, 255]."""
    size = scene.size
    x, y = _grid(size)
    base = scene.bg_colours[0]
    if scene.background == "water":
        theta = rng.uniform(-0.4, 0.4)
        u = x * math.sin(theta) + y * math.cos(theta)  # mostly horizontal wave crests
        v = x * math.cos(theta) - y * math.sin(theta)
        period = rng.uniform(0.08, 0.16) * size
        wobble = rng.uniform(0.5, 2.0) * np.sin(
            2 * np.pi * v / (rng.uniform(0.3, 0.6) * size) + rng.uniform(0, 6.3)
        )
        wave = np.sin(2 * np.pi * u / period + wobble + rng.uniform(0.0, 2 * np.pi))
        shade = 1.0 + 0.18 * wave + 0.05 * rng.standard_normal((size, size))
        img = base[None, None, :] * shade[..., None]
        crest = np.clip((wave - 0.85) / 0.15, 0.0, 1.0)[..., None] * 0.35
        return img * (1 - crest) + 255.0 * crest
    if scene.background == "grass":
        blades = rng.standard_normal((size // 4 + 1, size)).repeat(4, axis=0)[:size]
        shade = (
            1.0
            + 0.12 * blades
            + 0.15 * _smooth_noise(rng, size, 6)
            + 0.06 * rng.standard_normal((size, size))
        )
        return base[None, None, :] * shade[..., None]
    if scene.background == "sand":
        grain = rng.standard_normal((size, size, 1)) * 9.0 + rng.standard_normal((size, size, 3)) * 3.0
        return base[None, None, :] + grain + 8.0 * _smooth_noise(rng, size, 4)[..., None]
    a, b = scene.bg_colours
    if scene.background == "stripes":
        theta = rng.uniform(0.0, np.pi)
        period = rng.uniform(6.0, 16.0)
        phase = rng.uniform(0.0, period)
        sel = ((x * math.cos(theta) + y * math.sin(theta) + phase) % period) < period / 2
    else:  # checker
        cell = int(rng.integers(6, 17))
        ox, oy = rng.integers(0, cell, size=2)
        sel = (((x + ox) // cell + (y + oy) // cell) % 2).astype(bool)
    img = np.where(sel[..., None], a[None, None, :], b[None, None, :])
    return img + 4.0 * rng.standard_normal((size, size, 1))


def _texture(colour: np.ndarray, texture: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """An object's textured paint over the whole canvas; ``(size, size, 3)`` float RGB."""
    x, y = _grid(size)
    paint = np.broadcast_to(colour[None, None, :], (size, size, 3)).astype(np.float64)
    if texture == "solid":
        return paint + 3.0 * rng.standard_normal((size, size, 1))
    if texture == "noise":
        return paint + 22.0 * rng.standard_normal((size, size, 1))
    alt = colour * 0.55 if colour.mean() > 110 else colour * 0.55 + 0.45 * 255.0
    if texture == "stripes":
        theta = rng.uniform(0.0, np.pi)
        period = rng.uniform(4.0, 8.0)
        sel = ((x * math.cos(theta) + y * math.sin(theta) + rng.uniform(0, period)) % period) < period / 2
    else:  # dots
        period = rng.uniform(5.0, 8.0)
        ox, oy = rng.uniform(0, period, size=2)
        dx = (x + ox) % period - period / 2
        dy = (y + oy) % period - period / 2
        sel = dx * dx + dy * dy <= rng.uniform(1.2, 2.2) ** 2
    return np.where(sel[..., None], alt[None, None, :], paint)


def _render(scene: _Scene, rng: np.random.Generator) -> np.ndarray:
    """Paint a scene: background, objects in order (later occlude earlier), crowd.

    Returns
    -------
    np.ndarray
        ``(size, size, 3)`` uint8 RGB.
    """
    img = _render_background(scene, rng)
    for o in scene.objects:
        paint = _texture(o.colour, o.texture, scene.size, rng)
        img[o.full_mask] = paint[o.full_mask]
    if scene.crowd is not None:
        paint = _texture(scene.crowd.colour, scene.crowd.texture, scene.size, rng)
        img[scene.crowd.mask] = paint[scene.crowd.mask]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _scene_annotations(scene: _Scene) -> list[_Ann]:
    """Clean annotations of a scene: objects in drawing order, then the crowd (ids not yet assigned)."""
    anns: list[_Ann] = []
    for o in scene.objects:
        assert o.visible_mask is not None
        if o.as_rle:
            anns.append(_Ann(o.category, o.visible_mask, "rle"))
        else:
            anns.append(_Ann(o.category, o.full_mask, "polygon", polygon=[o.polygon]))
    if scene.crowd is not None:
        anns.append(_Ann(scene.crowd.category, scene.crowd.mask, "crowd", iscrowd=True))
    return anns


# --------------------------------------------------------------------------------------------------
# planted errors


def _plant_error(
    kind: str, anns: list[_Ann], size: int, rng: np.random.Generator
) -> tuple[list[_Ann], dict[str, Any]]:
    """Apply one corruption of ``kind`` to one non-crowd annotation of an image.

    Parameters
    ----------
    kind : str
        One of :data:`ERROR_KINDS`.
    anns : list of _Ann
        The image's clean annotations (ids assigned); not modified.
    size : int
        Image size.
    rng : np.random.Generator
        The image's error generator.

    Returns
    -------
    anns : list of _Ann
        The corrupted annotation list (a spurious annotation is appended with ``ann_id = 0``).
    record : dict
        ``annotation_id`` (or None), ``category`` (the true class of the touched object, or the
        spurious class) and ``detail``.
    """
    anns = list(anns)
    candidates = [i for i, a in enumerate(anns) if not a.iscrowd]
    if kind == "spurious" or not candidates:
        occupied = np.zeros((size, size), dtype=bool)
        for a in anns:
            occupied |= a.mask
        cat = int(rng.integers(1, len(CLASS_NAMES)))
        unit = _unit_shape(CLASS_NAMES[cat], rng)
        radius = rng.uniform(0.06, 0.12) * size
        best: tuple[float, list[float], np.ndarray] | None = None
        for attempt in range(40):
            if attempt >= 10:
                radius = max(0.04 * size, radius * 0.93)
            poly, _ = _place_polygon(unit, radius, None, size, rng)
            mask = _rasterise([poly], size)
            if not mask.any():
                continue
            overlap = float((mask & occupied).sum()) / float(mask.sum())
            if best is None or overlap < best[0]:
                best = (overlap, poly, mask)
            if overlap <= 0.05:
                break
        assert best is not None
        overlap, poly, mask = best
        anns.append(_Ann(cat, mask, "polygon", polygon=[poly]))
        detail = {"bbox": _bbox(mask), "area": int(mask.sum()), "overlap_with_objects": round(overlap, 4)}
        return anns, {"annotation_id": 0, "category": CLASS_NAMES[cat], "detail": detail}

    if kind == "erode":
        # an annotation that keeps at least 20% of its pixels at the drawn radius, else a smaller radius
        r0 = max(1, int(round(rng.uniform(0.04, 0.06) * size)))
        order = [candidates[i] for i in rng.permutation(len(candidates))]
        idx, radius = max(order, key=lambda i: int(anns[i].mask.sum())), 1
        for r in range(r0, 0, -1):
            ok = [i for i in order if _erode(anns[i].mask, r).sum() >= 0.2 * anns[i].mask.sum()]
            if ok:
                idx, radius = ok[0], r
                break
    else:
        idx = candidates[int(rng.integers(len(candidates)))]
    target = anns[idx]
    record: dict[str, Any] = {"annotation_id": target.ann_id, "category": CLASS_NAMES[target.category]}
    before = {"bbox_before": _bbox(target.mask), "area_before": int(target.mask.sum())}

    if kind == "shift":
        dist = rng.uniform(0.10, 0.16) * size
        best_shift: tuple[int, int, np.ndarray] | None = None
        for _ in range(12):
            ang = rng.uniform(0.0, 2 * np.pi)
            dx, dy = int(round(dist * math.cos(ang))), int(round(dist * math.sin(ang)))
            moved = _translate(target.mask, dx, dy)
            if best_shift is None or moved.sum() > best_shift[2].sum():
                best_shift = (dx, dy, moved)
            if moved.sum() >= 0.7 * target.mask.sum():
                break
        assert best_shift is not None
        dx, dy, new_mask = best_shift
        anns[idx] = _Ann(target.category, new_mask, "rle", ann_id=target.ann_id)
        record["detail"] = {
            "dx": dx,
            "dy": dy,
            **before,
            "bbox": _bbox(new_mask),
            "area": int(new_mask.sum()),
        }
    elif kind in ("erode", "dilate"):
        if kind == "dilate":
            radius = max(1, int(round(rng.uniform(0.04, 0.06) * size)))
            new_mask = _dilate(target.mask, radius)
        else:
            new_mask = _erode(target.mask, radius)
            if not new_mask.any():  # a tiny object: keep its single most central pixel
                ys, xs = np.nonzero(target.mask)
                new_mask = np.zeros_like(target.mask)
                new_mask[int(np.median(ys)), int(np.median(xs))] = True
        anns[idx] = _Ann(target.category, new_mask, "rle", ann_id=target.ann_id)
        record["detail"] = {"radius": radius, **before, "bbox": _bbox(new_mask), "area": int(new_mask.sum())}
    elif kind == "swap_class":
        others = [c for c in range(1, len(CLASS_NAMES)) if c != target.category]
        new_cat = others[int(rng.integers(len(others)))]
        anns[idx] = _Ann(new_cat, target.mask, target.kind, target.polygon, ann_id=target.ann_id)
        record["detail"] = {"from": CLASS_NAMES[target.category], "to": CLASS_NAMES[new_cat], **before}
    elif kind == "delete":
        del anns[idx]
        record["annotation_id"] = None
        record["detail"] = {"removed_annotation_id": target.ann_id, **before}
    else:
        raise ValueError(f"unknown error kind {kind!r}")
    return anns, record


# --------------------------------------------------------------------------------------------------
# writing


def _save_palette_png(labels: np.ndarray, path: Path, palette: list[int]) -> None:
    """Write a ``(H, W)`` uint8 label map as a mode-"P" PNG with ``palette``."""
    im = Image.fromarray(labels.astype(np.uint8))
    im.putpalette(palette)
    im.save(path, format="PNG")


def _voc_maps(anns: list[_Ann], size: int) -> tuple[np.ndarray, np.ndarray]:
    """VOC class and object label maps of one image from its (final) annotations.

    Non-crowd annotations are painted in order (later ones win); crowd regions and the pixels on
    either side of every instance boundary (3x3 neighbourhood holding another instance, crowd or
    background) are 255 in both maps, as in Pascal VOC where both files share one void mask.

    Returns
    -------
    semantic : np.ndarray
        ``(size, size)`` uint8: class index, 255 void.
    objects : np.ndarray
        ``(size, size)`` uint8: instance index 1..n in annotation order (non-crowd), 0 background, 255 void.
    """
    semantic = np.zeros((size, size), dtype=np.uint8)
    objects = np.zeros((size, size), dtype=np.int32)
    crowd = np.zeros((size, size), dtype=bool)
    k = 0
    for a in anns:
        if a.iscrowd:
            crowd |= a.mask
            continue
        k += 1
        semantic[a.mask] = a.category
        objects[a.mask] = k
    if k > 254:  # pragma: no cover - at most 5 objects per image
        raise ValueError("too many instances for a VOC object PNG")
    ids = objects.copy()
    ids[crowd] = 1000
    void = _void_border(ids) | crowd
    semantic[void] = 255
    objects[void] = 255
    return semantic, objects.astype(np.uint8)


def _coco_annotation(a: _Ann, image_id: int) -> dict[str, Any]:
    """COCO annotation dict; ``area`` and ``bbox`` from the mask a COCO reader will decode."""
    if a.kind == "polygon":
        assert a.polygon is not None
        segmentation: Any = a.polygon
    elif a.kind == "crowd":
        segmentation = _uncompressed_rle(a.mask)
    else:
        segmentation = _encode_rle(a.mask)
    return {
        "id": int(a.ann_id),
        "image_id": int(image_id),
        "category_id": int(a.category),
        "segmentation": segmentation,
        "area": int(a.mask.sum()),
        "bbox": _bbox(a.mask),
        "iscrowd": int(a.iscrowd),
    }


def _write_json(obj: Any, path: Path, indent: int | None = None) -> None:
    """Deterministic JSON (fixed key order as built, compact unless ``indent``)."""
    with path.open("w", encoding="utf-8") as f:
        if indent is None:
            json.dump(obj, f, separators=(",", ":"))
        else:
            json.dump(obj, f, indent=indent)
        f.write("\n")


def _image_name(split: str, index: int) -> str:
    """``train_000123`` style image id."""
    return f"{split}_{index:06d}"


def _planted_plan(n_val: int, plant_errors: float, seed: int) -> dict[int, str]:
    """Which val images get which error kind: ``round(plant_errors * n_val)`` images, kinds cycled."""
    n_err = int(round(plant_errors * n_val))
    if n_err <= 0:
        return {}
    chosen = np.sort(np.random.default_rng([seed, 3, n_val]).choice(n_val, size=n_err, replace=False))
    return {int(i): ERROR_KINDS[j % len(ERROR_KINDS)] for j, i in enumerate(chosen)}


def _generate(
    out_dir: str | Path,
    n_train: int = 600,
    n_val: int = 100,
    size: int = 128,
    seed: int = 0,
    plant_errors: float = 0.0,
    crowd_prob: float = _P_CROWD,
) -> SynthSummary:
    """:func:`generate_dataset` with the crowd probability exposed (tests force crowds with it)."""
    if n_train < 0 or n_val < 0:
        raise ValueError(f"image counts must be >= 0, got n_train={n_train}, n_val={n_val}")
    if size < 32:
        raise ValueError(f"size must be at least 32, got {size}")
    if not 0.0 <= plant_errors <= 1.0:
        raise ValueError(f"plant_errors must be a fraction in [0, 1], got {plant_errors}")
    root = Path(out_dir)
    image_dir = root / "JPEGImages"
    ann_dir = root / "annotations"
    cls_dir = root / "SegmentationClass"
    obj_dir = root / "SegmentationObject"
    sets_dir = root / "ImageSets" / "Segmentation"
    for d in (image_dir, ann_dir, cls_dir, obj_dir, sets_dir):
        d.mkdir(parents=True, exist_ok=True)
    palette = voc_colormap(256).flatten().tolist()
    categories = [{"id": i, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASS_NAMES) if i > 0]
    plan = _planted_plan(n_val, plant_errors, seed)

    stems: dict[str, list[str]] = {}
    n_anns: dict[str, int] = {}
    n_crowd = 0
    manifest: list[dict[str, Any]] = []
    for split, n in (("train", n_train), ("val", n_val)):
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        spurious: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (annotation, manifest record)
        next_id = 1
        stems[split] = []
        for index in range(n):
            name = _image_name(split, index)
            coco_id = index + 1
            rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
            scene = _sample_scene(rng, size, crowd_prob)
            Image.fromarray(_render(scene, rng)).save(image_dir / f"{name}.jpg", format="JPEG", quality=95)
            anns = _scene_annotations(scene)
            for a in anns:
                a.ann_id = next_id
                next_id += 1
            if split == "val" and index in plan:
                err_rng = np.random.default_rng([seed, 2, index])
                anns, record = _plant_error(plan[index], anns, size, err_rng)
                record = {
                    "image_id": name,
                    "coco_image_id": coco_id,
                    "file_name": f"{name}.jpg",
                    "kind": plan[index],
                    **record,
                }
                manifest.append(record)
            semantic, objects = _voc_maps(anns, size)
            _save_palette_png(semantic, cls_dir / f"{name}.png", palette)
            _save_palette_png(objects, obj_dir / f"{name}.png", palette)
            for a in anns:
                d = _coco_annotation(a, coco_id)
                if a.ann_id == 0:  # spurious: ids after all clean ones, fixed below
                    spurious.append((d, manifest[-1]))
                annotations.append(d)
                n_crowd += int(a.iscrowd)
            images.append(
                {
                    "id": coco_id,
                    "file_name": f"{name}.jpg",
                    "width": size,
                    "height": size,
                    "license": 1,
                    "flickr_url": "",
                    "coco_url": "",
                    "date_captured": "",
                }
            )
            stems[split].append(name)
        for d, record in spurious:
            d["id"] = next_id
            record["annotation_id"] = next_id
            next_id += 1
        n_anns[split] = len(annotations)
        coco = {
            "info": dict(_INFO),
            "licenses": [dict(lic) for lic in _LICENSES],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        _write_json(coco, ann_dir / f"instances_{split}.json")

    for split in ("train", "val"):
        (sets_dir / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems[split]), encoding="utf-8")
    (sets_dir / "trainval.txt").write_text(
        "".join(f"{s}\n" for s in stems["train"] + stems["val"]), encoding="utf-8"
    )
    (root / "class_names.txt").write_text("".join(f"{c}\n" for c in CLASS_NAMES), encoding="utf-8")
    _write_json(manifest, root / "planted_errors.json", indent=1)
    dataset = {
        "generator": "segaudit.devtools.synth.generate_dataset",
        "arguments": {
            "n_train": n_train,
            "n_val": n_val,
            "size": size,
            "seed": seed,
            "plant_errors": plant_errors,
        },
        "class_names": list(CLASS_NAMES),
        "background_kinds": list(BACKGROUND_KINDS),
        "context_class": CONTEXT_CLASS,
        "context_background": CONTEXT_BACKGROUND,
        "p_context": _P_CONTEXT,
        "error_kinds": list(ERROR_KINDS),
        "counts": {
            "train_images": n_train,
            "val_images": n_val,
            "train_annotations": n_anns["train"],
            "val_annotations": n_anns["val"],
            "crowd_annotations": n_crowd,
            "planted_errors": len(manifest),
        },
    }
    if crowd_prob != _P_CROWD:
        dataset["arguments"]["crowd_prob"] = crowd_prob
    _write_json(dataset, root / "dataset.json", indent=2)
    return SynthSummary(
        root=root,
        image_dir=image_dir,
        coco_train=ann_dir / "instances_train.json",
        coco_val=ann_dir / "instances_val.json",
        voc_class_dir=cls_dir,
        voc_object_dir=obj_dir,
        image_sets_dir=sets_dir,
        class_names_file=root / "class_names.txt",
        planted_errors_file=root / "planted_errors.json",
        dataset_file=root / "dataset.json",
        n_train=n_train,
        n_val=n_val,
        n_train_annotations=n_anns["train"],
        n_val_annotations=n_anns["val"],
        n_crowd=n_crowd,
        n_planted=len(manifest),
    )


def generate_dataset(
    out_dir: str | Path,
    n_train: int = 600,
    n_val: int = 100,
    size: int = 128,
    seed: int = 0,
    plant_errors: float = 0.0,
) -> SynthSummary:
    """Generate the synthetic shapes dataset in COCO and Pascal VOC layouts (see the module docstring).

    Parameters
    ----------
    out_dir : str or Path
        Output directory; created if needed. Files of the same name are overwritten, nothing is deleted.
    n_train, n_val : int
        Number of train and val images. Image ``i`` of a split depends only on ``(seed, split, i)``.
    size : int
        Image height and width in pixels (at least 32).
    seed : int
        Seed; the same arguments give byte-identical files.
    plant_errors : float
        Fraction of val images (``round(plant_errors * n_val)`` of them) that get exactly one planted
        annotation error, cycling through :data:`ERROR_KINDS`. Train labels are always clean and image
        pixels never change. The ground truth is written to ``planted_errors.json``.

    Returns
    -------
    SynthSummary
        Paths and counts of what was written.

    Raises
    ------
    ValueError
        On negative counts, ``size < 32`` or ``plant_errors`` outside ``[0, 1]``.
    """
    return _generate(out_dir, n_train, n_val, size, seed, plant_errors)


# --------------------------------------------------------------------------------------------------
# command line


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``segaudit synth`` arguments to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Gets ``out`` (positional), ``--n-train``, ``--n-val``, ``--size``, ``--seed``, ``--plant-errors``.
    """
    parser.add_argument("out", help="output directory for the dataset")
    parser.add_argument("--n-train", type=int, default=600, help="number of train images (default 600)")
    parser.add_argument("--n-val", type=int, default=100, help="number of val images (default 100)")
    parser.add_argument("--size", type=int, default=128, help="image height and width (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--plant-errors",
        type=float,
        default=0.0,
        help="fraction of val images with one planted annotation error (default 0)",
    )


def synth_main(args: argparse.Namespace) -> int:
    """Run ``segaudit synth`` with parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
        As defined by :func:`add_synth_arguments`.

    Returns
    -------
    int
        0 on success, 2 on invalid arguments.
    """
    start = time.perf_counter()
    try:
        s = generate_dataset(
            args.out,
            n_train=args.n_train,
            n_val=args.n_val,
            size=args.size,
            seed=args.seed,
            plant_errors=args.plant_errors,
        )
    except ValueError as exc:
        print(f"segaudit synth: error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    print(f"wrote synthetic dataset to {s.root} in {elapsed:.1f} s")
    print(f"  images: {s.n_train} train, {s.n_val} val ({s.image_dir})")
    print(f"  annotations: {s.n_train_annotations} train, {s.n_val_annotations} val, {s.n_crowd} crowd")
    print(f"  COCO: {s.coco_train}, {s.coco_val}")
    print(f"  VOC: {s.voc_class_dir}, {s.voc_object_dir}, {s.image_sets_dir}")
    print(f"  planted errors: {s.n_planted} ({s.planted_errors_file})")
    return 0
