"""Planted label errors: which val images get one, and the corruption of one annotation of such an image.

Planted errors only ever change the *labels* of val images (both the COCO JSON and the VOC PNGs, which are
derived from the same corrupted annotation set), never their pixels. The kinds (:data:`ERROR_KINDS`):

* ``shift``: the mask moved by 10%-16% of the image side (the direction that keeps the most of it);
* ``erode`` / ``dilate``: the mask eroded / dilated by a square of half-width 4%-6% of the image side
  (erosion keeps at least 20% of the mask, at a smaller radius if needed);
* ``swap_class``: the annotation given another object class;
* ``delete``: the annotation removed;
* ``spurious``: a polygon of a random class added where (as far as possible) no object is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from segaudit.devtools.synth.annotations import Annotation
from segaudit.devtools.synth.classes import CLASS_NAMES
from segaudit.devtools.synth.masks import bbox, dilate, erode, rasterise, translate
from segaudit.devtools.synth.shapes import place_polygon, unit_shape

__all__ = ["ERROR_KINDS", "planted_plan", "plant_error"]

#: Planted annotation error kinds, in the order they are cycled through.
ERROR_KINDS: tuple[str, ...] = ("shift", "erode", "dilate", "swap_class", "delete", "spurious")


def planted_plan(n_val: int, plant_errors: float, seed: int) -> dict[int, str]:
    """Which val images get which error kind: ``round(plant_errors * n_val)`` images, kinds cycled."""
    n_err = int(round(plant_errors * n_val))
    if n_err <= 0:
        return {}
    chosen = np.sort(np.random.default_rng([seed, 3, n_val]).choice(n_val, size=n_err, replace=False))
    return {int(i): ERROR_KINDS[j % len(ERROR_KINDS)] for j, i in enumerate(chosen)}


def plant_error(
    kind: str, anns: list[Annotation], size: int, rng: np.random.Generator
) -> tuple[list[Annotation], dict[str, Any]]:
    """Apply one corruption of ``kind`` to one non-crowd annotation of an image.

    Parameters
    ----------
    kind : str
        One of :data:`ERROR_KINDS`.
    anns : list of Annotation
        The image's clean annotations (ids assigned); not modified.
    size : int
        Image size.
    rng : np.random.Generator
        The image's error generator.

    Returns
    -------
    anns : list of Annotation
        The corrupted annotation list (a spurious annotation is appended with ``ann_id = 0``).
    record : dict
        ``annotation_id`` (or None), ``category`` (the true class of the touched object, or the
        spurious class) and ``detail``.
    """
    anns = list(anns)
    candidates = [i for i, a in enumerate(anns) if not a.iscrowd]
    if kind == "spurious" or not candidates:
        return _add_spurious(anns, size, rng)
    if kind == "erode":
        idx, radius = _erodible_target(anns, candidates, size, rng)
    else:
        idx, radius = candidates[int(rng.integers(len(candidates)))], 0
    target = anns[idx]
    record: dict[str, Any] = {"annotation_id": target.ann_id, "category": CLASS_NAMES[target.category]}
    before = {"bbox_before": bbox(target.mask), "area_before": int(target.mask.sum())}

    if kind == "shift":
        dx, dy, new_mask = _shifted(target.mask, size, rng)
        anns[idx] = Annotation(target.category, new_mask, "rle", ann_id=target.ann_id)
        record["detail"] = {"dx": dx, "dy": dy, **before, "bbox": bbox(new_mask), "area": int(new_mask.sum())}
    elif kind in ("erode", "dilate"):
        if kind == "dilate":
            radius = max(1, int(round(rng.uniform(0.04, 0.06) * size)))
            new_mask = dilate(target.mask, radius)
        else:
            new_mask = _eroded(target.mask, radius)
        anns[idx] = Annotation(target.category, new_mask, "rle", ann_id=target.ann_id)
        record["detail"] = {"radius": radius, **before, "bbox": bbox(new_mask), "area": int(new_mask.sum())}
    elif kind == "swap_class":
        others = [c for c in range(1, len(CLASS_NAMES)) if c != target.category]
        new_cat = others[int(rng.integers(len(others)))]
        anns[idx] = Annotation(new_cat, target.mask, target.kind, target.polygon, ann_id=target.ann_id)
        record["detail"] = {"from": CLASS_NAMES[target.category], "to": CLASS_NAMES[new_cat], **before}
    elif kind == "delete":
        del anns[idx]
        record["annotation_id"] = None
        record["detail"] = {"removed_annotation_id": target.ann_id, **before}
    else:
        raise ValueError(f"unknown error kind {kind!r}")
    return anns, record


def _add_spurious(
    anns: list[Annotation], size: int, rng: np.random.Generator
) -> tuple[list[Annotation], dict[str, Any]]:
    """Append a polygon of a random class placed to overlap the existing annotations as little as possible
    (at most 5% of its pixels when 40 tries allow; it shrinks after 10); returns the list and the record."""
    occupied = np.zeros((size, size), dtype=bool)
    for a in anns:
        occupied |= a.mask
    cat = int(rng.integers(1, len(CLASS_NAMES)))
    unit = unit_shape(CLASS_NAMES[cat], rng)
    radius = rng.uniform(0.06, 0.12) * size
    best: tuple[float, list[float], np.ndarray] | None = None
    for attempt in range(40):
        if attempt >= 10:
            radius = max(0.04 * size, radius * 0.93)
        poly, _ = place_polygon(unit, radius, None, size, rng)
        mask = rasterise([poly], size)
        if not mask.any():
            continue
        overlap = float((mask & occupied).sum()) / float(mask.sum())
        if best is None or overlap < best[0]:
            best = (overlap, poly, mask)
        if overlap <= 0.05:
            break
    assert best is not None
    overlap, poly, mask = best
    anns.append(Annotation(cat, mask, "polygon", polygon=[poly]))
    detail = {"bbox": bbox(mask), "area": int(mask.sum()), "overlap_with_objects": round(overlap, 4)}
    return anns, {"annotation_id": 0, "category": CLASS_NAMES[cat], "detail": detail}


def _erodible_target(
    anns: list[Annotation], candidates: list[int], size: int, rng: np.random.Generator
) -> tuple[int, int]:
    """The annotation to erode and the radius: the first (in a random order) that keeps at least 20% of its
    pixels at the drawn radius, else at a smaller radius; the largest annotation at radius 1 if none does."""
    r0 = max(1, int(round(rng.uniform(0.04, 0.06) * size)))
    order = [candidates[i] for i in rng.permutation(len(candidates))]
    idx, radius = max(order, key=lambda i: int(anns[i].mask.sum())), 1
    for r in range(r0, 0, -1):
        ok = [i for i in order if erode(anns[i].mask, r).sum() >= 0.2 * anns[i].mask.sum()]
        if ok:
            idx, radius = ok[0], r
            break
    return idx, radius


def _eroded(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` eroded by ``radius``; a mask that vanishes keeps its single most central pixel."""
    new_mask = erode(mask, radius)
    if not new_mask.any():
        ys, xs = np.nonzero(mask)
        new_mask = np.zeros_like(mask)
        new_mask[int(np.median(ys)), int(np.median(xs))] = True
    return new_mask


def _shifted(mask: np.ndarray, size: int, rng: np.random.Generator) -> tuple[int, int, np.ndarray]:
    """``(dx, dy, moved mask)``: ``mask`` moved by 10%-16% of ``size`` in the first of 12 random directions
    that keeps at least 70% of it in the image, else the direction that keeps the most."""
    dist = rng.uniform(0.10, 0.16) * size
    best_shift: tuple[int, int, np.ndarray] | None = None
    for _ in range(12):
        ang = rng.uniform(0.0, 2 * np.pi)
        dx, dy = int(round(dist * math.cos(ang))), int(round(dist * math.sin(ang)))
        moved = translate(mask, dx, dy)
        if best_shift is None or moved.sum() > best_shift[2].sum():
            best_shift = (dx, dy, moved)
        if moved.sum() >= 0.7 * mask.sum():
            break
    assert best_shift is not None
    return best_shift
