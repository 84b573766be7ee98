"""Model adapters: Grad-CAM maps/s of segaudit and of pytorch-grad-cam on the same adapted module, the
largest difference between their maps, and whether the engine's closed-form pull-back serves the adapter.

Each adapter's model is built from a config with random weights (offline) and loaded the way users do
(state dict file, save_pretrained folder, TorchScript file, segaudit.models.adapt). Images: 8 random
96 px images; targets: every predicted class (SemanticSegmentationTarget on the predicted mask). Maps are
compared after the peer's normalisation (tests/test_adapters.py). Prints ``key: value`` lines.

    python bench/adapters.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_adapters import _MaskTarget, _tiny_segformer, uses_fast_path  # noqa: E402

from segaudit.cam import TARGET_PRED, compute_cams, normalize_maps, upsample_maps  # noqa: E402
from segaudit.models import adapt, load_model  # noqa: E402
from segaudit.models.adapters import SegmentationAdapter  # noqa: E402

SIZE, IMAGES = 96, 8


def _models(folder: Path):
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    torch.manual_seed(0)
    names = folder / "classes.txt"
    names.write_text("background\na\nb\n")
    tv = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3, aux_loss=True)
    torch.save(tv.state_dict(), folder / "tv.pth")
    yield "torchvision_state_dict", load_model("deeplabv3_mobilenet_v3_large", weights=str(folder / "tv.pth"),
                                               classes=str(names))
    try:
        import segmentation_models_pytorch as smp

        unet = smp.create_model("Unet", encoder_name="resnet18", encoder_weights=None, classes=3)
        torch.save(unet.state_dict(), folder / "unet.pth")
        yield "smp_unet", load_model("smp:Unet", weights=str(folder / "unet.pth"), classes=str(names),
                                     model_args={"encoder_name": "resnet18", "classes": 3})
    except ImportError:
        print("smp_unet: skipped (segmentation_models_pytorch not installed)")
    try:
        _tiny_segformer().save_pretrained(folder / "segformer")
        yield "hf_segformer", load_model(f"hf:{folder / 'segformer'}")
    except BaseException as exc:  # pytest.importorskip raises Skipped (a BaseException)
        print(f"hf_segformer: skipped ({type(exc).__name__})")
    chain = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                          nn.ReLU(), nn.Conv2d(16, 3, 1))
    torch.jit.save(torch.jit.script(chain), folder / "chain.ts")
    yield "torchscript", load_model(f"torchscript:{folder / 'chain.ts'}", classes=str(names))
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(16, 3, 1))
    yield "python_adapt", adapt(net, class_names=["background", "a", "b"], input_size=SIZE)
    yield "python_adapt_logits_module", adapt(net, class_names=["background", "a", "b"], input_size=SIZE,
                                              logits_module="2")


def _peer_params(module: nn.Module) -> list[torch.Tensor]:
    params = list(module.parameters())
    for layer in module.modules():  # TorchScript layers: the scripted tensors themselves
        if hasattr(layer, "scripted"):
            params += list(layer.scripted.parameters())
    return params


def bench(key: str, loaded, images: torch.Tensor) -> None:
    from pytorch_grad_cam import GradCAM

    layer = loaded.default_layer
    start = time.perf_counter()  # segaudit on the module the audit uses
    result = compute_cams(loaded.module, images, layer, methods=("gradcam",))
    ours_s = time.perf_counter() - start
    pairs = torch.nonzero(result.target_source == TARGET_PRED).tolist()
    # torchvision's own module returns {"out": logits}; the peer wants a tensor: the adapter reads it out of
    # the same module (same layer names, same computation)
    module = SegmentationAdapter(loaded.module) if key.startswith("torchvision") else loaded.module
    for p in _peer_params(module):
        p.requires_grad_(True)
    worst, peer_s = 0.0, 0.0
    with GradCAM(model=module, target_layers=[dict(module.named_modules())[layer]]) as peer:
        for b, k in pairs:
            target = _MaskTarget(k, (result.pred[b] == k).float())
            start = time.perf_counter()
            theirs = peer(input_tensor=images[b: b + 1], targets=[target])[0]
            peer_s += time.perf_counter() - start
            ours = normalize_maps(upsample_maps(normalize_maps(result.map("gradcam")[b, k]), images.shape[-2:]))
            worst = max(worst, float((ours - torch.from_numpy(theirs)).abs().max()))
    for p in _peer_params(module):
        p.requires_grad_(False)
    print(f"{key}_maps: {len(pairs)}")
    print(f"{key}_segaudit_maps_per_s: {len(pairs) / ours_s:.1f}")
    print(f"{key}_grad_cam_maps_per_s: {len(pairs) / peer_s:.1f}")
    print(f"{key}_max_map_difference: {worst:.2e}")
    print(f"{key}_fast_path: {uses_fast_path(loaded.module, images[:1])}")


def main() -> None:
    torch.manual_seed(1)
    images = torch.randn(IMAGES, 3, SIZE, SIZE)
    with tempfile.TemporaryDirectory() as folder:
        for key, loaded in _models(Path(folder)):
            bench(key, loaded, images)


if __name__ == "__main__":
    main()
