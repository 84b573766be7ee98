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

**Classifiers** (per-image presence log-odds ``s`` of shape ``(B, K)``, see :mod:`segaudit.models.classifier`)
have no pixels to choose: the target of class ``c`` is its class score, ``y^c = s^c`` (``logits``) or the
class probability ``y^c = sigmoid(s^c)`` (``softmax``; for an ImageNet classifier read over dataset
classes, exactly the summed ImageNet softmax of the mapped classes; a softmax over the ``K`` presence
scores would make classes compete, which multi-label presence does not). The kinds then only choose
*which* classes are explained and the code recorded (:func:`classifier_targets`): ``pred`` and ``gt``
both explain every class predicted present (``s^c > 0``) or labelled, coded by the first set that has it
as above; ``all`` explains the same classes coded ``all`` (a class score already is the whole image's);
``roi`` raises ValueError (a whole-image score cannot be restricted to a box).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from segaudit.schema import SCORE_KINDS, TARGET_KINDS
from segaudit.schema import VOID_LABEL as _IGNORE

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
    "seg_grad_cam_sources",
    "seg_grad_cam_pixels",
    "model_logits",
    "logits_at_input",
    "target_scores",
    "classifier_presence",
    "classifier_targets",
    "classifier_scores",
]


TARGET_NONE, TARGET_PRED, TARGET_GT, TARGET_ALL, TARGET_ROI = 0, 1, 2, 3, 4
TARGET_NAMES = {TARGET_PRED: "pred", TARGET_GT: "gt", TARGET_ALL: "all", TARGET_ROI: "roi"}


def _roi_mask(roi: tuple[float, float, float, float], height: int, width: int, device) -> torch.Tensor:
    top, left, bottom, right = roi
    if not (0 <= top < bottom <= 1 and 0 <= left < right <= 1):
        raise ValueError(f"roi must be (top, left, bottom, right) fractions with top < bottom, left < right: {roi}")
    box = torch.zeros(height, width, dtype=torch.bool, device=device)
    box[int(top * height) : max(int(top * height) + 1, round(bottom * height)),
        int(left * width) : max(int(left * width) + 1, round(right * width))] = True
    return box


def _presence(labels: torch.Tensor, valid: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """``(B, K)`` bool: class ``c`` labels at least one pixel of ``labels`` ``(B, H, W)`` where ``valid``."""
    flat = labels.flatten(1)
    known = (flat >= 0) & (flat < num_classes)
    if valid is not None:
        known &= valid.flatten(1)
    bins = torch.where(known, flat, num_classes)  # one spare bin for everything else
    present = torch.zeros(labels.shape[0], num_classes + 1, dtype=torch.bool, device=labels.device)
    return present.scatter_(1, bins, True)[:, :num_classes]


def _check_target_inputs(
    pred: torch.Tensor, gt: torch.Tensor | None, kind: str, roi: tuple[float, float, float, float] | None
) -> None:
    if kind not in TARGET_KINDS:
        raise ValueError(f"unknown target kind {kind!r}; available: {', '.join(TARGET_KINDS)}")
    if kind == "gt" and gt is None:
        raise ValueError("target kind 'gt' needs labels")
    if kind == "roi" and roi is None:
        raise ValueError("target kind 'roi' needs roi=(top, left, bottom, right)")
    if gt is not None and gt.shape != pred.shape:
        raise ValueError(f"labels {tuple(gt.shape)} and predictions {tuple(pred.shape)} differ in shape")


def seg_grad_cam_sources(
    pred: torch.Tensor,
    gt: torch.Tensor | None,
    num_classes: int,
    kind: str = "pred",
    roi: tuple[float, float, float, float] | None = None,
    skip_background: bool = True,
) -> torch.Tensor:
    """``(B, K)`` int8 code of the pixel set of every (image, class) target (:data:`TARGET_NAMES`),
    :data:`TARGET_NONE` where there is none; arguments as :func:`seg_grad_cam_targets`. Per-image class
    presence only: no ``(B, K, H, W)`` tensor is built."""
    _check_target_inputs(pred, gt, kind, roi)
    valid = None if gt is None else gt != _IGNORE
    pred_any = _presence(pred, valid, num_classes)
    gt_any = torch.zeros_like(pred_any) if gt is None else _presence(gt, None, num_classes)
    present = pred_any | gt_any

    def code(value: int) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.int8, device=pred.device)

    if kind in ("pred", "gt"):
        first_any, second_any = (pred_any, gt_any) if kind == "pred" else (gt_any, pred_any)
        first_code, second_code = (TARGET_PRED, TARGET_GT) if kind == "pred" else (TARGET_GT, TARGET_PRED)
        source = torch.where(first_any, code(first_code),
                             torch.where(second_any, code(second_code), code(TARGET_NONE)))
    else:
        region = _region(pred, valid, kind, roi)
        filled = present & region.flatten(1).any(-1, keepdim=True)
        source = torch.where(filled, code(TARGET_ALL if kind == "all" else TARGET_ROI), code(TARGET_NONE))
    if skip_background:
        source[:, 0] = TARGET_NONE
    return source


