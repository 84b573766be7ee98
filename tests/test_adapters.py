"""Model adapters (segaudit.models.adapters): each user model, saved and loaded the way users do, audits
through the unchanged CAM engine, and its Grad-CAM maps equal pytorch-grad-cam's on the same module.

Models are built from configs with random weights (offline), at tiny sizes so each test takes seconds.
smp and transformers are optional extras (``segaudit[smp]``, ``segaudit[hf]``): their tests skip, saying
so, when the extra is absent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from segaudit.cam import TARGET_PRED, compute_cams, model_logits, normalize_maps, upsample_maps
from segaudit.cam.upsampling import capture_low_res_logits, is_bilinear_upsampling
from segaudit.cli import main
from segaudit.models import ModelLoadError, adapt, load_model
from segaudit.models.adapters import SegmentationAdapter
from segaudit.models.registry import candidate_layers
from segaudit.models.specs import compose_spec


class _MaskTarget:
    """pytorch-grad-cam's SemanticSegmentationTarget: (output[category] * mask).sum(), on torch."""

    def __init__(self, category: int, mask: torch.Tensor) -> None:
        self.category, self.mask = category, mask

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return (output[self.category] * self.mask).sum()


def assert_maps_equal_grad_cam(module: nn.Module, layer: str, images: torch.Tensor, atol: float = 1e-4,
                               extra_params: tuple = ()) -> int:
    """Grad-CAM of segaudit and of ``pytorch_grad_cam.GradCAM`` (SemanticSegmentationTarget on the predicted
    mask) on the same module, compared after the peer's normalisation (min-max at feature resolution,
    bilinear resize, min-max again, as tests/test_cam.py does). Where they differ: only in float summation
    order (segaudit may pull the target back through the final upsampling in closed form, the peer
    backpropagates through it), hence the tolerance. Returns the number of maps compared."""
    from pytorch_grad_cam import GradCAM

    result = compute_cams(module, images, layer, methods=("gradcam",))
    pairs = torch.nonzero(result.target_source == TARGET_PRED).tolist()
    assert pairs, "the random model should predict some class"
    params = [*module.parameters(), *extra_params]
    for p in params:  # the peer backpropagates through parameters; ours ran first with them frozen
        p.requires_grad_(True)
    try:
        with GradCAM(model=module, target_layers=[dict(module.named_modules())[layer]]) as peer:
            for b, k in pairs:
                mask = (result.pred[b] == k).float()
                theirs = peer(input_tensor=images[b: b + 1], targets=[_MaskTarget(k, mask)])[0]
                ours = normalize_maps(upsample_maps(normalize_maps(result.map("gradcam")[b, k]), images.shape[-2:]))
                np.testing.assert_allclose(ours.numpy(), theirs, atol=atol)
    finally:
        for p in params:
            p.requires_grad_(False)
    return len(pairs)


def uses_fast_path(module: nn.Module, images: torch.Tensor) -> bool:
    """Whether the engine's closed-form pull-back (segaudit.cam.upsampling) serves this module."""
    with torch.no_grad(), capture_low_res_logits(module) as low:
        logits = model_logits(module(images))
    return len(low) == 1 and is_bilinear_upsampling(low[0], logits)


@pytest.fixture()
def classes_file(tmp_path):
    def write(names):
        path = tmp_path / "classes.txt"
        path.write_text("\n".join(names) + "\n")
        return str(path)
    return write


def test_torchvision_state_dict_with_aux_head(tmp_path, classes_file) -> None:
    """Issue 14's model: deeplabv3_mobilenet_v3_large fine-tuned with aux_loss=True, saved as a state dict."""
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    torch.manual_seed(0)
    model = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4, aux_loss=True).eval()
    weights = tmp_path / "my.pth"
    torch.save(model.state_dict(), weights)
    names = classes_file(["background", "cat", "dog", "car"])
    loaded = load_model("deeplabv3_mobilenet_v3_large", weights=str(weights), classes=names)
    assert loaded.class_names == ("background", "cat", "dog", "car") and loaded.default_layer == "backbone.16"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x)["out"], model(x)["out"])
    # the peer wants a tensor output: the adapter reads {"out": ...} out of the same module, same layer names
    assert uses_fast_path(loaded.module, x)
    # at 64 px backbone.16 is a 4x4 map: min-max normalisation blows float32 summation-order noise up to
    # ~7e-4 (the closed-form pull-back vs the peer's backward through the upsampling), so both run in float64
    assert assert_maps_equal_grad_cam(SegmentationAdapter(loaded.module).double(), "backbone.16", x.double()) > 0
    # the same through the one string the CLI hands the flow
    again = load_model(compose_spec("deeplabv3_mobilenet_v3_large", names), weights=str(weights))
    assert again.class_names == loaded.class_names and again.sha256 == loaded.sha256
    with pytest.raises(ModelLoadError, match="has 4 classes but 3 class names"):
        load_model("deeplabv3_mobilenet_v3_large", weights=str(weights), classes=classes_file(["a", "b", "c"]))
    with pytest.raises(ModelLoadError, match="does not name its classes: pass --classes"):
        load_model("deeplabv3_mobilenet_v3_large", weights=str(weights))
    with pytest.raises(ModelLoadError, match="not a lraspp_mobilenet_v3_large state dict"):
        load_model("lraspp_mobilenet_v3_large", weights=str(weights), classes=names)


