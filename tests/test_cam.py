"""CAM engine: agreement with pytorch-grad-cam, and the engine's guards."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from helpers import random_model
from torch import nn

from segaudit.cam import (
    ALL_METHODS,
    GRADIENT_METHODS,
    TARGET_ALL,
    TARGET_GT,
    TARGET_NONE,
    TARGET_PRED,
    TARGET_ROI,
    capture_layer,
    compute_cams,
    model_logits,
    normalize_maps,
    score_gradients,
    seg_grad_cam_targets,
    upsample_maps,
)

#: every method but the fixation trace, which needs a plain chain of layers (tests/test_fixations.py)
CAM_METHODS = tuple(m for m in ALL_METHODS if m != "fixations")


class _LogitsOnly(nn.Module):
    """pytorch-grad-cam expects a tensor output (its own docs wrap torchvision models the same way)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


class _MaskTarget:
    """pytorch-grad-cam's SemanticSegmentationTarget: (output[category] * mask).sum(), on torch."""

    def __init__(self, category: int, mask: torch.Tensor) -> None:
        self.category, self.mask = category, mask

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return (output[self.category] * self.mask).sum()


PEERS = {
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "gradcam_elementwise": "GradCAMElementWise",
}


@pytest.mark.parametrize("method", list(PEERS))
def test_maps_equal_pytorch_grad_cam(method: str) -> None:
    import pytorch_grad_cam as grad_cam  # a dev dependency, imported plainly: the check must not skip silently

    peer_cls = getattr(grad_cam, PEERS[method])
    # the element-wise map is a sum of many positive terms with a small spread: float32 summation order
    # alone moves its normalised values by ~4e-4, so both sides run in float64 for that method
    dtype = torch.float64 if method == "gradcam_elementwise" else torch.float32
    model = random_model().to(dtype)
    torch.manual_seed(1)
    images = torch.randn(3, 3, 96, 128, dtype=dtype)
    result = compute_cams(model, images, "backbone.16", methods=(method,))
    classes = torch.nonzero(result.target_source == TARGET_PRED)
    assert len(classes) >= 3, "the random model should predict a few classes"

    wrapped = _LogitsOnly(model)
    layer = dict(wrapped.named_modules())["model.backbone.16"]
    # the peer needs parameter gradients to backprop; give it a copy so ours stays frozen
    for p in wrapped.parameters():
        p.requires_grad_(True)
    checked = 0
    with peer_cls(model=wrapped, target_layers=[layer]) as peer:
        for b, k in classes.tolist():
            mask = (result.pred[b] == k).to(dtype)
            theirs = peer(input_tensor=images[b : b + 1], targets=[_MaskTarget(k, mask)])[0]
            # the peer's normalisation, done with our torch functions: min-max at feature resolution,
            # bilinear resize (cv2 INTER_LINEAR == align_corners=False), min-max again (aggregate_multi_layers)
            raw = result.map(method)[b, k]
            ours = normalize_maps(upsample_maps(normalize_maps(raw), (96, 128)))
            np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-4)
            checked += 1
    assert checked == len(classes)


def test_no_parameter_gradients_and_no_hook_left() -> None:
    model = random_model()
    images = torch.randn(2, 3, 64, 64)
    compute_cams(model, images, "backbone.16")
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())


def test_batched_maps_equal_single_image_maps() -> None:
    model = random_model()
    torch.manual_seed(3)
    images = torch.randn(4, 3, 64, 64)
    batched = compute_cams(model, images, "backbone.16")
    for b in range(4):
        single = compute_cams(model, images[b : b + 1], "backbone.16")
        for key in batched.maps:
            torch.testing.assert_close(batched.maps[key][b], single.maps[key][0], atol=1e-5, rtol=1e-4)


def test_targets_fall_back_to_gt_for_missed_classes() -> None:
    pred = torch.tensor([[[0, 1], [1, 1]]])
    gt = torch.tensor([[[2, 1], [255, 1]]])
    masks, source = seg_grad_cam_targets(pred, gt, num_classes=4)
    assert source.tolist() == [[TARGET_NONE, TARGET_PRED, TARGET_GT, TARGET_NONE]]
    assert masks[0, 2].tolist() == [[True, False], [False, False]]
    assert not masks[0, 0].any() and not masks[0, 3].any()


