"""Train the shipped VGG-FCN (segaudit.vgg_fcn) from scratch on segaudit's synthetic shapes: the demo model of
CNN-Fixations (Seg-Unravel), which needs a plain chain of layers. Same data and recipe as the demo model.

    python scripts/train_demo_fcn.py            # writes segaudit/assets/demo_vgg_fcn.pt and its model card

Deterministic: the data comes from ``generate_dataset(seed=0)``, training from ``TrainConfig(seed=0)``,
with two threads (the number of threads changes float summation order, hence the weights' bytes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from segaudit.models import IMAGENET_MEAN, IMAGENET_STD, demo_fcn_checkpoint_path, save_checkpoint
from segaudit.readers import VocDataset
from segaudit.scores import mean_iou
from segaudit.synth import CLASS_NAMES, generate_dataset
from segaudit.train import TrainConfig, confusion_matrix, load_tensors, train_model

DATA = {"n_train": 600, "n_val": 100, "size": 128, "seed": 0, "plant_errors": 0.0}

CARD = """# Demo VGG-FCN model card: `{file}`

A VGG-style FCN trained by segaudit so CNN-Fixations (`--methods fixations`) runs offline; it knows only
synthetic shapes.

| field | value |
|---|---|
| architecture | segaudit `{arch}` (`segaudit/vgg_fcn.py`, trained from scratch) |
| classes | {classes} |
| input | letterboxed to {size}x{size} RGB, ImageNet mean/std normalisation |
| training data | `segaudit.synth.generate_dataset({data})`, split `train` (clean, {n_train} images) |
| recipe | {recipe} |
| validation mIoU | **{miou:.4f}** on the clean synthetic `val` split ({n_val} images, VOC labels, void ignored, background included) |
| per-class IoU | {per_class} |
| training time | {minutes:.1f} min on {threads} CPU threads |
| SHA-256 | `{sha}` |
| size | {mb:.1f} MB |

Made by `python scripts/train_demo_fcn.py` (torch {torch}). Loaded with `torch.load(..., weights_only=True)`.
Known limits: it has only ever seen 128 px synthetic scenes; on real photos its predictions are meaningless.
The `boat` class was trained with a planted context cue (boats appear on the `water` background ~90% of the
time), on purpose, so audits can show a model that is right for partly the wrong reason.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=demo_fcn_checkpoint_path())
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    config = TrainConfig(arch="vgg_fcn", epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(tmp, **DATA)
        train_x, train_y = load_tensors(VocDataset(tmp, split="train"), CLASS_NAMES, config.input_size)
        val_x, val_y = load_tensors(VocDataset(tmp, split="val"), CLASS_NAMES, config.input_size)
    start = time.perf_counter()
    model = train_model(train_x, train_y, len(CLASS_NAMES), config)
    minutes = (time.perf_counter() - start) / 60
    miou, per_class = mean_iou(confusion_matrix(model, val_x, val_y, len(CLASS_NAMES)))
    print(f"val mIoU {miou:.4f}: " + ", ".join(f"{n} {v:.3f}" for n, v in zip(CLASS_NAMES, per_class, strict=True)))
    metrics = {"val_miou": round(miou, 4), "val_iou": {n: round(float(v), 4) for n, v in zip(CLASS_NAMES, per_class, strict=True)}}
    sha = save_checkpoint(
        model, args.out, arch=config.arch, class_names=CLASS_NAMES, input_size=config.input_size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
        extra={"train_config": json.dumps(asdict(config)), "data": json.dumps(DATA), "metrics": json.dumps(metrics)},
    )
    card = CARD.format(
        file=args.out.name, arch=config.arch, classes=", ".join(CLASS_NAMES), size=config.input_size, data=DATA,
        n_train=DATA["n_train"], n_val=DATA["n_val"], miou=miou, threads=torch.get_num_threads(),
        per_class=", ".join(f"{n} {v:.3f}" for n, v in zip(CLASS_NAMES, per_class, strict=True)),
        recipe=", ".join(f"{k}={v}" for k, v in asdict(config).items()) + ", AdamW, one-cycle LR, "
        "cross-entropy (void ignored), random horizontal flips",
        minutes=minutes, sha=sha, mb=args.out.stat().st_size / 2**20, torch=torch.__version__,
    )
    args.out.with_name("MODEL_CARD_vgg_fcn.md").write_text(card)
    args.out.with_name("demo_vgg_fcn.json").write_text(json.dumps({"sha256": sha, **metrics}, indent=1) + "\n")
    print(f"wrote {args.out} (sha256 {sha})")


if __name__ == "__main__":
    main()
