"""Map-vs-mask scores: how well a heatmap agrees with a mask, vectorised over many (map, mask) pairs.

Every function takes ``maps`` ``(N, H, W)`` float (raw, non-negative CAMs at input resolution), ``masks``
``(N, H, W)`` bool and ``valid`` ``(N, H, W)`` bool (False = void, ignored everywhere) and returns ``(N,)``
float64 with NaN where the score is undefined: an empty mask is never a hit, and a map with no positive
value points nowhere. (Quantus 0.6's PointingGame counts an empty mask as a hit; we do not.)
"""

from __future__ import annotations

import torch

__all__ = [
    "CENTROID_CUTOFF",
    "energy_in_mask",
    "pointing_game",
    "iou_at_threshold",
    "max_point",
    "weighted_centroid",
    "point_hit_and_distance",
    "segmentation_iou",
    "agreement_consistency",
]

#: Weighted-centroid cutoff: only pixels with normalised value >= this share of the map's max count.
CENTROID_CUTOFF = 0.6

_NAN = float("nan")


def _nan_where(values: torch.Tensor, undefined: torch.Tensor) -> torch.Tensor:
    values = values.double()
    return torch.where(undefined, torch.full_like(values, _NAN), values)


def _mask_empty(masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return ~(masks & valid).flatten(1).any(1)


def energy_in_mask(maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Share of the positive map mass inside the mask (energy-based pointing game, Wang et al. 2020,
    Score-CAM; relevance mass accuracy, Arras et al. 2022)::

        E = sum_{p in M} max(L_p, 0) / sum_p max(L_p, 0)        (void pixels excluded from both sums)

    NaN for an empty mask or a map without positive mass.
    """
    pos = maps.clamp(min=0) * valid
    total = pos.flatten(1).sum(1)
    inside = (pos * masks).flatten(1).sum(1)
    return _nan_where(inside / total.clamp(min=1e-30), _mask_empty(masks, valid) | (total <= 0))


def _argmax_points(maps: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 2)`` (row, col) of each map's maximum over valid pixels (first in row-major order on ties),
    and ``(N,)`` whether the map has a positive value there."""
    width = maps.shape[-1]
    masked = torch.where(valid, maps, torch.full_like(maps, -torch.inf)).flatten(1)
    best, index = masked.max(1)
    points = torch.stack([index // width, index % width], dim=1)
    return points, best > 0


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Pointing game (Zhang et al. 2016, "Top-down Neural Attention by Excitation Backprop", ECCV):
    1 if the map's maximum lies inside the mask, else 0; NaN for an empty mask or a map with no positive
    value."""
    points, positive = _argmax_points(maps, valid)
    rows = torch.arange(len(maps), device=maps.device)
    hit = masks[rows, points[:, 0], points[:, 1]].double()
    return _nan_where(hit, _mask_empty(masks, valid) | ~positive)


def iou_at_threshold(
    maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor, threshold: float = 0.5
) -> torch.Tensor:
    """IoU of the min-max normalised map thresholded at ``threshold`` with the mask (Grad-CAM's
    weakly-supervised localisation, Selvaraju et al. 2017)::

        IoU = |{L~ >= t} & M| / |{L~ >= t} | M|,   L~ = (L - min L) / (max L - min L)

    NaN for an empty mask or a constant map.
    """
    flat = torch.where(valid, maps, torch.full_like(maps, torch.nan)).flatten(1)
    low = torch.nan_to_num(flat, nan=torch.inf).min(1).values
    high = torch.nan_to_num(flat, nan=-torch.inf).max(1).values
    span = high - low
    norm = (maps - low[:, None, None]) / span.clamp(min=1e-30)[:, None, None]
    region = (norm >= threshold) & valid
    truth = masks & valid
    inter = (region & truth).flatten(1).sum(1)
    union = (region | truth).flatten(1).sum(1)
    return _nan_where(inter.double() / union.clamp(min=1), _mask_empty(masks, valid) | (span <= 0))


def max_point(maps: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The map's maximum as a point prompt: ``(N, 2)`` float (row, col) and ``(N,)`` whether defined."""
    points, positive = _argmax_points(maps, valid)
    return points.double(), positive


def weighted_centroid(
    maps: torch.Tensor, valid: torch.Tensor, cutoff: float = CENTROID_CUTOFF
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted centroid of the map above ``cutoff`` x its maximum, as a point prompt::

        c = sum_p w_p p / sum_p w_p,   w_p = L_p if L_p >= cutoff * max L else 0

    Returns ``(N, 2)`` float (row, col) and ``(N,)`` whether defined (map with a positive maximum).
    """
    pos = torch.where(valid, maps.clamp(min=0), torch.zeros_like(maps))
    peak = pos.flatten(1).max(1).values
    weights = torch.where(pos >= cutoff * peak[:, None, None], pos, torch.zeros_like(pos)).double()
    height, width = maps.shape[-2:]
    rows = torch.arange(height, device=maps.device, dtype=torch.float64).view(1, -1, 1)
    cols = torch.arange(width, device=maps.device, dtype=torch.float64).view(1, 1, -1)
    total = weights.flatten(1).sum(1).clamp(min=1e-30)
    centroid = torch.stack(
        [(weights * rows).flatten(1).sum(1) / total, (weights * cols).flatten(1).sum(1) / total], dim=1
    )
    return centroid, peak > 0


def point_hit_and_distance(
    points: torch.Tensor, defined: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor, chunk: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether each point falls inside its mask, and its Euclidean distance in pixels to the nearest mask
    pixel centre (0 inside).

    The point is rounded to the nearest pixel for the hit test. NaN for an empty mask or an undefined point.
    """
    n, height, width = masks.shape
    truth = masks & valid
    rounded = points.round().long()
    rounded[:, 0].clamp_(0, height - 1)
    rounded[:, 1].clamp_(0, width - 1)
    index = torch.arange(n, device=masks.device)
    hit = truth[index, rounded[:, 0], rounded[:, 1]]
    rows = torch.arange(height, device=masks.device, dtype=torch.float64).view(1, -1, 1)
    cols = torch.arange(width, device=masks.device, dtype=torch.float64).view(1, 1, -1)
    distance = torch.empty(n, dtype=torch.float64, device=masks.device)
    for start in range(0, n, chunk):  # bounds memory at chunk * H * W
        part = slice(start, start + chunk)
        d2 = (rows - points[part, 0, None, None]) ** 2 + (cols - points[part, 1, None, None]) ** 2
        d2 = torch.where(truth[part], d2, torch.full_like(d2, torch.inf))
        distance[part] = d2.flatten(1).min(1).values.sqrt()
    distance = torch.where(hit, torch.zeros_like(distance), distance)
    undefined = _mask_empty(masks, valid) | ~defined
    return _nan_where(hit.double(), undefined), _nan_where(distance, undefined)


def segmentation_iou(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Intersection over union of predicted and labelled masks (Everingham et al. 2010, Pascal VOC)::

        IoU = |P & G| / |P | G|          (void pixels excluded)

    ``pred``, ``gt``: ``(N, H, W)`` bool. NaN when both are empty.
    """
    p, g = pred & valid, gt & valid
    inter = (p & g).flatten(1).sum(1)
    union = (p | g).flatten(1).sum(1)
    return _nan_where(inter.double() / union.clamp(min=1), union == 0)


def agreement_consistency(seg_iou: torch.Tensor, energy_gt: torch.Tensor, energy_pred: torch.Tensor) -> torch.Tensor:
    """Consistency of label, prediction and map for one (image, class, method), in [0, 1]::

        C = IoU(P, G) * min(1, E_G / E_P)

    ``E_G``, ``E_P``: the map's energy share inside the GT and predicted masks. The first factor asks
    whether the model agrees with the label; the second whether the evidence the model used for its mask
    lies where the label is (a shifted or wrong label loses evidence even where masks overlap). When
    ``E_P`` is undefined or 0 (no evidence either way) the second factor is 1; an empty mask on either side
    makes ``IoU`` 0, so ``C`` is 0 for a class that only the label or only the model sees.
    """
    iou = torch.nan_to_num(seg_iou, nan=0.0)
    ratio = torch.where(
        torch.nan_to_num(energy_pred, nan=0.0) > 0,
        (torch.nan_to_num(energy_gt, nan=0.0) / energy_pred).clamp(max=1.0),
        torch.ones_like(energy_pred),
    )
    return iou * ratio
