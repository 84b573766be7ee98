"""Guided Backpropagation and Guided Grad-CAM of Seg-Grad-CAM targets, for every class of every image.

Guided Backpropagation (Springenberg et al. 2015, "Striving for Simplicity: The All Convolutional Net",
ICLR workshop, arXiv:1412.6806, Fig. 1) is the gradient of a target ``y`` with respect to the input
image, except that at every rectifier the backward pass keeps only positive gradients, and only where the
forward input was positive. With ``x`` the rectifier's input and ``g = dy/d out`` the gradient that
reaches its output, the gradient passed on to ``x`` is::

    plain backprop:   R = f'(x) g                     (ReLU: R = [x > 0] g)
    guided:           R = [x > 0] ReLU(f'(x) g)       (ReLU: R = [x > 0] ReLU(g))

so negative evidence is cut at every layer and the result shows the input pattern that raises ``y``. As
in captum's ``GuidedBackprop``, which overrides the backward of ``nn.ReLU`` modules, the rule is applied
to activation *modules*; an activation written as ``F.relu(...)`` inside a ``forward`` cannot be seen and
backpropagates plainly (torchvision's segmentation models use modules throughout).

The target is the Seg-Grad-CAM one of :mod:`segaudit.cam.targets` (Vinogradova et al. 2020,
arXiv:2002.11434), ``y_c = sum_{p in M_c} s_c(p)`` over the target pixels ``M_c`` of class ``c``, with
``s`` the logits (``score="logits"``) or the softmax probabilities (``score="softmax"``), as the engine's
(:func:`segaudit.cam.targets.target_scores`); the masks may come from any target kind of
:func:`segaudit.cam.targets.seg_grad_cam_targets`.

Guided Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV, arXiv:1610.02391) multiplies the guided gradient by the
Grad-CAM map ``L_c`` (after its ReLU, raw, not normalised) upsampled to the input size::

    GGC_c(p) = GB_c(p) * up(L_c)(p)                (per colour channel)

as captum's ``GuidedGradCam``. captum upsamples with ``interpolate_mode="nearest"`` by default; segaudit
defaults to ``"bilinear"`` (half-pixel centres, ``align_corners=False``, as :func:`upsample_maps` and the
Grad-CAM paper's "bilinear interpolation"), which equals captum's ``GuidedGradCam(...).attribute(...,
interpolate_mode="bilinear")``; ``mode="nearest"`` reproduces captum's default.

Defined behaviour for activations other than ReLU
-------------------------------------------------
The paper only has ReLUs; MobileNetV3 (LR-ASPP) has ``nn.Hardswish`` in its backbone and ``nn.Hardsigmoid``
in its squeeze-excitation blocks. Two rules, :data:`ACTIVATION_RULES`:

``"relu"`` (default)
    The guided rule at ``nn.ReLU`` modules only, exactly the modules captum hooks; every other activation
    (``nn.ReLU6``, which is an ``nn.Hardtanh``, ``nn.Hardswish``, ``nn.SiLU``, ...) backpropagates plainly.
    Results equal captum's ``GuidedBackprop`` (see below for the one case where they could differ).
``"gate-all"``
    The guided rule also at the rectifier-like activations ``nn.ReLU6``, ``nn.LeakyReLU``, ``nn.Hardswish``,
    ``nn.SiLU`` and ``nn.GELU``: ``R = [x > 0] ReLU(f'(x) g)``. For all of them ``f'(x) >= 0`` when
    ``x > 0``, so this is also ``[x > 0] f'(x) ReLU(g)``: positive gradients, only where the input was
    positive, scaled by the activation's own slope (0 above 6 for ReLU6). The negative branch of
    Hardswish/SiLU/GELU/LeakyReLU, which carries gradient (of either sign) in plain backprop, is cut, as a
    ReLU's is.

Sigmoid-type gates (``nn.Hardsigmoid``, ``nn.Sigmoid``: squeeze-excitation scales, LR-ASPP's attention
branch) are never gated: their output is a multiplicative weight in ``[0, 1]``, not a rectified feature,
and "the input was positive" has no meaning for them. Neither rule gates them.

Implementation: for the duration of the forward only, a forward pre-hook on each gated module passes its
input through an identity autograd function whose backward is ``[x > 0] ReLU(grad)``; the gradient that
reaches it is the one that went through the activation, i.e. ``f'(x) g``. The gate is part of the graph,
so the hooks are removed as soon as the forward returns (also on error) and no state outlives the call.
The gate returns a copy for modules with ``inplace=True`` (torchvision's ReLUs and Hardswishes), which
then overwrite the copy and not the tensor the gate saw; otherwise a view, at no memory cost. captum's
hooks clone every hooked ReLU's input for the same reason and so also work with in-place ReLUs. Unlike
captum, whose tensor hook rectifies the *total* gradient of the ReLU's input tensor, the gate rectifies
only the gradient that came through the activation; the two differ only when a ReLU's input tensor is
also used elsewhere (never in torchvision's segmentation models).

The gradients are taken with ``torch.autograd.grad`` with respect to a detached copy of the images, so
parameters may be frozen and none of them receives a ``.grad``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from segaudit.cam.targets import SCORE_KINDS, model_logits, target_scores

__all__ = [
    "ACTIVATION_RULES",
    "GATED_ACTIVATIONS",
    "guided_backprop",
    "guided_grad_cam",
    "attribution_map",
]

ACTIVATION_RULES = ("relu", "gate-all")
GATED_ACTIVATIONS: dict[str, tuple[type[nn.Module], ...]] = {
    "relu": (nn.ReLU,),
    "gate-all": (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.SiLU, nn.GELU),
}
"""The module types each rule applies the guided rule at (``isinstance``, so subclasses count too)."""

_INTERPOLATION = ("bilinear", "nearest")


class _GuidedGate(torch.autograd.Function):
    """Identity forward; backward ``[x > 0] ReLU(grad)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, copy: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x > 0)
        return x.clone() if copy else x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (positive,) = ctx.saved_tensors
        return torch.where(positive, grad.clamp(min=0), torch.zeros_like(grad)), None


