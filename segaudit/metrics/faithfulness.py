"""Faithfulness of a map to the model: deletion and insertion curves with ROAD imputation.

A map is faithful when the pixels it ranks highest are the ones the model needs. Petsiuk et al. (RISE,
BMVC 2018) measure it with two curves of the explained score ``s`` as the map's pixels are taken away:

- **deletion**: remove the top ``f`` share of the map's pixels (most relevant first, "MoRF") and score the
  image; a faithful map makes the score fall fast (low area under the curve);
- **insertion**: keep only the top ``f`` share (remove the least relevant first, "LeRF"); a faithful map
  recovers the score with few pixels (high area).

Removing pixels by painting them black or blurring them creates shapes the model reacts to (the mask's
outline leaks the map: Rong et al. 2022). ROAD (Rong, Leemann, Borisov, Kasneci, Kasneci, "A Consistent and
Efficient Evaluation Strategy for Attribution Methods", ICML 2022) replaces each removed pixel by the
*noisy linear imputation* of its neighbours: the removed values ``x`` solve, per channel,

    x_i = sum_j w_ij x_j / sum_j w_ij        (j: the 8 neighbours of i inside the image)

with ``w = 1/6`` for edge and ``1/12`` for diagonal neighbours (known neighbours are fixed values), plus
Gaussian noise of standard deviation ``noise``. :func:`linear_imputation` solves that sparse system for a
whole batch at once by conjugate gradients on a 3x3 convolution (the system matrix ``diag(S) - W`` is
symmetric positive definite when every removed region touches a known pixel), which is the solution the
reference implementation gets from ``scipy.sparse.linalg.spsolve`` one image at a time (checked in the tests
against pytorch-grad-cam's copy of ROAD's ``NoisyLinearImputer``).

Per explained pair, with removal shares ``F = (0.1, ..., 0.9)``:

    deletion_score  = mean_{f in F} s(x with the top f removed)
    insertion_score = mean_{f in F} s(x with all but the top f removed)
    faithfulness    = insertion_score - deletion_score

``faithfulness`` is twice ROAD's combined score ``(LeRF - MoRF) / 2``; the shares are pytorch-grad-cam's
``ROADMostRelevantFirstAverage`` / ``ROADLeastRelevantFirstAverage`` percentiles (their percentile ``p``
removes the pixels at or above the ``p``-th percentile of the map, the top ``1 - p/100``: the same sets,
averaged over the symmetric 10..90 grid). Pixels are ordered by the map's value, ties by pixel index
(the peer thresholds at a percentile instead, which differs only on tied values); void pixels (letterbox
padding, label 255) are never removed and do not count in the shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "ROAD_FRACTIONS",
    "linear_imputation",
    "removal_masks",
    "deletion_insertion",
    "segmentation_class_score",
]

#: Shares of the valid pixels removed (deletion) or kept (insertion): ROAD's percentile grid.
ROAD_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

# ROAD's neighbour weights (Rong et al. 2022, imputations.py): 1/6 for the 4 edge neighbours, 1/12 for the
# 4 diagonal ones; the centre is not a neighbour.
_WEIGHTS = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]], dtype=torch.float64)


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """``sum_j w_ij x_j`` over the in-image neighbours of every pixel; ``x``: ``(M, 1, H, W)``.

    :data:`_WEIGHTS` is separable but for its centre, ``W = ([1, 2, 1]^T [1, 2, 1] - 4 delta) / 12``, so the
    sum is ``(B(x) - 4 x) / 12`` with ``B`` a 3-tap pass along the rows then one along the columns (zero
    padding, as the 3x3 convolution's): a few elementwise operations instead of ten (float64 convolutions
    are several times slower on a CPU, float32 ones here too)."""
    return _binomial(x).sub_(x, alpha=4).mul_(1 / 12)


def _binomial(x: torch.Tensor) -> torch.Tensor:
    """``[1, 2, 1]^T [1, 2, 1]`` applied to ``x`` ``(M, 1, H, W)`` with zero padding, as two 3-tap passes."""
    p = F.pad(x, (1, 1))
    across = torch.add(p[..., :-2], p[..., 2:]).add_(p[..., 1:-1], alpha=2)
    q = F.pad(across, (0, 0, 1, 1))
    return torch.add(q[..., :-2, :], q[..., 2:, :]).add_(q[..., 1:-1, :], alpha=2)


def _dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(M,)`` the dot product of each of ``a`` and ``b``'s ``M`` images (one pass, as a batched product)."""
    m = len(a)
    return torch.bmm(a.reshape(m, 1, -1), b.reshape(m, -1, 1)).view(m)


