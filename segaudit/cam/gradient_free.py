"""Gradient-free CAM methods: Eigen-CAM and Score-CAM, from a feature layer's activations and forward passes.

Neither method needs a backward pass: Eigen-CAM reads only the activations ``A`` (``(B, C, h, w)``) of the
feature layer, Score-CAM adds forward passes of the input masked by each activation channel. Both return raw
maps at the feature layer's resolution (after their ReLU), like :func:`segaudit.cam.compute_cams`;
normalising and upsampling is the caller's choice (:func:`segaudit.cam.normalize_maps`,
:func:`segaudit.cam.upsample_maps`).

Eigen-CAM (Muhammad & Yeasin 2020, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN,
arXiv:2008.00299), class-agnostic::

    X = A reshaped to (h*w, C), each channel centred over the pixels      X = U S V^T
    L = ReLU(s * X v_1)          v_1 the first right singular vector, s in {-1, +1}

The sign of ``v_1`` is arbitrary, and pytorch-grad-cam's ``EigenCAM`` keeps whatever its LAPACK returns: the
same activations give opposite maps with NumPy's OpenBLAS and torch's MKL, or after a permutation of the
channels (measured on LR-ASPP MobileNetV3, see ``tests/test_cam_gradient_free.py``), and after the ReLU one
sign keeps the salient pixels and the other their complement. segaudit fixes the sign with Seg-Eigen-CAM's
correction (Chung & Ying 2025, "Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic
Segmentation Models", Appl. Sci. 15(13) 7562, doi:10.3390/app15137562, eq. 13): ``s = -1`` when
``|min X v_1| > |max X v_1|``, so the larger excursion of the projection is positive. This is
pytorch-grad-cam's ``get_2d_projection_with_sign_correction``, and the map depends on the activations only.

Score-CAM (Wang et al. 2020, "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
Networks", CVPR workshops, arXiv:1910.01279), with the Seg-Grad-CAM target of :mod:`segaudit.cam.targets`,
as pytorch-grad-cam computes it::

    H_k = minmax(up(A_k))                  up: bilinear to the input size, align_corners=True
    S^c_k = sum_{(i, j) in M_c} f(X * H_k)^c_{ij}      f: logits, or their softmax over classes
    w^c = softmax_k(S^c)                   L^c = ReLU(sum_k w^c_k A_k)

with ``minmax(x) = (x - min x) / (max x - min x + 1e-8)`` per channel. The paper's increase of confidence
subtracts the score of a baseline input from every ``S^c_k``; a softmax over channels is unchanged by that
shift, so it is left out, as in pytorch-grad-cam. The scores are sums over the target's pixels, thousands
apart from channel to channel in a trained model, so the softmax over channels is close to one-hot and a
map is mostly one channel (demo model, ``backbone.4``, logits: largest weight >= 0.995 in 13 of 14 maps);
segaudit reports the maps as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from segaudit.cam.targets import SCORE_KINDS, model_logits, target_scores

__all__ = ["eigen_cam", "score_cam"]

_CHANNEL_EPS = 1e-8  # pytorch-grad-cam's ScoreCAM, in the min-max of each upsampled channel


def eigen_cam(activations: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM: projection of the activations on their first principal component (class-agnostic).

    ``L = ReLU(s * X v_1)`` with ``X`` the ``(h*w, C)`` activations of one image, each channel centred over
    the pixels, ``v_1`` the first right singular vector of ``X``, and ``s`` Seg-Eigen-CAM's sign correction
    (``-1`` when ``|min X v_1| > |max X v_1|``). References and why the sign is corrected: module docstring.

    Parameters
    ----------
    activations : torch.Tensor
        ``(B, C, h, w)`` feature-layer output; finite.

    Returns
    -------
    torch.Tensor
        ``(B, h, w)`` raw maps (after the ReLU), in float32 or the activations' wider float dtype.
    """
    if activations.ndim != 4:
        raise ValueError(f"activations must be (B, C, h, w), got shape {tuple(activations.shape)}")
    if not torch.isfinite(activations).all():
        raise ValueError("activations contain NaN or infinity")
    return _principal_projection(activations).clamp_(min=0)