def _gate_input(module: nn.Module, inputs: tuple) -> tuple | None:
    if len(inputs) != 1 or not isinstance(inputs[0], torch.Tensor) or not inputs[0].requires_grad:
        return None
    return (_GuidedGate.apply(inputs[0], bool(getattr(module, "inplace", False))),)


@contextmanager
def _guided_rule(model: nn.Module, rule: str) -> Iterator[int]:
    """Within the block, forwards through the gated activations record the guided rule; yields their count."""
    gated = GATED_ACTIVATIONS[rule]
    handles = [m.register_forward_pre_hook(_gate_input) for m in model.modules() if isinstance(m, gated)]
    try:
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()


def guided_backprop(
    model: nn.Module,
    images: torch.Tensor,
    target_masks: torch.Tensor,
    targeted: torch.Tensor,
    *,
    score: str = "logits",
    rule: str = "relu",
) -> torch.Tensor:
    """Guided Backpropagation of the Seg-Grad-CAM target of every targeted (image, class).

    ``y_bc = sum_{p in M_bc} s_bc(p)`` with ``s`` the logits or softmax probabilities; the result is
    ``dy_bc / d images_b`` with the guided rule at activations (see the module docstring). One forward for
    the batch and one backward per class targeted in any image, which gives all images at once (images
    are independent in eval mode).

    Parameters
    ----------
    model : nn.Module
        In eval mode (batch norm in training mode would couple the images); returns ``(B, K, H, W)``
        logits or torchvision's ``{"out": ...}``. Parameters may be frozen; none gets a gradient, and the
        model is left as it was.
    images : torch.Tensor
        ``(B, 3, H, W)`` normalised input.
    target_masks : torch.Tensor
        ``(B, K, H, W)`` bool target pixels ``M`` (e.g. from :func:`seg_grad_cam_targets`), at the
        logits' resolution.
    targeted : torch.Tensor
        ``(B, K)`` bool: which (image, class) pairs to explain (e.g. ``source != TARGET_NONE``).
    score : str
        ``"logits"`` (default, as the engine's Grad-CAM) or ``"softmax"``.
    rule : str
        One of :data:`ACTIVATION_RULES`: ``"relu"`` (captum's) or ``"gate-all"``.

    Returns
    -------
    torch.Tensor
        ``(B, K, 3, H, W)`` guided gradients in the images' dtype, zero where ``targeted`` is False.
        Memory grows as ``B * K * 3 * H * W``.
    """
    if rule not in ACTIVATION_RULES:
        raise ValueError(f"unknown activation rule {rule!r}; available: {', '.join(ACTIVATION_RULES)}")
    if score not in SCORE_KINDS:
        raise ValueError(f"unknown score {score!r}; available: {', '.join(SCORE_KINDS)}")
    if model.training:
        raise ValueError("model is in training mode; call model.eval() (batch norm would couple the images)")
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    batch = images.shape[0]
    if targeted.dtype != torch.bool or targeted.ndim != 2 or targeted.shape[0] != batch:
        raise ValueError(
            f"targeted must be a ({batch}, K) bool tensor, "
            f"got {targeted.dtype} of shape {tuple(targeted.shape)}"
        )
    if target_masks.dtype != torch.bool:
        raise ValueError(f"target_masks must be bool, got {target_masks.dtype}")

    inputs = images.detach().requires_grad_(True)
    with torch.enable_grad():
        with _guided_rule(model, rule):
            logits = model_logits(model(inputs))
        if tuple(target_masks.shape) != tuple(logits.shape) or targeted.shape[1] != logits.shape[1]:
            raise ValueError(
                f"target_masks {tuple(target_masks.shape)} and targeted {tuple(targeted.shape)} do not match "
                f"the logits {tuple(logits.shape)}: expected (B, K, H, W) and (B, K)"
            )
        scores = target_scores(logits, score)
        guided = images.new_zeros((batch, logits.shape[1], *images.shape[1:]))
        classes = torch.nonzero(targeted.any(0)).flatten().tolist()
        for position, cls in enumerate(classes):
            mask = target_masks[:, cls].to(scores.dtype)
            target = (scores[:, cls] * mask).sum()
            (grads,) = torch.autograd.grad(target, inputs, retain_graph=position < len(classes) - 1)
            rows = targeted[:, cls]
            guided[rows, cls] = grads[rows].to(guided.dtype)
    return guided


