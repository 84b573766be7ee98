"""Seg-Grad-CAM targets: which pixels' class scores are summed into the scalar a CAM explains.

Vinogradova et al. 2020, "Towards Interpretable Semantic Segmentation via Gradient-weighted Class
Activation Mapping" (arXiv:2002.11434): for class ``c`` and a pixel set ``M``::

    y^c = sum_{p in M} s^c_p,        s = z (logits)  or  s = softmax(z) over classes

Target kinds (``kind``), for every class present in an image's prediction or label:

``pred``  the pixels predicted as ``c``; for a class only the label has, its labelled pixels
``gt``    the pixels labelled ``c``; for a class only the prediction has, its predicted pixels
``all``   every valid pixel of the image (not void, not padding)
``roi``   the valid pixels inside a box ``(top, left, bottom, right)`` given as fractions of the input

The fallback in ``pred`` and ``gt`` keeps a map for every class an audit scores; the ``source`` code of
each (image, class) records which set was used.
"""

from __future__ import annotations

import torch

__all__ = [
    "TARGET_KINDS",
    "SCORE_KINDS",
    "TARGET_NONE",
    "TARGET_PRED",
    "TARGET_GT",
    "TARGET_ALL",
    "TARGET_ROI",
    "TARGET_NAMES",
    "seg_grad_cam_targets",
    "model_logits",
    "target_scores",
]

TARGET_KINDS = ("pred", "gt", "all", "roi")
SCORE_KINDS = ("logits", "softmax")

TARGET_NONE, TARGET_PRED, TARGET_GT, TARGET_ALL, TARGET_ROI = 0, 1, 2, 3, 4
TARGET_NAMES = {TARGET_PRED: "pred", TARGET_GT: "gt", TARGET_ALL: "all", TARGET_ROI: "roi"}

_IGNORE = 255


def _roi_mask(roi: tuple[float, float, float, float], height: int, width: int, device) -> torch.Tensor:
    top, left, bottom, right = roi
    if not (0 <= top < bottom <= 1 and 0 <= left < right <= 1):
        raise ValueError(f"roi must be (top, left, bottom, right) fractions with top < bottom, left < right: {roi}")
    box = torch.zeros(height, width, dtype=torch.bool, device=device)
    box[int(top * height) : max(int(top * height) + 1, round(bottom * height)),
        int(left * width) : max(int(left * width) + 1, round(right * width))] = True
    return box


def seg_grad_cam_targets(
    pred: torch.Tensor,
    gt: torch.Tensor | None,
    num_classes: int,
    kind: str = "pred",
    roi: tuple[float, float, float, float] | None = None,
    skip_background: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel sets of the Seg-Grad-CAM target for every (image, class).

    Parameters
    ----------
    pred : torch.Tensor
        ``(B, H, W)`` int64 predicted classes.
    gt : torch.Tensor or None
        ``(B, H, W)`` int64 labels, 255 = void; ``None``: predictions only (``gt`` kind then unavailable).
    num_classes : int
    kind : str
        One of :data:`TARGET_KINDS`.
    roi : tuple of float, optional
        ``(top, left, bottom, right)`` in [0, 1], for ``kind="roi"``.
    skip_background : bool
        Class 0 gets no target (default).

    Returns
    -------
    masks : torch.Tensor
        ``(B, K, H, W)`` bool target pixels.
    source : torch.Tensor
        ``(B, K)`` int8 code of the pixel set used (:data:`TARGET_NAMES`), :data:`TARGET_NONE` if none.
    """
    if kind not in TARGET_KINDS:
        raise ValueError(f"unknown target kind {kind!r}; available: {', '.join(TARGET_KINDS)}")
    if kind == "gt" and gt is None:
        raise ValueError("target kind 'gt' needs labels")
    if kind == "roi" and roi is None:
        raise ValueError("target kind 'roi' needs roi=(top, left, bottom, right)")
    if gt is not None and gt.shape != pred.shape:
        raise ValueError(f"labels {tuple(gt.shape)} and predictions {tuple(pred.shape)} differ in shape")
    classes = torch.arange(num_classes, device=pred.device).view(1, -1, 1, 1)
    valid = torch.ones_like(pred, dtype=torch.bool) if gt is None else gt != _IGNORE
    pred_masks = (pred.unsqueeze(1) == classes) & valid.unsqueeze(1)
    gt_masks = torch.zeros_like(pred_masks) if gt is None else gt.unsqueeze(1) == classes
    pred_any, gt_any = pred_masks.flatten(2).any(-1), gt_masks.flatten(2).any(-1)
    present = pred_any | gt_any
    none = torch.tensor(TARGET_NONE, dtype=torch.int8, device=pred.device)

    def code(value: int) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.int8, device=pred.device)

    if kind in ("pred", "gt"):
        first, second = (pred_masks, gt_masks) if kind == "pred" else (gt_masks, pred_masks)
        first_any = pred_any if kind == "pred" else gt_any
        first_code, second_code = (TARGET_PRED, TARGET_GT) if kind == "pred" else (TARGET_GT, TARGET_PRED)
        masks = torch.where(first_any[..., None, None], first, second)
        source = torch.where(first_any, code(first_code), torch.where(present, code(second_code), none))
    else:
        region = valid if kind == "all" else valid & _roi_mask(roi, *pred.shape[-2:], pred.device)
        masks = region.unsqueeze(1) & present[..., None, None]
        filled = masks.flatten(2).any(-1)
        source = torch.where(filled, code(TARGET_ALL if kind == "all" else TARGET_ROI), none)
    if skip_background:
        masks[:, 0] = False
        source[:, 0] = TARGET_NONE
    return masks, source


def model_logits(output: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits ``(B, K, H, W)`` from a plain tensor or torchvision's ``{"out": ...}`` dict."""
    return output["out"] if isinstance(output, dict) else output


def target_scores(logits: torch.Tensor, score: str = "logits") -> torch.Tensor:
    """The per-pixel class scores a target sums: the logits, or the softmax over classes."""
    if score not in SCORE_KINDS:
        raise ValueError(f"unknown score {score!r}; available: {', '.join(SCORE_KINDS)}")
    return logits if score == "logits" else logits.softmax(1)
