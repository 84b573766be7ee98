"""Models for the CAM tests: random weights, frozen, with random BatchNorm statistics."""

from __future__ import annotations

import torch
from torch import nn

from segaudit.models.registry import build_architecture


def frozen(model: nn.Module) -> nn.Module:
    """Eval mode, no parameter gradients, random BN statistics so the net is not trivially scaled."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def random_model(arch: str = "lraspp_mobilenet_v3_large", num_classes: int = 4) -> nn.Module:
    """A torchvision segmentation architecture with seeded random weights, :func:`frozen`."""
    torch.manual_seed(0)
    return frozen(build_architecture(arch, num_classes))
