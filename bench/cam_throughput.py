"""CAM throughput: segaudit's engine vs pytorch-grad-cam vs forward-only inference, side by side.

    python bench/cam_throughput.py [--device cpu|cuda] [--images 8] [--size 320] [--classes 3] [--repeats 3]

Model: torchvision ``deeplabv3_mobilenet_v3_large`` (random weights: offline; speed does not depend on
the weights), its default layer ``backbone.16``. Each image gets ``--classes`` labelled regions; the
target of each (image, class) is the class logit summed over its labelled pixels (Seg-Grad-CAM,
``target="gt"``); methods Grad-CAM and Grad-CAM++. pytorch-grad-cam computes the same maps with its
``GradCAM`` / ``GradCAMPlusPlus`` (one forward + backward per method and class, targets for the whole
batch), and the maps are checked equal. Prints maps/s of both, img/s of the engine and of plain
inference, the ratios (best of ``--repeats`` interleaved rounds) and a profile of the engine (the forward that
records the graph, one class slot's backward), and ends with ``speedup_vs_pytorch_grad_cam: X`` and
``ratio_to_forward_only: Y``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from segaudit.cam import capture_layers, compute_cams, normalize_maps, upsample_maps
from segaudit.cam.upsampling import capture_low_res_logits
from segaudit.models.registry import DEFAULT_LAYERS, build_architecture

ARCH = "deeplabv3_mobilenet_v3_large"
METHODS = ("gradcam", "gradcampp")


class _LogitsOnly(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


class _MaskTarget:
    def __init__(self, category: int, mask: torch.Tensor) -> None:
        self.category, self.mask = category, mask

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return (output[self.category] * self.mask).sum()


def _labels(images: int, size: int, classes: int, generator: torch.Generator) -> torch.Tensor:
    """Each image: ``classes`` rectangles of distinct classes (1..20) on background."""
    gt = torch.zeros(images, size, size, dtype=torch.long)
    for b in range(images):
        chosen = torch.randperm(20, generator=generator)[:classes] + 1
        for i, cls in enumerate(chosen.tolist()):
            top = int(torch.randint(0, size // 2, (1,), generator=generator))
            left = i * size // classes
            gt[b, top : top + size // 3, left : left + size // classes - 4] = cls
    return gt


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _best(fn, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import pytorch_grad_cam

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    device = args.device
    # channels-last, as segaudit's registry loads models; the peer and plain inference use the same object
    model = build_architecture(ARCH, 21).eval().to(device=device, memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    layer = DEFAULT_LAYERS[ARCH]
    images = torch.randn(args.images, 3, args.size, args.size, generator=generator).to(device)
    images = images.contiguous(memory_format=torch.channels_last)
    gt = _labels(args.images, args.size, args.classes, generator).to(device)
    n_maps = args.images * args.classes * len(METHODS)

    def forward_only() -> None:
        with torch.inference_mode():
            model(images)

    # exactly the (image, class) pairs the peer computes: the labelled classes
    requested = torch.zeros(args.images, 21, dtype=torch.bool, device=device)
    requested.scatter_(1, torch.stack([torch.unique(g)[1:] for g in gt]), True)

    def ours() -> object:
        return compute_cams(model, images, layer, gt, METHODS, target="gt", classes=requested)

    # the engine's two irreducible parts, timed alone: the forward that records the graph after the layer,
    # and one class slot's backward from the low-resolution logits to the layer
    def forward_recording() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad(), capture_layers(model, [layer]) as captured, capture_low_res_logits(model) as low:
            model(images)
        return captured[layer][0], low[0]

    features, low_logits = forward_recording()
    slot_cotangent = torch.zeros_like(low_logits)
    slot_cotangent[:, 1] = 1.0

    def slot_backward() -> None:
        torch.autograd.grad(low_logits, [features], slot_cotangent, retain_graph=True)

    peer_model = _LogitsOnly(model)
    peer_layer = dict(peer_model.named_modules())[f"model.{layer}"]
    classes_of = [torch.unique(gt[b])[1:].tolist() for b in range(args.images)]

    def peer() -> dict:
        # the peer backpropagates into the parameters: they must require grad while it runs (and only then,
        # so the engine and plain inference are timed with the frozen model they use)
        for p in peer_model.parameters():
            p.requires_grad_(True)
        out = {}
        for method, cls in (("gradcam", pytorch_grad_cam.GradCAM), ("gradcampp", pytorch_grad_cam.GradCAMPlusPlus)):
            with cls(model=peer_model, target_layers=[peer_layer]) as cam:
                for slot in range(args.classes):
                    targets = [_MaskTarget(classes_of[b][slot], (gt[b] == classes_of[b][slot]).float())
                               for b in range(args.images)]
                    out[(method, slot)] = cam(input_tensor=images, targets=targets)
        for p in peer_model.parameters():
            p.requires_grad_(False)
        return out

    forward_only()  # warm-up
    result = ours()
    peer_maps = peer()
    worst = 0.0
    for (method, slot), theirs in peer_maps.items():
        for b in range(args.images):
            raw = result.map(method)[b, classes_of[b][slot]]
            mine = normalize_maps(upsample_maps(normalize_maps(raw), (args.size, args.size)))
            worst = max(worst, float((mine.cpu() - torch.from_numpy(theirs[b])).abs().max()))
    # rounds interleave the three (the machine's speed drifts): each round times plain inference and the
    # engine three times and the peer once; the best of all rounds counts for each
    t_forward = t_ours = t_peer = t_recording = t_slot = float("inf")
    for _ in range(args.repeats):
        t_forward = min(t_forward, _best(forward_only, 3, device))
        t_ours = min(t_ours, _best(ours, 3, device))
        t_peer = min(t_peer, _best(peer, 1, device))
        t_recording = min(t_recording, _best(forward_recording, 3, device))
        t_slot = min(t_slot, _best(slot_backward, 3, device))
    floor = t_recording + args.classes * t_slot

    print(f"device: {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{ARCH}, layer {layer}, {args.images} images {args.size}x{args.size}, {args.classes} classes, "
          f"methods {','.join(METHODS)}: {n_maps} maps")
    print(f"max |ours - pytorch-grad-cam| after the peer's normalisation: {worst:.2e}")
    print(f"pytorch-grad-cam: {t_peer:.3f} s, {n_maps / t_peer:.1f} maps/s")
    print(f"segaudit:         {t_ours:.3f} s, {n_maps / t_ours:.1f} maps/s, {args.images / t_ours:.1f} img/s")
    print(f"forward only:     {t_forward:.3f} s, {args.images / t_forward:.1f} img/s")
    print(f"profile: forward recording the graph {t_recording:.3f} s + {args.classes} class slots x backward "
          f"{t_slot:.3f} s = {floor:.3f} s; everything else (targets, methods, maps) {t_ours - floor:.3f} s; "
          f"speedup if that were zero: {t_peer / floor:.2f}")
    print(f"speedup_vs_pytorch_grad_cam: {t_peer / t_ours:.2f}")
    print(f"ratio_to_forward_only: {t_forward / t_ours:.2f}")


if __name__ == "__main__":
    main()
