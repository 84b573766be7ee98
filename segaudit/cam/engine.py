"""Seg-Grad-CAM engine: Grad-CAM and Grad-CAM++ for every class of every image in a batch.

One forward pass per batch. The feature layer's output is replaced, inside the forward, by a leaf tensor
that requires grad, so autograd records only the part of the network *after* that layer and no parameter
ever receives a gradient. For each class present in the batch, one backward of the Seg-Grad-CAM target
gives the gradients of all images at once (images are independent in eval mode), and both methods are
computed from the same (activations, gradients).

Target (Seg-Grad-CAM, Vinogradova et al. 2020, "Towards Interpretable Semantic Segmentation via
Gradient-weighted Class Activation Mapping", AAAI student abstract, arXiv:2002.11434)::

    y^c = sum_{(i, j) in M_c} z^c_{ij}

with ``z^c`` the class-``c`` logit map and ``M_c`` the pixels predicted as ``c``; when the model predicts
none of ``c`` but the label has it, ``M_c`` is the labelled pixels instead (recorded as ``target="gt"``),
so a missed class still gets a map showing where the model would look.

Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV, arXiv:1610.02391)::

    alpha^c_k = 1/Z sum_{ij} dy^c/dA^k_{ij}          L^c = ReLU(sum_k alpha^c_k A^k)

Grad-CAM++ (Chattopadhay et al. 2018, "Grad-CAM++: Improved Visual Explanations for Deep Convolutional
Networks", WACV, arXiv:1710.11063), closed form with exponential of the score, as in the paper's eq. 19
and pytorch-grad-cam::

    a^{kc}_{ij} = g^2 / (2 g^2 + sum_{ab} A^k_{ab} g^3)        g = dy^c/dA^k_{ij}
    w^c_k = sum_{ij} a^{kc}_{ij} ReLU(g)                        L^c = ReLU(sum_k w^c_k A^k)

The higher-order derivatives are replaced by powers of the first one, which is exact only when the head
after the feature layer is piecewise linear (ReLU, max-pool, linear maps, and an exponential output); it
is the standard approximation, and what peers compute. With a Seg-Grad-CAM target the gradients are sums
over many pixels and ``|sum_ab A g|`` is usually much larger than 2, so ``a ~ 1 / (sum_ab A g)`` and the
weights lose the gradients' magnitudes: Grad-CAM++ maps then spread over the image (measured on the demo
model at ``backbone.4``: pointing game 0.21 against Grad-CAM's 0.93). segaudit reports it as it is.

Maps are returned *raw* (with their magnitude) at feature resolution; normalising and upsampling is the
caller's choice (:func:`normalize_maps`, :func:`upsample_maps`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from segaudit.cam.gradient import grad_cam_plus_plus_weights, grad_cam_weights
from segaudit.cam.layers import capture_layer
from segaudit.cam.targets import TARGET_NAMES, TARGET_NONE, seg_grad_cam_targets

__all__ = ["METHODS", "CamResult", "model_logits", "compute_cams"]

METHODS = ("gradcam", "gradcampp")



@dataclass
class CamResult:
    """What one forward + per-class backward computed for a batch.

    Attributes
    ----------
    logits : torch.Tensor
        ``(B, K, H, W)`` detached model output.
    pred : torch.Tensor
        ``(B, H, W)`` int64 argmax class.
    maps : dict of str to torch.Tensor
        Per method ``(B, K, h, w)`` raw maps (after ReLU) at the feature layer's resolution; zero where
        ``target_source`` is :data:`TARGET_NONE`.
    target_source : torch.Tensor
        ``(B, K)`` int8: which pixel set defined each class's target (:data:`TARGET_PRED`,
        :data:`TARGET_GT`) or :data:`TARGET_NONE` when the class is absent from both.
    layer : str
    """

    logits: torch.Tensor
    pred: torch.Tensor
    maps: dict[str, torch.Tensor]
    target_source: torch.Tensor
    layer: str

    @staticmethod
    def target_name(code: int) -> str:
        return TARGET_NAMES[int(code)]


def model_logits(output: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits ``(B, K, H, W)`` from a plain tensor or torchvision's ``{"out": ...}`` dict."""
    return output["out"] if isinstance(output, dict) else output


_WEIGHTS = {"gradcam": grad_cam_weights, "gradcampp": grad_cam_plus_plus_weights}


def compute_cams(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    gt: torch.Tensor | None = None,
    methods: tuple[str, ...] = METHODS,
) -> CamResult:
    """Seg-Grad-CAM maps of every method, for every class in each image's prediction or label.

    Parameters
    ----------
    model : nn.Module
        Eval mode; parameters may be frozen (nothing here needs their gradients).
    images : torch.Tensor
        ``(B, 3, H, W)`` normalised input.
    layer : str
        Dotted name of the feature module.
    gt : torch.Tensor, optional
        ``(B, H, W)`` labels in model classes (255 void); lets classes the model misses get a map.
    methods : tuple of str
        Subset of :data:`METHODS`.

    Returns
    -------
    CamResult
    """
    unknown = set(methods) - set(_WEIGHTS)
    if unknown:
        raise ValueError(f"unknown CAM methods {sorted(unknown)}; available: {', '.join(METHODS)}")
    if gt is not None and gt.shape[0] != images.shape[0]:
        raise ValueError(f"gt has {gt.shape[0]} images but the batch has {images.shape[0]}")
    with torch.enable_grad(), capture_layer(model, layer) as captured:
        logits = model_logits(model(images))
    if len(captured) != 1:
        raise RuntimeError(f"layer {layer!r} ran {len(captured)} times in one forward; pick a layer that runs once")
    activations = captured[0]
    batch, num_classes = logits.shape[:2]
    pred = logits.detach().argmax(1)
    target_masks, source = seg_grad_cam_targets(pred, gt, num_classes)
    feats = activations.detach()
    maps = {m: feats.new_zeros((batch, num_classes, *feats.shape[-2:])) for m in methods}
    classes = torch.nonzero(source.ne(TARGET_NONE).any(0)).flatten().tolist()
    for position, cls in enumerate(classes):
        target = (logits[:, cls] * target_masks[:, cls]).sum()
        (grads,) = torch.autograd.grad(target, activations, retain_graph=position < len(classes) - 1)
        rows = source[:, cls] != TARGET_NONE
        for method in methods:
            weights = _WEIGHTS[method](feats[rows], grads[rows])
            cam = torch.einsum("bc,bchw->bhw", weights, feats[rows]).clamp_(min=0)
            maps[method][rows, cls] = cam
    return CamResult(logits=logits.detach(), pred=pred, maps=maps, target_source=source, layer=layer)