def _region(
    pred: torch.Tensor, valid: torch.Tensor | None, kind: str, roi: tuple[float, float, float, float] | None
) -> torch.Tensor:
    """``(B, H, W)`` bool pixels of an ``all`` or ``roi`` target."""
    region = torch.ones_like(pred, dtype=torch.bool) if valid is None else valid
    return region if kind == "all" else region & _roi_mask(roi, *pred.shape[-2:], pred.device)


def seg_grad_cam_pixels(
    pred: torch.Tensor,
    gt: torch.Tensor | None,
    source: torch.Tensor,
    image: torch.Tensor,
    cls: torch.Tensor,
    roi: tuple[float, float, float, float] | None = None,
) -> torch.Tensor:
    """``(N, H, W)`` bool target pixels of the ``N`` (image, class) pairs ``(image[n], cls[n])``, each from
    the set its ``source`` code names (:func:`seg_grad_cam_sources`); empty where the code is
    :data:`TARGET_NONE`."""
    codes = source[image, cls].to(pred.device).view(-1, 1, 1)
    cls = cls.to(pred.device).view(-1, 1, 1)
    valid = None if gt is None else gt != _IGNORE
    pixels = pred[image] == cls
    if valid is not None:
        pixels &= valid[image]
    pixels &= codes == TARGET_PRED
    if gt is not None:
        pixels |= (gt[image] == cls) & (codes == TARGET_GT)
    for code, kind in ((TARGET_ALL, "all"), (TARGET_ROI, "roi")):
        if bool((codes == code).any()):
            pixels |= _region(pred, valid, kind, roi)[image] & (codes == code)
    return pixels


