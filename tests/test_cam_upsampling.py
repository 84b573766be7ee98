"""Targets pulled back through the final bilinear upsampling (segaudit.cam.upsampling): the same gradients
as backpropagating the full-resolution target, and the full-resolution path wherever that does not hold."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import random_model
from torch import nn

import segaudit.cam.engine as engine
from segaudit.cam import compute_cams
from segaudit.cam.upsampling import (
    bilinear_adjoint,
    interpolation_matrix,
    is_bilinear_upsampling,
    logits_module,
)
from segaudit.models.vgg_fcn import VGG_FCN_DEFAULT_LAYER, vgg_fcn

GRADIENT_METHODS = ("gradcam", "gradcampp", "hirescam", "xgradcam", "layercam", "gradcam_elementwise")


class _Hidden(nn.Module):
    """The same model behind a wrapper the engine does not know: it must take the full-resolution path."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out["out"] if isinstance(out, dict) else out


@pytest.mark.parametrize("size", [(17, 23), (40, 40)])
def test_interpolation_matrix_and_adjoint_match_pytorch(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    low = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    high = F.interpolate(low, size=(96, 130), mode="bilinear", align_corners=False)
    rows, cols = interpolation_matrix(size[0], 96, dtype=torch.float64), interpolation_matrix(size[1], 130,
                                                                                             dtype=torch.float64)
    torch.testing.assert_close(rows @ low.detach() @ cols.T, high.detach())
    masks = (torch.rand(2, 3, 96, 130) > 0.6).double()
    (expected,) = torch.autograd.grad((high * masks).sum(), low)
    torch.testing.assert_close(bilinear_adjoint(masks.flatten(0, 1), size).view_as(low), expected)
    assert is_bilinear_upsampling(low, high)
    assert not is_bilinear_upsampling(low, high + 1e-2)
    assert not is_bilinear_upsampling(low, F.interpolate(low, size=(96, 130), mode="nearest"))


def test_known_models_and_their_logits_modules() -> None:
    lraspp = random_model()
    assert logits_module(lraspp) is lraspp.classifier
    fcn = vgg_fcn(4)
    assert logits_module(fcn) is fcn.classifier[0]  # nested Sequential ending in a bilinear Upsample
    assert logits_module(_Hidden(lraspp)) is None
    assert logits_module(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Upsample(scale_factor=2, mode="nearest"))) is None
    assert logits_module(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Upsample(scale_factor=2, mode="bilinear",
                                                                        align_corners=True))) is None


def _frozen(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@pytest.mark.parametrize("arch", ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "vgg_fcn"])
@pytest.mark.parametrize("target", ["pred", "gt", "all", "roi"])
def test_pullback_equals_full_resolution_backward(arch: str, target: str, monkeypatch) -> None:
    if arch == "vgg_fcn":
        torch.manual_seed(0)
        model, layer = _frozen(vgg_fcn(4)), VGG_FCN_DEFAULT_LAYER
    else:
        model, layer = random_model(arch), "backbone.16"
    torch.manual_seed(2)
    images = torch.randn(3, 3, 96, 112)
    gt = torch.randint(0, 4, (3, 96, 112))
    gt[:, :10] = 255
    taken = []
    original = engine.bilinear_adjoint
    monkeypatch.setattr(engine, "bilinear_adjoint", lambda *a: taken.append(1) or original(*a))
    kwargs = dict(target=target, roi=(0.1, 0.2, 0.8, 0.9), methods=GRADIENT_METHODS)
    fast = compute_cams(model, images, layer, gt, **kwargs)
    assert taken, "the pull-back path was not taken"
    taken.clear()
    full = compute_cams(_Hidden(model), images, f"model.{layer}", gt, **kwargs)
    assert not taken
    assert torch.equal(fast.target_source, full.target_source)
    assert (fast.target_source != 0).sum() >= 3
    for method in GRADIENT_METHODS:
        ours, theirs = fast.map(method), full.map(method, f"model.{layer}")
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))


def test_softmax_scores_and_a_changed_output_take_the_full_resolution_path(monkeypatch) -> None:
    model = random_model()
    images = torch.randn(2, 3, 64, 64)
    taken = []
    original = engine.bilinear_adjoint
    monkeypatch.setattr(engine, "bilinear_adjoint", lambda *a: taken.append(1) or original(*a))
    compute_cams(model, images, "backbone.16", score="softmax")
    assert not taken  # the softmax of the upsampled logits is not a bilinear image of anything

    # ends in a bilinear Upsample, but a hook changes its output: the check must see it
    fcn = _frozen(vgg_fcn(4))
    handle = fcn.classifier[-1].register_forward_hook(lambda _m, _i, out: out + torch.linspace(0, 1, out.shape[-1]))
    result = compute_cams(fcn, images, VGG_FCN_DEFAULT_LAYER, methods=("gradcam",))
    assert not taken
    reference = compute_cams(_Hidden(fcn), images, f"model.{VGG_FCN_DEFAULT_LAYER}", methods=("gradcam",))
    assert (result.target_source != 0).any()
    torch.testing.assert_close(result.map("gradcam"), reference.map("gradcam", f"model.{VGG_FCN_DEFAULT_LAYER}"))
    handle.remove()
