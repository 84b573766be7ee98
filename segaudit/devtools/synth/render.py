"""Painting a synthetic scene: the background textures (water ripples, grass streaks, sand grain, stripes,
checker) and the objects' textured paint (solid, noise, stripes, dots), later objects over earlier ones."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from segaudit.devtools.synth.scenes import Scene

__all__ = ["render_scene"]


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


def _render_background(scene: Scene, rng: np.random.Generator) -> np.ndarray:
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


def render_scene(scene: Scene, rng: np.random.Generator) -> np.ndarray:
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