def test_torchvision_state_dict_of_another_backbone_names_the_mismatch(tmp_path, classes_file) -> None:
    from torchvision.models.segmentation import fcn_resnet50

    with torch.device("meta"):
        other = fcn_resnet50(weights=None, weights_backbone=None, num_classes=2, aux_loss=False)
    weights = tmp_path / "fcn.pth"
    torch.save({k: torch.zeros(v.shape) for k, v in other.state_dict().items()}, weights)
    with pytest.raises(ModelLoadError, match=r"does not fit deeplabv3_mobilenet_v3_large: .*(missing|shapes)"):
        load_model("deeplabv3_mobilenet_v3_large", weights=str(weights), classes=classes_file(["bg", "x"]))


def test_smp_unet_state_dict_and_constructor_args(tmp_path, classes_file) -> None:
    smp = pytest.importorskip("segmentation_models_pytorch", reason="the smp extra is not installed")
    torch.manual_seed(0)
    args = {"encoder_name": "resnet18", "classes": 3}
    model = smp.create_model("Unet", encoder_weights=None, **args).eval()
    weights = tmp_path / "unet.pth"
    torch.save(model.state_dict(), weights)
    spec = compose_spec("smp:Unet", classes_file(["background", "a", "b"]), '{"encoder_name": "resnet18", "classes": 3}')
    loaded = load_model(spec, weights=str(weights))
    loaded.input_size = 64
    assert loaded.arch == "smp:Unet" and loaded.default_layer == "decoder"
    assert "encoder.layer4" in candidate_layers(loaded.module)  # the user's own layer names
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), model(x))
    assert assert_maps_equal_grad_cam(loaded.module, "decoder", x) > 0
    assert not uses_fast_path(loaded.module, x)  # Unet's decoder ends at full resolution
    with pytest.raises(ModelLoadError, match=r"the weights have 3 classes .* but 5 class names"):
        load_model(compose_spec("smp:Unet", classes_file(list("abcde")), {"encoder_name": "resnet18", "classes": 5}),
                   weights=str(weights))
    spec_file = tmp_path / "unet.json"  # the same in a model spec file, with the training preprocessing
    spec_file.write_text(json.dumps({"model": "smp:Unet", "args": args, "weights": str(weights), "input_size": 64,
                                     "mean": [0.5, 0.5, 0.5], "classes": ["background", "a", "b"]}))
    from_file = load_model(str(spec_file))
    assert (from_file.input_size, from_file.mean, from_file.sha256) == (64, (0.5, 0.5, 0.5), loaded.sha256)
    spec_file.write_text(json.dumps({"model": "smp:Unet", "args": args, "weights": str(weights), "input_size": 0}))
    with pytest.raises(ModelLoadError, match="input_size must be a positive integer"):
        load_model(str(spec_file), classes=["background", "a", "b"])
    with pytest.raises(ModelLoadError, match="cannot build smp:Unet"):
        load_model("smp:Unet", weights=str(weights), model_args={"encoder_name": "no-such-encoder"})


def _tiny_segformer(num_labels: int = 3):
    transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")
    config = transformers.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[4, 2], hidden_sizes=[16, 32], patch_sizes=[7, 3],
        strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=32,
        num_labels=num_labels, id2label={i: f"c{i}" for i in range(num_labels)},
        label2id={f"c{i}": i for i in range(num_labels)},
    )
    torch.manual_seed(0)
    return transformers.SegformerForSemanticSegmentation(config).eval()