def _pull_push(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """A fast smooth fill of the unknown pixels (pull-push: known values averaged down a 2x pyramid, then
    pushed back up into the holes; Gortler et al., "The Lumigraph", SIGGRAPH 1996): the starting point of
    the conjugate gradients, which then reach ROAD's exact solution in far fewer steps."""
    if min(values.shape[-2:]) <= 1 or bool(known.all()):
        return values * known
    weight_sum = F.avg_pool2d(known, 2, ceil_mode=True)
    coarse = F.avg_pool2d(values * known, 2, ceil_mode=True) / weight_sum.clamp(min=1e-12)
    coarse = _pull_push(coarse, (weight_sum > 0).to(values.dtype))
    up = F.interpolate(coarse, size=values.shape[-2:], mode="bilinear", align_corners=False)
    return values * known + up * (1 - known)


def linear_imputation(
    images: torch.Tensor,
    keep: torch.Tensor,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    tolerance: float = 1e-6,
    max_iterations: int = 2000,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """ROAD's noisy linear imputation of the pixels not kept (module docstring), for a batch.

    Parameters
    ----------
    images : torch.Tensor
        ``(B, C, H, W)`` float.
    keep : torch.Tensor
        ``(B, H, W)`` bool: the known pixels; the others are imputed.
    noise : float
        Standard deviation of the Gaussian noise added to imputed values (ROAD's default is 0.01 on
        images in [0, 1]; 0 gives the plain linear imputation).
    generator : torch.Generator, optional
        Seeds the noise.
    tolerance : float
        Conjugate gradients stop when every system's residual norm is below ``tolerance`` times its
        right-hand side's norm.
    max_iterations : int
        Upper bound on conjugate-gradient steps (a removed region of diameter ``d`` needs about ``d``).
    dtype : torch.dtype
        Precision of the solve (float32 halves its cost; enough for tolerances down to about 1e-5).

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)``, equal to ``images`` at the kept pixels. An image with no kept pixel is filled
        with zeros (the system has no known value to spread).
    """
    if images.ndim != 4 or keep.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"images must be (B, C, H, W) and keep (B, H, W); got {tuple(images.shape)} and "
                         f"{tuple(keep.shape)}")
    b, c, h, w = images.shape
    work = dtype
    tiny = torch.finfo(work).tiny  # guards 0/0 where a system is already solved (e.g. a constant channel)
    x0 = images.to(work).reshape(b * c, 1, h, w)
    known = keep.to(work)[:, None].repeat_interleave(c, 0)  # (B*C, 1, H, W)
    missing = 1.0 - known
    inside = _neighbour_sum(torch.ones((1, 1, h, w), dtype=work, device=images.device))  # S_i
    rhs = _neighbour_sum(x0 * known) * missing

    def apply(v: torch.Tensor) -> torch.Tensor:  # (diag(S) - W_mm) v on the missing pixels (v is 0 elsewhere)
        return (inside * v).sub_(_neighbour_sum(v)).mul_(missing)

    x = _pull_push(x0 * known, known) * missing
    r = rhs - apply(x)
    p = r.clone()
    rr = _dots(r, r)
    stop = (tolerance**2) * _dots(rhs, rhs).clamp(min=tiny)
    for _ in range(max_iterations):  # x, r and p stay 0 at the known pixels
        if bool((rr <= stop).all()):
            break
        ap = apply(p)
        alpha = (rr / _dots(p, ap).clamp(min=tiny))[:, None, None, None]
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1)
        rr_new = _dots(r, r)
        p.mul_((rr_new / rr.clamp(min=tiny))[:, None, None, None]).add_(r)
        rr = rr_new
    filled = x0 * known + x * missing
    if noise:
        filled = filled + noise * torch.randn(filled.shape, generator=generator, dtype=work,
                                              device="cpu").to(filled.device) * missing
    return filled.reshape(b, c, h, w).to(images.dtype)


def removal_masks(maps: torch.Tensor, valid: torch.Tensor, fractions: Sequence[float]) -> torch.Tensor:
    """Which pixels are removed at each share: the top ``round(f * n)`` valid pixels of each map.

    Parameters
    ----------
    maps : torch.Tensor
        ``(N, H, W)`` float.
    valid : torch.Tensor
        ``(N, H, W)`` bool; ``n`` is the count of valid pixels of each map.
    fractions : sequence of float
        Shares in [0, 1].

    Returns
    -------
    torch.Tensor
        ``(N, len(fractions), H, W)`` bool, True where removed (most relevant first; ties by pixel index).
    """
    n_maps, h, w = maps.shape
    flat = torch.where(valid, maps, torch.full_like(maps, -torch.inf)).flatten(1).double()
    order = torch.argsort(-flat, dim=1, stable=True)  # most relevant first, ties by index
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=maps.device).expand(n_maps, -1))
    counts = valid.flatten(1).sum(1)
    shares = torch.tensor([float(f) for f in fractions], dtype=torch.float64, device=maps.device)
    take = torch.round(shares[None, :] * counts[:, None].double()).long()  # (N, F)
    removed = rank[:, None, :] < take[:, :, None]
    return (removed & valid.flatten(1)[:, None, :]).reshape(n_maps, len(fractions), h, w)