def test_gt_batch_mismatch_raises() -> None:
    model = random_model()
    with pytest.raises(ValueError, match="gt has 1 images but the batch has 2"):
        compute_cams(model, torch.randn(2, 3, 32, 32), "backbone.16", gt=torch.zeros(1, 32, 32, dtype=torch.long))


def test_unknown_layer_and_method_raise() -> None:
    model = random_model()
    with pytest.raises(KeyError, match="not in model"):
        compute_cams(model, torch.randn(1, 3, 32, 32), "backbone.99")
    with pytest.raises(ValueError, match="unknown CAM methods"):
        compute_cams(model, torch.randn(1, 3, 32, 32), "backbone.16", methods=("magic",))


def test_normalize_and_upsample() -> None:
    maps = torch.tensor([[[0.0, 2.0], [4.0, 1.0]]])
    norm = normalize_maps(maps)
    assert norm.min() == 0 and abs(float(norm.max()) - 1) < 1e-6
    up = upsample_maps(torch.full((2, 3, 4), 5.0), (8, 6))
    assert up.shape == (2, 8, 6) and torch.allclose(up, torch.tensor(5.0))


def test_every_target_kind() -> None:
    pred = torch.tensor([[[0, 1, 1], [0, 0, 2]]])
    gt = torch.tensor([[[3, 1, 255], [0, 0, 0]]])
    masks, source = seg_grad_cam_targets(pred, gt, 4, "gt")
    assert source.tolist() == [[TARGET_NONE, TARGET_GT, TARGET_PRED, TARGET_GT]]
    assert masks[0, 1].tolist() == [[False, True, False], [False, False, False]]
    masks, source = seg_grad_cam_targets(pred, gt, 4, "all")
    assert source.tolist() == [[TARGET_NONE, TARGET_ALL, TARGET_ALL, TARGET_ALL]]
    assert masks[0, 2].sum() == 5  # every valid pixel, void excluded
    masks, source = seg_grad_cam_targets(pred, gt, 4, "roi", roi=(0.0, 0.0, 0.5, 0.67))
    assert masks[0, 3].tolist() == [[True, True, False], [False, False, False]]
    assert source[0, 3] == TARGET_ROI
    with pytest.raises(ValueError, match="unknown target kind"):
        seg_grad_cam_targets(pred, gt, 4, "everything")


def test_softmax_score_changes_the_target() -> None:
    model = random_model()
    images = torch.randn(2, 3, 64, 64)
    logits = compute_cams(model, images, "backbone.4", score="logits")
    softmax = compute_cams(model, images, "backbone.4", score="softmax")
    assert torch.equal(logits.target_source, softmax.target_source)
    assert not torch.allclose(logits.map("gradcam"), softmax.map("gradcam"))
    assert torch.isfinite(softmax.map("gradcam")).all()


def test_layer_sweep_from_one_forward_equals_single_layer_runs() -> None:
    model = random_model()
    torch.manual_seed(5)
    images = torch.randn(2, 3, 64, 64)
    layers = ("backbone.2", "backbone.4", "backbone.16")
    methods = (*GRADIENT_METHODS, "guided_gradcam")
    sweep = compute_cams(model, images, layers, methods=methods)
    for layer in layers:
        single = compute_cams(model, images, layer, methods=methods)
        for method in methods:
            torch.testing.assert_close(sweep.map(method, layer), single.map(method), atol=1e-5, rtol=1e-4)


def test_guided_maps_come_at_input_resolution_for_targeted_classes_only() -> None:
    model = random_model()
    images = torch.randn(2, 3, 64, 64)
    result = compute_cams(model, images, "backbone.4", methods=("guided_backprop", "guided_gradcam"))
    assert set(result.maps) == {("input", "guided_backprop"), ("backbone.4", "guided_gradcam")}
    for cam in result.maps.values():
        assert cam.shape == (2, 4, 64, 64) and torch.isfinite(cam).all()
        assert (cam[result.target_source == TARGET_NONE] == 0).all()
        assert (cam[result.target_source != TARGET_NONE].flatten(1).amax(1) > 0).all()


