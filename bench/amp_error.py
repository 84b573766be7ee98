"""Mixed precision (``amp=True``) against float32: how far the maps move, and what it saves.

    python bench/amp_error.py [--device cpu|cuda] [--images 32]

Autocast runs float16 on CUDA and bfloat16 on CPU (:func:`segaudit.cam.compute_cams`). The demo model on
the demo val images (generated, seed 0), at its default layer, target ``pred``: per method, the mean and
largest absolute difference of the min-max normalised maps, and the share of maps whose maximum is at
the same pixel; the share of pixels predicted alike. Then the engine's time in float32 and with ``amp``
on ``deeplabv3_mobilenet_v3_large`` (random weights, 8 images 320x320, Grad-CAM + Grad-CAM++), best of
3 interleaved rounds. Ends with ``key: value`` lines.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from segaudit.cam import TARGET_NONE, compute_cams, normalize_maps
from segaudit.data.classmap import build_class_map
from segaudit.data.preprocess import prepare_batch
from segaudit.data.readers import open_dataset, read_samples
from segaudit.devtools.synth import generate_dataset
from segaudit.models.registry import DEFAULT_LAYERS, build_architecture, load_model

METHODS = ("gradcam", "gradcampp", "layercam", "hirescam", "xgradcam")
SPEED_ARCH = "deeplabv3_mobilenet_v3_large"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _errors(device: str, n_images: int) -> dict[str, float]:
    model = load_model("demo", device=device)
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(tmp, n_train=0, n_val=n_images, seed=0)
        data = open_dataset(f"{tmp}/annotations/instances_val.json")
        samples, _ = read_samples(data, data.refs())
    batch = prepare_batch(samples, build_class_map(data.category_names, model.class_names), model.input_size,
                          model.mean, model.std)
    images = batch.images.to(device)
    full = compute_cams(model.module, images, model.default_layer, methods=METHODS, micro_batch=16)
    half = compute_cams(model.module, images, model.default_layer, methods=METHODS, micro_batch=16, amp=True)
    out = {"pred_agreement": float((full.pred == half.pred).float().mean())}
    both = (full.target_source != TARGET_NONE) & (half.target_source != TARGET_NONE)
    out["maps"] = int(both.sum())
    for method in METHODS:
        a = normalize_maps(full.map(method)[both].float())
        b = normalize_maps(half.map(method)[both].float())
        diff = (a - b).abs()
        out[f"{method}_mean_abs_diff"] = float(diff.mean())
        out[f"{method}_max_abs_diff"] = float(diff.max())
        out[f"{method}_same_peak"] = float((a.flatten(1).argmax(1) == b.flatten(1).argmax(1)).float().mean())
    return out


def _speed(device: str) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_architecture(SPEED_ARCH, 21).eval().to(device=device, memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    images = torch.randn(8, 3, 320, 320).to(device).contiguous(memory_format=torch.channels_last)
    layer = DEFAULT_LAYERS[SPEED_ARCH]
    times = {False: float("inf"), True: float("inf")}
    for amp in times:  # warm-up
        compute_cams(model, images, layer, methods=("gradcam", "gradcampp"), amp=amp)
    for _ in range(3):
        for amp in times:
            _sync(device)
            start = time.perf_counter()
            compute_cams(model, images, layer, methods=("gradcam", "gradcampp"), amp=amp)
            _sync(device)
            times[amp] = min(times[amp], time.perf_counter() - start)
    return {"float32_seconds": times[False], "amp_seconds": times[True], "amp_speedup": times[False] / times[True]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=32)
    args = parser.parse_args()
    dtype = "float16" if args.device.startswith("cuda") else "bfloat16"
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device: {args.device} ({name}), autocast {dtype}, torch {torch.__version__}")
    results = {**_errors(args.device, args.images), **_speed(args.device)}
    for key, value in results.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