def _principal_projection(activations: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w) -> (B, h, w)``: ``s * X v_1`` of :func:`eigen_cam`, before its ReLU."""
    batch, _, height, width = activations.shape
    work = activations.detach().to(torch.promote_types(activations.dtype, torch.float32))
    pixels = work.flatten(2).transpose(1, 2)  # (B, h*w, C)
    pixels = pixels - pixels.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(pixels, full_matrices=False)
    projection = torch.einsum("bpc,bc->bp", pixels, vh[:, 0])
    flip = projection.amin(-1).abs() > projection.amax(-1).abs()
    projection = torch.where(flip[:, None], -projection, projection)
    return projection.view(batch, height, width)


def score_cam(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    activations: torch.Tensor,
    target_masks: torch.Tensor,
    targeted: torch.Tensor,
    *,
    channels: int | None = None,
    batch_size: int = 32,
    score: str = "logits",
) -> torch.Tensor:
    """Score-CAM maps of every targeted (image, class) at once (formula and references: module docstring).

    One forward pass of the input masked by each channel serves every class of that image: ``B * C``
    masked samples in all, whatever the number of classes (pytorch-grad-cam runs ``C`` per (image, class)).
    Samples of all images are packed into batches of ``batch_size`` and run under ``torch.no_grad()``.

    Parameters
    ----------
    forward : callable
        ``x (N, C_in, H, W) -> logits (N, K, H, W)`` (or torchvision's ``{"out": logits}``, so the model
        itself will do), in eval mode: batch statistics would make a sample's scores depend on its batch.
    images : torch.Tensor
        ``(B, C_in, H, W)`` normalised input the activations come from.
    activations : torch.Tensor
        ``(B, C, h, w)`` feature-layer output for ``images``.
    target_masks : torch.Tensor
        ``(B, K, H, W)`` bool: the pixels ``M_c`` of each class's target (Seg-Grad-CAM,
        :func:`segaudit.cam.seg_grad_cam_targets`).
    targeted : torch.Tensor
        ``(B, K)`` bool: which (image, class) pairs get a map. Images with none get no forward pass.
    channels : int, optional
        Channel budget, an approximation: per image only the ``channels`` channels with the highest mean
        activation get a forward pass, and the others weight 0 (the softmax runs over the kept channels).
        A channel with a low mean can still have a high score, so maps can differ from the full
        computation, all the more as the weights are nearly one-hot: on the demo model at ``backbone.4``
        (40 channels; 14 maps of 6 synthetic images), keeping 30, 20 or 10 channels kept the position of
        the maximum in 13, 10 and 5 maps of 14.
        ``None`` (default) or ``>= C`` keeps every channel: exact Score-CAM.
    batch_size : int
        Masked samples per call of ``forward``.
    score : str
        One of :data:`~segaudit.cam.targets.SCORE_KINDS`: sum over the target's pixels the class logit
        (``"logits"``, default, as Seg-Grad-CAM) or the class's softmax probability (``"softmax"``).

    Returns
    -------
    torch.Tensor
        ``(B, K, h, w)`` raw maps (after the ReLU), zero where ``targeted`` is False.
    """
    _check_score_cam_inputs(images, activations, target_masks, targeted, channels, batch_size, score)
    batch, num_channels = activations.shape[:2]
    num_classes = targeted.shape[1]
    feats = activations.detach()
    dtype = torch.promote_types(feats.dtype, torch.float32)  # half-precision activations are promoted
    maps = feats.new_zeros((batch, num_classes, *feats.shape[-2:]), dtype=dtype)
    rows = torch.nonzero(targeted.any(1)).flatten().to(feats.device)
    if rows.numel() == 0:
        return maps
    keep = num_channels if channels is None else min(channels, num_channels)
    # per image, the `keep` channels of highest mean activation, in channel order (all of them by default)
    kept = feats[rows].mean(dim=(-2, -1)).topk(keep, dim=1).indices.sort(dim=1).values  # (R, keep)
    scores = _channel_scores(
        forward, images, feats, target_masks, rows.repeat_interleave(keep), kept.flatten(), batch_size, score
    ).view(len(rows), keep, num_classes)
    full = scores.new_full((len(rows), num_channels, num_classes), float("-inf"))
    full.scatter_(1, kept.unsqueeze(-1).expand(-1, -1, num_classes), scores)
    weights = full.softmax(dim=1).to(dtype)  # (R, C, K); exactly 0 for channels left out by the budget
    cams = torch.einsum("rck,rchw->rkhw", weights, feats[rows].to(dtype)).clamp_(min=0)
    on = targeted[rows.to(targeted.device)].to(cams.device)
    maps[rows] = torch.where(on[..., None, None], cams, torch.zeros_like(cams))
    return maps


def _channel_scores(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    feats: torch.Tensor,
    target_masks: torch.Tensor,
    sample_image: torch.Tensor,
    sample_channel: torch.Tensor,
    batch_size: int,
    score: str,
) -> torch.Tensor:
    """``(N, K)`` target score of every class for each masked sample ``(image, channel)``."""
    size = tuple(images.shape[-2:])
    num_classes = target_masks.shape[1]
    sample_image = sample_image.to(images.device)
    sample_channel = sample_channel.to(images.device)
    feats = feats.to(device=images.device, dtype=torch.promote_types(feats.dtype, torch.float32))
    masks = target_masks.to(images.device)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(sample_image), batch_size):
            img = sample_image[start : start + batch_size]
            chan = sample_channel[start : start + batch_size]
            up = F.interpolate(feats[img, chan].unsqueeze(1), size=size, mode="bilinear", align_corners=True)
            low = up.amin(dim=(-2, -1), keepdim=True)
            high = up.amax(dim=(-2, -1), keepdim=True)
            masked = images[img] * ((up - low) / (high - low + _CHANNEL_EPS)).to(images.dtype)
            logits = model_logits(forward(masked))
            expected = (len(img), num_classes, *size)
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
                got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ValueError(
                    f"forward must return logits of shape (N, K, H, W) = {expected} for {len(img)} masked "
                    f"images, got {got}"
                )
            values = target_scores(logits, score)
            values = values.to(torch.promote_types(values.dtype, torch.float32))
            chunks.append(torch.einsum("nkhw,nkhw->nk", values, masks[img].to(values.dtype)))
    return torch.cat(chunks)


def _check_score_cam_inputs(
    images: torch.Tensor,
    activations: torch.Tensor,
    target_masks: torch.Tensor,
    targeted: torch.Tensor,
    channels: int | None,
    batch_size: int,
    score: str,
) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C_in, H, W), got shape {tuple(images.shape)}")
    batch, _, height, width = images.shape
    if activations.ndim != 4 or activations.shape[0] != batch:
        raise ValueError(
            f"activations must be (B, C, h, w) with B = {batch} as images, "
            f"got shape {tuple(activations.shape)}"
        )
    mask_shape = tuple(target_masks.shape)
    if len(mask_shape) != 4 or mask_shape[0] != batch or mask_shape[2:] != (height, width):
        raise ValueError(
            f"target_masks must be (B, K, H, W) = ({batch}, K, {height}, {width}) as images, "
            f"got shape {mask_shape}"
        )
    num_classes = target_masks.shape[1]
    if tuple(targeted.shape) != (batch, num_classes):
        raise ValueError(
            f"targeted must be (B, K) = ({batch}, {num_classes}) as target_masks, "
            f"got shape {tuple(targeted.shape)}"
        )
    if target_masks.dtype != torch.bool or targeted.dtype != torch.bool:
        raise ValueError(
            f"target_masks and targeted must be bool, got {target_masks.dtype} and {targeted.dtype}"
        )
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
        raise ValueError(f"channels must be a positive int or None, got {channels!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if score not in SCORE_KINDS:
        raise ValueError(f"score must be one of {', '.join(SCORE_KINDS)}, got {score!r}")