def guided_grad_cam(guided: torch.Tensor, cam: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """Guided Grad-CAM: guided gradients times the upsampled raw Grad-CAM map, as captum's ``GuidedGradCam``.

    Parameters
    ----------
    guided : torch.Tensor
        ``(B, K, 3, H, W)`` from :func:`guided_backprop`.
    cam : torch.Tensor
        ``(B, K, h, w)`` raw Grad-CAM maps after their ReLU (``compute_cams(...).map("gradcam", layer)``),
        for the same targets as ``guided``, *not* normalised: min-max normalisation would shift the zero
        and change which pixels survive.
    mode : str
        ``"bilinear"`` (default; ``align_corners=False``) or ``"nearest"`` (captum's default).

    Returns
    -------
    torch.Tensor
        ``(B, K, 3, H, W)``.
    """
    if mode not in _INTERPOLATION:
        raise ValueError(f"unknown interpolation mode {mode!r}; available: {', '.join(_INTERPOLATION)}")
    if guided.ndim != 5 or cam.ndim != 4 or guided.shape[:2] != cam.shape[:2]:
        raise ValueError(
            f"expected guided (B, K, 3, H, W) and cam (B, K, h, w) with the same (B, K), got "
            f"{tuple(guided.shape)} and {tuple(cam.shape)}"
        )
    size = tuple(guided.shape[-2:])
    flat = cam.reshape(-1, 1, *cam.shape[-2:]).to(guided.dtype)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(flat, size=size, mode=mode, **kwargs).reshape(*cam.shape[:2], 1, *size)
    return guided * up


def attribution_map(attribution: torch.Tensor) -> torch.Tensor:
    """Per-pixel strength of an input attribution: the sum of absolute values over the colour channels.

    ``(..., 3, H, W) -> (..., H, W)``, ``m(p) = sum_ch |a_ch(p)|`` (the L1 norm of the pixel's gradient).
    Absolute values first, because the signs of the three channels are unrelated (they depend on the
    colour and its normalisation) and a signed sum lets them cancel: a pixel with ``+a`` in red and ``-a``
    in blue influences the target as much as one with ``+a`` in both, yet its signed sum is 0. This is
    therefore not captum's ``visualize_image_attr``, which sums the signed channels first and takes the
    absolute value afterwards; Simonyan et al. 2014 (arXiv:1312.6034) take the channel maximum of ``|a|``
    instead, which keeps one channel of three.
    """
    if attribution.ndim < 3:
        raise ValueError(f"expected (..., 3, H, W), got shape {tuple(attribution.shape)}")
    return attribution.abs().sum(dim=-3)
