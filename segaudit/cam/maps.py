"""Post-processing of raw maps: normalisation and upsampling (kept apart so raw magnitudes survive)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["normalize_maps", "upsample_maps"]


def normalize_maps(maps: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Min-max normalise each map over its last two dims to [0, 1], as pytorch-grad-cam's ``scale_cam_image``:
    ``(m - min) / (eps + max - min)``."""
    flat = maps.flatten(-2)
    low = flat.min(-1, keepdim=True).values
    shifted = flat - low
    return (shifted / (eps + shifted.max(-1, keepdim=True).values)).view_as(maps)


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (half-pixel centres, ``align_corners=False``) of ``(..., h, w)`` maps."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    return F.interpolate(flat, size=size, mode="bilinear", align_corners=False).reshape(*lead, *size)
