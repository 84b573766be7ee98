"""Prompts for a promptable segmenter from class activation maps: a foreground point, a background point
and a region, per map ``L`` over the valid pixels ``V`` of the model's square input frame::

    foreground point   p+ = weighted centroid of L above 0.6 x max L     (point="centroid")
                         or argmax L                                     (point="max")
    background point   p- = argmin L                                     (prompts="fg+bg" only)
    region             R  = {L~ >= t} & V,   L~ = (L - min_V L) / (max_V L - min_V L),   t = 0.5
    box                the bounding box of R (SAM, optional)

The points are those of :mod:`segaudit.metrics.scores` (:func:`~segaudit.metrics.scores.weighted_centroid`,
:func:`~segaudit.metrics.scores.max_point`, :func:`~segaudit.metrics.scores.background_point`), computed
over the valid pixels as there; ``R`` is the region whose IoU the scores table reports as ``iou_at_0_5``
(Grad-CAM's weakly-supervised localisation, Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from
Deep Networks via Gradient-based Localization", ICCV). A map with no positive value, or constant over the
valid pixels, cannot prompt (no region, no background point). Coordinates are ``(row, col)`` pixel indices
of the ``S x S`` frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from segaudit.metrics.scores import CENTROID_CUTOFF, background_point, max_point, weighted_centroid

__all__ = ["POINT_KINDS", "PROMPT_KINDS", "REGION_THRESHOLD", "Prompt", "MapPrompts", "map_prompts", "thresholded_region"]

#: How the foreground point is chosen: the weighted centroid of the map above ``CENTROID_CUTOFF`` x max, or
#: the map's maximum.
POINT_KINDS: tuple[str, ...] = ("centroid", "max")
#: Which prompts the segmenter gets: the foreground point (and region), or also the background point.
PROMPT_KINDS: tuple[str, ...] = ("fg", "fg+bg")
#: Threshold of the min-max normalised map that makes the region prompt (as the scores table's ``iou_at_0_5``).
REGION_THRESHOLD = 0.5


@dataclass(frozen=True)
class Prompt:
    """The prompts for one map, in the ``S x S`` frame.

    Attributes
    ----------
    foreground : (float, float)
        ``(row, col)`` of the foreground point (sub-pixel for the weighted centroid).
    background : (float, float) or None
        ``(row, col)`` of the background point; None for foreground-only prompting.
    region : np.ndarray
        ``(S, S)`` bool, the thresholded map.
    box : (int, int, int, int) or None
        ``(top, left, bottom, right)`` of ``region``, inclusive pixel indices; None if the region is empty.
    """

    foreground: tuple[float, float]
    background: tuple[float, float] | None
    region: np.ndarray
    box: tuple[int, int, int, int] | None


@dataclass
class MapPrompts:
    """Prompts of a batch of maps (batched torch; :meth:`prompt` gives one map's as a :class:`Prompt`).

    Attributes
    ----------
    foreground : torch.Tensor
        ``(N, 2)`` float64 ``(row, col)`` of the foreground point.
    foreground_ok : torch.Tensor
        ``(N,)`` bool, the map has a positive value (the point is defined, as in :mod:`segaudit.metrics.scores`).
    background : torch.Tensor
        ``(N, 2)`` float64 ``(row, col)`` of the map's minimum.
    region : torch.Tensor
        ``(N, S, S)`` bool, ``{L~ >= threshold} & valid``; all False where the map is constant.
    boxes : torch.Tensor
        ``(N, 4)`` int64 ``(top, left, bottom, right)`` of ``region``, inclusive; -1 where it is empty.
    defined : torch.Tensor
        ``(N,)`` bool, the map can prompt a segmenter: it has a positive value and is not constant over the
        valid pixels (the definedness of :func:`~segaudit.metrics.scores.background_point`).
    """

    foreground: torch.Tensor
    foreground_ok: torch.Tensor
    background: torch.Tensor
    region: torch.Tensor
    boxes: torch.Tensor
    defined: torch.Tensor

    def prompt(self, i: int, with_background: bool) -> Prompt:
        """Map ``i``'s prompts; the background point only if ``with_background``."""
        box = tuple(int(v) for v in self.boxes[i].tolist())
        return Prompt(
            foreground=(float(self.foreground[i, 0]), float(self.foreground[i, 1])),
            background=(float(self.background[i, 0]), float(self.background[i, 1])) if with_background else None,
            region=self.region[i].cpu().numpy(),
            box=None if box[0] < 0 else box,  # type: ignore[arg-type]
        )


def thresholded_region(
    maps: torch.Tensor, valid: torch.Tensor, threshold: float = REGION_THRESHOLD
) -> tuple[torch.Tensor, torch.Tensor]:
    """The map's region above ``threshold`` after min-max normalisation over the valid pixels::

        R = {L~ >= t} & V,   L~ = (L - min_V L) / (max_V L - min_V L)

    the region whose IoU :func:`segaudit.metrics.scores.iou_and_dice_at` scores (Grad-CAM's weakly-supervised
    localisation, Selvaraju et al. 2017).

    Returns
    -------
    region : ``(N, H, W)`` bool, all False for a map constant over the valid pixels.
    varies : ``(N,)`` bool, the map is not constant over the valid pixels.
    """
    flat = maps.flatten(1)
    ok = valid.flatten(1)
    low = torch.where(ok, flat, torch.full_like(flat, torch.inf)).min(1).values
    high = torch.where(ok, flat, torch.full_like(flat, -torch.inf)).max(1).values
    span = high - low
    varies = span > 0
    norm = (maps - low[:, None, None]) / span.clamp(min=1e-30)[:, None, None]
    region = (norm >= threshold) & valid & varies[:, None, None]
    return region, varies


def _boxes(region: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` int64 inclusive ``(top, left, bottom, right)`` of each region; -1 for an empty one."""
    n, height, width = region.shape
    rows_any, cols_any = region.any(2), region.any(1)
    r = torch.arange(height, device=region.device)
    c = torch.arange(width, device=region.device)
    big = torch.iinfo(torch.int64).max
    top = torch.where(rows_any, r, torch.full_like(r, big)).min(1).values
    bottom = torch.where(rows_any, r, torch.full_like(r, -1)).max(1).values
    left = torch.where(cols_any, c, torch.full_like(c, big)).min(1).values
    right = torch.where(cols_any, c, torch.full_like(c, -1)).max(1).values
    boxes = torch.stack([top, left, bottom, right], 1)
    return torch.where(rows_any.any(1)[:, None], boxes, torch.full_like(boxes, -1))


def map_prompts(
    maps: torch.Tensor,
    valid: torch.Tensor,
    point: str = "centroid",
    threshold: float = REGION_THRESHOLD,
    cutoff: float = CENTROID_CUTOFF,
) -> MapPrompts:
    """Prompts from a batch of maps.

    Parameters
    ----------
    maps : torch.Tensor
        ``(N, S, S)`` float, raw CAMs at the input frame's resolution.
    valid : torch.Tensor
        ``(N, S, S)`` bool, pixels the points may fall on (False = void or letterbox padding).
    point : str
        ``"centroid"`` (:func:`~segaudit.metrics.scores.weighted_centroid` with ``cutoff``) or ``"max"``
        (:func:`~segaudit.metrics.scores.max_point`).
    threshold : float
        Threshold of the normalised map for the region prompt (:func:`thresholded_region`).
    cutoff : float
        Weighted-centroid cutoff, a share of the map's maximum.
    """
    if maps.dim() != 3 or valid.shape != maps.shape or valid.dtype != torch.bool:
        raise ValueError(f"expected maps (N, S, S) and bool valid of that shape, got {tuple(maps.shape)}, "
                         f"{tuple(valid.shape)} {valid.dtype}")
    if point not in POINT_KINDS:
        raise ValueError(f"point must be one of {POINT_KINDS}, got {point!r}")
    if point == "centroid":
        fg, fg_ok = weighted_centroid(maps, valid, cutoff)
    else:
        fg, fg_ok = max_point(maps, valid)
    bg, bg_ok = background_point(maps, valid)
    region, _ = thresholded_region(maps, valid, threshold)
    return MapPrompts(fg, fg_ok, bg, region, _boxes(region), fg_ok & bg_ok)
