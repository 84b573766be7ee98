"""Seg-Grad-CAM targets: which pixels' class scores are summed into the scalar a CAM explains.

Vinogradova et al. 2020, "Towards Interpretable Semantic Segmentation via Gradient-weighted Class
Activation Mapping" (arXiv:2002.11434): for class ``c`` and a pixel set ``M``, ``y^c = sum_{p in M} z^c_p``.
"""

from __future__ import annotations

import torch

__all__ = ["TARGET_NONE", "TARGET_PRED", "TARGET_GT", "TARGET_NAMES", "seg_grad_cam_targets"]

TARGET_NONE, TARGET_PRED, TARGET_GT = 0, 1, 2
TARGET_NAMES = {TARGET_PRED: "pred", TARGET_GT: "gt"}


def seg_grad_cam_targets(
    pred: torch.Tensor, gt: torch.Tensor | None, num_classes: int, skip_background: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel sets of the Seg-Grad-CAM target for every (image, class).

    Parameters
    ----------
    pred : torch.Tensor
        ``(B, H, W)`` int64 predicted classes.
    gt : torch.Tensor or None
        ``(B, H, W)`` int64 labels, 255 = void; ``None`` to use predictions only.
    num_classes : int
    skip_background : bool
        Class 0 gets no target (default).

    Returns
    -------
    masks : torch.Tensor
        ``(B, K, H, W)`` bool target pixels.
    source : torch.Tensor
        ``(B, K)`` int8, :data:`TARGET_PRED`, :data:`TARGET_GT` or :data:`TARGET_NONE`.
    """
    classes = torch.arange(num_classes, device=pred.device).view(1, -1, 1, 1)
    pred_masks = pred.unsqueeze(1) == classes
    pred_any = pred_masks.flatten(2).any(-1)
    source = torch.where(pred_any, TARGET_PRED, TARGET_NONE).to(torch.int8)
    masks = pred_masks
    if gt is not None:
        gt_masks = gt.unsqueeze(1) == classes
        use_gt = ~pred_any & gt_masks.flatten(2).any(-1)
        masks = torch.where(use_gt[..., None, None], gt_masks, pred_masks)
        source = torch.where(use_gt, torch.tensor(TARGET_GT, dtype=torch.int8), source)
    if skip_background:
        source[:, 0] = TARGET_NONE
        masks[:, 0] = False
    return masks, source
