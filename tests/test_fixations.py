"""CNN-Fixations (Seg-Unravel) on hand-built networks whose traces can be computed by hand."""

import pytest
import torch
from torch import nn

from segaudit.cam.fixations import UnsupportedModel, cnn_fixations, sequential_layers


def _tiny_net() -> nn.Sequential:
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0  # channel 0: the pixel itself
        conv.weight[1, 0, 1, 2] = 1.0  # channel 1: the pixel to its right
    head = nn.Conv2d(2, 2, 1)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[1, :, 0, 0] = 1.0  # class 1 = channel 0 + channel 1
        head.bias.copy_(torch.tensor([1.0, 0.0]))  # class 0 (background) = 1 everywhere
    return nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), head, nn.Upsample(scale_factor=2, mode="nearest")).eval()


def _image() -> torch.Tensor:
    x = torch.zeros(1, 1, 6, 6)
    x[0, 0, 1, 4] = 5.0
    x[0, 0, 4, 1] = 3.0
    return x


def test_traced_input_locations_equal_the_hand_computed_ones():
    result = cnn_fixations(_tiny_net(), _image(), sigma=0)
    # class 1 is predicted on the 2x2 output blocks of pooled cells (0,1), (0,2) and (2,0), 12 pixels.
    # (0,2): only channel 0 contributes (5) -> pool switch (1,4) -> identity kernel, centre (1,4): weight 4/12
    # (0,1): only channel 1 contributes (5) -> pool switch (1,3) -> centre of its receptive field (1,3): 4/12
    #        (the paper's rule keeps the centre; the pixel read, (1,4), is one to the right)
    # (2,0): channels 0 and 1 tie (3 each), the first wins with half the positive contribution -> pool switch
    #        (4,1) -> centre (4,1): 4/12 * 1/2
    got = {tuple(p[2:].tolist()): round(float(w), 6) for p, w in zip(result.points, result.weights, strict=True)}
    assert got == {(1, 4): 0.4, (1, 3): 0.4, (4, 1): 0.2}
    assert (result.points[:, :2] == torch.tensor([0, 1])).all()
    assert result.density[0, 1].sum().item() == pytest.approx(1.0)
    assert result.density[0, 0].abs().sum() == 0  # background is not traced


def test_batchnorm_is_folded_and_a_negative_scale_flips_the_choice():
    net = _tiny_net()
    norm = nn.BatchNorm2d(2).eval()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 1.0]))
    plain = nn.Sequential(net[0], norm, *list(net)[1:]).eval()
    base = cnn_fixations(plain, _image(), sigma=0)
    assert {tuple(p[2:].tolist()) for p in base.points} == {(1, 4), (1, 3), (4, 1)}
    # a second conv whose BN scale is negative for its only output: its input choice becomes the argmin
    conv2 = nn.Conv2d(2, 1, 1, bias=False)
    with torch.no_grad():
        conv2.weight.copy_(torch.tensor([1.0, 2.0]).view(1, 2, 1, 1))
    bn2 = nn.BatchNorm2d(1).eval()
    with torch.no_grad():
        bn2.weight.fill_(-1.0)
    x = torch.zeros(1, 2, 1, 1)
    x[0, 0] = 3.0
    x[0, 1] = 1.0  # contributions 3 and 2: channel 0 wins; negated: -3, -2, neither positive
    head = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([0.0, -1.0]).view(2, 1, 1, 1))
        head.bias.copy_(torch.tensor([0.0, 1.0]))
    net2 = nn.Sequential(conv2, bn2, head).eval()
    out = cnn_fixations(net2, x, sigma=0, classes=torch.tensor([[False, True]]))
    # the trace ends at the only pixel; weights become 0 after a conv with no positive contribution
    assert out.points.tolist() == [[0, 1, 0, 0]]