def seg_grad_cam_targets(
    pred: torch.Tensor,
    gt: torch.Tensor | None,
    num_classes: int,
    kind: str = "pred",
    roi: tuple[float, float, float, float] | None = None,
    skip_background: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel sets of the Seg-Grad-CAM target for every (image, class), as dense masks.

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
        ``(B, K, H, W)`` bool target pixels (:func:`seg_grad_cam_pixels` of the targeted pairs).
    source : torch.Tensor
        ``(B, K)`` int8 code of the pixel set used (:data:`TARGET_NAMES`), :data:`TARGET_NONE` if none
        (:func:`seg_grad_cam_sources`).
    """
    source = seg_grad_cam_sources(pred, gt, num_classes, kind, roi, skip_background)
    masks = torch.zeros((pred.shape[0], num_classes, *pred.shape[-2:]), dtype=torch.bool, device=pred.device)
    image, cls = torch.nonzero(source != TARGET_NONE, as_tuple=True)
    masks[image, cls] = seg_grad_cam_pixels(pred, gt, source, image, cls, roi)
    return masks, source


def model_logits(output: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits ``(B, K, H, W)`` from a plain tensor or torchvision's ``{"out": ...}`` dict."""
    return output["out"] if isinstance(output, dict) else output


def target_scores(logits: torch.Tensor, score: str = "logits") -> torch.Tensor:
    """The per-pixel class scores a target sums: the logits, or the softmax over classes."""
    if score not in SCORE_KINDS:
        raise ValueError(f"unknown score {score!r}; available: {', '.join(SCORE_KINDS)}")
    return logits if score == "logits" else logits.softmax(1)


def classifier_presence(logits: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` bool: the classes a classifier predicts present, ``s^c > 0`` (probability above 1/2)."""
    if logits.ndim != 2:
        raise ValueError(f"classifier scores must be (B, K), got {tuple(logits.shape)}")
    return logits > 0


def classifier_targets(
    present: torch.Tensor,
    gt: torch.Tensor | None,
    kind: str = "pred",
    skip_background: bool = True,
) -> torch.Tensor:
    """Which classes of each image a classifier CAM explains, and why (module docstring).

    Parameters
    ----------
    present : torch.Tensor
        ``(B, K)`` bool classes predicted present (:func:`classifier_presence`).
    gt : torch.Tensor or None
        ``(B, H, W)`` int64 labels, 255 = void; ``None``: predictions only.
    kind : str
        One of :data:`TARGET_KINDS` except ``"roi"``.
    skip_background : bool
        Class 0 gets no target (default).

    Returns
    -------
    torch.Tensor
        ``(B, K)`` int8 source code (:data:`TARGET_NAMES`): ``pred``/``gt`` for the first set (of the
        kind's order) that has the class, ``all`` for every class present in either with ``kind="all"``,
        :data:`TARGET_NONE` for classes neither predicted nor labelled.
    """
    if kind not in TARGET_KINDS:
        raise ValueError(f"unknown target kind {kind!r}; available: {', '.join(TARGET_KINDS)}")
    if kind == "roi":
        raise ValueError("target kind 'roi' needs per-pixel scores; a classifier scores whole images "
                         "(use 'pred', 'gt' or 'all')")
    if kind == "gt" and gt is None:
        raise ValueError("target kind 'gt' needs labels")
    if present.dtype != torch.bool or present.ndim != 2:
        raise ValueError(f"present must be (B, K) bool, got {present.dtype} {tuple(present.shape)}")
    batch, num_classes = present.shape
    if gt is None:
        labelled = torch.zeros_like(present)
    else:
        if gt.ndim != 3 or gt.shape[0] != batch:
            raise ValueError(f"labels must be (B, H, W) with B = {batch}, got {tuple(gt.shape)}")
        classes = torch.arange(num_classes, device=gt.device)
        labelled = (gt.flatten(1).unsqueeze(-1) == classes).any(1).to(present.device)

    def code(value: int) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.int8, device=present.device)

    none = code(TARGET_NONE)
    if kind == "all":
        source = torch.where(present | labelled, code(TARGET_ALL), none)
    else:
        first, second = (present, labelled) if kind == "pred" else (labelled, present)
        first_code, second_code = (TARGET_PRED, TARGET_GT) if kind == "pred" else (TARGET_GT, TARGET_PRED)
        source = torch.where(first, code(first_code), torch.where(second, code(second_code), none))
    if skip_background:
        source[:, 0] = TARGET_NONE
    return source


def classifier_scores(logits: torch.Tensor, score: str = "logits") -> torch.Tensor:
    """A classifier's per-image class scores a target takes: the log-odds, or the probability
    ``sigmoid(s)`` (``"softmax"``, see the module docstring)."""
    if score not in SCORE_KINDS:
        raise ValueError(f"unknown score {score!r}; available: {', '.join(SCORE_KINDS)}")
    return logits if score == "logits" else logits.sigmoid()


def logits_at_input(module: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> logits`` without gradient, the way the engine reads the model (:func:`model_logits` of its
    output: a tensor or torchvision's ``{"out": ...}``); per-pixel logits smaller than ``x`` are upsampled
    bilinearly to ``(M, K, H, W)`` at ``x``'s size. The forward of the evidence checks (faithfulness curves,
    context tests, the run's pre-pass)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = model_logits(module(x)).float()
        if logits.ndim == 4 and logits.shape[-2:] != x.shape[-2:]:
            logits = torch.nn.functional.interpolate(logits, size=tuple(x.shape[-2:]), mode="bilinear",
                                                     align_corners=False)
        return logits

    return forward