def test_vmapped_backward_equals_one_backward_per_class() -> None:
    model = random_model()
    images = torch.randn(3, 3, 64, 64)
    with capture_layer(model, "backbone.4") as captured:
        with torch.enable_grad():
            logits = model_logits(model(images))
    cotangents = torch.zeros(3, *logits.shape)
    for j in range(3):
        cotangents[j, :, j + 1] = 1.0
    (batched,) = score_gradients(logits, cotangents, captured, batched=True)
    (looped,) = score_gradients(logits, cotangents, captured, batched=False)
    torch.testing.assert_close(batched, looped, atol=1e-5, rtol=1e-4)
    (single,) = torch.autograd.grad(logits[:, 2].sum(), captured, retain_graph=True)
    torch.testing.assert_close(looped[1], single)


def test_engine_maps_equal_with_the_vmapped_backward_of_cuda(monkeypatch) -> None:
    """The engine's CUDA path (all slots in one vmapped backward, in class_chunk groups), run on CPU."""
    import segaudit.cam.engine as engine

    model = random_model()
    torch.manual_seed(3)
    images = torch.randn(3, 3, 64, 80)
    gt = torch.randint(0, 4, (3, 64, 80))
    looped = compute_cams(model, images, ("backbone.4", "backbone.16"), gt, tuple(GRADIENT_METHODS), target="gt")
    original = engine.slot_gradients
    calls = []

    def vmapped(scores, cotangents, inputs, batched=None):
        calls.append(1)
        return original(scores, cotangents, inputs, batched=True)

    monkeypatch.setattr(engine, "slot_gradients", vmapped)
    batched = compute_cams(model, images, ("backbone.4", "backbone.16"), gt, tuple(GRADIENT_METHODS), target="gt",
                           class_chunk=2)
    assert len(calls) == 2  # three slots in chunks of two
    for key, value in looped.maps.items():
        torch.testing.assert_close(batched.maps[key], value, atol=1e-5 * float(value.abs().max()), rtol=1e-4)


def test_micro_batches_and_out_of_memory_propagating(monkeypatch) -> None:
    """``micro_batch`` cuts the forwards (same maps); the engine does not handle out-of-memory: it reaches
    the caller, whose micro-batches halve (segaudit.auditors.failures.MicroBatches, test_orchestration.py)."""
    import segaudit.cam.engine as engine

    model = random_model()
    images = torch.randn(4, 3, 64, 64)
    whole = compute_cams(model, images, "backbone.4")
    sizes = []
    real = engine._compute

    def small_gpu(model, images, *args):
        sizes.append(len(images))
        if len(images) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, images, *args)

    monkeypatch.setattr(engine, "_compute", small_gpu)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        compute_cams(model, images, "backbone.4", micro_batch=4)
    assert sizes == [4]  # not retried here
    split = compute_cams(model, images, "backbone.4", micro_batch=1)
    assert sizes == [4, 1, 1, 1, 1]
    for key in whole.maps:
        torch.testing.assert_close(split.maps[key], whole.maps[key], atol=1e-5, rtol=1e-4)


def test_cam_settings_are_the_keyword_form() -> None:
    """compute_cams(..., keywords) is compute_cams_with(CamSettings(...)): same maps; duplicates dropped."""
    from segaudit.cam import CamSettings, compute_cams_with

    model = random_model()
    images = torch.randn(2, 3, 64, 64)
    keywords = compute_cams(model, images, ["backbone.4", "backbone.4"], None, ("gradcam", "eigencam", "gradcam"),
                            target="all", class_chunk=1)
    settings = CamSettings("backbone.4", ("gradcam", "eigencam"), target="all", class_chunk=1)
    assert settings.layers == ("backbone.4",)
    with_settings = compute_cams_with(model, images, settings)
    assert keywords.methods == with_settings.methods == ("gradcam", "eigencam")
    assert keywords.maps.keys() == with_settings.maps.keys()
    for key, value in keywords.maps.items():
        torch.testing.assert_close(with_settings.maps[key], value, atol=0, rtol=0)
    with pytest.raises(ValueError, match="at least one layer"):
        CamSettings(())


