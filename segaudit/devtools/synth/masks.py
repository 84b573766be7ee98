"""Binary masks of the synthetic dataset: COCO polygon rasterisation and RLE encodings, boxes, square
dilation and erosion, translation, and the VOC void border.

Every shape is a polygon rasterised with :mod:`pycocotools`, so the pixels painted in the image and the
label masks are exactly what a COCO reader decodes from the JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    "rasterise",
    "encode_rle",
    "uncompressed_rle",
    "bbox",
    "dilate",
    "erode",
    "translate",
    "void_border",
]


def rasterise(polygons: list[list[float]], size: int) -> np.ndarray:
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


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE of a ``(H, W)`` bool mask, with ``counts`` as str."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed (crowd-style) COCO RLE of a ``(H, W)`` bool mask: column-major runs, zeros first."""
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0, *runs]
    return {"counts": [int(r) for r in runs], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def bbox(mask: np.ndarray) -> list[float]:
    """COCO ``[x, y, w, h]`` of a ``(H, W)`` bool mask (zeros when empty)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)]


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
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


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion with a square structuring element (the dual of :func:`dilate`); ``(H, W)`` bool."""
    return ~dilate(~mask, radius)


def translate(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Shift a ``(H, W)`` mask by ``(dx, dy)`` pixels; what leaves the image is dropped."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def void_border(labels: np.ndarray) -> np.ndarray:
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