def test_hf_segformer_save_pretrained_folder(tmp_path) -> None:
    model = _tiny_segformer()
    model.save_pretrained(tmp_path / "segformer")
    loaded = load_model(f"hf:{tmp_path / 'segformer'}")
    assert loaded.class_names == ("c0", "c1", "c2") and loaded.default_layer == "decode_head.linear_fuse"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        low = model(pixel_values=x).logits
        assert low.shape[-2:] == (16, 16)  # SegFormer's logits come out at 1/4 resolution
        expected = torch.nn.functional.interpolate(low, size=(64, 64), mode="bilinear", align_corners=False)
        torch.testing.assert_close(loaded.module(x), expected)
    assert uses_fast_path(loaded.module, x)
    assert assert_maps_equal_grad_cam(loaded.module, "decode_head.linear_fuse", x, atol=2e-4) > 0
    with pytest.raises(ModelLoadError, match="not a save_pretrained folder"):
        load_model(f"hf:{tmp_path}")


def _chain() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(8, 3, 1)).eval()


def test_torchscript_chain_layers_are_hooked(tmp_path, classes_file) -> None:
    model = _chain()
    path = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(model), path)
    loaded = load_model(f"torchscript:{path}", classes=classes_file(["bg", "a", "b"]))
    loaded_plain = load_model(str(path), classes=classes_file(["bg", "a", "b"]))  # recognised without the prefix
    assert loaded_plain.sha256 == loaded.sha256 and loaded.default_layer == "3"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = torch.nn.functional.interpolate(model(x), size=(32, 32), mode="bilinear", align_corners=False)
        torch.testing.assert_close(loaded.module(x), expected)
    assert uses_fast_path(loaded.module, x)
    # the peer backpropagates into parameters: those of the scripted modules themselves, not the frozen views
    scripted = tuple(p for layer in loaded.module.children() for p in layer.scripted.parameters())
    assert assert_maps_equal_grad_cam(loaded.module, "3", x, extra_params=scripted) > 0


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_torchscript_without_reachable_layers_is_refused(tmp_path) -> None:
    path = tmp_path / "branchy.ts"
    torch.jit.save(torch.jit.script(_Branchy()), path)
    with pytest.raises(ModelLoadError, match="its layers cannot be hooked"):
        load_model(f"torchscript:{path}", classes=["bg", "a"])


class _TensorNet(nn.Module):
    """A model from another library: returns a bare tensor at half resolution."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, stride=2), nn.ReLU())
        self.head = nn.Conv2d(8, 4, 1)
        self.scale = nn.Parameter(torch.ones(()))  # a parameter of the model itself, not of a child

    def forward(self, x):
        return self.head(self.stem(x)) * self.scale


def test_adapt_plain_module_from_python() -> None:
    net = _TensorNet()
    loaded = adapt(net, class_names=["bg", "a", "b", "c"], input_size=32, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2),
                   logits_module="head")
    assert loaded.default_layer == "stem" and "head" in candidate_layers(loaded.module)
    assert all(not p.requires_grad for p in loaded.module.parameters()) and not net.training
    x = torch.randn(2, 3, 32, 32)
    assert loaded.module(x).shape == (2, 4, 32, 32)
    assert uses_fast_path(loaded.module, x)
    assert assert_maps_equal_grad_cam(loaded.module, "stem", x) > 0
    with pytest.raises(ModelLoadError, match="outputs 4 classes but 2 class names"):
        adapt(_TensorNet(), class_names=["bg", "a"], input_size=32)
    with pytest.raises(ModelLoadError, match="input_size must be a positive integer"):
        adapt(_TensorNet(), class_names=list("abcd"), input_size=-3)
    with pytest.raises(ModelLoadError, match="mean must be 3"):
        adapt(_TensorNet(), class_names=list("abcd"), input_size=32, mean=("a", 1, 2))


def test_layers_command_offline_for_every_adapter(tmp_path, capsys, classes_file) -> None:
    assert main(["layers", "demo-fcn"]) == 0
    assert "features.22  (default)" in capsys.readouterr().out
    assert main(["layers", "deeplabv3_mobilenet_v3_large", "--weights", "none"]) == 0
    assert "backbone.16  (default)" in capsys.readouterr().out
    path = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(_chain()), path)
    assert main(["layers", f"torchscript:{path}"]) == 0
    assert "3  (default)" in capsys.readouterr().out.splitlines()
    assert main(["layers", "deeplabv3_mobilenet_v3_large", "--weights", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("segaudit: error: --weights: file not found") and len(err.strip().splitlines()) == 1
    pytest.importorskip("segmentation_models_pytorch", reason="the smp extra is not installed")
    assert main(["layers", "smp:Unet", "--weights", "none", "--model-args", '{"encoder_name": "resnet18"}']) == 0
    assert "decoder  (default)" in capsys.readouterr().out