def test_empty_targets_give_zero_maps_without_nan() -> None:
    model = random_model()
    images = torch.randn(2, 3, 32, 32)
    gt = torch.zeros(2, 32, 32, dtype=torch.long)
    result = compute_cams(model, images, "backbone.4", gt=gt, methods=CAM_METHODS, target="roi", roi=(0, 0, 0.5, 0.5))
    for cam in result.maps.values():
        assert torch.isfinite(cam).all()
        assert (cam[result.target_source == TARGET_NONE] == 0).all()


class _InPlaceNet(nn.Module):
    """conv -> BN -> in-place ReLU -> conv -> in-place ReLU -> 1x1 classes: in-place ops right after layers."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=inplace),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=inplace), nn.Conv2d(8, 3, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_in_place_operations_after_a_captured_layer() -> None:
    """Regression: the capture hook used to hand the captured tensor itself downstream."""
    images = torch.randn(2, 3, 16, 16)
    results = []
    for inplace in (False, True):
        model = _InPlaceNet(inplace).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        results.append(compute_cams(model, images, ["body.1", "body.3"], methods=CAM_METHODS))
    for key in results[0].maps:
        torch.testing.assert_close(results[1].maps[key], results[0].maps[key])


def test_requested_classes_restrict_the_maps() -> None:
    model = random_model()
    images = torch.randn(2, 3, 64, 64)
    full = compute_cams(model, images, "backbone.4")
    wanted = full.target_source != TARGET_NONE
    first = torch.nonzero(wanted)[0]
    only = torch.zeros_like(wanted)
    only[first[0], first[1]] = True
    part = compute_cams(model, images, "backbone.4", classes=only)
    assert (part.target_source != TARGET_NONE).sum() == 1
    for key in full.maps:
        torch.testing.assert_close(part.maps[key][first[0], first[1]], full.maps[key][first[0], first[1]])
        assert part.maps[key][~only].abs().sum() == 0
    with pytest.raises(ValueError, match="classes must be"):
        compute_cams(model, images, "backbone.4", classes=only[:1])


def test_gradient_free_methods_through_the_engine() -> None:
    from segaudit.cam.gradient_free import eigen_cam, score_cam

    model = random_model()
    images = torch.randn(2, 3, 48, 48)
    result = compute_cams(model, images, "backbone.4", methods=("scorecam", "eigencam"), score_cam_channels=8)
    targeted = result.target_source != TARGET_NONE
    with capture_layer(model, "backbone.4") as captured:
        logits = model_logits(model(images))
    feats = captured[0].detach()
    masks, _ = seg_grad_cam_targets(logits.argmax(1), None, 4)
    direct = score_cam(lambda x: model_logits(model(x)), images, feats, masks, targeted, channels=8)
    torch.testing.assert_close(result.map("scorecam"), direct)
    eigen = result.map("eigencam")
    for b, k in torch.nonzero(targeted).tolist():
        torch.testing.assert_close(eigen[b, k], eigen_cam(feats)[b])
    assert (eigen[~targeted] == 0).all()


def test_mixed_precision_error_against_float32(demo_data) -> None:
    """bfloat16 autocast on CPU (float16 on CUDA) against float32, on the demo model and its data.

    Measured (16 demo images): Grad-CAM's normalised maps differ by 0.002 on average and peak at the same
    pixel in every map; Grad-CAM++ is not robust to it (0.17, same peak in 25% of maps): its
    ``sum A g^3`` term needs the mantissa bfloat16 lacks. The bounds below hold with margin.
    """
    from segaudit.data.classmap import build_class_map
    from segaudit.data.preprocess import prepare_batch
    from segaudit.data.readers import open_dataset, read_samples
    from segaudit.models.registry import load_model

    model = load_model("demo")
    data = open_dataset(demo_data / "annotations" / "instances_val.json")
    samples, _ = read_samples(data, data.refs()[:8])
    batch = prepare_batch(samples, build_class_map(data.category_names, model.class_names), 128, model.mean,
                          model.std)
    methods = ("gradcam", "layercam", "hirescam")
    full = compute_cams(model.module, batch.images, "backbone.4", methods=methods)
    half = compute_cams(model.module, batch.images, "backbone.4", methods=methods, amp=True)
    assert torch.equal(full.target_source, half.target_source)
    both = full.target_source != TARGET_NONE
    for key in full.maps:
        a, b = normalize_maps(full.maps[key][both]), normalize_maps(half.maps[key][both])
        assert b.dtype == torch.float32 and torch.isfinite(b).all()
        assert (a - b).abs().mean() < 0.02, key
        assert (a.flatten(1).argmax(1) == b.flatten(1).argmax(1)).float().mean() > 0.8, key


def _reference_targets(pred, gt, num_classes, kind, roi):
    """The target sets straight from the definitions (one dense mask per class), to check the sparse code."""
    classes = torch.arange(num_classes).view(1, -1, 1, 1)
    valid = torch.ones_like(pred, dtype=torch.bool) if gt is None else gt != 255
    pred_masks = (pred.unsqueeze(1) == classes) & valid.unsqueeze(1)
    gt_masks = torch.zeros_like(pred_masks) if gt is None else gt.unsqueeze(1) == classes
    source = torch.zeros(pred_masks.shape[:2], dtype=torch.int8)
    masks = torch.zeros_like(pred_masks)
    height, width = pred.shape[-2:]
    box = torch.zeros(height, width, dtype=torch.bool)
    box[int(roi[0] * height) : max(int(roi[0] * height) + 1, round(roi[2] * height)),
        int(roi[1] * width) : max(int(roi[1] * width) + 1, round(roi[3] * width))] = True
    for b, c in itertools.product(range(pred.shape[0]), range(1, num_classes)):
        sets = {TARGET_PRED: pred_masks[b, c], TARGET_GT: gt_masks[b, c]}
        if kind in ("pred", "gt"):
            order = (TARGET_PRED, TARGET_GT) if kind == "pred" else (TARGET_GT, TARGET_PRED)
            code = next((o for o in order if sets[o].any()), TARGET_NONE)
            chosen = sets.get(code, torch.zeros_like(valid[b]))
        else:
            region = valid[b] & (box if kind == "roi" else True)
            present = bool(pred_masks[b, c].any() or gt_masks[b, c].any())
            code = (TARGET_ALL if kind == "all" else TARGET_ROI) if present and region.any() else TARGET_NONE
            chosen = region if code != TARGET_NONE else torch.zeros_like(region)
        source[b, c], masks[b, c] = code, chosen
    return masks, source


def test_sparse_target_sets_equal_the_definitions() -> None:
    generator = torch.Generator().manual_seed(0)
    checked = 0
    for trial in range(60):
        batch, height, width, k = (int(torch.randint(1, n, (1,), generator=generator)) for n in (4, 9, 9, 6))
        pred = torch.randint(0, k, (batch, height, width), generator=generator)
        gt = torch.randint(0, k + 2, (batch, height, width), generator=generator)
        gt[gt == k + 1] = 255  # void; k itself is a label outside the model's classes
        for kind in ("pred", "gt", "all", "roi"):
            labels = None if trial % 4 == 0 and kind != "gt" else gt
            roi = (0.1, 0.2, 0.7, 0.9)
            masks, source = seg_grad_cam_targets(pred, labels, k, kind, roi)
            expected_masks, expected_source = _reference_targets(pred, labels, k, kind, roi)
            assert torch.equal(source, expected_source) and torch.equal(masks, expected_masks), (trial, kind)
            checked += 1
    assert checked == 240
