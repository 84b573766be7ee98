"""Seg-Grad-CAM targets pulled back through a model's final bilinear upsampling, in closed form.

Most segmentation models compute logits ``L`` ``(B, K, h, w)`` at a fraction of the input's size and end
with ``Z = upsample(L)`` to ``(H, W)`` (torchvision's FCN, DeepLabV3 and LR-ASPP:
``F.interpolate(classifier(...), size, mode="bilinear", align_corners=False)``). Bilinear upsampling is
separable and linear, ``Z[b, c] = A_H L[b, c] A_W^T`` with interpolation matrices ``A_H`` ``(H, h)`` and
``A_W`` ``(W, w)``, so the gradient of a Seg-Grad-CAM target ``y = sum_p M_p Z[b, c]_p`` with respect to
the low-resolution logits is

    dy / dL[b, c] = A_H^T M A_W        (an ``(h, w)`` matrix; zero in every other channel)

Backpropagating from ``L`` with that cotangent gives exactly the gradients of backpropagating ``M`` from
``Z`` (up to float summation order), without a ``(B, K, H, W)`` cotangent per backward and without
``upsample_bilinear2d_backward`` over all ``K`` channels. The engine takes this path only where it holds:
the logits come from a module the model is known to upsample last (:func:`logits_module`), and
:func:`is_bilinear_upsampling` confirms on the batch that the output is that upsampling of the captured
logits. Everything else takes the full-resolution path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["logits_module", "capture_low_res_logits", "interpolation_matrix", "is_bilinear_upsampling",
           "bilinear_adjoint"]


def logits_module(model: nn.Module) -> nn.Module | None:
    """The module whose output the model's forward bilinearly upsamples into its result, if known.

    torchvision's ``FCN``/``DeepLabV3`` (``_SimpleSegmentationModel``) and ``LRASPP``: ``classifier``;
    an ``nn.Sequential`` (or nested ``nn.Sequential`` modules) ending in
    ``nn.Upsample(mode="bilinear", align_corners=False)``: the module before it; a model that names that
    module itself in a ``logits_before_upsampling`` attribute (segaudit's model adapters,
    :class:`segaudit.models.adapters.wrapper.SegmentationAdapter`): that module. ``None`` otherwise.
    """
    named = getattr(model, "logits_before_upsampling", None)  # adapters: the engine still checks every batch
    if isinstance(named, nn.Module):
        return named
    from torchvision.models.segmentation._utils import _SimpleSegmentationModel
    from torchvision.models.segmentation.lraspp import LRASPP

    if isinstance(model, (_SimpleSegmentationModel, LRASPP)):
        return model.classifier
    while isinstance(model, nn.Sequential) and len(model):
        last = model[-1]
        if isinstance(last, nn.Upsample) and last.mode == "bilinear" and not last.align_corners:
            return model[-2] if len(model) >= 2 else None
        model = last  # a nested Sequential's tail is the whole model's tail
    return None


@contextmanager
def capture_low_res_logits(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, the outputs of :func:`logits_module` are appended to the yielded list (it stays
    empty for a model with no known final upsampling)."""
    captured: list[torch.Tensor] = []
    module = logits_module(model)
    if module is None:
        yield captured
        return

    def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor):
            captured.append(output)

    handle = module.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def interpolation_matrix(size_in: int, size_out: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(size_out, size_in)`` matrix of 1-D bilinear interpolation (``align_corners=False``), read off
    ``F.interpolate`` itself applied to the unit vectors, so its weights are PyTorch's."""
    basis = torch.eye(size_in, device=device, dtype=dtype).view(size_in, 1, size_in, 1)
    columns = F.interpolate(basis, size=(size_out, 1), mode="bilinear", align_corners=False)
    return columns.view(size_in, size_out).T


def is_bilinear_upsampling(low: torch.Tensor, high: torch.Tensor, every: int = 7) -> bool:
    """Whether ``high`` ``(B, K, H, W)`` is the bilinear upsampling of ``low`` ``(B, K, h, w)``, checked on
    every ``every``-th row and column (relative tolerance 1e-4 of the largest magnitude)."""
    if low.ndim != 4 or high.ndim != 4 or low.shape[:2] != high.shape[:2] or low.dtype != high.dtype:
        return False
    if low.dtype not in (torch.float32, torch.float64):
        return False
    (h, w), (height, width) = low.shape[-2:], high.shape[-2:]
    rows = interpolation_matrix(h, height, low.device, low.dtype)[::every]
    cols = interpolation_matrix(w, width, low.device, low.dtype)[::every]
    with torch.no_grad():
        expected = rows @ low.detach() @ cols.T
        seen = high.detach()[..., ::every, ::every]
        scale = 1.0 + float(seen.abs().max()) if seen.numel() else 1.0
        return bool(((expected - seen).abs() <= 1e-4 * scale).all())


def bilinear_adjoint(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``A_H^T M A_W``: the ``(N, H, W)`` pixel weights ``masks`` pulled back to ``(N, h, w)`` = ``size``
    through bilinear upsampling from ``size`` (the module docstring)."""
    height, width = masks.shape[-2:]
    dtype = masks.dtype if masks.is_floating_point() else torch.float32
    rows = interpolation_matrix(size[0], height, masks.device, dtype)
    cols = interpolation_matrix(size[1], width, masks.device, dtype)
    return rows.T @ masks.to(dtype) @ cols