def test_unsupported_models_are_refused_by_name():
    with pytest.raises(UnsupportedModel, match="residual"):
        sequential_layers(nn.Linear(2, 2))
    with pytest.raises(UnsupportedModel, match="Hardswish"):
        sequential_layers(nn.Sequential(nn.Conv2d(3, 3, 1), nn.Hardswish()))
    import torchvision

    with pytest.raises(UnsupportedModel, match="LRASPP"):
        cnn_fixations(torchvision.models.segmentation.lraspp_mobilenet_v3_large(num_classes=3, weights_backbone=None).eval(),
                      torch.zeros(1, 3, 32, 32))


def test_neuron_cap_bounds_the_trace_and_bilinear_upsampling_is_traced():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU()),
        nn.Conv2d(8, 3, 1), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
    ).eval()
    images = torch.randn(2, 3, 16, 16)
    full = cnn_fixations(net, images, max_neurons=10_000, sigma=0)
    capped = cnn_fixations(net, images, max_neurons=3, sigma=0)
    per_pair = torch.unique(capped.points[:, :2], dim=0, return_counts=True)[1]
    assert per_pair.max() <= 3 and len(full.points) > len(capped.points)
    for result in (full, capped):
        sums = torch.zeros(2, 3).index_put_((result.points[:, 0], result.points[:, 1]), result.weights, accumulate=True)
        traced = sums > 0
        assert torch.allclose(sums[traced], torch.ones(int(traced.sum())), atol=1e-5)
        assert (result.points[:, 2:] >= 0).all() and (result.points[:, 2:] < 16).all()


def test_engine_adds_fixations_beside_cams_and_alone():
    from segaudit.cam import compute_cams
    from segaudit.models.vgg_fcn import vgg_fcn

    torch.manual_seed(0)
    model = vgg_fcn(3, width=4).eval()
    images = torch.randn(2, 3, 32, 32)
    both = compute_cams(model, images, "features.22", methods=("gradcam", "fixations"))
    assert set(both.maps) == {("features.22", "gradcam"), ("input", "fixations")}
    density = both.maps[("input", "fixations")]
    assert density.shape == (2, 3, 32, 32)
    traced = torch.unique(both.fixation_points[:, :2], dim=0)
    # every traced (image, class) is a targeted class the model predicts, and has density
    for b, k in traced.tolist():
        assert both.target_source[b, k] != 0 and (both.pred[b] == k).any() and density[b, k].sum() > 0
    alone = compute_cams(model, images, "features.22", methods=("fixations",))
    assert set(alone.maps) == {("input", "fixations")}
    assert torch.equal(alone.maps[("input", "fixations")], density)
    assert torch.equal(alone.target_source, both.target_source)


def test_fixations_of_the_demo_fcn_fall_inside_the_predicted_mask(demo_data):
    """Acceptance (issue 8): on the shipped VGG-FCN, the fixations of a predicted class lie inside that
    class's predicted mask far more often than its area share (objects cover ~10% of an image)."""
    from segaudit.cam import compute_cams
    from segaudit.data.classmap import build_class_map
    from segaudit.data.preprocess import prepare_batch
    from segaudit.data.readers import open_dataset, read_samples
    from segaudit.models.registry import load_model

    model = load_model("demo-fcn")
    data = open_dataset(str(demo_data), split="val")
    samples, _ = read_samples(data, data.refs()[:16])
    class_map = build_class_map(data.category_names, model.class_names)
    batch = prepare_batch(samples, class_map, model.input_size, model.mean, model.std)
    result = compute_cams(model.module, batch.images, model.default_layer, methods=("fixations",))
    b, k, y, x = result.fixation_points.unbind(1)
    inside = (result.pred[b, y, x] == k).float()
    rate = float((inside * result.fixation_weights).sum() / result.fixation_weights.sum())
    area = float(torch.stack([(result.pred[i] == j).float().mean() for i, j in zip(b.tolist(), k.tolist(), strict=True)]).mean())
    assert rate > 0.8, rate
    assert rate > 3 * area
