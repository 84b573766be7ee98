"""Guided Backpropagation and Guided Grad-CAM: agreement with captum, batches, activation rules, leftovers."""

from __future__ import annotations

import warnings
from functools import cache

import pytest
import torch
import torch.nn.functional as F
from helpers import frozen
from torch import nn

from segaudit.cam import TARGET_NONE, compute_cams, model_logits, seg_grad_cam_targets
from segaudit.cam.guided import (
    ACTIVATION_RULES,
    attribution_map,
    guided_backprop,
    guided_grad_cam,
)
from segaudit.models.registry import build_architecture

NUM_CLASSES = 4


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: on shared cores, intra-op threads cost more in waiting than they save
    (measured: the same LR-ASPP attribution takes 0.1 s on one thread, 2-4 s on two under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _TinySeg(nn.Module):
    """Conv-ReLU-Conv(stride 2)-ReLU-Conv 1x1 to K classes, bilinear upsampling to the input size."""

    def __init__(self, num_classes: int = NUM_CLASSES, inplace: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(inplace=inplace),
        )
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.head(self.body(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)


class _TinyResidual(nn.Module):
    """One in-place ReLU module called twice, the second time after an in-place residual add (as ResNet's)."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.relu(self.conv1(x))
        out = self.conv2(hidden)
        out += hidden
        return self.head(self.relu(out))


class _MaskedScores(nn.Module):
    """captum explains ``(N, classes)`` outputs: ``y[b, k] = sum_p score[b, k, p] * mask[b, k, p]``."""

    def __init__(self, model: nn.Module, masks: torch.Tensor, softmax: bool = False) -> None:
        super().__init__()
        self.model, self.softmax = model, softmax
        self.register_buffer("masks", masks.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = model_logits(self.model(x))
        scores = logits.softmax(1) if self.softmax else logits
        return (scores * self.masks).sum((2, 3))


@cache
def _torchvision(name: str) -> nn.Module:
    """Built once per session (building is the slow part); every test leaves it as it found it."""
    torch.manual_seed(0)
    return frozen(build_architecture(name, NUM_CLASSES))


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "tiny":
        return frozen(_TinySeg())
    if name == "tiny-inplace":
        return frozen(_TinySeg(inplace=True))
    if name == "tiny-residual":
        return frozen(_TinyResidual())
    return _torchvision(name)


def _block_labels(batch: int, size: int, seed: int) -> torch.Tensor:
    """``(B, size, size)`` random labels in 8x8 blocks, so every class has pixels in most images."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randint(NUM_CLASSES, (batch, 1, size // 8, size // 8), generator=gen).float()
    return F.interpolate(coarse, size=(size, size), mode="nearest")[:, 0].long()


def _masks(batch: int, size: int, seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed target masks and a targeted table that leaves out some (image, class) pairs with pixels."""
    labels = _block_labels(batch, size, seed)
    masks = labels.unsqueeze(1) == torch.arange(NUM_CLASSES).view(1, -1, 1, 1)
    targeted = masks.flatten(2).any(-1)
    targeted[:, 0] = False  # background, as seg_grad_cam_targets
    targeted[-1, 1] = False  # a class with pixels that is not asked for: must come back zero
    return masks, targeted


def _captum(cls_name: str, *args, **kwargs):
    import captum.attr  # a dev dependency, imported plainly: the cross-checks must not skip silently

    return getattr(captum.attr, cls_name)(*args, **kwargs)


def _assert_no_leftovers(model: nn.Module) -> None:
    for m in model.modules():
        assert not (m._forward_pre_hooks or m._forward_hooks or m._backward_hooks or m._backward_pre_hooks)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "size", "score"),
    [
        ("tiny", 24, "logits"),
        ("tiny-inplace", 24, "softmax"),
        ("tiny-residual", 16, "logits"),
        ("fcn_resnet50", 32, "logits"),  # in-place ReLU modules reused three times per bottleneck
        ("lraspp_mobilenet_v3_large", 32, "logits"),  # in-place ReLUs; Hardswish backprops plainly in both
    ],
)
def test_guided_backprop_equals_captum(name: str, size: int, score: str) -> None:
    model = _model(name)
    torch.manual_seed(1)
    images = torch.randn(2, 3, size, size)
    masks, targeted = _masks(2, size)
    ours = guided_backprop(model, images, masks, targeted, score=score)
    assert ours.shape == (2, NUM_CLASSES, 3, size, size)

    gbp = _captum("GuidedBackprop", _MaskedScores(model, masks, softmax=score == "softmax"))
    assert not ours[:, 0].any()  # background is never targeted here
    checked = 0
    for k in range(1, NUM_CLASSES):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # captum warns that it sets (and removes) ReLU hooks
            theirs = gbp.attribute(images.clone(), target=k)
        for b in range(2):
            if targeted[b, k]:
                scale = float(theirs[b].detach().abs().max())
                assert scale > 0
                torch.testing.assert_close(ours[b, k], theirs[b], atol=1e-4 * max(scale, 1.0), rtol=1e-4)
                checked += 1
            else:
                assert not ours[b, k].any()
    assert checked >= 4
    _assert_no_leftovers(model)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_guided_grad_cam_and_grad_cam_equal_captum(mode: str) -> None:
    model = _model("tiny-inplace")
    size, layer = 24, "body.3"  # the ReLU after the stride-2 conv: a 12x12 map, so the upsampling matters
    torch.manual_seed(2)
    images = torch.randn(3, 3, size, size)
    gt = _block_labels(3, size, seed=6)
    result = compute_cams(model, images, layer, gt=gt, methods=("gradcam",))
    # the same targets the engine used: predicted pixels, or labelled ones for classes the model misses
    masks, source = seg_grad_cam_targets(result.pred, gt, NUM_CLASSES)
    assert torch.equal(source, result.target_source)
    targeted = source != TARGET_NONE
    cam = result.map("gradcam", layer)
    assert cam.shape == (3, NUM_CLASSES, size // 2, size // 2)
    ours = guided_grad_cam(guided_backprop(model, images, masks, targeted), cam, mode=mode)

    wrapped = _MaskedScores(model, masks)
    module = dict(wrapped.named_modules())[f"model.{layer}"]
    ggc = _captum("GuidedGradCam", wrapped, module)
    lgc = _captum("LayerGradCam", wrapped, module)
    checked, clipped = 0, 0
    for k in range(NUM_CLASSES):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = ggc.attribute(images.clone(), target=k, interpolate_mode=mode)
            # captum's LayerGradCam returns sum_k alpha_k A^k *before* Grad-CAM's ReLU unless
            # relu_attributions=True; the engine's maps are after it, so compare with the clamped map,
            # and count the pixels where the clamp changed something (the comparison must not be vacuous)
            raw = lgc.attribute(images.clone(), target=k, relu_attributions=False)[:, 0]
        for b in range(3):
            if not targeted[b, k]:
                assert not ours[b, k].any() and not cam[b, k].any()
                continue
            torch.testing.assert_close(cam[b, k], raw[b].clamp(min=0), atol=1e-5, rtol=1e-4)
            clipped += int((raw[b] < 0).sum())
            scale = float(theirs[b].detach().abs().max())
            torch.testing.assert_close(ours[b, k], theirs[b], atol=1e-4 * max(scale, 1.0), rtol=1e-4)
            checked += 1
    assert checked >= 6 and clipped > 0
    _assert_no_leftovers(model)


@pytest.mark.parametrize("rule", ACTIVATION_RULES)
def test_batched_equals_single_image(rule: str) -> None:
    model = _model("lraspp_mobilenet_v3_large")
    torch.manual_seed(3)
    images = torch.randn(2, 3, 32, 32)
    masks, targeted = _masks(2, 32, seed=7)
    batched = guided_backprop(model, images, masks, targeted, rule=rule)
    assert batched.abs().sum() > 0
    for b in range(2):
        single = guided_backprop(model, images[b : b + 1], masks[b : b + 1], targeted[b : b + 1], rule=rule)
        torch.testing.assert_close(batched[b], single[0], atol=1e-6, rtol=1e-4)


def _slope(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(act(leaf * 1).sum(), leaf)
    return grad


_ACTIVATIONS = {
    "relu": lambda inplace: nn.ReLU(inplace=inplace),
    "relu6": lambda inplace: nn.ReLU6(inplace=inplace),
    "leaky": lambda inplace: nn.LeakyReLU(0.1, inplace=inplace),
    "hardswish": lambda inplace: nn.Hardswish(inplace=inplace),
    "silu": lambda inplace: nn.SiLU(inplace=inplace),
    "gelu": lambda inplace: nn.GELU(),
    "hardsigmoid": lambda inplace: nn.Hardsigmoid(inplace=inplace),
}


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("activation", list(_ACTIVATIONS))
@pytest.mark.parametrize("rule", ACTIVATION_RULES)
def test_activation_rules_analytic(rule: str, activation: str, inplace: bool) -> None:
    """``z_k = sum_c W_kc f(x_c)`` per pixel, so plain ``dy/dx_c = M W_kc f'(x_c)`` and guided
    ``[x_c > 0] ReLU(M W_kc f'(x_c))``: the documented rule, activation by activation."""
    act = _ACTIVATIONS[activation](inplace)
    identity = nn.Conv2d(3, 3, 1, bias=False)  # an in-place activation must not write into the images
    head = nn.Conv2d(3, NUM_CLASSES, 1, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        head.weight.copy_(torch.linspace(-1, 1, NUM_CLASSES * 3).view(NUM_CLASSES, 3, 1, 1))
    model = frozen(nn.Sequential(identity, act, head))
    torch.manual_seed(4)
    images = 4 * torch.randn(2, 3, 8, 8)  # reaches past ReLU6's 6 and Hardswish's -3
    before = images.clone()
    masks = torch.rand(2, NUM_CLASSES, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5
    targeted = torch.ones(2, NUM_CLASSES, dtype=torch.bool)
    ours = guided_backprop(model, images, masks, targeted, rule=rule)

    gated = activation == "relu" or (rule == "gate-all" and activation != "hardsigmoid")
    weights = head.weight[:, :, 0, 0].view(1, NUM_CLASSES, 3, 1, 1)
    plain = (
        masks.unsqueeze(2).float() * weights * _slope(_ACTIVATIONS[activation](False), images).unsqueeze(1)
    )
    expected = (plain.clamp(min=0) * (images > 0).unsqueeze(1)) if gated else plain
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-5)
    assert not torch.equal(expected, plain) or not gated  # the rule did something where it applies
    assert torch.equal(images, before)
    _assert_no_leftovers(model)


def test_mobilenet_rules_differ_and_leave_the_model_as_it_was() -> None:
    model = _model("lraspp_mobilenet_v3_large")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modules = [type(m) for m in model.modules()]
    torch.manual_seed(5)
    images = torch.randn(2, 3, 32, 32)
    before = images.clone()
    masks, targeted = _masks(2, 32, seed=8)
    with torch.no_grad():  # a caller's no_grad must not stop the attribution
        relu = guided_backprop(model, images, masks, targeted, rule="relu")
    gate_all = guided_backprop(model, images, masks, targeted, rule="gate-all")
    for result in (relu, gate_all):
        assert torch.isfinite(result).all() and result.abs().sum() > 0
        assert not result[~targeted].any()
    assert not torch.allclose(relu, gate_all, atol=1e-6, rtol=1e-3)

    _assert_no_leftovers(model)
    assert [type(m) for m in model.modules()] == modules
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training and torch.equal(images, before)

    # trainable parameters: still no gradient accumulated on them
    try:
        for p in model.parameters():
            p.requires_grad_(True)
        again = guided_backprop(model, images, masks, targeted, rule="relu")
        torch.testing.assert_close(again, relu)
        _assert_no_leftovers(model)
    finally:
        for p in model.parameters():
            p.requires_grad_(False)


def test_hooks_removed_when_the_call_fails() -> None:
    model = _model("tiny-inplace")
    images = torch.randn(1, 3, 16, 16)
    wrong = torch.ones(1, NUM_CLASSES, 8, 8, dtype=torch.bool)  # checked against the logits after the forward
    with pytest.raises(ValueError, match=r"do not match the logits \(1, 4, 16, 16\)"):
        guided_backprop(model, images, wrong, torch.ones(1, NUM_CLASSES, dtype=torch.bool), rule="gate-all")
    _assert_no_leftovers(model)
    grey = torch.randn(1, 1, 16, 16)  # the forward itself fails, with the hooks in place
    with pytest.raises(RuntimeError, match="channels"):
        guided_backprop(
            model, grey, torch.ones(1, NUM_CLASSES, 16, 16, dtype=torch.bool), torch.ones(1, 4).bool()
        )
    _assert_no_leftovers(model)


def test_input_checks() -> None:
    model = _model("tiny")
    images = torch.randn(2, 3, 16, 16)
    masks = torch.ones(2, NUM_CLASSES, 16, 16, dtype=torch.bool)
    targeted = torch.ones(2, NUM_CLASSES, dtype=torch.bool)
    with pytest.raises(ValueError, match="unknown activation rule 'deconvnet'"):
        guided_backprop(model, images, masks, targeted, rule="deconvnet")
    with pytest.raises(ValueError, match="unknown score 'probs'"):
        guided_backprop(model, images, masks, targeted, score="probs")
    with pytest.raises(ValueError, match=r"targeted must be a \(2, K\) bool tensor"):
        guided_backprop(model, images, masks, targeted.long())
    with pytest.raises(ValueError, match=r"targeted must be a \(2, K\) bool tensor"):
        guided_backprop(model, images, masks, targeted[:1])
    with pytest.raises(ValueError, match="target_masks must be bool"):
        guided_backprop(model, images, masks.float(), targeted)
    with pytest.raises(ValueError, match="training mode"):
        guided_backprop(model.train(), images, masks, targeted)
    guided = torch.ones(2, NUM_CLASSES, 3, 16, 16)
    with pytest.raises(ValueError, match="same \\(B, K\\)"):
        guided_grad_cam(guided, torch.ones(2, NUM_CLASSES - 1, 4, 4))
    with pytest.raises(ValueError, match="unknown interpolation mode 'bicubic'"):
        guided_grad_cam(guided, torch.ones(2, NUM_CLASSES, 4, 4), mode="bicubic")


def test_nothing_targeted_gives_zeros() -> None:
    model = _model("tiny")
    images = torch.randn(2, 3, 16, 16)
    masks = torch.ones(2, NUM_CLASSES, 16, 16, dtype=torch.bool)
    out = guided_backprop(model, images, masks, torch.zeros(2, NUM_CLASSES, dtype=torch.bool))
    assert out.shape == (2, NUM_CLASSES, 3, 16, 16) and not out.any()


def test_guided_grad_cam_upsamples_the_raw_map() -> None:
    guided = torch.ones(1, 2, 3, 4, 4)
    cam = torch.tensor([[[[0.0, 2.0], [4.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]])
    nearest = guided_grad_cam(guided, cam, mode="nearest")
    assert nearest[0, 0, 0].tolist() == [[0, 0, 2, 2], [0, 0, 2, 2], [4, 4, 0, 0], [4, 4, 0, 0]]
    bilinear = guided_grad_cam(guided, cam)
    assert bilinear[0, 0, 1, 0].tolist() == [0.0, 0.5, 1.5, 2.0]  # half-pixel centres, clamped at the edges
    assert torch.equal(bilinear[0, 1], guided[0, 1])


def test_attribution_map_sums_absolute_values_over_channels() -> None:
    attribution = torch.zeros(2, 3, 3, 2, 2)
    attribution[0, 1, :, 0, 0] = torch.tensor([1.0, 0.0, -1.0])  # signed sum would cancel to 0
    attribution[0, 1, :, 1, 1] = torch.tensor([1.0, 0.0, 1.0])
    out = attribution_map(attribution)
    assert out.shape == (2, 3, 2, 2)
    assert out[0, 1].tolist() == [[2.0, 0.0], [0.0, 2.0]]
    assert attribution_map(torch.ones(3, 5, 7)).shape == (5, 7)