def deletion_insertion(
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    maps: torch.Tensor,
    image_of: torch.Tensor,
    valid: torch.Tensor,
    fractions: Sequence[float] = ROAD_FRACTIONS,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    chunk: int = 32,
    imputation: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Deletion and insertion curves (ROAD imputation) of ``N`` explained pairs (module docstring).

    Parameters
    ----------
    score : callable
        ``score(x, pair)`` -> ``(M,)``: the explained score of pair ``pair[m]`` on image ``x[m]``
        (``x``: ``(M, C, H, W)`` model input; ``pair``: ``(M,)`` long indices into the ``N`` pairs). It runs
        the model; :func:`segmentation_class_score` builds one for segmentation models.
    images : torch.Tensor
        ``(B, C, H, W)`` the model's input.
    maps : torch.Tensor
        ``(N, H, W)`` the maps at input resolution.
    image_of : torch.Tensor
        ``(N,)`` long: the image of each pair.
    valid : torch.Tensor
        ``(B, H, W)`` bool: pixels that may be removed (not letterbox padding).
    fractions : sequence of float
        Removal shares (default :data:`ROAD_FRACTIONS`).
    noise : float, generator
        ROAD's imputation noise (:func:`linear_imputation`).
    chunk : int
        Perturbed images per model call.
    imputation : dict, optional
        More arguments of :func:`linear_imputation` (``tolerance``, ``max_iterations``, ``dtype``): a
        smaller budget approximates ROAD's converged fill from the pull-push start.

    Returns
    -------
    dict of str to torch.Tensor
        ``base`` ``(N,)`` the score on the unperturbed image; ``deletion`` and ``insertion`` ``(N, F)`` the
        curves; ``deletion_score``, ``insertion_score`` (their means over ``F``) and ``faithfulness``
        (``insertion_score - deletion_score``), ``(N,)`` float64.
    """
    n_pairs = maps.shape[0]
    if image_of.shape != (n_pairs,) or maps.shape[1:] != images.shape[2:]:
        raise ValueError(f"maps {tuple(maps.shape)} must be (N, H, W) at the input's size "
                         f"{tuple(images.shape[2:])}, with one image index each")
    pair_valid = valid[image_of]
    removed = removal_masks(maps, pair_valid, fractions)  # (N, F, H, W)
    n_f = len(fractions)
    pairs = torch.arange(n_pairs, device=images.device)
    with torch.no_grad():
        base = score(images[image_of], pairs).double()
        curves = {}
        for kind, keep_of in (("deletion", lambda r: ~r), ("insertion", lambda r: r | ~pair_valid[:, None])):
            keep = keep_of(removed).reshape(n_pairs * n_f, *maps.shape[1:])
            owner = pairs.repeat_interleave(n_f)
            values = []
            for start in range(0, len(owner), chunk):
                sl = slice(start, start + chunk)
                source = images[image_of[owner[sl]]]
                perturbed = linear_imputation(source, keep[sl], noise=noise, generator=generator,
                                              **(imputation or {}))
                values.append(score(perturbed, owner[sl]).double())
            curves[kind] = (torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)).reshape(n_pairs, n_f)
    # insertion keeps the top f: the pixels removed at share f are exactly the kept ones
    deletion, insertion = curves["deletion"], curves["insertion"]
    return {
        "base": base,
        "deletion": deletion,
        "insertion": insertion,
        "deletion_score": deletion.mean(1),
        "insertion_score": insertion.mean(1),
        "faithfulness": insertion.mean(1) - deletion.mean(1),
    }


def segmentation_class_score(
    forward: Callable[[torch.Tensor], torch.Tensor],
    classes: torch.Tensor,
    pixels: torch.Tensor,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The explained score of a segmentation pair for :func:`deletion_insertion`: the mean softmax
    probability of the pair's class over its target pixels,

        s_n(x) = (1 / |T_n|) sum_{p in T_n} softmax(f(x))_{k_n, p}

    (a bounded form of the Seg-Grad-CAM target of Vinogradova et al. 2020, comparable across pairs).

    Parameters
    ----------
    forward : callable
        ``(M, C, H, W)`` -> ``(M, K, H, W)`` logits at input resolution.
    classes : torch.Tensor
        ``(N,)`` long class of each pair.
    pixels : torch.Tensor
        ``(N, H, W)`` bool target pixels ``T_n`` (e.g. the predicted mask of the class); a pair without
        pixels scores NaN.
    """

    def score(x: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        probs = forward(x).softmax(1)
        k = classes[pair]
        chosen = probs[torch.arange(len(pair), device=probs.device), k]  # (M, H, W)
        mask = pixels[pair].to(chosen.dtype)
        total = mask.flatten(1).sum(1)
        return torch.where(total > 0, (chosen * mask).flatten(1).sum(1) / total.clamp(min=1),
                           torch.full_like(total, float("nan")))

    return score
