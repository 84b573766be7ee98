"""Shape polygons of the synthetic classes (disc, square, triangle, star, boat) and their placement in
the image."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["unit_shape", "place_polygon"]


def unit_shape(shape: str, rng: np.random.Generator) -> np.ndarray:
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


def place_polygon(
    unit: np.ndarray, radius: float, centre: tuple[float, float] | None, size: int, rng: np.random.Generator
) -> tuple[list[float], tuple[float, float]]:
    """Scale a unit shape and put it fully inside the image.

    Parameters
    ----------
    unit : np.ndarray
        ``(K, 2)`` vertices from :func:`unit_shape`.
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
