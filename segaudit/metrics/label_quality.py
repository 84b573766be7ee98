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

import torch

from segaudit.schema import VOID_LABEL as _IGNORE

__all__ = ["SOFTMIN_TEMPERATURE", "pixel_label_quality", "softmin_pool"]

#: Temperature of the softmin pooling (cleanlab's default).
SOFTMIN_TEMPERATURE = 0.1


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
    probs = logits.float().softmax(1)
    quality = probs.gather(1, labels.clamp(0, logits.shape[1] - 1).unsqueeze(1)).squeeze(1)
    return quality.masked_fill(void, float("nan"))


def softmin_pool(
    quality: torch.Tensor, region: torch.Tensor | None = None, temperature: float = SOFTMIN_TEMPERATURE
) -> torch.Tensor:
    """``Q``: softmin pooling of pixel scores over each region (NaN pixels are skipped).

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
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    q = quality.flatten(1).double()
    inside = ~torch.isnan(q)
    if region is not None:
        inside &= region.flatten(1)
    logit = torch.where(inside, (1.0 - q) / temperature, float("-inf"))
    has_any = inside.any(1)
    logit[~has_any] = 0.0  # a row with nothing to pool: any finite weights (its result is NaN)
    weights = torch.softmax(logit, dim=1)
    pooled = weights.mul_(torch.where(inside, q, 0.0)).sum(1)
    return torch.where(has_any, pooled, float("nan"))
