"""Label quality from the model's class probabilities: how much the model believes each labelled pixel.

Lad and Mueller 2023, "Estimating label quality and errors in semantic segmentation data via any model"
(arXiv:2307.05080), the method behind ``cleanlab.segmentation.rank.get_label_quality_scores``. The pixel
score is the predicted probability of the pixel's given label, and an image's score pools its pixels with a
*softmin*, which lets the worst pixels dominate without being a plain minimum::

    q_p = softmax(z_p)[y_p]                                    (pixel p with label y_p)
    w_p = exp((1 - q_p) / T) / sum_{p'} exp((1 - q_p') / T)    (T = 0.1, cleanlab's default)
    Q   = sum_p w_p q_p                                       (1 = every pixel's label believed)

Where we differ from cleanlab: void pixels (label 255) are left out of the pooling (cleanlab takes no void
label, so its users must give void pixels some class), and the same pooling is also offered over a region
(e.g. the pixels labelled or predicted as one class), so a low image score can be traced to a class.
"""

from __future__ import annotations

import math

import torch

from segaudit.schema import VOID_LABEL as _IGNORE

__all__ = ["SOFTMIN_TEMPERATURE", "pixel_label_quality", "softmin_pool", "softmin_pool_images_and_regions",
           "softmin_pool_regions"]

#: Temperature of the softmin pooling (cleanlab's default).
SOFTMIN_TEMPERATURE = 0.1
#: Logits per softmax call of :func:`pixel_label_quality` (whole images, at least one).
SOFTMAX_CHUNK = 2**20


def pixel_label_quality(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``q_p``: the softmax probability of each pixel's label; NaN on void pixels.

    Parameters
    ----------
    logits : torch.Tensor
        ``(B, K, H, W)`` class logits.
    labels : torch.Tensor
        ``(B, H, W)`` int labels in ``[0, K)``, 255 = void.

    Returns
    -------
    torch.Tensor
        ``(B, H, W)`` float32.
    """
    if logits.ndim != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"logits (B, K, H, W) and labels (B, H, W) expected, got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    labels = labels.long()
    void = (labels == _IGNORE) | (labels < 0) | (labels >= logits.shape[1])
    index = labels.clamp(0, logits.shape[1] - 1).unsqueeze(1)
    # a few images at a time, so that a chunk's softmax stays in cache: the same values as one call (each pixel
    # is normalised alone), ~2x faster on deeplabv3's channels-last logits (16 x 21 x 320 x 320: 0.28 s whole,
    # 0.13-0.14 s by image)
    step = max(1, SOFTMAX_CHUNK // max(math.prod(logits.shape[1:]), 1))
    quality = torch.cat([logits[i : i + step].float().softmax(1).gather(1, index[i : i + step])
                         for i in range(0, len(logits), step)]) if len(logits) else index.float()
    return quality.squeeze(1).masked_fill(void, float("nan"))


def _softmin_terms(quality: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, P)`` float64 ``exp((1 - q_p) / T)`` and ``q_p exp((1 - q_p) / T)``, 0 where ``q_p`` is NaN.

    The softmax's shift by the maximum is not needed: ``q`` is in [0, 1], so the exponent is at most
    ``1 / T`` (``e^10`` at the default) and float64 neither overflows nor underflows."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    q = quality.flatten(1).double()
    scored = ~torch.isnan(q)
    weights = torch.where(scored, torch.exp((1.0 - q) / temperature), 0.0)
    return weights, torch.where(scored, weights * q, 0.0)


def _pooled(weighted: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    return torch.where(total > 0, weighted / total.clamp(min=1e-300), float("nan"))


def softmin_pool(
    quality: torch.Tensor, region: torch.Tensor | None = None, temperature: float = SOFTMIN_TEMPERATURE
) -> torch.Tensor:
    """``Q``: softmin pooling of pixel scores over each region (NaN pixels are skipped),
    ``Q = sum_p e_p q_p / sum_p e_p`` with ``e_p = exp((1 - q_p) / T)`` (the module docstring's ``w_p``
    before normalising).

    Parameters
    ----------
    quality : torch.Tensor
        ``(N, H, W)`` pixel scores in [0, 1], NaN = not scored (void).
    region : torch.Tensor, optional
        ``(N, H, W)`` bool: pool only these pixels (default: every scored pixel).
    temperature : float
        ``T`` above; smaller approaches the minimum, larger the mean.

    Returns
    -------
    torch.Tensor
        ``(N,)`` float64; NaN where the region has no scored pixel.
    """
    weights, weighted = _softmin_terms(quality, temperature)
    if region is not None:
        inside = region.flatten(1)
        weights, weighted = torch.where(inside, weights, 0.0), torch.where(inside, weighted, 0.0)
    return _pooled(weighted.sum(1), weights.sum(1))


def softmin_pool_regions(
    quality: torch.Tensor, image_of: torch.Tensor, regions: torch.Tensor, temperature: float = SOFTMIN_TEMPERATURE
) -> torch.Tensor:
    """:func:`softmin_pool` of ``quality[image_of[n]]`` over ``regions[n]`` for every ``n``, each image's
    terms computed once and each region's sums as one product with its image's terms.

    ``quality`` ``(B, H, W)``; ``image_of`` ``(N,)`` int64; ``regions`` ``(N, H, W)`` bool. Returns ``(N,)``
    float64 (equal to :func:`softmin_pool` up to float64 rounding)."""
    return softmin_pool_images_and_regions(quality, image_of, regions, temperature)[1]


def softmin_pool_images_and_regions(
    quality: torch.Tensor, image_of: torch.Tensor, regions: torch.Tensor, temperature: float = SOFTMIN_TEMPERATURE,
    compiled: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmin_pool(quality)`` (each whole image, ``(B,)``, to the bit) and :func:`softmin_pool_regions`
    (``(N,)``) from one computation of the images' terms. The regions' sums: pixel by pixel in the compiled
    loop of :func:`segaudit.metrics.sums_kernel.region_sums` (``compiled``; the default on a CPU), else as one
    matrix product per image (torch: a device's path); the two differ by float64 rounding at most."""
    weights, weighted = _softmin_terms(quality, temperature)
    images = _pooled(weighted.sum(1), weights.sum(1))
    terms = torch.stack([weighted, weights], dim=2)  # (B, P, 2)
    if compiled is None:
        compiled = terms.device.type == "cpu"
    if compiled:
        from segaudit.metrics import sums_kernel  # numba: compiled (or read from its cache) on first use

        sums = torch.empty((len(regions), 2), dtype=terms.dtype)  # every cell written by the loop
        sums_kernel.region_sums(terms.numpy(), image_of.contiguous().numpy(), regions.flatten(1).contiguous().numpy(),
                                sums.numpy())
        return images, _pooled(sums[:, 0], sums[:, 1])
    inside = regions.flatten(1).to(terms.dtype)
    sums = torch.zeros((len(regions), 2), dtype=terms.dtype, device=terms.device)
    for b in torch.unique(image_of).tolist():
        rows = torch.nonzero(image_of == b)[:, 0]
        sums[rows] = inside[rows] @ terms[b]
    return images, _pooled(sums[:, 0], sums[:, 1])
