"""Colours of the synthetic scenes: background colours per kind, and object colours from each class's hue
band kept away from the colours already in the image."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MIN_COLOUR_DISTANCE", "hsv_to_rgb", "background_colours", "object_colour"]

#: Smallest RGB (Euclidean) distance of an object colour to the colours already in the image, when possible.
MIN_COLOUR_DISTANCE = 90.0


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) to a float RGB array in [0, 255], shape ``(3,)``."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb) * 255.0


def background_colours(kind: str, rng: np.random.Generator) -> list[np.ndarray]:
    """The main colours of a background kind (used for drawing and to keep object colours apart)."""
    if kind == "water":
        return [hsv_to_rgb(rng.uniform(0.53, 0.63), rng.uniform(0.5, 0.85), rng.uniform(0.45, 0.8))]
    if kind == "grass":
        return [hsv_to_rgb(rng.uniform(0.22, 0.36), rng.uniform(0.5, 0.85), rng.uniform(0.35, 0.7))]
    if kind == "sand":
        return [hsv_to_rgb(rng.uniform(0.08, 0.13), rng.uniform(0.2, 0.4), rng.uniform(0.75, 0.92))]
    a = hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.9))
    b = hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.9))
    return [a, b]


#: Each class's colours vary within a hue band around its own centre (HSV hue in [0, 1)), as real classes
#: have typical colours (neighbouring bands overlap a little): colour is a cue, shape is the other.
_CLASS_HUES = {"disc": 0.98, "square": 0.80, "triangle": 0.15, "star": 0.45, "boat": 0.07}
_HUE_JITTER = 0.05


def object_colour(avoid: list[np.ndarray], rng: np.random.Generator, shape: str) -> np.ndarray:
    """A saturated colour in the hue band of ``shape``'s class, at least ``MIN_COLOUR_DISTANCE`` (RGB)
    from every colour in ``avoid`` when possible (else the farthest of 30 draws)."""
    best, best_d = None, -1.0
    for _ in range(30):
        hue = (_CLASS_HUES[shape] + rng.uniform(-_HUE_JITTER, _HUE_JITTER)) % 1.0
        c = hsv_to_rgb(hue, rng.uniform(0.45, 1.0), rng.uniform(0.45, 1.0))
        d = min(float(np.linalg.norm(c - a)) for a in avoid) if avoid else 1e9
        if d >= MIN_COLOUR_DISTANCE:
            return c
        if d > best_d:
            best, best_d = c, d
    assert best is not None
    return best
