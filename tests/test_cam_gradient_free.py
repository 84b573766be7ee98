"""Gradient-free CAMs: agreement with pytorch-grad-cam's ScoreCAM and EigenCAM, targets, budget, cost."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import random_model
from torch import nn

from segaudit.cam import TARGET_NONE, capture_layer, normalize_maps, seg_grad_cam_targets, upsample_maps
from segaudit.cam.gradient_free import _principal_projection, eigen_cam, score_cam


class _TinySegNet(nn.Module):
    """Two stride-2 convolutions and a 1x1 head, logits resized to the input: ``features`` is at 1/4."""

    def __init__(self, num_classes: int = 4, channels: int = 6) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.features = nn.Sequential(nn.Conv2d(8, channels, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.features(self.stem(x)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _tiny_model(dtype: torch.dtype = torch.float32, **kwargs: int) -> nn.Module:
    torch.manual_seed(0)
    model = _TinySegNet(**kwargs).to(dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _logits(output: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    return output["out"] if isinstance(output, dict) else output


def _forward_with_activations(model: nn.Module, images: torch.Tensor, layer: str):
    with torch.no_grad(), capture_layer(model, layer) as captured:
        logits = _logits(model(images))
    return logits, captured[0].detach()


def _quadrant_labels(batch: int, height: int, width: int) -> torch.Tensor:
    """Classes 0..3 in the four quadrants: with the gt fallback, every image gets targets for 1, 2, 3."""
    gt = torch.zeros(batch, height, width, dtype=torch.long)
    gt[:, : height // 2, width // 2 :] = 1
    gt[:, height // 2 :, : width // 2] = 2
    gt[:, height // 2 :, width // 2 :] = 3
    return gt


def _peer_normalised(raw: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """The peer's normalisation with our functions: min-max, bilinear resize (cv2), min-max again."""
    return normalize_maps(upsample_maps(normalize_maps(raw), size)).numpy()


