"""Map-vs-mask scores: how well a heatmap agrees with a mask, vectorised over many (map, mask) pairs.

Every function takes ``maps`` ``(N, H, W)`` float (raw, non-negative CAMs at input resolution), ``masks``
``(N, H, W)`` bool and ``valid`` ``(N, H, W)`` bool (False = void, ignored everywhere) and returns ``(N,)``
float64 with NaN where the score is undefined: an empty mask is never a hit, and a map with no positive
value points nowhere. (Quantus 0.6's PointingGame counts an empty mask as a hit; we do not.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from segaudit.metrics.ordering import MapOrdering, extreme_points, rank_counts
from segaudit.metrics.ordering import nan_where as _nan_where
from segaudit.schema import CENTROID_CUTOFF

__all__ = [
    "CENTROID_CUTOFF",
    "energy_in_mask",
    "pointing_game",
    "iou_at_threshold",
    "max_point",
    "weighted_centroid",
    "point_hit_and_distance",
    "segmentation_iou",
    "segmentation_dice",
    "overlap_iou_and_dice",
    "pair_overlap_counts",
    "confusion_counts",
    "mean_iou",
    "agreement_consistency",
    "relevance_rank_accuracy",
    "top_k_intersection",
    "auroc",
    "spearman",
    "BEST_IOU_THRESHOLDS",
    "iou_and_dice_at",
    "best_iou",
    "background_point",
    "mask_scores",
    "score_masks",
]


_NAN = float("nan")


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


def pointing_game(
    maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor, tolerance: int = 0
) -> torch.Tensor:
    """Pointing game (Zhang et al. 2016, "Top-down Neural Attention by Excitation Backprop", ECCV):
    1 if the map's maximum lies inside the mask, else 0; NaN for an empty mask or a map with no positive
    value.

    ``tolerance`` > 0: a hit if the maximum lies within ``tolerance`` pixels (Euclidean, between pixel
    centres, at the maps' resolution) of a valid mask pixel; Zhang et al. use 15 px at image resolution.
    The default 0 is the strict test. The maximum is the first in row-major order on ties.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    points, positive = _argmax_points(maps, valid)
    if tolerance > 0:
        _, distance = point_hit_and_distance(points.double(), positive, masks, valid)
        return _nan_where((distance <= tolerance).double(), distance.isnan())
    rows = torch.arange(len(maps), device=maps.device)
    hit = masks[rows, points[:, 0], points[:, 1]].double()
    return _nan_where(hit, _mask_empty(masks, valid) | ~positive)


def iou_at_threshold(
    maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor, threshold: float = 0.5
) -> torch.Tensor:
    """IoU of the min-max normalised map thresholded at ``threshold`` with the mask (Grad-CAM's
    weakly-supervised localisation, Selvaraju et al. 2017)::

        IoU = |{L~ >= t} & M| / |{L~ >= t} | M|,   L~ = (L - min L) / (max L - min L)

    NaN for an empty mask or a constant map. (One threshold of :func:`iou_and_dice_at`.)
    """
    return iou_and_dice_at(maps, masks, valid, (threshold,))[0][:, 0]


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
    weights = torch.where(pos >= cutoff * peak[:, None, None], pos, torch.zeros_like(pos))
    height, width = maps.shape[-2:]
    rows = torch.arange(height, device=maps.device, dtype=torch.float64)
    cols = torch.arange(width, device=maps.device, dtype=torch.float64)
    # separable: sum_p w_p r_p = sum_r r sum_c w_rc (row and column sums accumulated in float64)
    per_row, per_col = weights.sum(2, dtype=torch.float64), weights.sum(1, dtype=torch.float64)
    total = per_row.sum(1).clamp(min=1e-30)
    centroid = torch.stack([(per_row * rows).sum(1) / total, (per_col * cols).sum(1) / total], dim=1)
    return centroid, peak > 0


def point_hit_and_distance(
    points: torch.Tensor, defined: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor, chunk: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether each point falls inside its mask, and its Euclidean distance in pixels to the nearest mask
    pixel centre (0 inside).

    The point is rounded to the nearest pixel for the hit test. NaN for an empty mask or an undefined point.
    """
    truth = masks & valid
    hit, distance = _hits_and_distances(points, truth, chunk)
    undefined = ~truth.flatten(1).any(1) | ~defined
    return _nan_where(hit.double(), undefined), _nan_where(distance, undefined)


def _hits_and_distances(
    points: torch.Tensor, truth: torch.Tensor, chunk: int = 64, with_distance: bool = True,
    compiled: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hit (bool) and distance (float64, ``inf`` for an empty mask; NaN without ``with_distance``) of
    :func:`point_hit_and_distance`.

    The squared distance is separable: ``min_{r,c} (r - y)^2 + (c - x)^2 = min_r [(r - y)^2 + min_c (c - x)^2]``
    over mask pixels, and exactly so in floating point (rounding is monotone), so the row term is added
    after the minimum over columns. On a CPU (``compiled``: the choice) the same numbers come from
    :func:`segaudit.metrics.point_kernel.hits_and_distances` (no ``(H, W)`` table per point)."""
    n, height, width = truth.shape
    if truth.device.type == "cpu" if compiled is None else compiled:
        from segaudit.metrics import point_kernel

        hit, distance = np.empty(n, dtype=bool), np.empty(n, dtype=np.float64)
        point_kernel.hits_and_distances(points.double().contiguous().numpy(), truth.contiguous().numpy(),
                                        with_distance, hit, distance)
        return torch.from_numpy(hit), torch.from_numpy(distance).sqrt()
    rounded = points.round().long()
    rounded[:, 0].clamp_(0, height - 1)
    rounded[:, 1].clamp_(0, width - 1)
    hit = truth[torch.arange(n, device=truth.device), rounded[:, 0], rounded[:, 1]]
    rows = torch.arange(height, device=truth.device, dtype=torch.float64)
    cols = torch.arange(width, device=truth.device, dtype=torch.float64)
    distance = torch.where(hit, 0.0, _NAN if not with_distance else torch.inf).double()
    missed = torch.nonzero(~hit)[:, 0] if with_distance else hit.new_zeros(0, dtype=torch.long)
    for start in range(0, len(missed), chunk):  # only points outside their mask; bounds memory at chunk * H * W
        part = missed[start : start + chunk]
        dx2 = ((cols - points[part, 1, None]) ** 2)[:, None, :]
        nearest = torch.where(truth[part], dx2, torch.inf).min(2).values  # (n, H) nearest column per row
        distance[part] = ((rows - points[part, 0, None]) ** 2 + nearest).min(1).values.sqrt()
    return hit, distance


def segmentation_iou(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Intersection over union of predicted and labelled masks (Everingham et al. 2010, Pascal VOC)::

        IoU = |P & G| / |P | G|          (void pixels excluded)

    ``pred``, ``gt``: ``(N, H, W)`` bool. NaN when both are empty.
    """
    return overlap_iou_and_dice(*_overlap_counts(pred & valid, gt & valid))[0]


def segmentation_dice(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Dice coefficient of predicted and labelled masks (Dice 1945; the F1 score of pixels)::

        Dice = 2 |P & G| / (|P| + |G|)          (void pixels excluded)

    ``pred``, ``gt``: ``(N, H, W)`` bool. NaN when both are empty.
    """
    return overlap_iou_and_dice(*_overlap_counts(pred & valid, gt & valid))[1]


def _overlap_counts(p: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (p & g).flatten(1).sum(1), p.flatten(1).sum(1), g.flatten(1).sum(1)


def overlap_iou_and_dice(
    inter: torch.Tensor, pred_size: torch.Tensor, gt_size: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`segmentation_iou` and :func:`segmentation_dice` from the pixel counts ``|P & G|``, ``|P|`` and
    ``|G|`` (int, ``(N,)``; void excluded): ``IoU = |P & G| / (|P| + |G| - |P & G|)``,
    ``Dice = 2 |P & G| / (|P| + |G|)``, NaN when both masks are empty."""
    union, total = pred_size + gt_size - inter, pred_size + gt_size
    return (_nan_where(inter.double() / union.clamp(min=1), union == 0),
            _nan_where(2 * inter.double() / total.clamp(min=1), total == 0))


def pair_overlap_counts(
    confusion: torch.Tensor, image: torch.Tensor, klass: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixel counts ``|P & G|``, ``|P|`` and ``|G|`` of (image, class) pairs, read off the per-image
    confusion matrices ``C`` of :func:`confusion_counts` (``P``: pixels predicted ``k``, ``G``: labelled ``k``,
    void excluded -- a pixel is counted in ``C`` exactly when it is not void)::

        |P & G| = C[b, k, k]        |P| = sum_i C[b, i, k]        |G| = sum_j C[b, k, j]

    ``image``, ``klass``: ``(N,)`` int64. Equal to counting the masks' pixels, without building them.
    """
    return (confusion[image, klass, klass], confusion.sum(1)[image, klass], confusion.sum(2)[image, klass])


def confusion_counts(pred: torch.Tensor, gt: torch.Tensor, num_classes: int, ignore: int = 255) -> torch.Tensor:
    """Per-image confusion matrices ``(B, K, K)`` int64: ``[b, i, j]`` = pixels labelled ``i`` and predicted
    ``j`` in image ``b``; pixels labelled ``ignore`` are left out.

    ``pred``, ``gt``: ``(B, H, W)`` int64 class ids.
    """
    keep = gt != ignore
    image = torch.arange(len(gt), device=gt.device)[:, None, None].expand_as(gt)
    cells = len(gt) * num_classes * num_classes  # ignored pixels are counted in one extra cell, then dropped
    flat = torch.where(keep, (image * num_classes + gt) * num_classes + pred, cells)
    return torch.bincount(flat.flatten(), minlength=cells + 1)[:cells].view(len(gt), num_classes, num_classes)


def mean_iou(matrix: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean intersection over union over classes from a confusion matrix (Pascal VOC's mIoU, Everingham
    et al. 2010)::

        IoU_k = C_kk / (sum_j C_kj + sum_i C_ik - C_kk)

    Classes absent from both labels and predictions are left out of the mean.
    """
    inter = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - inter
    per_class = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return float(np.nanmean(per_class)), per_class


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


# --- Rank-based scores, thresholded overlaps and the background point -----------------------------------

#: Rows per chunk are chosen so that a chunk holds at most this many pixels (bounds the float64 temporaries
#: of the sort-based scores to ~128 MiB each).
_CHUNK_ELEMENTS = 1 << 24

#: Thresholds of :func:`best_iou`: 0.05, 0.10, ..., 0.95 (``torch.linspace(0.05, 0.95, 19)`` in exact decimals).
BEST_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))


def _check(maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> None:
    if maps.dim() != 3 or masks.shape != maps.shape or valid.shape != maps.shape:
        raise ValueError(
            "expected maps, masks and valid of one shape (N, H, W), got "
            f"{tuple(maps.shape)}, {tuple(masks.shape)}, {tuple(valid.shape)}"
        )
    if masks.dtype != torch.bool or valid.dtype != torch.bool:
        raise ValueError(f"expected bool masks and valid, got {masks.dtype} and {valid.dtype}")


def _over_chunks(fn, *tensors: torch.Tensor):
    """``fn`` applied to chunks of rows of ``(N, H, W)`` tensors, results concatenated along N (tuples of
    results concatenated element-wise). Only bounds memory: rows never interact."""
    n, height, width = tensors[0].shape
    step = max(1, _CHUNK_ELEMENTS // max(1, height * width))
    parts = [fn(*(t[start : start + step] for t in tensors)) for start in range(0, max(n, 1), step)]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))
    return torch.cat(parts)


def _average_ranks(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` float64 1-based ranks of ``values`` ``(N, M)`` among the valid entries of each row, ties
    given the mean of the ranks they span (``scipy.stats.rankdata(method="average")``); 0 where not valid."""
    return MapOrdering(values, valid).ranks()


def _top_k_share(
    maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor, k: torch.Tensor
) -> torch.Tensor:
    """Share of the ``k[i]`` highest-valued valid pixels of map i that lie in mask i, ties at the k-th value
    shared out in proportion (the expected share over random tie-breaking), so the answer does not depend on
    a sort's order. NaN when ``k < 1``, when fewer than ``k`` pixels are valid, or for a map with no positive
    valid value."""
    return MapOrdering(maps.flatten(1), valid.flatten(1), [masks.flatten(1)]).top_k_share(0, k)


def relevance_rank_accuracy(maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Relevance rank accuracy (Arras et al. 2022, "CLEVR-XAI: A benchmark dataset for the ground truth
    evaluation of neural network explanations", Information Fusion 81)::

        RRA = |P_top-K & M| / K,   K = |M|,   P_top-K = the K highest-valued pixels     (void pixels excluded)

    Ties at the K-th value are shared out in proportion (expected value over random tie-breaking; Quantus'
    RelevanceRankAccuracy breaks them by ``np.argsort`` order). NaN for an empty mask or a map with no
    positive value.

    Parameters
    ----------
    maps : ``(N, H, W)`` float.  masks, valid : ``(N, H, W)`` bool.

    Returns
    -------
    ``(N,)`` float64 in [0, 1].
    """
    _check(maps, masks, valid)

    def one(m: torch.Tensor, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return _top_k_share(m, g, v, (g & v).flatten(1).sum(1))

    return _over_chunks(one, maps, masks, valid)


def top_k_intersection(maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k intersection (Theiner et al. 2021, "Interpretable Semantic Photo Geolocation",
    arXiv:2104.14995; as Quantus' TopKIntersection, whose default is k = 1000 at 224 x 224)::

        TKI = |P_top-k & M| / k,   P_top-k = the k highest-valued valid pixels

    Ties at the k-th value are shared out in proportion (see :func:`relevance_rank_accuracy`). NaN for an
    empty mask, a map with no positive value, or fewer than ``k`` valid pixels.

    Returns ``(N,)`` float64 in [0, 1].
    """
    _check(maps, masks, valid)
    if not 1 <= k <= maps.shape[-2] * maps.shape[-1]:
        raise ValueError(f"k must be between 1 and H * W = {maps.shape[-2] * maps.shape[-1]}, got {k}")

    def one(m: torch.Tensor, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        share = _top_k_share(m, g, v, torch.full((len(m),), k, dtype=torch.long, device=m.device))
        return torch.where(_mask_empty(g, v), torch.full_like(share, _NAN), share)

    return _over_chunks(one, maps, masks, valid)


def auroc(maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve of the map as a pixel classifier of the mask, over valid pixels, ties
    counted 1/2 (Mann-Whitney U; Hanley & McNeil 1982)::

        AUC = (sum_{p in M} rank(L_p) - n_pos (n_pos + 1) / 2) / (n_pos n_neg)     (average ranks for ties)

    Equal to ``sklearn.metrics.roc_auc_score(mask, map)`` on the valid pixels; a constant map scores 0.5.
    NaN when the mask or its complement (within the valid pixels) is empty.

    Returns ``(N,)`` float64 in [0, 1].
    """
    _check(maps, masks, valid)

    def one(m: torch.Tensor, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return MapOrdering(m.flatten(1), v.flatten(1), [g.flatten(1)]).auroc(0)

    return _over_chunks(one, maps, masks, valid)


def spearman(maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between the map and the mask indicator over valid pixels (Pearson
    correlation of average ranks; as ``scipy.stats.spearmanr``)::

        rho = cov(R(L), R(1_M)) / (sd(R(L)) sd(R(1_M)))

    NaN when the map is constant or the mask is empty or full (within the valid pixels).

    Returns ``(N,)`` float64 in [-1, 1].
    """
    _check(maps, masks, valid)

    def one(m: torch.Tensor, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        ok, truth = v.flatten(1), (g & v).flatten(1)
        n = ok.sum(1).clamp(min=1)
        rx = _average_ranks(m.flatten(1), ok)
        ry = truth.double()  # the indicator's average ranks are an affine map of it: same correlation
        dx = (rx - (rx.sum(1) / n)[:, None]) * ok
        dy = (ry - (ry.sum(1) / n)[:, None]) * ok
        rho = (dx * dy).sum(1) / ((dx * dx).sum(1) * (dy * dy).sum(1)).sqrt().clamp(min=1e-300)
        vals = m.flatten(1)
        high = torch.where(ok, vals, torch.full_like(vals, -torch.inf)).max(1).values
        low = torch.where(ok, vals, torch.full_like(vals, torch.inf)).min(1).values
        n_pos = truth.sum(1)
        constant = ~(high > low) | (n_pos == 0) | (n_pos == ok.sum(1))
        return _nan_where(rho.clamp(-1.0, 1.0), constant)

    return _over_chunks(one, maps, masks, valid)


def iou_and_dice_at(
    maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor, thresholds: Sequence[float] | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and Dice of the min-max normalised map thresholded at each of ``thresholds`` with the mask
    (:func:`iou_at_threshold` is its one-threshold case)::

        R_t = {L~ >= t},   IoU_t = |R_t & M| / |R_t | M|,   Dice_t = 2 |R_t & M| / (|R_t| + |M|)

    with ``L~ = (L - min L) / (max L - min L)`` over valid pixels and void pixels excluded. NaN for an empty
    mask or a constant map.

    Returns
    -------
    iou, dice : ``(N, T)`` float64.
    """
    _check(maps, masks, valid)
    levels = [float(t) for t in torch.as_tensor(thresholds, dtype=torch.float64).flatten().tolist()]
    if not levels:
        raise ValueError("expected at least one threshold")

    def one(m: torch.Tensor, g: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        order = MapOrdering(m.flatten(1), v.flatten(1), [g.flatten(1)])
        iou, dice, constant = order.thresholded(0, levels)
        undefined = ((order.n_in(0) == 0) | constant)[:, None]
        return _nan_where(iou, undefined), _nan_where(dice, undefined)

    return _over_chunks(one, maps, masks, valid)


def best_iou(
    maps: torch.Tensor,
    masks: torch.Tensor,
    valid: torch.Tensor,
    thresholds: Sequence[float] | torch.Tensor = BEST_IOU_THRESHOLDS,
) -> torch.Tensor:
    """The best IoU over ``thresholds`` of :func:`iou_and_dice_at` (an oracle threshold per map: an upper
    bound on what one fixed threshold achieves). ``(N,)`` float64; NaN where :func:`iou_and_dice_at` is."""
    iou, _ = iou_and_dice_at(maps, masks, valid, thresholds)
    return iou.max(1).values


def background_point(maps: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The map's minimum over valid pixels as a background (negative) point prompt, the counterpart of
    :func:`max_point` in the CAM -> point-prompt pipeline.

    Returns ``(N, 2)`` float (row, col) and ``(N,)`` whether defined: the map has a positive value and is
    not constant over the valid pixels. On ties the first minimum in row-major order is taken, so for a CAM
    that is 0 on a large area this is the first such pixel, often the top-left corner.
    """
    if maps.dim() != 3 or valid.shape != maps.shape or valid.dtype != torch.bool:
        raise ValueError(f"expected maps (N, H, W) and bool valid of that shape, got {tuple(valid.shape)}")
    width = maps.shape[-1]
    low, index = torch.where(valid, maps, torch.full_like(maps, torch.inf)).flatten(1).min(1)
    high = torch.where(valid, maps, torch.full_like(maps, -torch.inf)).flatten(1).max(1).values
    points = torch.stack([index // width, index % width], dim=1)
    return points.double(), (high > low) & (high > 0)


def mask_scores(
    maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor, iou_threshold: float = 0.5,
    centroid_cutoff: float = CENTROID_CUTOFF,
) -> dict[str, torch.Tensor]:
    """Every score of the scores table for ``N`` (map, mask) pairs: the columns of one mask kind.

    Parameters
    ----------
    maps : torch.Tensor
        ``(N, H, W)`` float raw maps at mask resolution.
    masks, valid : torch.Tensor
        ``(N, H, W)`` bool reference masks and valid (non-void) pixels.
    iou_threshold : float
        Threshold of the normalised map for ``iou_at_0_5`` / ``dice_at_0_5``.
    centroid_cutoff : float
        Weighted-centroid cutoff (share of the map's max).

    Returns
    -------
    dict of str to torch.Tensor
        ``(N,)`` per column: ``mask_pixels``, ``energy_in_mask``, ``pointing_hit``, ``relevance_rank``,
        ``auroc``, ``iou_at_0_5``, ``dice_at_0_5``, ``max_point_hit``/``_distance``,
        ``centroid_hit``/``_distance``, ``background_point_hit``.
    """
    return score_masks(maps, {"mask": masks}, valid, iou_threshold, centroid_cutoff)["mask"]


def score_masks(
    maps: torch.Tensor, masks: Mapping[str, torch.Tensor], valid: torch.Tensor, iou_threshold: float = 0.5,
    centroid_cutoff: float = CENTROID_CUTOFF,
) -> dict[str, dict[str, torch.Tensor]]:
    """:func:`mask_scores` of the same maps against several mask kinds at once (e.g. ``{"gt": ..., "pred":
    ...}``), equal to calling it once per kind, at a fraction of the cost: each map is sorted once (one
    :class:`MapOrdering` serves AUROC, relevance rank and the thresholded IoU/Dice of every mask), its three
    points and positive mass are computed once, and a mask costs a prefix count (:func:`rank_counts`: compiled
    loops on a CPU).

    Parameters
    ----------
    maps : torch.Tensor
        ``(N, H, W)`` float raw maps at mask resolution.
    masks : mapping of str to torch.Tensor
        ``(N, H, W)`` bool reference masks per kind.
    valid : torch.Tensor
        ``(N, H, W)`` bool valid (non-void) pixels.
    iou_threshold, centroid_cutoff : float
        As in :func:`mask_scores`.

    Returns
    -------
    dict of str to dict of str to torch.Tensor
        Per kind, the columns of :func:`mask_scores`.
    """
    for kind in masks.values():
        _check(maps, kind, valid)
    n, height, width = maps.shape
    step = max(1, _CHUNK_ELEMENTS // max(1, height * width))
    parts = [_score_masks_chunk(maps[i : i + step], {k: m[i : i + step] for k, m in masks.items()},
                                valid[i : i + step], iou_threshold, centroid_cutoff) for i in range(0, max(n, 1), step)]
    return {k: {col: torch.cat([p[k][col] for p in parts]) for col in parts[0][k]} for k in masks}


def _map_points(
    maps: torch.Tensor, valid: torch.Tensor, centroid_cutoff: float, compiled: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Flat indices of each map's first valid maximum and minimum, and :func:`weighted_centroid`: by
    :func:`segaudit.metrics.point_kernel.map_points` for float32 maps on a CPU (one read of each map), else
    by torch (``compiled`` overrides the choice; the same numbers either way)."""
    if compiled is None:
        compiled = maps.device.type == "cpu" and maps.dtype == torch.float32
    if not compiled:
        top, bottom = extreme_points(maps.flatten(1), valid.flatten(1))
        return top, bottom, weighted_centroid(maps, valid, centroid_cutoff)
    from segaudit.metrics import point_kernel

    n = len(maps)
    top, bottom, centroid, peak = np.empty(n, np.int64), np.empty(n, np.int64), np.empty((n, 2)), np.empty(n, np.float32)
    point_kernel.map_points(maps.detach().contiguous().numpy(), valid.contiguous().numpy(), centroid_cutoff, top,
                            bottom, centroid, peak)
    return torch.from_numpy(top), torch.from_numpy(bottom), (torch.from_numpy(centroid), torch.from_numpy(peak) > 0)


def _score_masks_chunk(
    maps: torch.Tensor, masks: Mapping[str, torch.Tensor], valid: torch.Tensor, iou_threshold: float,
    centroid_cutoff: float,
) -> dict[str, dict[str, torch.Tensor]]:
    counts = rank_counts(maps.flatten(1), valid.flatten(1), [mask.flatten(1) for mask in masks.values()],
                         (iou_threshold,))
    top, bottom, weighted = _map_points(maps, valid, centroid_cutoff)
    positive_max = (counts.n_valid > 0) & (counts.largest > 0)
    not_constant = positive_max & (counts.largest > counts.smallest)
    width = maps.shape[-1]
    points = {"max_point": (torch.stack([top // width, top % width], 1).double(), positive_max),
              "centroid": weighted,
              "background_point": (torch.stack([bottom // width, bottom % width], 1).double(), not_constant)}
    positive = maps.clamp(min=0) * valid
    total = positive.flatten(1).sum(1)
    out = {}
    for j, (kind, mask) in enumerate(masks.items()):
        truth = mask & valid
        n_truth = counts.n_in[:, j]
        empty = n_truth == 0
        iou, dice, constant = counts.thresholded(j)
        columns = {
            "mask_pixels": n_truth,
            "energy_in_mask": _nan_where((positive * mask).flatten(1).sum(1) / total.clamp(min=1e-30),
                                         empty | (total <= 0)),
            "relevance_rank": counts.relevance_rank(j),
            "auroc": counts.auroc(j),
            "iou_at_0_5": _nan_where(iou[:, 0], empty | constant),
            "dice_at_0_5": _nan_where(dice[:, 0], empty | constant),
        }
        for name, (point, defined) in points.items():
            hit, distance = _hits_and_distances(point, truth, with_distance=name != "background_point")
            columns[f"{name}_hit"] = _nan_where(hit.double(), empty | ~defined)
            columns[f"{name}_distance"] = _nan_where(distance, empty | ~defined)
        columns["pointing_hit"] = columns["max_point_hit"]  # the strict pointing game: the same test
        out[kind] = {col: columns[col] for col in _MASK_COLUMNS}
    return out


#: The columns of :func:`mask_scores`, in the scores table's order.
_MASK_COLUMNS = ("mask_pixels", "energy_in_mask", "pointing_hit", "relevance_rank", "auroc", "iou_at_0_5",
                 "dice_at_0_5", "max_point_hit", "max_point_distance", "centroid_hit", "centroid_distance",
                 "background_point_hit")
