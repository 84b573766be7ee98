"""Validation data segaudit has never seen: synthetic segmentation datasets made with settings that no part
of the development used, for ``bench/evidence.py`` (issue 16).

The project's own synthetic data (:mod:`segaudit.devtools.synth`: disc, square, triangle, star and boat on
water, grass, sand, stripes and checker; the "boat on water" cue; errors cycled in a fixed order) was used
all through development: every threshold, default layer and weight was chosen on it. This generator shares
none of those settings. It draws other shape classes (ring, cross, crescent, hexagon, arrow, heart, diamond,
pill, chevron), other object textures (concentric, grid, speckle, gradient, hatch, solid) and colours (each
class's hue drawn from the dataset's seed), other backgrounds (clouds, bricks, dunes, plaid, night, marble),
a cue class of its own per dataset drawn on its own background most of the time, and an error mix of its
own per dataset (:data:`DATASETS`).

**These settings were never used to tune anything**: they were written down once, before the first
measurement on them, and no threshold, weight, layer or method of segaudit was chosen by looking at the
results on this data. Change them only to make a *new* validation set, never to make a number better.

Layout written under ``root`` (what :func:`segaudit.data.readers.open_dataset` reads as COCO)::

    JPEGImages/{train,val}_000000.jpg ...
    annotations/instances_train.json      clean labels (the model's training split)
    annotations/instances_val.json        labels with the planted errors
    planted_errors.json                   one record per corrupted val image (file_name, kind, category, detail),
                                          the format of segaudit.devtools.validation.planted_error_metrics
    dataset.json                          the spec and counts

Every mask is stored as compressed RLE, so the labels are exactly what was painted (before the error).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segaudit.devtools.synth.masks import bbox, dilate, encode_rle, erode, translate
from segaudit.devtools.synth.writers import (
    ANNOTATION_DIR,
    IMAGE_DIR,
    coco_image,
    coco_path,
    image_name,
    save_jpeg,
    write_json,
)

__all__ = ["UnseenSpec", "DATASETS", "SHAPES", "BACKGROUNDS", "TEXTURES", "ERROR_KINDS", "shape_mask",
           "planted_kinds", "generate_unseen"]

SHAPES = ("ring", "cross", "crescent", "hexagon", "arrow", "heart", "diamond", "pill", "chevron")
BACKGROUNDS = ("clouds", "bricks", "dunes", "plaid", "night", "marble")
TEXTURES = ("solid", "concentric", "grid", "speckle", "gradient", "hatch")
ERROR_KINDS = ("shift", "erode", "dilate", "swap_class", "delete", "spurious")


@dataclass(frozen=True)
class UnseenSpec:
    """One validation dataset's settings.

    Parameters
    ----------
    name : str
        Short name (a prefix of the bench's keys).
    seed : int
        Seed of every random draw of the dataset.
    classes : tuple of str
        Object classes (from :data:`SHAPES`); class ids 1..K in this order, 0 is background.
    textures : tuple of str
        Each class's object texture (from :data:`TEXTURES`), in ``classes`` order.
    backgrounds : tuple of str
        Background kinds (from :data:`BACKGROUNDS`), the cue's included.
    cue_class, cue_background : str
        An image holding ``cue_class`` gets ``cue_background`` with probability ``p_cue``; other images
        draw their background uniformly from ``backgrounds``.
    p_cue : float
    error_mix : tuple of (str, float)
        Shares of the planted error kinds (:data:`ERROR_KINDS`), summing to 1.
    error_share : float
        Share of the val images that get one planted error.
    """

    name: str
    seed: int
    classes: tuple[str, ...]
    textures: tuple[str, ...]
    backgrounds: tuple[str, ...]
    cue_class: str
    cue_background: str
    p_cue: float
    error_mix: tuple[tuple[str, float], ...]
    error_share: float = 0.2

    @property
    def class_names(self) -> tuple[str, ...]:
        return ("background", *self.classes)


#: The validation sets (fixed before any measurement on them; see the module docstring).
DATASETS: tuple[UnseenSpec, ...] = (
    UnseenSpec("rings", 1103, ("ring", "cross", "crescent", "hexagon", "arrow"),
               ("concentric", "solid", "speckle", "grid", "hatch"), ("clouds", "bricks", "dunes", "plaid", "night"),
               "crescent", "night", 0.85,
               (("shift", 0.3), ("erode", 0.1), ("dilate", 0.1), ("swap_class", 0.25), ("delete", 0.15),
                ("spurious", 0.1))),
    UnseenSpec("hearts", 2207, ("heart", "diamond", "pill", "chevron"),
               ("gradient", "hatch", "solid", "speckle"), ("marble", "plaid", "clouds", "dunes"),
               "pill", "bricks", 0.85,
               (("shift", 0.1), ("erode", 0.25), ("dilate", 0.25), ("swap_class", 0.1), ("delete", 0.1),
                ("spurious", 0.2))),
    UnseenSpec("arrows", 3301, ("arrow", "ring", "heart", "hexagon", "diamond", "chevron"),
               ("speckle", "grid", "concentric", "solid", "hatch", "gradient"),
               ("dunes", "night", "marble", "bricks", "clouds"), "arrow", "dunes", 0.8,
               (("shift", 0.15), ("erode", 0.05), ("dilate", 0.15), ("swap_class", 0.3), ("delete", 0.25),
                ("spurious", 0.1))),
)


def shape_mask(shape: str, size: int, centre: tuple[float, float], radius: float, angle: float) -> np.ndarray:
    """The ``(size, size)`` bool mask of ``shape`` with circumradius about ``radius`` pixels, rotated by
    ``angle`` radians about ``centre`` ``(x, y)``: an implicit inequality in the shape's own frame."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = (x - centre[0]) / radius, (y - centre[1]) / radius
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    r2 = u * u + v * v
    if shape == "ring":
        return (r2 <= 1.0) & (r2 >= 0.5**2)
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    if shape == "crescent":
        return (r2 <= 1.0) & ((u - 0.5) ** 2 + v * v > 0.8**2)
    if shape == "hexagon":
        h = math.sqrt(3) / 2
        return (np.abs(v) <= h) & (np.abs(v) * 0.5 + np.abs(u) * h <= h)
    if shape == "arrow":
        shaft = (np.abs(v) <= 0.22) & (u >= -1.0) & (u <= 0.1)
        return shaft | ((u >= 0.1) & (u <= 1.0) & (np.abs(v) <= 0.95 * (1.0 - u)))
    if shape == "heart":
        a, b = 1.25 * u, -1.25 * v + 0.25
        return (a * a + b * b - 1.0) ** 3 - a * a * b**3 <= 0.0
    if shape == "diamond":
        return np.abs(u) + np.abs(v) / 0.6 <= 1.0
    if shape == "pill":
        return (np.maximum(np.abs(u) - 0.55, 0.0) ** 2 + v * v) <= 0.42**2
    if shape == "chevron":
        band = np.abs(v - (1.0 - np.abs(u)) * 0.9 + 0.35)
        return (band <= 0.3) & (np.abs(u) <= 1.0)
    raise ValueError(f"unknown shape {shape!r}")


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (in [0, 1]) as float RGB in [0, 255]."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]) * 255.0


def _smooth(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1], ``(size, size)``."""
    small = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)


def _background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A background of ``kind`` (:data:`BACKGROUNDS`); ``(size, size, 3)`` float RGB."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind == "clouds":
        sky = _hsv(rng.uniform(0.55, 0.62), rng.uniform(0.15, 0.35), rng.uniform(0.8, 0.95))
        puff = np.clip(_smooth(rng, size, 5) + 0.4 * _smooth(rng, size, 11), 0, None)[..., None]
        return sky * (1 - 0.5 * puff) + 255.0 * 0.5 * puff
    if kind == "bricks":
        mortar, brick = _hsv(0.1, 0.1, 0.8), _hsv(rng.uniform(0.0, 0.05), rng.uniform(0.5, 0.7), rng.uniform(0.5, 0.7))
        h = int(rng.integers(9, 14))
        row = (y // h).astype(int)
        edge = ((y % h) < 2) | (((x + (row % 2) * 2 * h) % (4 * h)) < 2)
        img = np.where(edge[..., None], mortar, brick) * (1 + 0.08 * rng.standard_normal((size, size, 1)))
        return img
    if kind == "dunes":
        sand = _hsv(rng.uniform(0.09, 0.12), rng.uniform(0.35, 0.55), rng.uniform(0.7, 0.9))
        wave = np.sin((x * 0.6 + y) / size * rng.uniform(5, 9) * np.pi + 2 * _smooth(rng, size, 4))
        return sand * (1 + 0.15 * wave[..., None])
    if kind == "plaid":
        a, b = _hsv(rng.random(), 0.5, 0.75), _hsv(rng.random(), 0.5, 0.55)
        p = int(rng.integers(10, 18))
        mix = (((x // p) % 2) + ((y // p) % 2))[..., None] / 2.0
        return a * (1 - mix) + b * mix
    if kind == "night":
        dark = _hsv(rng.uniform(0.6, 0.7), rng.uniform(0.6, 0.9), rng.uniform(0.12, 0.25))
        stars = (rng.random((size, size)) < 0.01)[..., None] * 180.0
        return dark * (1 + 0.3 * _smooth(rng, size, 6)[..., None]) + stars
    if kind == "marble":
        base = _hsv(rng.random(), rng.uniform(0.0, 0.15), rng.uniform(0.75, 0.9))
        vein = np.abs(np.sin((x + y) / size * 6 + 4 * _smooth(rng, size, 5)))
        return base * (0.75 + 0.25 * vein[..., None])
    raise ValueError(f"unknown background {kind!r}")


def _paint(texture: str, colour: np.ndarray, size: int, centre: tuple[float, float], radius: float,
           rng: np.random.Generator) -> np.ndarray:
    """An object's paint of ``texture`` (:data:`TEXTURES`) around ``colour``; ``(size, size, 3)``."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    d = np.hypot(x - centre[0], y - centre[1])
    if texture == "solid":
        shade = np.ones((size, size))
    elif texture == "concentric":
        shade = 1.0 + 0.25 * np.sin(d / max(radius, 1.0) * 4 * np.pi)
    elif texture == "grid":
        shade = np.where(((x % 6) < 1.5) | ((y % 6) < 1.5), 0.6, 1.0)
    elif texture == "speckle":
        shade = 1.0 + 0.25 * rng.standard_normal((size, size))
    elif texture == "gradient":
        shade = 0.7 + 0.6 * np.clip((x - centre[0] + radius) / (2 * radius), 0, 1)
    elif texture == "hatch":
        shade = np.where(((x - y) % 7) < 2.5, 0.55, 1.0)
    else:
        raise ValueError(f"unknown texture {texture!r}")
    return colour[None, None, :] * shade[..., None]


def _class_hues(spec: UnseenSpec) -> list[float]:
    """Each class's hue: evenly spread from a seeded offset, in a seeded order."""
    rng = np.random.default_rng([spec.seed, 7])
    hues = (rng.random() + np.arange(len(spec.classes)) / len(spec.classes)) % 1.0
    return [float(h) for h in rng.permutation(hues)]


def _scene(spec: UnseenSpec, size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Paint one image; returns it (uint8) and its clean labels ``[(class id, visible mask), ...]``."""
    k = len(spec.classes)
    n_obj = int(rng.integers(1, 4))
    cats = [int(c) for c in rng.integers(1, k + 1, n_obj)]
    cue = spec.classes.index(spec.cue_class) + 1
    if cue in cats and rng.random() < spec.p_cue:
        background = spec.cue_background
    else:
        background = spec.backgrounds[int(rng.integers(len(spec.backgrounds)))]
    img = _background(background, size, rng)
    hues = _class_hues(spec)
    objects: list[tuple[int, np.ndarray]] = []
    occupied = np.zeros((size, size), dtype=bool)
    for cat in cats:
        for _ in range(20):
            radius = rng.uniform(0.1, 0.2) * size
            centre = (rng.uniform(radius, size - radius), rng.uniform(radius, size - radius))
            mask = shape_mask(spec.classes[cat - 1], size, centre, radius, rng.uniform(0, 2 * np.pi))
            if mask.sum() >= 40 and (mask & occupied).sum() <= 0.25 * mask.sum():
                break
        else:
            continue
        colour = _hsv((hues[cat - 1] + rng.uniform(-0.04, 0.04)) % 1.0, rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))
        img = np.where(mask[..., None], _paint(spec.textures[cat - 1], colour, size, centre, radius, rng), img)
        objects = [(c, m & ~mask) for c, m in objects] + [(cat, mask)]
        occupied |= mask
    img = img + 4.0 * rng.standard_normal(img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), [(c, m) for c, m in objects if m.sum() >= 20]


def planted_kinds(spec: UnseenSpec, n_val: int) -> dict[int, str]:
    """Which val images get which error: ``round(error_share * n_val)`` images, the kinds in the dataset's
    mix (largest remainders), shuffled by the seed."""
    n = int(round(spec.error_share * n_val))
    if n == 0:
        return {}
    shares = np.array([w for _, w in spec.error_mix], dtype=float)
    raw = shares / shares.sum() * n
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]] += 1
    kinds = [kind for (kind, _), c in zip(spec.error_mix, counts, strict=True) for _ in range(c)]
    rng = np.random.default_rng([spec.seed, 5, n_val])
    chosen = np.sort(rng.choice(n_val, size=n, replace=False))
    return {int(i): kinds[j] for i, j in zip(chosen, rng.permutation(n), strict=True)}


def _corrupt(kind: str, spec: UnseenSpec, labels: list[tuple[int, np.ndarray]], size: int,
             rng: np.random.Generator) -> tuple[list[tuple[int, np.ndarray]], dict[str, Any]]:
    """Plant one error of ``kind`` in an image's labels; the new labels and the manifest record's fields."""
    labels = list(labels)
    if kind == "spurious" or not labels:
        cat = int(rng.integers(1, len(spec.classes) + 1))
        occupied = np.zeros((size, size), dtype=bool)
        for _, m in labels:
            occupied |= m
        best = None
        for _ in range(30):
            radius = rng.uniform(0.08, 0.14) * size
            centre = (rng.uniform(radius, size - radius), rng.uniform(radius, size - radius))
            mask = shape_mask(spec.classes[cat - 1], size, centre, radius, rng.uniform(0, 2 * np.pi)) & ~occupied
            if best is None or mask.sum() > best.sum():
                best = mask
        labels.append((cat, best))
        return labels, {"kind": "spurious", "category": spec.classes[cat - 1], "detail": {"bbox": bbox(best)}}
    i = int(rng.integers(len(labels)))
    cat, mask = labels[i]
    record: dict[str, Any] = {"kind": kind, "category": spec.classes[cat - 1], "detail": {"area_before": int(mask.sum())}}
    if kind == "shift":
        dist = rng.uniform(0.09, 0.15) * size
        ang = rng.uniform(0, 2 * np.pi)
        dx, dy = int(round(dist * math.cos(ang))), int(round(dist * math.sin(ang)))
        labels[i] = (cat, translate(mask, dx, dy))
        record["detail"].update(dx=dx, dy=dy)
    elif kind in ("erode", "dilate"):
        radius = max(1, int(round(rng.uniform(0.03, 0.05) * size)))
        new = dilate(mask, radius) if kind == "dilate" else erode(mask, radius)
        while kind == "erode" and new.sum() < 0.15 * mask.sum() and radius > 1:
            radius -= 1
            new = erode(mask, radius)
        labels[i] = (cat, new)
        record["detail"]["radius"] = radius
    elif kind == "swap_class":
        new_cat = int(rng.choice([c for c in range(1, len(spec.classes) + 1) if c != cat]))
        labels[i] = (new_cat, mask)
        record["detail"]["to"] = spec.classes[new_cat - 1]
    elif kind == "delete":
        del labels[i]
    else:
        raise ValueError(f"unknown error kind {kind!r}")
    return labels, record


def _write_split(spec: UnseenSpec, root: Path, split: str, n: int, size: int,
                 plan: dict[int, str]) -> list[dict[str, Any]]:
    """Write one split's images and COCO file; return the planted-error records."""
    images, annotations, manifest = [], [], []
    for index in range(n):
        name = image_name(split, index)
        rng = np.random.default_rng([spec.seed, 0 if split == "train" else 1, index])
        img, labels = _scene(spec, size, rng)
        save_jpeg(img, root, name)
        if index in plan:
            labels, record = _corrupt(plan[index], spec, labels, size, np.random.default_rng([spec.seed, 2, index]))
            manifest.append({"image_id": name, "coco_image_id": index + 1, "file_name": f"{name}.jpg", **record})
        images.append(coco_image(index + 1, name, size))
        for cat, mask in labels:
            if mask.any():
                annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": cat,
                                    "segmentation": encode_rle(mask), "area": int(mask.sum()), "bbox": bbox(mask),
                                    "iscrowd": 0})
    categories = [{"id": i + 1, "name": c, "supercategory": "shape"} for i, c in enumerate(spec.classes)]
    write_json({"info": {"description": f"segaudit unseen validation set {spec.name}"}, "images": images,
                "annotations": annotations, "categories": categories}, coco_path(root, split))
    return manifest


def generate_unseen(spec: UnseenSpec, root: str | Path, n_train: int = 320, n_val: int = 150,
                    size: int = 128) -> Path:
    """Write the dataset of ``spec`` under ``root`` (see the module docstring); returns ``root``.

    Train labels are clean; ``round(spec.error_share * n_val)`` val images get one planted error of the
    dataset's mix. Image ``i`` of a split depends only on ``(spec.seed, split, i)``.
    """
    root = Path(root)
    for folder in (IMAGE_DIR, ANNOTATION_DIR):  # no VOC folders: open_dataset would take it for VOC
        (root / folder).mkdir(parents=True, exist_ok=True)
    _write_split(spec, root, "train", n_train, size, {})
    manifest = _write_split(spec, root, "val", n_val, size, planted_kinds(spec, n_val))
    write_json(manifest, root / "planted_errors.json", indent=1)
    record = {"generator": "segaudit.devtools.unseen.generate_unseen", "spec": asdict(spec),
              "n_train": n_train, "n_val": n_val, "size": size, "planted": len(manifest)}
    write_json(record, root / "dataset.json", indent=2)
    return root