class _Counting:
    """A forward that counts its calls and the samples it was given."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.calls, self.samples = model, 0, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.samples += len(x)
        return _logits(self.model(x))


class _LogitsOnly(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _logits(self.model(x))


class _MaskTarget:
    """pytorch-grad-cam's SemanticSegmentationTarget on the logits or their softmax, minus a constant.

    The peer rounds its per-channel scores to float32 before the softmax over channels
    (``scores = torch.Tensor(scores)`` in ``score_cam.py``). The scores are sums over the target's pixels
    (hundreds to thousands) whose channel-to-channel differences sit in the 4th-6th digit, so the rounding
    alone moved its normalised maps by up to 1.2e-3 against ours with both sides in float64 (LR-ASPP,
    ``score="softmax"``). A constant per (image, class), the score of the unmasked image (the paper's
    baseline in its "increase of confidence"), cancels in the softmax over channels but keeps the
    differences representable: the peer then computes the same weights without the rounding.
    """

    def __init__(self, category: int, mask: torch.Tensor, softmax: bool, offset: float) -> None:
        self.category, self.mask, self.softmax, self.offset = category, mask, softmax, offset

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        scores = output.softmax(0) if self.softmax else output
        return (scores[self.category] * self.mask).sum() - self.offset


@pytest.mark.parametrize("score", ["logits", "softmax"])
def test_score_cam_equals_pytorch_grad_cam(score: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytorch_grad_cam import (
        ScoreCAM,
    )  # a dev dependency, imported plainly: the check must not skip silently

    monkeypatch.setenv("TQDM_DISABLE", "1")  # the peer's progress bars
    # float64 on both sides: a Score-CAM of random weights is ill-conditioned (near-uniform channel weights
    # over signed activations, then a min-max of a nearly flat map), so in float32 rounding alone separates
    # the two by up to 2e-3 (logits) and 2e-2 (softmax) on random LR-ASPP at backbone.4, while on the trained
    # demo model at backbone.4 float32 agrees to 9e-6. The tiny net keeps float64 forwards fast.
    model = _tiny_model(torch.float64, channels=12)
    torch.manual_seed(1)
    size = (40, 56)  # not square: catches (H, W) against the peer's (W, H)
    images = torch.randn(2, 3, *size, dtype=torch.float64)
    logits, acts = _forward_with_activations(model, images, "features")
    masks, source = seg_grad_cam_targets(logits.argmax(1), _quadrant_labels(2, *size), 4)
    targeted = source != TARGET_NONE
    assert targeted.sum(1).min() >= 2
    ours = score_cam(model, images, acts, masks, targeted, score=score, batch_size=7)
    base = (logits.softmax(1) if score == "softmax" else logits).mul(masks).flatten(2).sum(-1)

    wrapped = _LogitsOnly(model)
    checked = 0
    with ScoreCAM(model=wrapped, target_layers=[wrapped.model.features]) as peer:
        for b, k in torch.nonzero(targeted).tolist():
            target = _MaskTarget(k, masks[b, k].double(), score == "softmax", float(base[b, k]))
            theirs = peer(input_tensor=images[b : b + 1], targets=[target])[0]
            assert ours[b, k].amax() > ours[b, k].amin(), "a flat map would agree trivially"
            np.testing.assert_allclose(_peer_normalised(ours[b, k], size), theirs, atol=1e-4)
            checked += 1
    assert checked == int(targeted.sum()) >= 4


def test_eigen_cam_is_the_peers_projection_with_a_defined_sign() -> None:
    """pytorch-grad-cam's EigenCAM projects on ``VT[0]`` of ``np.linalg.svd`` and keeps LAPACK's sign.

    That sign is no convention: on random LR-ASPP (64x64 input, 10 seeds x 2 images) NumPy's OpenBLAS and
    torch's MKL return opposite signs for every image at ``backbone.10`` and equal ones at ``backbone.4``
    and ``backbone.16``; permuting the channels (which cannot change a class-agnostic map) flips the sign
    of the peer's projection for 7 of 24 images at ``backbone.2``/``backbone.4``. After its ReLU, a flipped
    map shows the complement of the other. Exact agreement with EigenCAM is therefore a matter of luck;
    what is checked instead: (1) our signed projection is the peer's up to that sign, (2) the peer's EigenCAM
    is our pipeline applied with the peer's sign, (3) our map is the peer's own sign-corrected projection
    (Seg-Eigen-CAM, eq. 13), (4) it does not depend on the order of the channels.
    """
    from pytorch_grad_cam import EigenCAM
    from pytorch_grad_cam.utils.svd_on_activations import (
        get_2d_projection,
        get_2d_projection_with_sign_correction,
    )

    model = random_model()
    torch.manual_seed(1)
    size = (64, 96)
    images = torch.randn(2, 3, *size)
    wrapped = _LogitsOnly(model)
    for layer in ("backbone.4", "backbone.16"):  # h*w > C and h*w < C
        _, acts = _forward_with_activations(model, images, layer)
        ours = eigen_cam(acts)
        signed = _principal_projection(acts)
        assert ours.shape == (2, *acts.shape[-2:]) and torch.equal(ours, signed.clamp(min=0))
        peer_raw = torch.from_numpy(get_2d_projection(acts.numpy()))
        with EigenCAM(model=wrapped, target_layers=[dict(wrapped.named_modules())[f"model.{layer}"]]) as peer:
            peer_maps = peer(input_tensor=images, targets=None)
        corrected = torch.from_numpy(get_2d_projection_with_sign_correction(acts.numpy()))
        for b in range(2):
            sign = 1.0 if float((peer_raw[b] * signed[b]).sum()) > 0 else -1.0
            scale = float(signed[b].abs().max())
            torch.testing.assert_close(peer_raw[b], sign * signed[b], atol=1e-4 * scale, rtol=0)
            peer_side = (sign * signed[b]).clamp(min=0)
            np.testing.assert_allclose(_peer_normalised(peer_side, size), peer_maps[b], atol=1e-4)
            np.testing.assert_allclose(
                _peer_normalised(ours[b], size), _peer_normalised(corrected[b].clamp(min=0), size), atol=1e-4
            )
        permuted = eigen_cam(acts[:, torch.randperm(acts.shape[1])])
        torch.testing.assert_close(permuted, ours, atol=1e-5 * float(ours.max()), rtol=0)


def test_eigen_cam_degenerate_and_invalid_inputs() -> None:
    assert torch.equal(eigen_cam(torch.ones(2, 5, 3, 4)), torch.zeros(2, 3, 4))  # nothing varies: zero map
    with pytest.raises(ValueError, match=r"\(B, C, h, w\)"):
        eigen_cam(torch.ones(5, 3, 4))
    bad = torch.ones(1, 5, 3, 4)
    bad[0, 1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        eigen_cam(bad)


def _tiny_setup(batch: int = 3, channels: int = 6, size: tuple[int, int] = (24, 32)):
    model = _tiny_model(channels=channels)
    torch.manual_seed(2)
    images = torch.randn(batch, 3, *size)
    logits, acts = _forward_with_activations(model, images, "features")
    masks, source = seg_grad_cam_targets(logits.argmax(1), _quadrant_labels(batch, *size), 4)
    return model, images, acts, masks, source != TARGET_NONE


def test_untargeted_pairs_are_zero_and_images_without_targets_cost_nothing() -> None:
    model, images, acts, masks, targeted = _tiny_setup()
    targeted = targeted.clone()
    targeted[0] = False
    targeted[1, 2] = False
    assert targeted[1:].any()
    forward = _Counting(model)
    maps = score_cam(forward, images, acts, masks, targeted)
    assert maps.shape == (3, 4, *acts.shape[-2:])
    assert torch.all(maps[~targeted] == 0)
    assert all(maps[b, k].amax() > 0 for b, k in torch.nonzero(targeted).tolist())
    assert forward.samples == 2 * acts.shape[1]  # image 0 has no target: no forward for it

    everything = score_cam(model, images, acts, masks, torch.ones_like(targeted), score="softmax")
    assert torch.isfinite(everything).all() and (everything >= 0).all()
    nothing = _Counting(model)
    assert torch.equal(
        score_cam(nothing, images, acts, masks, torch.zeros_like(targeted)), torch.zeros_like(maps)
    )
    assert nothing.calls == 0


def test_forward_samples_are_images_times_channels_whatever_the_classes() -> None:
    model, images, acts, masks, targeted = _tiny_setup(batch=3, channels=6)
    one_class = torch.zeros_like(targeted)
    one_class[:, 1] = True
    counts = []
    for which in (one_class, torch.ones_like(targeted)):
        forward = _Counting(model)
        score_cam(forward, images, acts, masks, which, batch_size=4)
        counts.append((forward.samples, forward.calls))
    assert counts == [(3 * 6, math.ceil(3 * 6 / 4))] * 2


def test_batch_size_does_not_change_the_maps() -> None:
    model, images, acts, masks, targeted = _tiny_setup()
    reference = score_cam(model, images, acts, masks, targeted, batch_size=1)
    for batch_size in (5, 64):
        maps = score_cam(model, images, acts, masks, targeted, batch_size=batch_size)
        torch.testing.assert_close(maps, reference, atol=1e-6, rtol=1e-5)


def test_channel_budget() -> None:
    model, images, acts, masks, targeted = _tiny_setup(batch=2, channels=8)
    full = score_cam(model, images, acts, masks, targeted)
    torch.testing.assert_close(
        score_cam(model, images, acts, masks, targeted, channels=8), full, atol=0, rtol=0
    )
    torch.testing.assert_close(
        score_cam(model, images, acts, masks, targeted, channels=99), full, atol=0, rtol=0
    )

    forward = _Counting(model)
    budget = score_cam(forward, images, acts, masks, targeted, channels=3, batch_size=2)
    assert (forward.samples, forward.calls) == (2 * 3, 3)
    assert torch.isfinite(budget).all() and torch.all(budget[~targeted] == 0)
    # the budget keeps each image's 3 channels of highest mean activation: the same as Score-CAM on them alone
    for b in range(2):
        top = acts[b].mean(dim=(-2, -1)).topk(3).indices
        alone = score_cam(
            model, images[b : b + 1], acts[b : b + 1, top], masks[b : b + 1], targeted[b : b + 1]
        )
        torch.testing.assert_close(budget[b], alone[0], atol=1e-6, rtol=1e-5)


def test_score_cam_rejects_mismatched_inputs() -> None:
    model, images, acts, masks, targeted = _tiny_setup(batch=2)
    cases = [
        ((images[0], acts, masks, targeted), {}, r"images must be \(B, C_in, H, W\)"),
        ((images, acts[:1], masks, targeted), {}, r"activations must be \(B, C, h, w\) with B = 2"),
        (
            (images, acts, masks[..., :-1], targeted),
            {},
            r"target_masks must be \(B, K, H, W\) = \(2, K, 24, 32\)",
        ),
        ((images, acts, masks, targeted[:, :3]), {}, r"targeted must be \(B, K\) = \(2, 4\)"),
        ((images, acts, masks.float(), targeted), {}, "must be bool"),
        ((images, acts, masks, targeted), {"channels": 0}, "channels must be a positive int"),
        ((images, acts, masks, targeted), {"batch_size": 0}, "batch_size must be a positive int"),
        ((images, acts, masks, targeted), {"score": "probability"}, "score must be one of logits, softmax"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            score_cam(model, *args, **kwargs)
    with pytest.raises(
        ValueError, match=r"forward must return logits of shape \(N, K, H, W\) = \(6, 4, 24, 32\)"
    ):
        score_cam(lambda x: _logits(model(x))[:, :3], images, acts, masks, targeted, batch_size=6)
