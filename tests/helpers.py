"""Shared test inputs: models for the CAM tests (random weights, frozen, with random BatchNorm statistics) and
small labelled samples of the demo's classes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from segaudit.data.sample import Instance, Sample
from segaudit.models.registry import build_architecture

#: The demo's classes.
DEMO_NAMES = ("background", "disc", "square", "triangle", "star", "boat")


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


def square_samples(n: int, size: int = 64) -> list[Sample]:
    """``n`` noise images of ``size`` pixels, each with one labelled square (one instance) of demo class
    ``1 + i % 5`` at rows and columns 10-29."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        semantic = np.zeros((size, size), dtype=np.uint8)
        semantic[10:30, 10:30] = 1 + i % 5
        out.append(Sample(f"img{i}", f"img{i}.jpg", rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
                          semantic, [Instance(1 + i % 5, semantic > 0)], DEMO_NAMES))
    return out
