"""CAM methods computed from one layer's activations ``A`` and the gradients ``G = dy/dA`` of a target.

Every function maps ``(..., C, h, w)`` activations and gradients to ``(..., h, w)`` raw maps (after the
method's own ReLU), so one backward pass serves all of them.
"""

from __future__ import annotations

import torch

__all__ = ["grad_cam_weights", "grad_cam_plus_plus_weights"]


def grad_cam_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM channel weights ``(..., C)``: the spatial mean of the gradients."""
    del activations
    return grads.mean(dim=(-2, -1))


def grad_cam_plus_plus_weights(activations: torch.Tensor, grads: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Grad-CAM++ channel weights ``(..., C)`` (closed form; see the module docstring).

    ``eps`` in the denominator and zeroing ``a`` where the gradient is 0 follow pytorch-grad-cam, so maps
    agree with it.
    """
    g2 = grads.pow(2)
    g3 = g2 * grads
    sum_a = activations.sum(dim=(-2, -1), keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + eps)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (alpha * grads.clamp(min=0)).sum(dim=(-2, -1))
